// The outbox: one LMDB environment, one writer thread doing group commit,
// reads in their own read-only transactions on the caller's thread. This
// file: open, the public requests, writable(), the metrics. The map of the
// other files is at the top of outbox/outbox_impl.h.
//
// Space: the LMDB map size is set to OutboxOptions::max_bytes at open. Without
// MDB_WRITEMAP LMDB writes pages with pwrite and the data file grows only as
// pages are used, so the file starts small and "grows automatically" up to the
// maximum; at the maximum a put or commit returns MDB_MAP_FULL, the whole
// transaction is aborted (nothing of it is visible, nothing committed before
// is touched) and the batch runs again without what needs space: its appends
// that would write fail with Code::kOutboxFull, duplicates and rejections get
// their own answers, and its acks, dead-letter moves and pruning (which free
// space) are committed (writer.cc).
#include "outbox/outbox.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>

#include "core/clock.h"
#include "core/metrics.h"
#include "outbox/outbox_impl.h"
#include "outbox/outbox_testing.h"

namespace agentd {

namespace of = outbox_format;
using namespace outbox_lmdb;
using namespace outbox_internal;

namespace {

Status validate_id(std::string_view what, std::string_view id, size_t max) {
  if (id.empty()) return invalid_argument(std::string(what) + " is empty");
  if (id.size() > max) {
    return invalid_argument(std::string(what) + " is " + std::to_string(id.size()) + " bytes, more than " +
                            std::to_string(max));
  }
  return Status::ok();
}

}  // namespace

namespace outbox_internal {

Status validate_append(const AppendRequest& req) {
  if (!req.message && !req.plan) return invalid_argument("append without message or plan record");
  if (req.message) {
    AGENTD_RETURN_IF_ERROR(validate_id("plan_id", req.message->plan_id, of::kMaxPlanIdLen));
    AGENTD_RETURN_IF_ERROR(validate_id("message_id", req.message->message_id, of::kMaxMessageIdLen));
    if (req.message->tail.empty()) return invalid_argument("message tail is empty");
    // Never a record that could not be read back (kStoredJson).
    if (req.message->tail.size() + kMaxEnvelopeHeadBytes > kMaxStoredBytes) {
      return Status(Code::kTooLarge, "message of " + std::to_string(req.message->tail.size()) +
                                         " bytes is over the limit of " + std::to_string(kMaxStoredBytes) + " bytes");
    }
  }
  if (req.plan) {
    AGENTD_RETURN_IF_ERROR(validate_id("plan_id", req.plan->plan_id, of::kMaxPlanIdLen));
    if (req.plan->user_id.size() > of::kMaxUserIdLen) return invalid_argument("user_id too long");
    // Encoded here and again in the write: plan records are rare.
    AGENTD_RETURN_IF_ERROR(check_plan_record_size(*req.plan));
    if (req.message && req.message->plan_id != req.plan->plan_id) {
      return invalid_argument("message plan_id " + req.message->plan_id + " differs from plan record's " +
                              req.plan->plan_id);
    }
  }
  return Status::ok();
}

Result<PlanRecord> decode_plan_or_corruption(std::string_view plan_id, std::string_view bytes) {
  auto p = decode_plan(bytes);
  if (!p.is_ok()) return corruption("corrupt plan record " + std::string(plan_id) + ": " + p.status().message());
  return p;
}

int64_t created_ms(const PlanRecord& p) {
  int64_t ms = 0;
  return parse_rfc3339_ms(p.created_at, &ms) ? ms : 0;
}

}  // namespace outbox_internal

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
  impl->write_thread = std::this_thread::get_id();  // until the writer starts
  AGENTD_RETURN_IF_ERROR(impl->open_env());
  impl->writer = std::thread([p = impl.get()] { p->run(); });
  return std::unique_ptr<Outbox>(new Outbox(std::move(impl)));
}

Outbox::Impl::~Impl() {
  if (writer.joinable()) {
    {
      MutexLock l(&mu);
      stop = true;
    }
    cv.notify_all();
    writer.join();
  }
  if (env) mdb_env_close(env);
  if (lock_fd >= 0) ::close(lock_fd);
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
  AGENTD_RETURN_IF_ERROR(begin_write(&txn, "begin open transaction"));
  uint64_t pending_count = 0;
  int64_t oldest_ms = 0;
  Status s = open_tables(txn);
  if (s.is_ok()) s = recover_counters(txn, &pending_count, &oldest_ms);
  if (s.is_ok()) s = mark_dead_messages(txn);
  if (!s.is_ok()) {
    mdb_txn_abort(txn);
    return s;
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return lmdb_error(rc, "commit open transaction");
  if (options.track_pending) {
    uint64_t before = pending_count;
    AGENTD_RETURN_IF_ERROR(backfill_untracked(&pending_count));
    if (before == 0 && pending_count > 0) oldest_ms = now_unix_ms();  // queued just now
  }
  log_pending(pending_count, oldest_ms);
  return Status::ok();
}

// Opens (creates) the named databases and checks the format version.
Status Outbox::Impl::open_tables(MDB_txn* txn) {
  struct {
    const char* name;
    MDB_dbi* dbi;
  } dbs[] = {{of::kMetaDb, &meta},       {of::kMessagesDb, &messages}, {of::kMsgIdsDb, &msgids},
             {of::kPendingDb, &pending}, {of::kPlansDb, &plans},       {of::kUserPlansDb, &user_plans},
             {of::kDeadDb, &dead}};
  int rc;
  for (auto& d : dbs) {
    if ((rc = mdb_dbi_open(txn, d.name, MDB_CREATE, d.dbi)) != 0) {
      return lmdb_error(rc, std::string("open database ") + d.name);
    }
  }
  MDB_val k = mval(of::kFormatVersionKey), v;
  rc = mdb_get(txn, meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    std::string ver;
    of::put_be32(&ver, of::kFormatVersion);
    MDB_val nv = mval(ver);
    if ((rc = mdb_put(txn, meta, &k, &nv, 0)) != 0) return lmdb_error(rc, "write format version");
  } else if (rc != 0) {
    return lmdb_error(rc, "read format version");
  } else if (v.mv_size != 4) {
    return corruption("corrupt meta format_version: " + std::to_string(v.mv_size) + " bytes, expected 4");
  } else if (uint32_t found = of::get_be32(static_cast<const char*>(v.mv_data)); found != of::kFormatVersion) {
    return Status(Code::kVersionMismatch, "outbox in " + options.dir + " has on-disk format version " +
                                              std::to_string(found) + "; this agentd reads version " +
                                              std::to_string(of::kFormatVersion));
  }
  return Status::ok();
}

// next_pending_id: the stored counter, never below what the tables hold.
Status Outbox::Impl::recover_counters(MDB_txn* txn, uint64_t* pending_count, int64_t* oldest_ms) {
  MDB_val k = mval(of::kNextPendingIdKey), v;
  if (mdb_get(txn, meta, &k, &v) == 0 && v.mv_size == 8) {
    next_pending_id = of::get_be64(static_cast<const char*>(v.mv_data));
  }
  for (MDB_dbi dbi : {pending, dead}) {
    Cursor c(txn, dbi);
    AGENTD_RETURN_IF_ERROR(c.status());
    MDB_val ck, cv_;
    if (c.get(&ck, &cv_, MDB_LAST) == 0 && ck.mv_size == 8) {
      next_pending_id = std::max(next_pending_id, of::get_be64(static_cast<const char*>(ck.mv_data)) + 1);
      if (dbi == pending) {
        auto last = of::parse_pending_value(sv(cv_));
        if (last.is_ok()) last_appended_ms = last->appended_at_ms;
        if (c.get(&ck, &cv_, MDB_FIRST) == 0) {
          auto first = of::parse_pending_value(sv(cv_));
          if (first.is_ok()) *oldest_ms = first->appended_at_ms;
        }
        MDB_stat st;
        if (mdb_stat(txn, pending, &st) == 0) *pending_count = st.ms_entries;
      }
    }
  }
  return Status::ok();
}

void Outbox::Impl::log_pending(uint64_t pending_count, int64_t oldest_ms) const {
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
}

Outbox::Outbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Outbox::~Outbox() = default;

void Outbox::set_observer(CommitObserver observer) {
  auto p = observer ? std::make_shared<const CommitObserver>(std::move(observer)) : nullptr;
  bool had_one = false;
  {
    MutexLock l(&impl_->mu);
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
    MutexLock l(&mu);
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

Status Outbox::Impl::outbox_full() const {
  return Status(Code::kOutboxFull, "outbox full: at its maximum of " + std::to_string(options.max_bytes) +
                                       " bytes; retry after the flusher or retention frees space");
}

void Outbox::append(AppendRequest req, AppendCallback done) {
  if (Status s = validate_append(req); !s.is_ok()) {  // on the caller's thread, before any queue
    if (done) done(std::move(s));
    return;
  }
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

void OutboxTestAccess::fail_next_commit(Outbox& ob) { ob.impl_->fail_next_commit = true; }

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
