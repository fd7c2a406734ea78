// Internal to outbox/: the Outbox's state and what its source files share.
//
//   outbox.cc     open, the public requests (validated on the caller's
//                 thread, then queued), writable(), metrics
//   writer.cc     the writer thread: queue -> batch -> one transaction ->
//                 one sync -> callbacks (group commit), sticky failure
//   apply.cc      applying each op inside the writer's transaction (append
//                 = resolve / put message / put plan record; ack, dead
//                 letters)
//   retention.cc  pruning (with MongoDB and embedded) and the backfill of
//                 what runs without MongoDB appended
//   reads.cc      every read, in its own read-only transaction on the
//                 caller's thread
//
// Threads: `queue`, `stop` and `observer` are guarded by `mu`. Everything
// under "writer thread only" is touched by the thread that holds the right
// to write (begin_write()): the opener until the writer thread starts, the
// writer thread after. The atomics are read by any thread.
#pragma once

#include <lmdb.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/thread_annotations.h"
#include "outbox/format.h"
#include "outbox/lmdb_util.h"
#include "outbox/outbox.h"

namespace agentd {
namespace outbox_internal {

// Prune deletes at most this many messages per transaction, so that one run
// never holds the writer for long; the writer continues at its next turn.
constexpr size_t kPruneBudget = 20000;
// Retention with MongoDB reads at most this many pending entries to learn
// which plan records MongoDB may not hold yet.
constexpr size_t kMaxPendingScan = 10000;
constexpr size_t kMaxSeqCache = 100000;
// The backfill commits this many entries per transaction.
constexpr size_t kBackfillChunk = 10000;
// has_room() probes with a value of this size: an ordinary message, no
// overflow pages.
constexpr size_t kRoomProbeBytes = 2048;

// The checks an append passes before it is queued (on the caller's thread):
// ids present and within the format's limits, a message's plan the plan
// record's. kInvalidArgument with the precise reason.
Status validate_append(const AppendRequest& req);

// A plan record's bytes decoded, or kCorruption "corrupt plan record <id>: ...".
Result<PlanRecord> decode_plan_or_corruption(std::string_view plan_id, std::string_view bytes);

// The created_at of a plan record in unix ms (0 when unparsable): the
// user_plans key's middle part.
int64_t created_ms(const PlanRecord& p);

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

enum Health { kHealthy = 0, kFull = 1, kFailed = 2 };

}  // namespace outbox_internal

struct Outbox::Impl {
  using Op = outbox_internal::Op;
  using TxnState = outbox_internal::TxnState;

  OutboxOptions options;
  int lock_fd = -1;
  MDB_env* env = nullptr;
  MDB_dbi meta = 0, messages = 0, msgids = 0, pending = 0, plans = 0, user_plans = 0, dead = 0;

  Mutex mu;
  CondVar cv{&mu};  // signalled when an op is queued or stop is set
  std::deque<std::unique_ptr<Op>> queue GUARDED_BY(mu);
  bool stop GUARDED_BY(mu) = false;
  std::shared_ptr<const CommitObserver> observer GUARDED_BY(mu);
  std::thread writer;
  // The one thread allowed to open write transactions: the opener, then the
  // writer thread (set first thing in run()).
  std::atomic<std::thread::id> write_thread{};

  std::atomic<bool> fail_next_commit{false};  // OutboxTestAccess::fail_next_commit
  std::atomic<uint64_t> commits{0}, committed_requests{0};
  // What writable() reports, written by the writer thread only.
  std::atomic<int> health{outbox_internal::kHealthy};  // kHealthy, kFull or kFailed

  // Writer thread only.
  Status sticky;                                        // first failed commit
  std::unordered_map<std::string, uint64_t> seq_cache;  // plan -> last seq
  uint64_t next_pending_id = 1;
  int64_t last_appended_ms = 0;
  std::string prune_resume;       // retention with MongoDB: the plan its next pass starts at ("": the first)
  bool untracked_marked = false;  // meta "untracked" committed by this process

  ~Impl() EXCLUDES(mu);

  // outbox.cc
  Status open_env();
  Status open_tables(MDB_txn* txn);
  // Reads next_pending_id and the pending figures for the open log line.
  Status recover_counters(MDB_txn* txn, uint64_t* pending_count, int64_t* oldest_ms);
  void log_pending(uint64_t pending_count, int64_t oldest_ms) const;
  void enqueue(std::unique_ptr<Op> op) EXCLUDES(mu);
  Status run_sync(std::unique_ptr<Op> op) EXCLUDES(mu);
  Status outbox_full() const;

  // writer.cc
  // Begins a write transaction; asserts the writer's invariant (writer.cc):
  // only write_thread opens write transactions.
  Status begin_write(MDB_txn** txn, std::string_view what);
  void run() EXCLUDES(mu);
  std::vector<std::unique_ptr<Op>> next_batch(std::chrono::steady_clock::time_point until, bool* stopping) EXCLUDES(mu);
  // No lock held: the transaction, the sync, the observer, the callbacks.
  void commit_batch(std::vector<std::unique_ptr<Op>>& batch) EXCLUDES(mu);
  // Retention and clearing of stale reader slots, once per prune_interval;
  // returns when to run next.
  std::chrono::steady_clock::time_point housekeeping() EXCLUDES(mu);
  bool has_room();
  Status run_txn(std::vector<std::unique_ptr<Op>>& batch, TxnState* st) EXCLUDES(mu);
  Status apply(MDB_txn* txn, Op& op, TxnState* st);

  // apply.cc
  Status apply_append(MDB_txn* txn, Op& op, TxnState* st);
  Result<bool> resolve_append(MDB_txn* txn, Op& op, TxnState* st);
  Status mark_untracked(MDB_txn* txn, TxnState* st);
  // Claims the message_id and writes the message with the next seq; a
  // duplicate found while claiming sets *res to the stored answer
  // (res->duplicate).
  Status put_message(MDB_txn* txn, const PreparedMessage& m, TxnState* st, AppendResult* res);
  Status put_plan_record(MDB_txn* txn, const AppendRequest& req, TxnState* st, AppendResult* res);
  Result<AppendResult> duplicate_of(MDB_txn* txn, const PreparedMessage& m, const MDB_val& stored_seq);
  Status apply_ack(MDB_txn* txn, Op& op);
  Status apply_dead_letter(MDB_txn* txn, Op& op, TxnState* st);
  Status apply_retry(MDB_txn* txn, Op& op, TxnState* st);
  Status apply_drop(MDB_txn* txn, Op& op);
  Result<uint64_t> stored_last_seq(MDB_txn* txn, std::string_view plan_id);
  Result<uint64_t> next_seq(MDB_txn* txn, const std::string& plan_id, TxnState* st);
  Status put_pending(MDB_txn* txn, TxnState* st, std::string_view value);
  Status put_next_pending_id(MDB_txn* txn, uint64_t id);  // meta "next_pending_id"
  Result<std::string> message_bytes(MDB_txn* txn, std::string_view plan_id, uint64_t seq);
  // Rewrites the pending_id of a stored message; false when retention
  // already removed the message (an outbox written before kNotInMongo).
  Result<bool> set_message_pending_id(MDB_txn* txn, std::string_view plan_id, uint64_t seq, uint64_t pending_id);
  Status mark_dead_messages(MDB_txn* txn);

  // retention.cc
  Status apply_prune(MDB_txn* txn, Op& op, TxnState* st);
  Status prune_flushed(MDB_txn* txn, Op& op, TxnState* st);
  Status prune_finished(MDB_txn* txn, Op& op, TxnState* st);
  // The plan of the first message key at or after `from` (the first key
  // when empty); "" when none.
  Result<std::string> plan_at_or_after(MDB_txn* txn, const std::string& from);
  // The plan's record when it is finished and was updated before `cutoff`.
  Result<std::optional<PlanRecord>> finished_before(MDB_txn* txn, const std::string& plan_id, int64_t cutoff);
  Status prune_plan_messages(MDB_txn* txn, std::string_view plan_id, int64_t cutoff_ms, uint64_t below_pending_id,
                             bool keep_last, size_t* budget, bool* all_gone);
  // Deletes what is left of a plan whose messages are all gone: its msgids
  // entries, its user_plans entry, its record.
  Status remove_plan(MDB_txn* txn, const PlanRecord& p, TxnState* st);
  Status backfill_untracked(uint64_t* pending_count);
  Status backfill_chunk(MDB_txn* txn, TxnState* tx, bool* done, uint64_t* messages_queued, uint64_t* plans_queued);
  Status backfill_messages(MDB_txn* txn, const std::string& start, TxnState* tx, std::string* next, uint64_t* queued);
  Status backfill_plans(MDB_txn* txn, const std::string& start, TxnState* tx, std::string* next, uint64_t* queued);

  // reads.cc
  Result<PendingEntry> to_entry(MDB_txn* txn, uint64_t id, std::string_view value);
};

}  // namespace agentd
