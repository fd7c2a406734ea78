// Flusher: makes MongoDB catch up with the outbox, in order, exactly once in
// effect (architecture.md: "pending index ─► Flusher ─► MongoDB").
//
// One cycle, on the flusher's own thread:
//   read_pending(max_count, max_bytes)        entries in id (= append) order
//   → messages: MessageStore::upsert_messages — one ordered bulk insert;
//               where documents already exist (a replay), chunked ordered
//               bulks of $setOnInsert upserts: never an overwrite
//   → plans:    the newest version per plan in the batch, version-guarded
//   → only after the server acknowledged: outbox ack_sync(ids)   (invariant 4)
// A crash anywhere in between replays the batch later; replays are no-ops
// (invariant 3). Per plan, messages reach MongoDB in seq order because the
// pending queue is in append order and one bulk is in flight at a time.
//
// Failures:
//  - transient (MessageStore's classify()): the whole batch is retried,
//    forever, after an exponential backoff with full jitter
//    (uniform(0, min(cap, base·2^attempt))). Appends never wait for this
//    (invariant 6): the backlog grows in the outbox.
//  - permanent: the batch is bisected until the single offender is found
//    (FerretDB reports every bulk error at index 0); that entry is moved to
//    the outbox's dead letters with the error text (and, best-effort, to the
//    `dead_letters` collection), counted and logged; the rest go on.
//    A duplicate key on a message whose _id already exists is an upsert race
//    and counts as persisted. A run of dead letters beyond
//    FlusherOptions::dead_letter_run_limit stops into the retrying state.
// MongoDB going down / coming back is logged once per change, not per retry.
//
// Threads: start() launches one thread running a private io_context; every
// MongoDB call (they block) and every outbox call of the flusher runs there,
// never on network threads. notify() and stop() may be called from any
// thread; handlers capture `this`, which is safe because the io_context is
// owned here and joined in stop() / the destructor.
//
// Metrics (MetricsRegistry passed in; names per issue 5):
//   agentd_messages_persisted_total, agentd_persist_failures_total{reason},
//   agentd_persist_retries_total, agentd_dead_letters_total,
//   (the outbox's own gauges — pending, oldest pending age — are computed at
//   scrape time by export_outbox_metrics() in outbox/outbox.h),
//   agentd_flush_batch_seconds (histogram: the MongoDB side of one batch),
//   agentd_persist_latency_seconds (histogram: append → MongoDB ack),
//   agentd_mongo_up, agentd_persist_success_ratio
//   (persisted / (persisted + dead-lettered); 1 when both are 0).
// agentd_messages_appended_total is counted where commits are observed
// (main's commit observer): see appended_messages_counter().
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/metrics.h"
#include "core/status.h"
#include "outbox/outbox.h"
#include "store/message_store.h"

namespace agentd {

struct FlusherOptions {
  size_t max_batch_count = 1000;                // pending entries per cycle
  size_t max_batch_bytes = 8u << 20;            // bytes per cycle (one bulk stays well under 48 MB)
  std::chrono::milliseconds poll_interval{50};  // fallback when notify() is not wired
  std::chrono::milliseconds backoff_base{50};
  std::chrono::milliseconds backoff_cap{30000};
  std::chrono::milliseconds stats_interval{250};    // refresh of the outbox gauges
  std::chrono::milliseconds health_interval{1000};  // ping when idle this long since the last success
  bool ensure_indexes = true;                       // first thing the thread does (retried like a write)
  // Dead letters in a row (nothing persisted in between) after which the
  // flusher suspects the server rather than the documents: the next
  // permanent failure is retried with backoff (reason "dead_letter_run")
  // instead of dead-lettered; after each backoff one more entry may go to
  // the dead letters, so that truly bad documents still move on, slowly.
  // 0 = no limit.
  int dead_letter_run_limit = 10;

  // Test hooks (leave empty in production).
  // Called after MongoDB acknowledged a batch and before the outbox ack; on
  // true the flusher "crashes": it stops at once, acking nothing.
  std::function<bool()> crash_after_write;
  // Called after MongoDB acknowledged a batch, with the entries it
  // persisted (not the dead letters), on the flusher thread.
  std::function<void(std::span<const PendingEntry>)> on_persisted;
};

// agentd_messages_appended_total (to be incremented by whoever observes
// commits; the flusher does not see appends).
Counter& appended_messages_counter(MetricsRegistry& metrics);

class Flusher {
 public:
  // `outbox`, `store` and `metrics` must outlive the flusher. Does nothing
  // until start().
  Flusher(Outbox* outbox, MessageStore* store, MetricsRegistry* metrics, FlusherOptions options = {});
  ~Flusher();  // stop() with an immediate deadline if still running
  Flusher(const Flusher&) = delete;
  Flusher& operator=(const Flusher&) = delete;

  void start();
  // New pending work exists (cheap; any thread; e.g. from the outbox's
  // commit observer). Wakes an idle flusher; never shortens a backoff.
  void notify();
  // Drains what it can until nothing is pending or `deadline` passes, then
  // stops the thread. Ok when everything pending was flushed; kUnavailable
  // naming what is left otherwise (it stays pending in the outbox: nothing
  // acknowledged is lost). A MongoDB call already in progress is not
  // interrupted (bounded by the URI's timeouts).
  Status stop(std::chrono::steady_clock::time_point deadline);
  Status stop(std::chrono::milliseconds within) { return stop(std::chrono::steady_clock::now() + within); }

  // True after crash_after_write fired.
  bool crashed() const { return crashed_.load(); }
  // The last known state of MongoDB (false until the first successful
  // command). While idle the flusher pings every health_interval when up,
  // and on the write backoff when down, so this stays current.
  bool mongo_up() const { return up_.load(); }

 private:
  struct Outcome;
  struct Metrics {
    Counter& persisted;
    Counter& replayed;
    Counter& retries;
    Counter& dead_letters;
    Gauge& up;
    Histogram& batch_seconds;
    Histogram& latency;
  };

  // All below run on the flusher thread.
  void do_cycle();
  void wait_then_cycle(std::chrono::milliseconds delay, bool idle);
  // Logs a state change, schedules the retry; `count`: a write failed (not
  // an idle health probe), so the failure and retry metrics count it.
  void on_transient(const MongoFailure& f, bool count = true);
  void on_up();
  void on_outbox_error(const Status& st);
  void finish();
  bool past_deadline() const;
  std::chrono::milliseconds next_backoff();
  void refresh_stats(bool force);
  void count_failure(const std::string& reason);
  Status write_batch(std::vector<PendingEntry>& batch, Outcome* out);
  Status write_messages(std::span<const PendingEntry* const> items, Outcome* out);
  Status dead_letter(const PendingEntry& e, const MongoFailure& f, Outcome* out);

  Outbox* outbox_;
  MessageStore* store_;
  MetricsRegistry* registry_;
  FlusherOptions options_;
  Metrics m_;

  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  boost::asio::steady_timer timer_;
  std::thread thread_;

  std::atomic<bool> notified_{false};
  std::atomic<bool> crashed_{false};
  std::atomic<bool> up_{false};

  // Flusher-thread state (no lock: only handlers on io_ touch it).
  enum class Phase { kIdle, kBusy, kBackoff, kDone };
  Phase phase_ = Phase::kBusy;
  bool indexes_ready_ = false;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_{};
  bool known_ = false;  // whether up_ reflects an observed state yet
  int attempt_ = 0;     // consecutive transient failures
  int dead_run_ = 0;    // dead letters since the last persisted entry
  bool outbox_ok_ = true;
  std::mt19937_64 rng_;
  std::chrono::steady_clock::time_point last_stats_{};
  std::chrono::steady_clock::time_point last_ok_{};  // last successful MongoDB command
  uint64_t last_pending_ = 0;
  uint64_t replayed_seen_ = 0;  // store_->replayed_documents() when last counted
};

}  // namespace agentd
