// The outbox: one LMDB environment, one writer thread doing group commit,
// reads in their own read-only transactions on the caller's thread.
//
// Space: the LMDB map size is set to OutboxOptions::max_bytes at open. Without
// MDB_WRITEMAP LMDB writes pages with pwrite and the data file grows only as
// pages are used, so the file starts small and "grows automatically" up to the
// maximum; at the maximum a put or commit returns MDB_MAP_FULL, the whole
// transaction is aborted (nothing of it is visible, nothing committed before
// is touched) and the batch runs again without what needs space: its appends
// that would write fail with Code::kOutboxFull, duplicates and rejections get
// their own answers, and its acks, dead-letter moves and pruning (which free
// space) are committed.
#include "outbox/outbox.h"

#include "core/metrics.h"

#include <fcntl.h>
#include <lmdb.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/clock.h"
#include "outbox/format.h"

namespace agentd {

namespace of = outbox_format;

namespace {

MDB_val mval(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view sv(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

Status lmdb_error(int rc, std::string_view what) {
  if (rc == MDB_MAP_FULL) return Status(Code::kOutboxFull, "outbox full (" + std::string(what) + ")");
  return io_error(std::string(what) + ": " + mdb_strerror(rc));
}

// Prune deletes at most this many messages per transaction, so that one run
// never holds the writer for long; the writer continues at its next turn.
constexpr size_t kPruneBudget = 20000;
// Retention with MongoDB reads at most this many pending entries to learn
// which plan records MongoDB may not hold yet.
constexpr size_t kMaxPendingScan = 10000;
constexpr size_t kMaxSeqCache = 100000;

// A read-only transaction for the calling thread (MDB_NOTLS: any thread).
class ReadTxn {
 public:
  explicit ReadTxn(MDB_env* env) { rc_ = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn_); }
  ~ReadTxn() {
    if (rc_ == 0) mdb_txn_abort(txn_);
  }
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;
  Status status() const { return rc_ == 0 ? Status() : lmdb_error(rc_, "begin read transaction"); }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
  int rc_ = 0;
};

class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) { rc_ = mdb_cursor_open(txn, dbi, &c_); }
  ~Cursor() {
    if (rc_ == 0) mdb_cursor_close(c_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  Status status() const { return rc_ == 0 ? Status() : lmdb_error(rc_, "open cursor"); }
  // Returns 0, MDB_NOTFOUND or an error.
  int get(MDB_val* k, MDB_val* v, MDB_cursor_op op) { return mdb_cursor_get(c_, k, v, op); }
  int put(MDB_val* k, MDB_val* v, unsigned flags) { return mdb_cursor_put(c_, k, v, flags); }

 private:
  MDB_cursor* c_ = nullptr;
  int rc_ = 0;
};

Status validate_id(std::string_view what, std::string_view id, size_t max) {
  if (id.empty()) return invalid_argument(std::string(what) + " is empty");
  if (id.size() > max) {
    return invalid_argument(std::string(what) + " is " + std::to_string(id.size()) + " bytes, more than " +
                            std::to_string(max));
  }
  return Status::ok();
}

int64_t created_ms(const PlanRecord& p) {
  int64_t ms = 0;
  return parse_rfc3339_ms(p.created_at, &ms) ? ms : 0;
}

// One request to the writer: its input, then its outcome, then a callback.
struct Op {
  enum class Kind { kAppend, kAck, kDeadLetter, kRetry, kDrop, kPrune };
  Kind kind = Kind::kAppend;
  AppendRequest append;
  std::vector<uint64_t> ids;  // kAck
  uint64_t id = 0;            // kDeadLetter, kRetry, kDrop
  std::string error;          // kDeadLetter
  size_t bytes = 0;           // for batch bounds
  AppendCallback append_done;
  std::function<void(Status)> done;
  // Outcome, set by the writer.
  std::optional<Result<AppendResult>> append_result;
  Status status;
  bool prune_more = false;

  void fail(const Status& s) {
    if (kind == Kind::kAppend) {
      append_result = s;
    } else {
      status = s;
    }
  }
  void complete() {
    if (kind == Kind::kAppend) {
      if (append_done) append_done(std::move(*append_result));
    } else if (done) {
      done(status);
    }
  }
};

// What one write transaction changed in the writer's caches; merged after a
// successful commit, dropped after an abort.
struct TxnState {
  int64_t now_ms = 0;
  uint64_t next_pending_id = 0;
  std::unordered_map<std::string, uint64_t> last_seq;  // plans appended to
  std::unordered_set<std::string> erased_plans;        // plans deleted by retention
  bool collect = false;                                // an observer wants `committed`
  std::vector<CommittedMessage> committed;             // in commit order: seq order per plan
  uint64_t requests = 0;
  bool marks_untracked = false;  // wrote meta "untracked"
  // The map is full: appends only read (a duplicate gets its stored answer,
  // a rejection its error) and one that would write fails with kOutboxFull.
  bool no_space = false;
};

}  // namespace

enum Health { kHealthy = 0, kFull = 1, kFailed = 2 };

struct Outbox::Impl {
  OutboxOptions options;
  int lock_fd = -1;
  MDB_env* env = nullptr;
  MDB_dbi meta = 0, messages = 0, msgids = 0, pending = 0, plans = 0, user_plans = 0, dead = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::unique_ptr<Op>> queue;           // GUARDED_BY(mu)
  bool stop = false;                               // GUARDED_BY(mu)
  std::shared_ptr<const CommitObserver> observer;  // GUARDED_BY(mu)
  std::thread writer;

  std::atomic<bool> fail_next_commit{false};  // fail_next_commit_for_testing
  std::atomic<uint64_t> commits{0}, committed_requests{0};

  // Writer thread only.
  Status sticky;  // first failed commit
  // What writable() reports, written by the writer thread only.
  std::atomic<int> health{kHealthy};                    // kHealthy, kFull or kFailed
  std::unordered_map<std::string, uint64_t> seq_cache;  // plan -> last seq
  uint64_t next_pending_id = 1;
  int64_t last_appended_ms = 0;
  std::string prune_resume;       // retention with MongoDB: the plan its next pass starts at ("": the first)
  bool untracked_marked = false;  // meta "untracked" committed by this process

  ~Impl() {
    if (writer.joinable()) {
      {
        std::lock_guard l(mu);
        stop = true;
      }
      cv.notify_all();
      writer.join();
    }
    if (env) mdb_env_close(env);
    if (lock_fd >= 0) ::close(lock_fd);
  }

  Status open_env();
  void enqueue(std::unique_ptr<Op> op);
  Status run_sync(std::unique_ptr<Op> op);

  void run();
  void commit_batch(std::vector<std::unique_ptr<Op>>& batch);
  static constexpr size_t kBackfillChunk = 10000;
  Status backfill_untracked(uint64_t* pending_count);
  static constexpr size_t kRoomProbeBytes = 2048;  // an ordinary message, no overflow pages
  bool has_room();
  Status run_txn(std::vector<std::unique_ptr<Op>>& batch, TxnState* st);
  Status outbox_full() const {
    return Status(Code::kOutboxFull, "outbox full: at its maximum of " + std::to_string(options.max_bytes) +
                                         " bytes; retry after the flusher or retention frees space");
  }
  Status apply(MDB_txn* txn, Op& op, TxnState* st);
  Status apply_append(MDB_txn* txn, Op& op, TxnState* st);
  Status apply_dead_letter(MDB_txn* txn, Op& op, TxnState* st);
  Status apply_retry(MDB_txn* txn, Op& op, TxnState* st);
  Status apply_prune(MDB_txn* txn, Op& op, TxnState* st);
  Status prune_plan_messages(MDB_txn* txn, std::string_view plan_id, int64_t cutoff_ms, uint64_t below_pending_id,
                             bool keep_last, size_t* budget, bool* all_gone);
  // Deletes what is left of a plan whose messages are all gone: its msgids
  // entries, its user_plans entry, its record.
  Status remove_plan(MDB_txn* txn, const PlanRecord& p, TxnState* st);
  Result<uint64_t> stored_last_seq(MDB_txn* txn, std::string_view plan_id);
  Result<uint64_t> next_seq(MDB_txn* txn, const std::string& plan_id, TxnState* st);
  Status put_pending(MDB_txn* txn, TxnState* st, std::string_view value);
  Status put_next_pending_id(MDB_txn* txn, uint64_t id);  // meta "next_pending_id"
  Result<std::string> message_bytes(MDB_txn* txn, std::string_view plan_id, uint64_t seq);
  // Rewrites the pending_id of a stored message; false when retention
  // already removed the message (an outbox written before kNotInMongo).
  Result<bool> set_message_pending_id(MDB_txn* txn, std::string_view plan_id, uint64_t seq, uint64_t pending_id);
  Status mark_dead_messages(MDB_txn* txn);
  Result<PendingEntry> to_entry(MDB_txn* txn, uint64_t id, std::string_view value);
};

// ---------------------------------------------------------------------------
// Open

Result<std::unique_ptr<Outbox>> Outbox::open(const OutboxOptions& options) {
  if (options.dir.empty()) return invalid_argument("outbox dir is empty");
  if (options.max_bytes < (256u << 10)) return invalid_argument("outbox max_bytes must be at least 256 KiB");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return io_error("create outbox dir " + options.dir + ": " + ec.message());
  std::string lock_path = options.dir + "/LOCK";
  impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (impl->lock_fd < 0) return io_error("open " + lock_path + ": " + std::strerror(errno));
  if (::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status(Code::kLocked, "data dir " + options.dir + " is in use by another agentd (lock " + lock_path +
                                       " is held); one process per data dir");
    }
    return io_error("flock " + lock_path + ": " + std::strerror(errno));
  }
  AGENTD_RETURN_IF_ERROR(impl->open_env());
  impl->writer = std::thread([p = impl.get()] { p->run(); });
  return std::unique_ptr<Outbox>(new Outbox(std::move(impl)));
}

Status Outbox::Impl::open_env() {
  int rc = mdb_env_create(&env);
  if (rc != 0) return lmdb_error(rc, "mdb_env_create");
  if ((rc = mdb_env_set_maxdbs(env, 8)) != 0) return lmdb_error(rc, "mdb_env_set_maxdbs");
  // One slot per concurrent read transaction (any thread, MDB_NOTLS).
  if ((rc = mdb_env_set_maxreaders(env, 1024)) != 0) return lmdb_error(rc, "mdb_env_set_maxreaders");
  if ((rc = mdb_env_set_mapsize(env, options.max_bytes)) != 0) return lmdb_error(rc, "mdb_env_set_mapsize");
  unsigned flags = MDB_NOTLS | (options.sync ? 0u : static_cast<unsigned>(MDB_NOMETASYNC));
  if ((rc = mdb_env_open(env, options.dir.c_str(), flags, 0644)) != 0) {
    return lmdb_error(rc, "open LMDB environment in " + options.dir);
  }
  int stale = 0;  // reader slots of a killed process would pin old pages
  if ((rc = mdb_reader_check(env, &stale)) != 0) return lmdb_error(rc, "mdb_reader_check");
  if (stale > 0) spdlog::info("outbox {}: cleared {} stale reader slots", options.dir, stale);
  MDB_txn* txn;
  if ((rc = mdb_txn_begin(env, nullptr, 0, &txn)) != 0) return lmdb_error(rc, "begin open transaction");
  auto fail = [&](Status s) {
    mdb_txn_abort(txn);
    return s;
  };
  struct {
    const char* name;
    MDB_dbi* dbi;
  } dbs[] = {{of::kMetaDb, &meta},       {of::kMessagesDb, &messages}, {of::kMsgIdsDb, &msgids},
             {of::kPendingDb, &pending}, {of::kPlansDb, &plans},       {of::kUserPlansDb, &user_plans},
             {of::kDeadDb, &dead}};
  for (auto& d : dbs) {
    if ((rc = mdb_dbi_open(txn, d.name, MDB_CREATE, d.dbi)) != 0) {
      return fail(lmdb_error(rc, std::string("open database ") + d.name));
    }
  }
  MDB_val k = mval(of::kFormatVersionKey), v;
  rc = mdb_get(txn, meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    std::string ver;
    of::put_be32(&ver, of::kFormatVersion);
    MDB_val nv = mval(ver);
    if ((rc = mdb_put(txn, meta, &k, &nv, 0)) != 0) return fail(lmdb_error(rc, "write format version"));
  } else if (rc != 0) {
    return fail(lmdb_error(rc, "read format version"));
  } else if (v.mv_size != 4) {
    return fail(corruption("corrupt meta format_version: " + std::to_string(v.mv_size) + " bytes, expected 4"));
  } else if (uint32_t found = of::get_be32(static_cast<const char*>(v.mv_data)); found != of::kFormatVersion) {
    return fail(Status(Code::kVersionMismatch, "outbox in " + options.dir + " has on-disk format version " +
                                                   std::to_string(found) + "; this agentd reads version " +
                                                   std::to_string(of::kFormatVersion)));
  }
  // next_pending_id: the stored counter, never below what the tables hold.
  k = mval(of::kNextPendingIdKey);
  if ((rc = mdb_get(txn, meta, &k, &v)) == 0 && v.mv_size == 8) {
    next_pending_id = of::get_be64(static_cast<const char*>(v.mv_data));
  }
  uint64_t pending_count = 0;
  int64_t oldest_ms = 0;
  for (MDB_dbi dbi : {pending, dead}) {
    Cursor c(txn, dbi);
    if (!c.status().is_ok()) return fail(c.status());
    MDB_val ck, cv_;
    if (c.get(&ck, &cv_, MDB_LAST) == 0 && ck.mv_size == 8) {
      next_pending_id = std::max(next_pending_id, of::get_be64(static_cast<const char*>(ck.mv_data)) + 1);
      if (dbi == pending) {
        auto last = of::parse_pending_value(sv(cv_));
        if (last.is_ok()) last_appended_ms = last->appended_at_ms;
        if (c.get(&ck, &cv_, MDB_FIRST) == 0) {
          auto first = of::parse_pending_value(sv(cv_));
          if (first.is_ok()) oldest_ms = first->appended_at_ms;
        }
        MDB_stat st;
        if (mdb_stat(txn, pending, &st) == 0) pending_count = st.ms_entries;
      }
    }
  }
  if (Status s = mark_dead_messages(txn); !s.is_ok()) return fail(s);
  if ((rc = mdb_txn_commit(txn)) != 0) return lmdb_error(rc, "commit open transaction");
  if (options.track_pending) {
    uint64_t before = pending_count;
    AGENTD_RETURN_IF_ERROR(backfill_untracked(&pending_count));
    if (before == 0 && pending_count > 0) oldest_ms = now_unix_ms();  // queued just now
  }
  if (pending_count > 0 && !options.track_pending) {
    spdlog::warn(
        "outbox {}: {} entries left pending by a run with MongoDB (oldest {} s old); they stay, and "
        "finished-plan retention waits, until a run with MongoDB flushes them",
        options.dir, pending_count, (now_unix_ms() - oldest_ms) / 1000);
  } else if (pending_count > 0) {
    spdlog::info("outbox {}: {} pending entries, oldest {} s old", options.dir, pending_count,
                 (now_unix_ms() - oldest_ms) / 1000);
  } else {
    spdlog::info("outbox {}: nothing pending", options.dir);
  }
  return Status::ok();
}

Outbox::Outbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Outbox::~Outbox() = default;

void Outbox::set_observer(CommitObserver observer) {
  auto p = observer ? std::make_shared<const CommitObserver>(std::move(observer)) : nullptr;
  bool had_one = false;
  {
    std::lock_guard l(impl_->mu);
    had_one = impl_->observer != nullptr;
    impl_->observer = std::move(p);
  }
  // A batch the writer took before the swap may still be calling the old
  // observer (commit_batch copies it first): wait for that batch.
  if (had_one) wait_idle();
}

void Outbox::wait_idle() {
  // An empty ack changes nothing; the writer takes the queue in order and
  // completes a batch's requests in order, so when it completes, every
  // request queued before it has completed.
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kAck;
  (void)impl_->run_sync(std::move(op));
}

// ---------------------------------------------------------------------------
// Requests

void Outbox::Impl::enqueue(std::unique_ptr<Op> op) {
  {
    std::lock_guard l(mu);
    if (queue.size() < options.max_queue) {
      queue.push_back(std::move(op));
      op = nullptr;
    }
  }
  if (!op) {
    cv.notify_one();
    return;
  }
  // Rejected: complete on the caller's thread, outside the lock.
  op->fail(unavailable("outbox queue full (" + std::to_string(options.max_queue) + " requests waiting)"));
  op->complete();
}

Status Outbox::Impl::run_sync(std::unique_ptr<Op> op) {
  std::promise<Status> p;
  auto f = p.get_future();
  op->done = [&p](Status s) { p.set_value(std::move(s)); };
  enqueue(std::move(op));
  return f.get();
}

void Outbox::append(AppendRequest req, AppendCallback done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kAppend;
  op->bytes = (req.message ? req.message->tail.size() : 0) + (req.plan ? req.plan->m_plan.size() + 256 : 0);
  op->append = std::move(req);
  op->append_done = std::move(done);
  impl_->enqueue(std::move(op));
}

void Outbox::ack(std::vector<uint64_t> ids, std::function<void(Status)> done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kAck;
  op->bytes = ids.size() * 8;
  op->ids = std::move(ids);
  op->done = std::move(done);
  impl_->enqueue(std::move(op));
}

Status Outbox::ack_sync(std::vector<uint64_t> ids) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kAck;
  op->bytes = ids.size() * 8;
  op->ids = std::move(ids);
  return impl_->run_sync(std::move(op));
}

Status Outbox::dead_letter_sync(uint64_t id, std::string error) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kDeadLetter;
  op->id = id;
  op->bytes = error.size();
  op->error = std::move(error);
  return impl_->run_sync(std::move(op));
}

Status Outbox::retry_dead_letter_sync(uint64_t id) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kRetry;
  op->id = id;
  return impl_->run_sync(std::move(op));
}

Status Outbox::drop_dead_letter_sync(uint64_t id) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kDrop;
  op->id = id;
  return impl_->run_sync(std::move(op));
}

Status Outbox::prune_sync() {
  for (;;) {  // one budgeted transaction at a time until nothing is left
    auto op = std::make_unique<Op>();
    op->kind = Op::Kind::kPrune;
    const Op* raw = op.get();
    bool more = false;
    std::promise<Status> p;
    auto f = p.get_future();
    op->done = [&p, &more, raw](Status s) {
      more = raw->prune_more;
      p.set_value(std::move(s));
    };
    impl_->enqueue(std::move(op));
    AGENTD_RETURN_IF_ERROR(f.get());
    if (!more) return Status::ok();
  }
}

void Outbox::fail_next_commit_for_testing() { impl_->fail_next_commit = true; }

// ---------------------------------------------------------------------------
// The writer: group commit.
//
// Invariant: only this thread opens write transactions, so the per-plan seq
// cache and next_pending_id describe the last committed state exactly; one
// transaction's changes to them are merged only after its commit succeeded.

void Outbox::Impl::run() {
  auto next_prune = std::chrono::steady_clock::now() + options.prune_interval;
  for (;;) {
    std::vector<std::unique_ptr<Op>> batch;
    bool stopping = false;
    {
      std::unique_lock l(mu);
      cv.wait_until(l, next_prune, [&] { return stop || !queue.empty(); });
      stopping = stop;
      size_t bytes = 0;  // everything waiting now, bounded by bytes and count
      while (!queue.empty() && batch.size() < options.max_batch_count &&
             (batch.empty() || bytes + queue.front()->bytes <= options.max_batch_bytes)) {
        bytes += queue.front()->bytes;
        batch.push_back(std::move(queue.front()));
        queue.pop_front();
      }
    }
    if (batch.empty() && stopping) return;  // the queue is drained
    // No lock held from here: the transaction, the sync, the callbacks.
    if (!batch.empty()) commit_batch(batch);
    if (std::chrono::steady_clock::now() >= next_prune) {  // also under constant load
      // A reader killed inside its read transaction (`agentd-outbox dump`
      // under SIGKILL) leaves its slot behind, and LMDB then keeps every page
      // that snapshot could see: the file grows on each commit until the map
      // is full. Clear such slots at every retention tick.
      int stale = 0;
      if (int rc = mdb_reader_check(env, &stale); rc != 0) {
        spdlog::error("outbox {}: mdb_reader_check: {}", options.dir, mdb_strerror(rc));
      } else if (stale > 0) {
        spdlog::warn("outbox {}: cleared {} stale reader slots (a reader died mid-read)", options.dir, stale);
      }
      std::vector<std::unique_ptr<Op>> prune;
      prune.push_back(std::make_unique<Op>());
      prune[0]->kind = Op::Kind::kPrune;
      commit_batch(prune);
      if (!prune[0]->status.is_ok()) spdlog::error("outbox prune failed: {}", prune[0]->status.to_string());
      auto wait = prune[0]->prune_more ? std::chrono::milliseconds(0) : options.prune_interval;
      next_prune = std::chrono::steady_clock::now() + wait;
    }
  }
}

void Outbox::Impl::commit_batch(std::vector<std::unique_ptr<Op>>& batch) {
  std::shared_ptr<const CommitObserver> obs;
  {
    std::lock_guard l(mu);
    obs = observer;
  }
  TxnState st;
  st.collect = obs && *obs;
  Status s = sticky.is_ok() ? run_txn(batch, &st) : sticky;
  if (s.code() == Code::kOutboxFull) {
    // Nothing was written. Again without what needs space: the appends that
    // would write fail fast with kOutboxFull, a duplicate still gets its
    // stored answer and a rejection its own error, and what frees space
    // (acks, dead-letter moves, pruning) is committed.
    for (auto& op : batch) op->append_result.reset();
    st = TxnState{};  // collects nothing: no append writes in the retry
    st.no_space = true;
    s = run_txn(batch, &st);
    health = kFull;
  } else if (s.is_ok()) {
    bool appended = false;  // an append wrote (not a duplicate, not a rejection)
    for (auto& op : batch) {
      appended = appended || (op->append_result && op->append_result->is_ok() && !(*op->append_result)->duplicate);
    }
    // An append committed: there is room again. Acks, prunes and dropped dead
    // letters free pages too: then probe, so that /readyz recovers without
    // waiting for an append nobody sends to an instance marked not ready.
    if (appended || (health == kFull && has_room())) health = kHealthy;
  }
  if (!s.is_ok()) {
    if (s.code() != Code::kOutboxFull && sticky.is_ok()) {
      spdlog::error("outbox commit failed, refusing every later write: {}", s.to_string());
      sticky = s;
      health = kFailed;
    }
    for (auto& op : batch) {
      if (op->kind != Op::Kind::kAppend || !op->append_result || op->append_result->is_ok()) op->fail(s);
    }
  }
  if (!st.committed.empty()) (*obs)(st.committed);
  for (auto& op : batch) op->complete();
}

// A run with MongoDB after runs without it (meta "untracked" set): every
// message whose pending_id is 0 gets a pending entry now, and its value the
// new pending_id, in (plan, seq) order; then every plan record is queued at
// its current version. Without this the flusher would never send them and
// retention would take them for flushed. Runs before the writer starts, in
// transactions of kBackfillChunk entries; meta "backfill_from" holds where
// to continue if the process stops halfway, and the flag goes last.
Status Outbox::Impl::backfill_untracked(uint64_t* pending_count) {
  MDB_txn* txn;
  int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) return lmdb_error(rc, "begin read transaction");
  MDB_val k = mval(of::kUntrackedKey), v;
  rc = mdb_get(txn, meta, &k, &v);
  mdb_txn_abort(txn);
  if (rc == MDB_NOTFOUND) return Status::ok();
  if (rc != 0) return lmdb_error(rc, "read untracked flag");
  uint64_t messages_queued = 0, plans_queued = 0;
  for (bool done = false; !done;) {
    if ((rc = mdb_txn_begin(env, nullptr, 0, &txn)) != 0) return lmdb_error(rc, "begin backfill transaction");
    auto fail = [&](Status s) {
      mdb_txn_abort(txn);
      return s;
    };
    // Where this chunk starts: "m" + message key, or "p" + plan id.
    std::string from;
    MDB_val fk = mval(of::kBackfillFromKey);
    if ((rc = mdb_get(txn, meta, &fk, &v)) == 0) {
      from.assign(static_cast<const char*>(v.mv_data), v.mv_size);
    } else if (rc != MDB_NOTFOUND) {
      return fail(lmdb_error(rc, "read backfill_from"));
    }
    if (from.empty()) from = "m";
    const bool on_messages = from[0] == 'm';
    TxnState tx;  // hands out pending ids as an append would
    tx.next_pending_id = next_pending_id;
    int64_t now_ms = std::max(now_unix_ms(), last_appended_ms);
    std::string next;              // "": the last chunk
    Status st = [&]() -> Status {  // the cursor closes before the transaction ends
      Cursor c(txn, on_messages ? messages : plans);
      AGENTD_RETURN_IF_ERROR(c.status());
      std::string start = from.substr(1);
      MDB_val ck = mval(start), cv_;
      int crc = start.empty() ? c.get(&ck, &cv_, MDB_FIRST) : c.get(&ck, &cv_, MDB_SET_RANGE);
      size_t n = 0;
      for (; crc == 0 && n < kBackfillChunk; crc = c.get(&ck, &cv_, MDB_NEXT), ++n) {
        std::string pv;
        if (on_messages) {
          auto m = of::parse_message_value(sv(cv_));
          if (!m.is_ok()) return m.status();
          if (m->pending_id != 0) continue;
          of::Reader r(sv(ck), "message key");
          std::string_view plan;
          uint64_t seq = 0;
          if (!r.str16(&plan) || !r.be64(&seq)) return r.error("message key");
          pv = of::pending_value(PendingKind::kMessage, 0, m->appended_at_ms, plan, seq, std::string_view());
          std::string value = of::message_value(m->appended_at_ms, tx.next_pending_id, m->message_id, m->envelope);
          MDB_val nv = mval(value);
          if ((crc = c.put(&ck, &nv, MDB_CURRENT)) != 0) return lmdb_error(crc, "rewrite message value");
          ++messages_queued;
        } else {
          auto p = decode_plan(sv(cv_));
          if (!p.is_ok()) return corruption("corrupt plan record " + std::string(sv(ck)) + ": " + p.status().message());
          pv = of::pending_value(PendingKind::kPlan, of::kInline, now_ms, p->plan_id, p->version, sv(cv_));
          ++plans_queued;
        }
        AGENTD_RETURN_IF_ERROR(put_pending(txn, &tx, pv));
      }
      if (crc == 0) {
        next = (on_messages ? "m" : "p") + std::string(sv(ck));
      } else if (crc == MDB_NOTFOUND) {
        if (on_messages) next = "p";
      } else {
        return lmdb_error(crc, "scan for backfill");
      }
      return Status::ok();
    }();
    if (!st.is_ok()) return fail(st);
    if (next.empty()) {  // the plans are queued too: done
      done = true;
      MDB_val uk = mval(of::kUntrackedKey);
      if ((rc = mdb_del(txn, meta, &uk, nullptr)) != 0) return fail(lmdb_error(rc, "delete untracked flag"));
      if ((rc = mdb_del(txn, meta, &fk, nullptr)) != 0 && rc != MDB_NOTFOUND) {
        return fail(lmdb_error(rc, "delete backfill_from"));
      }
    } else {
      MDB_val nv = mval(next);
      if ((rc = mdb_put(txn, meta, &fk, &nv, 0)) != 0) return fail(lmdb_error(rc, "write backfill_from"));
    }
    if (Status w = put_next_pending_id(txn, tx.next_pending_id); !w.is_ok()) return fail(w);
    if ((rc = mdb_txn_commit(txn)) != 0) return lmdb_error(rc, "commit backfill transaction");
    *pending_count += tx.next_pending_id - next_pending_id;
    next_pending_id = tx.next_pending_id;
  }
  spdlog::warn("outbox {}: earlier runs had no MongoDB; queued their {} messages and {} plan records for the flusher",
               options.dir, messages_queued, plans_queued);
  return Status::ok();
}

// Whether one more append of an ordinary size would find pages: a write
// transaction puts a probe value of kRoomProbeBytes and is aborted (LMDB
// reports MDB_MAP_FULL from the put that cannot allocate). Writer thread only.
bool Outbox::Impl::has_room() {
  MDB_txn* txn;
  if (mdb_txn_begin(env, nullptr, 0, &txn) != 0) return false;
  std::string probe(kRoomProbeBytes, '\0');
  std::string_view key = "room-probe";
  MDB_val k = mval(key), v = mval(probe);
  int rc = mdb_put(txn, meta, &k, &v, 0);
  mdb_txn_abort(txn);
  return rc == 0;
}

Status Outbox::Impl::run_txn(std::vector<std::unique_ptr<Op>>& batch, TxnState* st) {
  MDB_txn* txn;
  int rc = mdb_txn_begin(env, nullptr, 0, &txn);
  if (rc != 0) return lmdb_error(rc, "begin write transaction");
  // appended_at_ms never goes backwards, even if the clock steps back.
  st->now_ms = std::max(now_unix_ms(), last_appended_ms);
  st->next_pending_id = next_pending_id;
  for (auto& op : batch) {
    ++st->requests;
    Status s = apply(txn, *op, st);
    if (!s.is_ok()) {
      mdb_txn_abort(txn);
      st->committed.clear();
      return s;
    }
  }
  if (st->next_pending_id != next_pending_id) {
    if (Status w = put_next_pending_id(txn, st->next_pending_id); !w.is_ok()) {
      mdb_txn_abort(txn);
      st->committed.clear();
      return w;
    }
  }
  if (fail_next_commit.exchange(false)) {
    mdb_txn_abort(txn);
    st->committed.clear();
    return io_error("commit: injected failure (fail_next_commit_for_testing)");
  }
  if ((rc = mdb_txn_commit(txn)) != 0) {
    st->committed.clear();
    return lmdb_error(rc, "commit");
  }
  // Committed: merge the transaction's view into the writer's caches.
  if (seq_cache.size() + st->last_seq.size() > kMaxSeqCache) seq_cache.clear();
  for (auto& [plan, seq] : st->last_seq) seq_cache[plan] = seq;
  for (const auto& plan : st->erased_plans) seq_cache.erase(plan);
  next_pending_id = st->next_pending_id;
  last_appended_ms = st->now_ms;
  untracked_marked = untracked_marked || st->marks_untracked;
  commits.fetch_add(1, std::memory_order_relaxed);
  committed_requests.fetch_add(st->requests, std::memory_order_relaxed);
  return Status::ok();
}

// Applies one op inside `txn`. An op-level failure (bad input, unknown id) is
// stored in the op and writes nothing; the returned Status is a transaction
// failure (LMDB error, corruption) that aborts the whole batch.
Status Outbox::Impl::apply(MDB_txn* txn, Op& op, TxnState* st) {
  switch (op.kind) {
    case Op::Kind::kAppend: return apply_append(txn, op, st);
    case Op::Kind::kAck:
      for (uint64_t id : op.ids) {
        std::string key = of::pending_key(id);
        MDB_val k = mval(key);
        int rc = mdb_del(txn, pending, &k, nullptr);
        if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "delete pending entry");
      }
      op.status = Status::ok();
      return Status::ok();
    case Op::Kind::kDeadLetter: return apply_dead_letter(txn, op, st);
    case Op::Kind::kRetry: return apply_retry(txn, op, st);
    case Op::Kind::kDrop: {
      std::string key = of::pending_key(op.id);
      MDB_val k = mval(key);
      int rc = mdb_del(txn, dead, &k, nullptr);
      if (rc == MDB_NOTFOUND) {
        op.status = not_found("no dead letter with id " + std::to_string(op.id));
        return Status::ok();
      }
      if (rc != 0) return lmdb_error(rc, "delete dead letter");
      op.status = Status::ok();
      return Status::ok();
    }
    case Op::Kind::kPrune: return apply_prune(txn, op, st);
  }
  return internal_error("unknown op");
}

Result<uint64_t> Outbox::Impl::stored_last_seq(MDB_txn* txn, std::string_view plan_id) {
  Cursor c(txn, messages);
  AGENTD_RETURN_IF_ERROR(c.status());
  std::string key = of::message_key(plan_id, std::numeric_limits<uint64_t>::max());
  MDB_val k = mval(key), v;
  int rc = c.get(&k, &v, MDB_SET_RANGE);
  if (rc == MDB_NOTFOUND) {
    rc = c.get(&k, &v, MDB_LAST);
  } else if (rc == 0) {
    rc = c.get(&k, &v, MDB_PREV);
  }
  if (rc == MDB_NOTFOUND) return uint64_t{0};
  if (rc != 0) return lmdb_error(rc, "read last message key");
  uint64_t seq = 0;
  return of::parse_message_key(sv(k), plan_id, &seq) ? seq : 0;
}

Result<uint64_t> Outbox::Impl::next_seq(MDB_txn* txn, const std::string& plan_id, TxnState* st) {
  if (auto it = st->last_seq.find(plan_id); it != st->last_seq.end()) return it->second + 1;
  if (st->erased_plans.count(plan_id) == 0) {
    if (auto it = seq_cache.find(plan_id); it != seq_cache.end()) return it->second + 1;
  }
  auto last = stored_last_seq(txn, plan_id);
  if (!last.is_ok()) return last.status();
  return *last + 1;
}

Status Outbox::Impl::put_next_pending_id(MDB_txn* txn, uint64_t id) {
  std::string idv;
  of::put_be64(&idv, id);
  MDB_val k = mval(of::kNextPendingIdKey), v = mval(idv);
  int rc = mdb_put(txn, meta, &k, &v, 0);
  return rc == 0 ? Status::ok() : lmdb_error(rc, "write next_pending_id");
}

Status Outbox::Impl::put_pending(MDB_txn* txn, TxnState* st, std::string_view value) {
  std::string key = of::pending_key(st->next_pending_id++);
  MDB_val k = mval(key), v = mval(value);
  int rc = mdb_put(txn, pending, &k, &v, MDB_APPEND);
  return rc == 0 ? Status::ok() : lmdb_error(rc, "write pending entry");
}

Status Outbox::Impl::apply_append(MDB_txn* txn, Op& op, TxnState* st) {
  const AppendRequest& req = op.append;
  auto reject = [&](Status s) {
    op.append_result = std::move(s);
    return Status::ok();
  };
  if (!req.message && !req.plan) return reject(invalid_argument("append without message or plan record"));
  if (req.message) {
    if (Status s = validate_id("plan_id", req.message->plan_id, of::kMaxPlanIdLen); !s.is_ok()) return reject(s);
    if (Status s = validate_id("message_id", req.message->message_id, of::kMaxMessageIdLen); !s.is_ok()) {
      return reject(s);
    }
    if (req.message->tail.empty()) return reject(invalid_argument("message tail is empty"));
  }
  if (req.plan) {
    if (Status s = validate_id("plan_id", req.plan->plan_id, of::kMaxPlanIdLen); !s.is_ok()) return reject(s);
    if (req.plan->user_id.size() > of::kMaxUserIdLen) return reject(invalid_argument("user_id too long"));
    if (req.message && req.message->plan_id != req.plan->plan_id) {
      return reject(invalid_argument("message plan_id " + req.message->plan_id + " differs from plan record's " +
                                     req.plan->plan_id));
    }
  }
  AppendResult res;
  int rc;
  std::string idkey, seqv;
  MDB_val k, v;
  // Already appended: return what is stored, change nothing.
  auto duplicate = [&]() -> Status {
    const PreparedMessage& m = *req.message;
    if (v.mv_size != 8) return corruption("corrupt msgids value for " + m.plan_id + "/" + m.message_id);
    res.seq = of::get_be64(static_cast<const char*>(v.mv_data));
    std::string key = of::message_key(m.plan_id, res.seq);
    MDB_val mk = mval(key), mv;
    int mrc = mdb_get(txn, messages, &mk, &mv);
    if (mrc == MDB_NOTFOUND) {  // retention pruned it (MongoDB holds it): the seq is the answer
      res.duplicate = true;
      op.append_result = std::move(res);
      return Status::ok();
    }
    if (mrc != 0) return lmdb_error(mrc, "read message");
    auto stored = of::parse_message_value(sv(mv));
    if (!stored.is_ok()) return stored.status();
    res.bytes = std::make_shared<const std::string>(stored->envelope);
    res.duplicate = true;
    op.append_result = std::move(res);
    return Status::ok();
  };
  if (req.message) {
    const PreparedMessage& m = *req.message;
    idkey = of::msgid_key(m.plan_id, m.message_id);
    k = mval(idkey);
    if (req.open_plan_only || st->no_space) {
      if ((rc = mdb_get(txn, msgids, &k, &v)) == 0) return duplicate();
      if (rc != MDB_NOTFOUND) return lmdb_error(rc, "read msgids");
    }
    if (req.open_plan_only) {
      MDB_val pk = mval(m.plan_id), pv;
      rc = mdb_get(txn, plans, &pk, &pv);
      if (rc == MDB_NOTFOUND) {
        return reject(failed_precondition("plan " + m.plan_id +
                                          " is not held by this agentd's outbox; it takes no messages here"));
      }
      if (rc != 0) return lmdb_error(rc, "read plan record");
      auto stored = decode_plan(sv(pv));
      if (!stored.is_ok()) return corruption("corrupt plan record " + m.plan_id + ": " + stored.status().message());
      if (is_final(stored->status)) {
        return reject(failed_precondition("plan " + m.plan_id + " is " + std::string(plan_status_name(stored->status)) +
                                          ": it takes no more messages"));
      }
    }
  }
  if (st->no_space) return reject(outbox_full());  // it would write
  if (!options.track_pending && !untracked_marked && !st->marks_untracked) {
    // This write makes no pending entry: remember it in the same transaction,
    // so that a later run with MongoDB sends it there (backfill_untracked()).
    MDB_val uk = mval(of::kUntrackedKey), empty{0, nullptr};
    if ((rc = mdb_put(txn, meta, &uk, &empty, 0)) != 0) return lmdb_error(rc, "write untracked flag");
    // A backfill interrupted earlier must start over: its resume position
    // may be past the plans this run appends to, whose new messages it
    // would then never queue (re-scanning queues only pending_id 0).
    MDB_val fk = mval(of::kBackfillFromKey);
    if ((rc = mdb_del(txn, meta, &fk, nullptr)) != 0 && rc != MDB_NOTFOUND) {
      return lmdb_error(rc, "delete backfill_from");
    }
    st->marks_untracked = true;
  }
  if (req.message) {
    const PreparedMessage& m = *req.message;
    auto seq = next_seq(txn, m.plan_id, st);
    if (!seq.is_ok()) return seq.status();
    // One descent of msgids both checks for a duplicate and claims the id.
    of::put_be64(&seqv, *seq);
    v = mval(seqv);
    rc = mdb_put(txn, msgids, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) return duplicate();
    if (rc != 0) return lmdb_error(rc, "write msgids");
    res.seq = *seq;
    auto bytes = std::make_shared<const std::string>(finalize(res.seq, m.tail));
    std::string key = of::message_key(m.plan_id, res.seq);
    uint64_t pending_id = options.track_pending ? st->next_pending_id : 0;
    std::string head = of::message_value_head(st->now_ms, pending_id, m.message_id);
    MDB_val mk = mval(key), mv{head.size() + bytes->size(), nullptr};
    rc = mdb_put(txn, messages, &mk, &mv, MDB_NOOVERWRITE | MDB_RESERVE);
    // Invariant: a seq is never reused (the cache matches the last key).
    assert(rc != MDB_KEYEXIST);
    if (rc == MDB_KEYEXIST) return internal_error("seq " + std::to_string(res.seq) + " of " + m.plan_id + " reused");
    if (rc != 0) return lmdb_error(rc, "write message");
    std::memcpy(mv.mv_data, head.data(), head.size());  // the value, written in place
    std::memcpy(static_cast<char*>(mv.mv_data) + head.size(), bytes->data(), bytes->size());
    if (options.track_pending) {
      AGENTD_RETURN_IF_ERROR(put_pending(
          txn, st, of::pending_value(PendingKind::kMessage, 0, st->now_ms, m.plan_id, res.seq, std::string_view())));
    }
    st->last_seq[m.plan_id] = res.seq;
    if (st->collect) st->committed.push_back(CommittedMessage{m.plan_id, res.seq, bytes});
    res.bytes = std::move(bytes);
  }
  if (req.plan) {
    PlanRecord p = *req.plan;
    std::string pk = p.plan_id;
    MDB_val k = mval(pk), v;
    std::optional<PlanRecord> stored;
    rc = mdb_get(txn, plans, &k, &v);
    if (rc == 0) {
      auto d = decode_plan(sv(v));
      if (!d.is_ok()) return corruption("corrupt plan record " + p.plan_id + ": " + d.status().message());
      stored = std::move(*d);
    } else if (rc != MDB_NOTFOUND) {
      return lmdb_error(rc, "read plan record");
    }
    p.version = stored ? stored->version + 1 : 1;
    p.last_seq = req.message ? res.seq : (stored ? stored->last_seq : 0);
    std::string enc = encode_plan(p);
    MDB_val pv = mval(enc);
    if ((rc = mdb_put(txn, plans, &k, &pv, 0)) != 0) return lmdb_error(rc, "write plan record");
    if (stored && (stored->user_id != p.user_id || stored->created_at != p.created_at)) {
      std::string old = of::user_plans_key(stored->user_id, created_ms(*stored), p.plan_id);
      MDB_val ok = mval(old);
      rc = mdb_del(txn, user_plans, &ok, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "delete user_plans entry");
    }
    if (!stored || stored->user_id != p.user_id || stored->created_at != p.created_at) {
      std::string uk = of::user_plans_key(p.user_id, created_ms(p), p.plan_id);
      MDB_val ukv = mval(uk), empty{0, nullptr};
      if ((rc = mdb_put(txn, user_plans, &ukv, &empty, 0)) != 0) return lmdb_error(rc, "write user_plans entry");
    }
    if (options.track_pending) {
      AGENTD_RETURN_IF_ERROR(put_pending(
          txn, st, of::pending_value(PendingKind::kPlan, of::kInline, st->now_ms, p.plan_id, p.version, enc)));
    }
    res.plan_version = p.version;
  }
  op.append_result = std::move(res);
  return Status::ok();
}

Result<std::string> Outbox::Impl::message_bytes(MDB_txn* txn, std::string_view plan_id, uint64_t seq) {
  std::string key = of::message_key(plan_id, seq);
  MDB_val k = mval(key), v;
  int rc = mdb_get(txn, messages, &k, &v);
  if (rc == MDB_NOTFOUND) {
    return corruption("message " + std::string(plan_id) + ":" + std::to_string(seq) + " is referenced but missing");
  }
  if (rc != 0) return lmdb_error(rc, "read message");
  auto m = of::parse_message_value(sv(v));
  if (!m.is_ok()) return m.status();
  return std::string(m->envelope);
}

Status Outbox::Impl::apply_dead_letter(MDB_txn* txn, Op& op, TxnState* st) {
  std::string key = of::pending_key(op.id);
  MDB_val k = mval(key), v;
  int rc = mdb_get(txn, pending, &k, &v);
  if (rc == MDB_NOTFOUND) {
    op.status = not_found("no pending entry with id " + std::to_string(op.id));
    return Status::ok();
  }
  if (rc != 0) return lmdb_error(rc, "read pending entry");
  auto p = of::parse_pending_value(sv(v));
  if (!p.is_ok()) return p.status();
  std::string payload;
  if (p->flags & of::kInline) {
    payload = std::string(p->payload);
  } else {
    auto bytes = message_bytes(txn, p->plan_id, p->number);
    if (!bytes.is_ok()) return bytes.status();
    payload = std::move(*bytes);
  }
  std::string inl = of::pending_value(p->kind, of::kInline, p->appended_at_ms, p->plan_id, p->number, payload);
  std::string dv = of::dead_value(st->now_ms, op.error, inl);
  if (p->kind == PendingKind::kMessage) {
    // MongoDB will not hold it: retention must keep it (format.h).
    auto marked = set_message_pending_id(txn, std::string(p->plan_id), p->number, of::kNotInMongo);
    if (!marked.is_ok()) return marked.status();
  }
  MDB_val dvv = mval(dv);
  if ((rc = mdb_put(txn, dead, &k, &dvv, 0)) != 0) return lmdb_error(rc, "write dead letter");
  if ((rc = mdb_del(txn, pending, &k, nullptr)) != 0) return lmdb_error(rc, "delete pending entry");
  op.status = Status::ok();
  return Status::ok();
}

Result<bool> Outbox::Impl::set_message_pending_id(MDB_txn* txn, std::string_view plan_id, uint64_t seq,
                                                  uint64_t pending_id) {
  std::string key = of::message_key(plan_id, seq);
  MDB_val k = mval(key), v;
  int rc = mdb_get(txn, messages, &k, &v);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) return lmdb_error(rc, "read message");
  auto m = of::parse_message_value(sv(v));
  if (!m.is_ok()) return m.status();
  if (m->pending_id == pending_id) return true;
  std::string value = of::message_value(m->appended_at_ms, pending_id, m->message_id, m->envelope);
  MDB_val nv = mval(value);
  if ((rc = mdb_put(txn, messages, &k, &nv, 0)) != 0) return lmdb_error(rc, "rewrite message value");
  return true;
}

// Outboxes written before kNotInMongo left dead-lettered messages looking
// flushed: mark the ones retention has not removed yet (dead letters are few).
Status Outbox::Impl::mark_dead_messages(MDB_txn* txn) {
  std::vector<std::pair<std::string, uint64_t>> dead_messages;
  {
    Cursor c(txn, dead);
    AGENTD_RETURN_IF_ERROR(c.status());
    MDB_val k, v;
    int rc = c.get(&k, &v, MDB_FIRST);
    for (; rc == 0; rc = c.get(&k, &v, MDB_NEXT)) {
      auto d = of::parse_dead_value(sv(v));
      if (!d.is_ok()) return d.status();
      auto p = of::parse_pending_value(d->pending);
      if (!p.is_ok()) return p.status();
      if (p->kind == PendingKind::kMessage) dead_messages.emplace_back(std::string(p->plan_id), p->number);
    }
    if (rc != MDB_NOTFOUND) return lmdb_error(rc, "scan dead letters");
  }
  for (const auto& [plan_id, seq] : dead_messages) {
    auto marked = set_message_pending_id(txn, plan_id, seq, of::kNotInMongo);
    if (!marked.is_ok()) return marked.status();
  }
  return Status::ok();
}

Status Outbox::Impl::apply_retry(MDB_txn* txn, Op& op, TxnState* st) {
  std::string key = of::pending_key(op.id);
  MDB_val k = mval(key), v;
  int rc = mdb_get(txn, dead, &k, &v);
  if (rc == MDB_NOTFOUND) {
    op.status = not_found("no dead letter with id " + std::to_string(op.id));
    return Status::ok();
  }
  if (rc != 0) return lmdb_error(rc, "read dead letter");
  auto d = of::parse_dead_value(sv(v));
  if (!d.is_ok()) return d.status();
  std::string entry(d->pending);  // copy: v is invalid after the writes below
  auto p = of::parse_pending_value(entry);
  if (!p.is_ok()) return p.status();
  bool fresh = false;
  if (p->kind == PendingKind::kMessage) {
    // A message still stored goes back as a fresh entry (bytes in
    // "messages") under the new id, so that retention sees it pending again.
    auto held = set_message_pending_id(txn, p->plan_id, p->number, st->next_pending_id);
    if (!held.is_ok()) return held.status();
    fresh = *held;
  }
  if (fresh) {
    AGENTD_RETURN_IF_ERROR(put_pending(
        txn, st, of::pending_value(PendingKind::kMessage, 0, p->appended_at_ms, p->plan_id, p->number, {})));
  } else {
    AGENTD_RETURN_IF_ERROR(put_pending(txn, st, entry));
  }
  if ((rc = mdb_del(txn, dead, &k, nullptr)) != 0) return lmdb_error(rc, "delete dead letter");
  op.status = Status::ok();
  return Status::ok();
}

// Deletes messages of one plan from its first seq on while appended_at_ms <
// cutoff_ms and pending_id < below_pending_id, within *budget; keep_last
// keeps the plan's highest seq (so that the next seq survives). Sets
// *all_gone when the plan has no message left.
Status Outbox::Impl::prune_plan_messages(MDB_txn* txn, std::string_view plan_id, int64_t cutoff_ms,
                                         uint64_t below_pending_id, bool keep_last, size_t* budget, bool* all_gone) {
  std::vector<std::string> doomed;  // message keys
  *all_gone = false;
  {
    Cursor c(txn, messages);
    AGENTD_RETURN_IF_ERROR(c.status());
    std::string start = of::message_key(plan_id, 0);
    MDB_val k = mval(start), v;
    int rc = c.get(&k, &v, MDB_SET_RANGE);
    uint64_t seq;
    while (rc == 0 && doomed.size() < *budget && of::parse_message_key(sv(k), plan_id, &seq)) {
      auto m = of::parse_message_value(sv(v));
      if (!m.is_ok()) return m.status();
      // Invariant: with MongoDB, a message it does not hold (pending, or
      // dead-lettered: kNotInMongo) stays, and so does the rest of its plan.
      // pending_id 0: appended by a run without MongoDB and not queued yet.
      if (m->appended_at_ms >= cutoff_ms ||
          (options.track_pending && (m->pending_id == 0 || m->pending_id >= below_pending_id))) {
        break;
      }
      std::string key(sv(k));
      rc = c.get(&k, &v, MDB_NEXT);
      bool is_last = rc != 0 || !of::parse_message_key(sv(k), plan_id, &seq);
      if (is_last && keep_last) break;
      doomed.push_back(std::move(key));
      if (is_last) *all_gone = true;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "scan messages");
    if (doomed.empty()) {
      MDB_val k2 = mval(start), v2;
      int rc2 = c.get(&k2, &v2, MDB_SET_RANGE);
      *all_gone = rc2 != 0 || !of::parse_message_key(sv(k2), plan_id, &seq);
    }
  }
  // The msgids entries stay while the plan does (dedup outlives retention);
  // remove_plan() deletes them with the plan.
  for (const std::string& key : doomed) {
    MDB_val k = mval(key);
    if (int rc = mdb_del(txn, messages, &k, nullptr); rc != 0) return lmdb_error(rc, "delete message");
  }
  *budget -= doomed.size();
  return Status::ok();
}

// Retention. With track_pending: messages older than the retention cutoff
// and appended before the oldest pending message are flushed and old; they
// go, except each plan's last one. Embedded: finished plans not updated since the cutoff
// go entirely (messages, index entries, plan record).
Status Outbox::Impl::apply_prune(MDB_txn* txn, Op& op, TxnState* st) {
  size_t budget = kPruneBudget;
  op.status = Status::ok();
  if (options.track_pending) {
    int64_t cutoff = st->now_ms - static_cast<int64_t>(options.flushed_retention.count()) * 1000;
    // A message whose pending id is below the first fresh message entry's is
    // not pending any more (flushed, or dead-lettered with its bytes inline).
    uint64_t first_pending = std::numeric_limits<uint64_t>::max();
    {
      Cursor c(txn, pending);
      AGENTD_RETURN_IF_ERROR(c.status());
      MDB_val k, v;
      int rc = c.get(&k, &v, MDB_FIRST);
      for (; rc == 0; rc = c.get(&k, &v, MDB_NEXT)) {
        auto p = of::parse_pending_value(sv(v));
        if (!p.is_ok()) return p.status();
        if (p->kind == PendingKind::kMessage && !(p->flags & of::kInline)) {
          auto id = of::parse_id_key(sv(k), "pending");
          if (!id.is_ok()) return id.status();
          first_pending = *id;
          break;
        }
      }
      if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "scan pending");
    }
    // Plans whose record MongoDB may not hold yet (a pending plan entry): a
    // finished plan is removed whole only when none is. With a long backlog
    // (more entries than kMaxPendingScan) no plan is removed this pass.
    std::unordered_set<std::string> record_pending;
    bool may_remove = true;
    {
      MDB_stat ps;
      int rc = mdb_stat(txn, pending, &ps);
      if (rc != 0) return lmdb_error(rc, "mdb_stat pending");
      may_remove = ps.ms_entries <= kMaxPendingScan;
      Cursor c(txn, pending);
      AGENTD_RETURN_IF_ERROR(c.status());
      MDB_val k, v;
      for (rc = may_remove ? c.get(&k, &v, MDB_FIRST) : MDB_NOTFOUND; rc == 0; rc = c.get(&k, &v, MDB_NEXT)) {
        auto p = of::parse_pending_value(sv(v));
        if (!p.is_ok()) return p.status();
        if (p->kind == PendingKind::kPlan) record_pending.emplace(p->plan_id);
      }
      if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "scan pending");
    }
    // Visit each plan that has messages by jumping over its key range,
    // from where the last pass stopped, within a time budget (the writer
    // waits meanwhile); at least one plan per pass.
    const auto t0 = std::chrono::steady_clock::now();
    std::string plan;
    for (size_t visited = 0;; ++visited) {
      {
        Cursor c(txn, messages);
        AGENTD_RETURN_IF_ERROR(c.status());
        std::string from = visited > 0             ? of::message_key(plan, std::numeric_limits<uint64_t>::max())
                           : !prune_resume.empty() ? of::message_key(prune_resume, 0)
                                                   : std::string();
        MDB_val k = mval(from), v;
        int rc = from.empty() ? c.get(&k, &v, MDB_FIRST) : c.get(&k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) {  // the walk reached the end: the next pass starts over
          prune_resume.clear();
          break;
        }
        if (rc != 0) return lmdb_error(rc, "scan messages");
        of::Reader r(sv(k), "message key");
        std::string_view p;
        if (!r.str16(&p)) return r.error("plan_id");
        plan = std::string(p);
      }
      if (budget == 0 || (visited > 0 && std::chrono::steady_clock::now() - t0 >= options.prune_time_budget)) {
        prune_resume = plan;
        op.prune_more = true;
        break;
      }
      // A finished plan MongoDB holds entirely (messages and record) goes
      // whole: it takes no more appends, so its seqs need no anchor here.
      std::optional<PlanRecord> finished;
      if (may_remove && record_pending.count(plan) == 0) {
        MDB_val pk = mval(plan), pv;
        int rc = mdb_get(txn, plans, &pk, &pv);
        if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "read plan record");
        if (rc == 0) {
          auto rec = decode_plan(sv(pv));
          if (!rec.is_ok()) return corruption("corrupt plan record " + plan + ": " + rec.status().message());
          int64_t updated = 0;
          if (is_final(rec->status) && parse_rfc3339_ms(rec->updated_at, &updated) && updated < cutoff) {
            finished = std::move(*rec);
          }
        }
      }
      bool gone = false;
      AGENTD_RETURN_IF_ERROR(prune_plan_messages(txn, plan, cutoff, first_pending, !finished, &budget, &gone));
      if (finished && gone) AGENTD_RETURN_IF_ERROR(remove_plan(txn, *finished, st));
    }
    return Status::ok();
  }
  if (options.finished_plan_retention.count() <= 0) return Status::ok();
  {
    // Entries left pending by an earlier run with MongoDB still need their
    // messages: remove nothing until a run with MongoDB drained them.
    MDB_stat ps;
    int rc = mdb_stat(txn, pending, &ps);
    if (rc != 0) return lmdb_error(rc, "mdb_stat pending");
    if (ps.ms_entries > 0) return Status::ok();
  }
  int64_t cutoff = st->now_ms - static_cast<int64_t>(options.finished_plan_retention.count()) * 1000;
  std::vector<PlanRecord> doomed;
  {
    Cursor c(txn, plans);
    AGENTD_RETURN_IF_ERROR(c.status());
    MDB_val k, v;
    int rc = c.get(&k, &v, MDB_FIRST);
    for (; rc == 0; rc = c.get(&k, &v, MDB_NEXT)) {
      auto p = decode_plan(sv(v));
      if (!p.is_ok()) return corruption("corrupt plan record " + std::string(sv(k)) + ": " + p.status().message());
      int64_t updated = 0;
      if (is_final(p->status) && parse_rfc3339_ms(p->updated_at, &updated) && updated < cutoff) {
        doomed.push_back(std::move(*p));
      }
    }
    if (rc != MDB_NOTFOUND) return lmdb_error(rc, "scan plans");
  }
  for (const PlanRecord& p : doomed) {
    if (budget == 0) {
      op.prune_more = true;
      break;
    }
    bool gone = false;
    AGENTD_RETURN_IF_ERROR(prune_plan_messages(txn, p.plan_id, std::numeric_limits<int64_t>::max(),
                                               std::numeric_limits<uint64_t>::max(), false, &budget, &gone));
    st->erased_plans.insert(p.plan_id);
    st->last_seq.erase(p.plan_id);
    if (!gone) {
      op.prune_more = true;
      break;
    }
    AGENTD_RETURN_IF_ERROR(remove_plan(txn, p, st));
  }
  return Status::ok();
}

Status Outbox::Impl::remove_plan(MDB_txn* txn, const PlanRecord& p, TxnState* st) {
  st->erased_plans.insert(p.plan_id);
  st->last_seq.erase(p.plan_id);
  std::vector<std::string> ids;  // msgids entries kept by retention with MongoDB
  {
    Cursor c(txn, msgids);
    AGENTD_RETURN_IF_ERROR(c.status());
    std::string prefix = of::message_prefix(p.plan_id);  // plan_id:str16, as msgids keys start
    MDB_val k = mval(prefix), v;
    int rc = c.get(&k, &v, MDB_SET_RANGE);
    for (; rc == 0 && sv(k).starts_with(prefix); rc = c.get(&k, &v, MDB_NEXT)) ids.emplace_back(sv(k));
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "scan msgids");
  }
  for (const std::string& id : ids) {
    MDB_val k = mval(id);
    if (int rc = mdb_del(txn, msgids, &k, nullptr); rc != 0) return lmdb_error(rc, "delete msgids entry");
  }
  std::string uk = of::user_plans_key(p.user_id, created_ms(p), p.plan_id);
  MDB_val ukv = mval(uk), pk = mval(p.plan_id);
  int rc = mdb_del(txn, user_plans, &ukv, nullptr);
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "delete user_plans entry");
  if ((rc = mdb_del(txn, plans, &pk, nullptr)) != 0) return lmdb_error(rc, "delete plan record");
  return Status::ok();
}

// ---------------------------------------------------------------------------
// Reads: each in its own read-only transaction on the caller's thread.

Result<std::vector<StoredMessage>> Outbox::read_messages(std::string_view plan_id, uint64_t after_seq, size_t limit) {
  std::vector<StoredMessage> out;
  if (limit == 0 || after_seq == std::numeric_limits<uint64_t>::max()) return out;
  if (plan_id.size() > of::kMaxPlanIdLen) return out;
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  Cursor c(txn.get(), impl_->messages);
  AGENTD_RETURN_IF_ERROR(c.status());
  std::string start = of::message_key(plan_id, after_seq + 1);
  MDB_val k = mval(start), v;
  int rc = c.get(&k, &v, MDB_SET_RANGE);
  uint64_t seq;
  for (; rc == 0 && out.size() < limit && of::parse_message_key(sv(k), plan_id, &seq); rc = c.get(&k, &v, MDB_NEXT)) {
    auto m = of::parse_message_value(sv(v));
    if (!m.is_ok()) return m.status();
    out.push_back(StoredMessage{seq, std::make_shared<const std::string>(m->envelope)});
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "read messages");
  return out;
}

Result<std::optional<PlanRecord>> Outbox::get_plan(std::string_view plan_id) {
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  if (plan_id.empty() || plan_id.size() > of::kMaxPlanIdLen) return std::optional<PlanRecord>();
  MDB_val k = mval(plan_id), v;
  int rc = mdb_get(txn.get(), impl_->plans, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<PlanRecord>();
  if (rc != 0) return lmdb_error(rc, "read plan record");
  auto p = decode_plan(sv(v));
  if (!p.is_ok()) return corruption("corrupt plan record " + std::string(plan_id) + ": " + p.status().message());
  return std::optional<PlanRecord>(std::move(*p));
}

Result<std::vector<PlanRecord>> Outbox::list_plans(std::string_view user_id, size_t limit) {
  std::vector<PlanRecord> out;
  if (limit == 0 || user_id.size() > of::kMaxUserIdLen) return out;
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  Cursor c(txn.get(), impl_->user_plans);
  AGENTD_RETURN_IF_ERROR(c.status());
  std::string prefix = of::user_plans_prefix(user_id);
  MDB_val k = mval(prefix), v;
  int rc = c.get(&k, &v, MDB_SET_RANGE);
  for (; rc == 0 && out.size() < limit && sv(k).starts_with(prefix); rc = c.get(&k, &v, MDB_NEXT)) {
    auto plan_id = of::parse_user_plans_key(sv(k), prefix.size());
    if (!plan_id.is_ok()) return plan_id.status();
    MDB_val pk = mval(*plan_id), pv;
    int prc = mdb_get(txn.get(), impl_->plans, &pk, &pv);
    if (prc == MDB_NOTFOUND) return corruption("user_plans entry for missing plan " + std::string(*plan_id));
    if (prc != 0) return lmdb_error(prc, "read plan record");
    auto p = decode_plan(sv(pv));
    if (!p.is_ok()) return corruption("corrupt plan record " + std::string(*plan_id) + ": " + p.status().message());
    out.push_back(std::move(*p));
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "list plans");
  return out;
}

Result<std::vector<PlanRecord>> Outbox::list_unfinished_plans(size_t limit) {
  std::vector<PlanRecord> out;
  if (limit == 0) return out;
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  Cursor c(txn.get(), impl_->plans);
  AGENTD_RETURN_IF_ERROR(c.status());
  MDB_val k, v;
  int rc = c.get(&k, &v, MDB_FIRST);
  for (; rc == 0 && out.size() < limit; rc = c.get(&k, &v, MDB_NEXT)) {
    auto p = decode_plan(sv(v));
    if (!p.is_ok()) {  // one bad record must not keep agentd from starting
      spdlog::error("outbox {}: plan record {} is corrupt ({}): left as it is (agentd-outbox verify)",
                    impl_->options.dir, std::string(sv(k)), p.status().message());
      continue;
    }
    if (!is_final(p->status)) out.push_back(std::move(*p));
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "list unfinished plans");
  return out;
}

Result<uint64_t> Outbox::last_seq(std::string_view plan_id) {
  if (plan_id.size() > of::kMaxPlanIdLen) return uint64_t{0};
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  return impl_->stored_last_seq(txn.get(), plan_id);
}

Result<std::optional<uint64_t>> Outbox::find_message(std::string_view plan_id, std::string_view message_id) {
  if (plan_id.size() > of::kMaxPlanIdLen || message_id.size() > of::kMaxMessageIdLen || message_id.empty()) {
    return std::optional<uint64_t>();
  }
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  std::string idkey = of::msgid_key(plan_id, message_id);
  MDB_val k = mval(idkey), v;
  int rc = mdb_get(txn.get(), impl_->msgids, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<uint64_t>();
  if (rc != 0) return lmdb_error(rc, "read msgids");
  if (v.mv_size != 8)
    return corruption("corrupt msgids value for " + std::string(plan_id) + "/" + std::string(message_id));
  return std::optional<uint64_t>(of::get_be64(static_cast<const char*>(v.mv_data)));
}

Result<uint64_t> Outbox::first_seq(std::string_view plan_id) {
  if (plan_id.size() > of::kMaxPlanIdLen) return uint64_t{0};
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  Cursor c(txn.get(), impl_->messages);
  AGENTD_RETURN_IF_ERROR(c.status());
  std::string start = of::message_key(plan_id, 0);
  MDB_val k = mval(start), v;
  int rc = c.get(&k, &v, MDB_SET_RANGE);
  if (rc == MDB_NOTFOUND) return uint64_t{0};
  if (rc != 0) return lmdb_error(rc, "read first message key");
  uint64_t seq = 0;
  return of::parse_message_key(sv(k), plan_id, &seq) ? seq : 0;
}

Result<PendingEntry> Outbox::Impl::to_entry(MDB_txn* txn, uint64_t id, std::string_view value) {
  auto p = of::parse_pending_value(value);
  if (!p.is_ok()) return Status(p.status().code(), "pending entry " + std::to_string(id) + ": " + p.status().message());
  PendingEntry e;
  e.id = id;
  e.kind = p->kind;
  e.plan_id = std::string(p->plan_id);
  (e.kind == PendingKind::kMessage ? e.seq : e.plan_version) = p->number;
  e.appended_at_ms = p->appended_at_ms;
  if (p->flags & of::kInline) {
    e.bytes = std::make_shared<const std::string>(p->payload);
  } else {
    auto bytes = message_bytes(txn, p->plan_id, p->number);
    if (!bytes.is_ok()) return bytes.status();
    e.bytes = std::make_shared<const std::string>(std::move(*bytes));
  }
  return e;
}

Result<std::vector<PendingEntry>> Outbox::read_pending(size_t max_count, size_t max_bytes, uint64_t after_id) {
  std::vector<PendingEntry> out;
  if (max_count == 0 || after_id == std::numeric_limits<uint64_t>::max()) return out;
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  Cursor c(txn.get(), impl_->pending);
  AGENTD_RETURN_IF_ERROR(c.status());
  std::string start = of::pending_key(after_id + 1);
  MDB_val k = mval(start), v;
  int rc = c.get(&k, &v, MDB_SET_RANGE);
  size_t bytes = 0;
  for (; rc == 0 && out.size() < max_count; rc = c.get(&k, &v, MDB_NEXT)) {
    auto id = of::parse_id_key(sv(k), "pending");
    if (!id.is_ok()) return id.status();
    auto e = impl_->to_entry(txn.get(), *id, sv(v));
    if (!e.is_ok()) return e.status();
    if (!out.empty() && bytes + e->bytes->size() > max_bytes) break;
    bytes += e->bytes->size();
    out.push_back(std::move(*e));
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "read pending");
  return out;
}

Result<std::vector<DeadLetter>> Outbox::list_dead_letters(size_t limit) {
  std::vector<DeadLetter> out;
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  Cursor c(txn.get(), impl_->dead);
  AGENTD_RETURN_IF_ERROR(c.status());
  MDB_val k, v;
  int rc = c.get(&k, &v, MDB_FIRST);
  for (; rc == 0 && out.size() < limit; rc = c.get(&k, &v, MDB_NEXT)) {
    auto id = of::parse_id_key(sv(k), "dead letter");
    if (!id.is_ok()) return id.status();
    auto d = of::parse_dead_value(sv(v));
    if (!d.is_ok()) return d.status();
    auto e = impl_->to_entry(txn.get(), *id, d->pending);
    if (!e.is_ok()) return e.status();
    out.push_back(DeadLetter{std::move(*e), std::string(d->error), d->dead_at_ms});
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "read dead letters");
  return out;
}

Result<OutboxStats> Outbox::stats() {
  ReadTxn txn(impl_->env);
  AGENTD_RETURN_IF_ERROR(txn.status());
  OutboxStats s;
  s.max_bytes = impl_->options.max_bytes;
  uint64_t pages = 2;  // the two meta pages
  unsigned psize = 4096;
  for (MDB_dbi dbi : {MDB_dbi{0}, MDB_dbi{1}, impl_->meta, impl_->messages, impl_->msgids, impl_->pending, impl_->plans,
                      impl_->user_plans, impl_->dead}) {
    MDB_stat st;
    int rc = mdb_stat(txn.get(), dbi, &st);
    if (rc != 0) return lmdb_error(rc, "mdb_stat");
    psize = st.ms_psize;
    pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    if (dbi == impl_->pending) s.pending = st.ms_entries;
    if (dbi == impl_->dead) s.dead_letters = st.ms_entries;
    if (dbi == impl_->plans) s.plans = st.ms_entries;
    if (dbi == impl_->messages) s.messages = st.ms_entries;
  }
  s.used_bytes = pages * psize;
  s.commits = impl_->commits.load(std::memory_order_relaxed);
  s.committed_requests = impl_->committed_requests.load(std::memory_order_relaxed);
  Cursor c(txn.get(), impl_->pending);
  AGENTD_RETURN_IF_ERROR(c.status());
  MDB_val k, v;
  int rc = c.get(&k, &v, MDB_FIRST);
  if (rc == 0) {
    auto p = of::parse_pending_value(sv(v));
    if (!p.is_ok()) return p.status();
    s.oldest_pending_ms = p->appended_at_ms;
  } else if (rc != MDB_NOTFOUND) {
    return lmdb_error(rc, "read oldest pending");
  }
  return s;
}

Status Outbox::writable() const {
  switch (impl_->health.load()) {
    case kFull:
      return Status(Code::kOutboxFull, "outbox full: the last append found it at its maximum of " +
                                           std::to_string(impl_->options.max_bytes) + " bytes");
    case kFailed: return Status(Code::kIoError, "outbox: a commit failed; every write is refused until restart");
    default: return Status::ok();
  }
}

void export_outbox_metrics(Outbox* ob, MetricsRegistry& m) {
  m.gauge_fn("agentd_outbox_pending_messages", "Outbox entries (messages and plan versions) not yet in MongoDB.", [ob] {
    auto s = ob->stats();
    return s ? static_cast<double>(s->pending) : -1.0;
  });
  m.gauge_fn("agentd_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox entry (0 when none).", [ob] {
    auto s = ob->stats();
    if (!s || s->pending == 0 || s->oldest_pending_ms <= 0) return 0.0;
    return static_cast<double>(std::max<int64_t>(0, now_unix_ms() - s->oldest_pending_ms)) / 1e3;
  });
  m.gauge_fn("agentd_outbox_dead_letters", "Entries MongoDB rejected permanently, kept in the outbox.", [ob] {
    auto s = ob->stats();
    return s ? static_cast<double>(s->dead_letters) : -1.0;
  });
  m.gauge_fn("agentd_outbox_used_bytes", "Bytes of LMDB pages in use.", [ob] {
    auto s = ob->stats();
    return s ? static_cast<double>(s->used_bytes) : -1.0;
  });
  m.gauge_fn("agentd_outbox_max_bytes", "The outbox's configured maximum.", [ob] {
    auto s = ob->stats();
    return s ? static_cast<double>(s->max_bytes) : -1.0;
  });
  m.gauge_fn("agentd_outbox_writable", "1 when appends can succeed (not full, no failed commit).",
             [ob] { return ob->writable().is_ok() ? 1.0 : 0.0; });
}

}  // namespace agentd
