// Outbox: the LMDB write-ahead log every message goes through (architecture.md,
// "The life of one message"). Implements core's MessageLog.
//
// Threads: one writer thread owns every write transaction (appends, acks,
// dead letters, pruning) and commits whatever is waiting in one transaction
// with one sync (group commit). Reads run on the caller's thread in their own
// read-only transaction (LMDB MVCC) and never block the writer.
//
// Durability: append/ack/... complete only after mdb_txn_commit returned and
// the data is synced (unless OutboxOptions::sync is false; see its comment).
// A failed commit is sticky: every later write fails with the same status.
// A process crash (SIGKILL) never loses an append that completed.
//
// Every method is thread-safe. The blocking ones (append_sync, *_sync) must
// not be called from the writer thread, i.e. from the observer or from a
// completion callback: they would wait for themselves.
//
// The on-disk byte grammar is documented at the top of outbox/format.h.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/message_log.h"
#include "core/status.h"

namespace agentd {

struct OutboxOptions {
  std::string dir;  // created if missing; locked exclusively
  // The LMDB map size, set once at open. LMDB (without MDB_WRITEMAP) grows
  // the data file only as pages are used, so the file starts small and grows
  // up to this; at the limit the batch's appends that would write fail fast
  // with kOutboxFull (nothing committed is touched), while a duplicate still
  // gets its stored answer and a rejected append its own error, and the
  // batch's acks / dead-letter moves / pruning are committed, since they free
  // space. At least 256 KiB.
  uint64_t max_bytes = 8ull << 30;
  bool track_pending = false;  // true when a MongoDB is configured (flusher drains)
  // false: MDB_NOMETASYNC — commits sync the data pages but not the meta
  // page (it reaches disk with the next commit's sync). A power loss or
  // kernel crash (not a process crash) may then lose the last committed
  // transaction(s) although their appends completed, and MongoDB or clients
  // may already have seen those seqs: seqs could be handed out twice. Keep
  // true unless the data dir is disposable.
  bool sync = true;
  size_t max_batch_bytes = 16u << 20;  // bytes committed in one group commit
  size_t max_batch_count = 4096;       // requests committed in one group commit
  size_t max_queue = 100000;           // requests waiting; beyond -> kUnavailable
  // With track_pending: flushed messages older than this are pruned (never
  // pending or dead-lettered ones, never a live plan's highest seq, so seqs
  // continue; a finished plan goes whole, see prune_time_budget).
  std::chrono::seconds flushed_retention{24 * 3600};
  // Embedded default (no track_pending): finished plans (is_final) not
  // updated for this long are removed with their messages (0 = keep all).
  // Ignored with track_pending: MongoDB keeps the history there.
  std::chrono::seconds finished_plan_retention{0};
  // How often the writer applies retention on its own (prune_sync forces it)
  // and clears stale reader slots (readers of any process that died inside
  // a read transaction; they would pin pages and grow the file).
  std::chrono::milliseconds prune_interval{60000};
  // With track_pending: one retention pass visits plans for at most this
  // long (at least one plan), then yields the writer and continues at once
  // from where it stopped. Finished plans MongoDB holds entirely (messages
  // and record, updated before the retention cutoff) are removed whole.
  std::chrono::milliseconds prune_time_budget{50};
};

enum class PendingKind : uint8_t { kMessage = 1, kPlan = 2 };

// Something MongoDB has not acknowledged yet.
struct PendingEntry {
  uint64_t id = 0;  // global append counter: the flush order
  PendingKind kind = PendingKind::kMessage;
  std::string plan_id;
  uint64_t seq = 0;                          // kMessage
  uint64_t plan_version = 0;                 // kPlan
  std::shared_ptr<const std::string> bytes;  // envelope or plan record bytes
  int64_t appended_at_ms = 0;
};

struct DeadLetter {
  PendingEntry entry;
  std::string error;
  int64_t dead_at_ms = 0;
};

struct OutboxStats {
  uint64_t pending = 0;
  int64_t oldest_pending_ms = 0;  // unix ms of the oldest pending entry; 0 if none
  uint64_t dead_letters = 0;
  uint64_t plans = 0;
  uint64_t messages = 0;
  uint64_t used_bytes = 0;  // pages in use
  uint64_t max_bytes = 0;
  // Since open: write transactions committed and requests they carried
  // (their ratio is the group-commit batch size).
  uint64_t commits = 0;
  uint64_t committed_requests = 0;
};

class MetricsRegistry;
class Outbox;

// Registers the outbox's gauges, computed from stats() at scrape time (so
// they are current even while nothing flushes): agentd_outbox_pending_messages,
// agentd_outbox_oldest_pending_age_seconds, agentd_outbox_dead_letters,
// agentd_outbox_used_bytes, agentd_outbox_max_bytes, agentd_outbox_writable.
// `outbox` must outlive `metrics`' last render().
void export_outbox_metrics(Outbox* outbox, MetricsRegistry& metrics);

class Outbox final : public MessageLog {
 public:
  // Locks `dir` (kLocked if another process holds it), opens or creates the
  // environment, checks the format version (kVersionMismatch), logs the
  // pending count and oldest age.
  static Result<std::unique_ptr<Outbox>> open(const OutboxOptions& options);
  // Completes every queued request, then stops the writer.
  ~Outbox() override;

  // Must be set before the first append; called on the writer thread after
  // each commit, before the appenders' callbacks. Replacing or clearing it
  // (nullptr) returns once no call to the previous observer is running or
  // can start: what the old one captured may then be destroyed. Not from
  // the writer thread (it waits for the writer).
  void set_observer(CommitObserver observer);
  // Returns once every request queued before the call has completed (its
  // callback ran). Teardown: after the last producer stopped, nothing the
  // outbox holds still refers to them. Not from the writer thread.
  void wait_idle();

  // MessageLog. append: `done` runs on the writer thread after the commit,
  // except for an invalid request (kInvalidArgument, checked before it is
  // queued) and when the queue is full (kUnavailable): then it runs on the
  // caller's thread before append returns. When the message_id is already in
  // the plan, the request's plan record is not applied either (the request
  // was applied before). The message_id index lives as long as the plan's
  // record: retention with MongoDB keeps the entries of the messages it
  // prunes (a repost gets the stored seq, bytes null), embedded retention
  // removes them with the plan.
  void append(AppendRequest req, AppendCallback done) override;
  Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq, size_t limit) override;
  Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id) override;
  Result<std::vector<PlanRecord>> list_plans(std::string_view user_id, size_t limit) override;
  Result<uint64_t> last_seq(std::string_view plan_id) override;
  Result<std::optional<uint64_t>> find_message(std::string_view plan_id, std::string_view message_id) override;
  Result<std::vector<PlanRecord>> list_unfinished_plans(size_t limit) override;

  // Asio form of append: completion signature void(Result<AppendResult>).
  // The handler is invoked through its associated executor.
  template <typename Token>
  auto async_append(AppendRequest req, Token&& token) {
    return boost::asio::async_initiate<Token, void(Result<AppendResult>)>(
        [this](auto handler, AppendRequest r) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          append(std::move(r), [h](Result<AppendResult> res) {
            auto ex = boost::asio::get_associated_executor(*h);
            boost::asio::post(ex, [h, res = std::move(res)]() mutable { std::move (*h)(std::move(res)); });
          });
        },
        token, std::move(req));
  }

  // Lowest seq of `plan_id` still held (0 if none): older ones were pruned
  // and live only in MongoDB.
  Result<uint64_t> first_seq(std::string_view plan_id);

  // Flusher side. Pending entries with id > after_id, in id order, bounded by
  // count and bytes (at least one entry if any exists).
  Result<std::vector<PendingEntry>> read_pending(size_t max_count, size_t max_bytes, uint64_t after_id = 0);
  // Deletes the pending entries (MongoDB acknowledged them). Unknown ids are
  // ignored, so a replayed ack is harmless.
  void ack(std::vector<uint64_t> ids, std::function<void(Status)> done);
  Status ack_sync(std::vector<uint64_t> ids);
  // Moves a pending entry to the dead letters with the error text (the dead
  // letter keeps its own copy of the bytes). kNotFound for an unknown id.
  Status dead_letter_sync(uint64_t id, std::string error);
  Result<std::vector<DeadLetter>> list_dead_letters(size_t limit);
  // Puts a dead letter back on the pending queue (new id) / deletes it.
  Status retry_dead_letter_sync(uint64_t id);
  Status drop_dead_letter_sync(uint64_t id);

  Result<OutboxStats> stats();
  // Whether appends can succeed now: kOutboxFull after an append found the
  // map full, until an append commits again or a commit that frees space
  // (ack, prune, dropped dead letter) leaves room for a 2 KiB value;
  // kIoError after a failed commit (sticky). For /readyz; cheap, any thread.
  Status writable() const;
  // Applies the retention options now (the writer also runs it periodically).
  Status prune_sync();

 private:
  friend class OutboxTestAccess;  // outbox/outbox_testing.h
  struct Impl;
  explicit Outbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentd
