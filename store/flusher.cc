#include "store/flusher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <map>

#include "core/clock.h"

namespace agentd {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

// What one batch came to: the ids MongoDB acknowledged (to ack in the
// outbox) and how many of them were messages.
struct Flusher::Outcome {
  std::vector<uint64_t> ack_ids;
  std::vector<PendingEntry> persisted;  // only kept when on_persisted is set
  uint64_t messages = 0;
  uint64_t dead = 0;
  std::optional<MongoFailure> transient;  // set: retry the whole batch later
};

Counter& appended_messages_counter(MetricsRegistry& metrics) {
  return metrics.counter("agentd_messages_appended_total", "Messages committed to the outbox.");
}

Flusher::Flusher(Outbox* outbox, MessageStore* store, MetricsRegistry* metrics, FlusherOptions options)
    : outbox_(outbox),
      store_(store),
      registry_(metrics),
      options_(std::move(options)),
      m_{
          metrics->counter("agentd_messages_persisted_total", "Messages MongoDB acknowledged (replays included)."),
          metrics->counter("agentd_persist_replayed_total",
                           "Messages MongoDB already held when flushed: a lost ack or a crash between write and ack, "
                           "replayed as a no-op."),
          metrics->counter("agentd_persist_retries_total", "Flush attempts retried after a transient failure."),
          metrics->counter("agentd_dead_letters_total", "Pending entries MongoDB rejected permanently."),
          metrics->gauge("agentd_mongo_up", "1 when the last MongoDB write succeeded, else 0."),
          metrics->histogram("agentd_flush_batch_seconds", "MongoDB time of one flushed batch.", latency_buckets()),
          metrics->histogram("agentd_persist_latency_seconds", "Append to MongoDB acknowledgement, per message.",
                             latency_buckets()),
      },
      timer_(io_),
      rng_(std::random_device{}()) {
  replayed_seen_ = store->replayed_documents();
  Counter& persisted = m_.persisted;
  Counter& dead = m_.dead_letters;
  metrics->gauge_fn("agentd_persist_success_ratio", "persisted / (persisted + permanently failed).",
                    [&persisted, &dead] {
                      double p = static_cast<double>(persisted.value()), d = static_cast<double>(dead.value());
                      return p + d == 0 ? 1.0 : p / (p + d);
                    });
}

Flusher::~Flusher() {
  if (thread_.joinable()) stop(Clock::now()).ignore();
}

void Flusher::start() {
  assert(!thread_.joinable());
  work_.emplace(io_.get_executor());
  boost::asio::post(io_, [this] { do_cycle(); });
  thread_ = std::thread([this] { io_.run(); });
}

void Flusher::notify() {
  if (notified_.exchange(true)) return;
  boost::asio::post(io_, [this] {
    notified_.store(false);
    if (phase_ == Phase::kIdle) timer_.cancel();  // the idle wait's handler runs the next cycle
  });
}

Status Flusher::stop(Clock::time_point deadline) {
  if (!thread_.joinable()) return Status::ok();
  boost::asio::post(io_, [this, deadline] {
    stopping_ = true;
    deadline_ = deadline;
    if (phase_ == Phase::kDone) return;
    if (crashed_.load()) return finish();
    if (phase_ == Phase::kIdle || phase_ == Phase::kBackoff) timer_.cancel();
  });
  thread_.join();
  if (crashed_.load()) return unavailable("flusher crashed (fault injection); pending entries stay in the outbox");
  if (last_pending_ > 0) {
    return unavailable("flusher stopped with " + std::to_string(last_pending_) +
                       " entries still pending in the outbox (flushed at the next start)");
  }
  return Status::ok();
}

bool Flusher::past_deadline() const { return stopping_ && Clock::now() >= deadline_; }

void Flusher::finish() {
  phase_ = Phase::kDone;
  refresh_stats(true);
  timer_.cancel();
  work_.reset();
  io_.stop();
}

void Flusher::wait_then_cycle(std::chrono::milliseconds delay, bool idle) {
  if (stopping_) {
    if (idle || past_deadline()) return finish();
    delay = std::min(delay, std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()));
  }
  phase_ = idle ? Phase::kIdle : Phase::kBackoff;
  timer_.expires_after(delay);
  timer_.async_wait([this](const boost::system::error_code&) {
    // Expired or cancelled (notify / stop): either way, run the next cycle.
    if (phase_ == Phase::kDone) return;
    phase_ = Phase::kBusy;
    do_cycle();
  });
}

std::chrono::milliseconds Flusher::next_backoff() {
  // Full jitter: uniform(0, min(cap, base * 2^attempt)).
  int shift = std::min(attempt_, 30);
  ++attempt_;
  auto base = options_.backoff_base.count();
  auto cap = options_.backoff_cap.count();
  auto ceiling = base > (cap >> shift) ? cap : std::min<int64_t>(cap, base << shift);
  std::uniform_int_distribution<int64_t> dist(0, std::max<int64_t>(ceiling, 1));
  return std::chrono::milliseconds(dist(rng_));
}

void Flusher::count_failure(const std::string& reason) {
  registry_->counter("agentd_persist_failures_total", "Failed MongoDB writes by reason.", "reason=\"" + reason + "\"")
      .inc();
}

void Flusher::on_transient(const MongoFailure& f, bool count) {
  if (count) count_failure(f.reason);
  if (up_.load() || !known_) {
    if (write_concern_refused(f)) {
      // Not the documents' fault: nothing is dead-lettered; fix the flag.
      spdlog::error(
          "flusher: MongoDB refuses the write concern (--write-concern/--journal): {}; retrying with backoff, "
          "messages stay pending in the outbox",
          f.message);
    } else {
      spdlog::warn("flusher: MongoDB unavailable ({}: {}); retrying with backoff, appends continue in the outbox",
                   f.reason, f.message);
    }
  }
  known_ = true;
  up_.store(false);
  m_.up.set(0);
  if (count) m_.retries.inc();
  refresh_stats(false);
  wait_then_cycle(next_backoff(), false);
}

void Flusher::on_up() {
  if (!up_.load()) {
    if (known_) {
      spdlog::info("flusher: MongoDB reachable again after {} failed attempts", attempt_);
    } else {
      spdlog::info("flusher: MongoDB reachable (database {})", store_->pool()->database());
    }
  }
  known_ = true;
  attempt_ = 0;
  last_ok_ = Clock::now();
  up_.store(true);
  m_.up.set(1);
}

void Flusher::on_outbox_error(const Status& st) {
  if (outbox_ok_) spdlog::error("flusher: outbox failed ({}); retrying with backoff", st.to_string());
  outbox_ok_ = false;
  m_.retries.inc();
  wait_then_cycle(next_backoff(), false);
}

void Flusher::refresh_stats(bool force) {
  auto now = Clock::now();
  if (!force && now - last_stats_ < options_.stats_interval) return;
  last_stats_ = now;
  auto s = outbox_->stats();
  if (!s) return;  // gauges keep their last value; the error surfaces through the flush path
  last_pending_ = s->pending;
}

void Flusher::do_cycle() {
  if (phase_ == Phase::kDone) return;
  phase_ = Phase::kBusy;
  if (past_deadline()) return finish();

  if (options_.ensure_indexes && !indexes_ready_) {
    Status st = store_->ensure_indexes();
    if (st.code() == Code::kUnavailable) {
      MongoFailure f;
      f.reason = "indexes";
      f.message = st.message();
      return on_transient(f);
    }
    // Anything else (e.g. existing data violating a unique index) is not
    // fixed by retrying: say so loudly and flush anyway.
    if (!st.is_ok()) spdlog::error("flusher: cannot create indexes: {}", st.to_string());
    indexes_ready_ = true;
    on_up();
  }

  auto batch = outbox_->read_pending(options_.max_batch_count, options_.max_batch_bytes);
  if (!batch) return on_outbox_error(batch.status());
  if (batch->empty()) {
    last_pending_ = 0;
    refresh_stats(true);
    if (!stopping_ && (!up_.load() || Clock::now() - last_ok_ >= options_.health_interval)) {
      // Nothing to write, but agentd_mongo_up (and /readyz) should still
      // tell the truth: probe with a ping (on the write backoff when down).
      Status ping = store_->pool()->ping();
      if (!ping.is_ok()) {
        MongoFailure f;
        f.reason = "ping";
        f.message = ping.message();
        return on_transient(f, /*count=*/false);
      }
      on_up();
    }
    return wait_then_cycle(options_.poll_interval, true);
  }

  Outcome out;
  auto t0 = Clock::now();
  Status st = write_batch(*batch, &out);
  if (!st.is_ok()) return on_outbox_error(st);  // dead-lettering in the outbox failed
  if (out.transient) return on_transient(*out.transient);
  m_.batch_seconds.observe(std::chrono::duration<double>(Clock::now() - t0).count());
  on_up();

  if (options_.crash_after_write && options_.crash_after_write()) {
    spdlog::warn("flusher: crash injected after the MongoDB write of {} entries, before the outbox ack",
                 out.ack_ids.size());
    crashed_.store(true);
    return finish();
  }
  if (options_.on_persisted) options_.on_persisted(out.persisted);

  Status acked = out.ack_ids.empty() ? Status::ok() : outbox_->ack_sync(std::move(out.ack_ids));
  if (!acked.is_ok()) return on_outbox_error(acked);
  if (!outbox_ok_) spdlog::info("flusher: outbox writable again");
  outbox_ok_ = true;
  m_.persisted.inc(out.messages);
  uint64_t replayed = store_->replayed_documents();  // the store's running total
  m_.replayed.inc(replayed - std::min(replayed, replayed_seen_));
  replayed_seen_ = replayed;
  refresh_stats(false);
  boost::asio::post(io_, [this] { do_cycle(); });
}

// Writes one batch: messages first (so a plan record in MongoDB never claims
// a last_seq its messages have not reached), then the newest version of each
// plan. Returns non-ok only when the outbox failed (dead-lettering).
Status Flusher::write_batch(std::vector<PendingEntry>& batch, Outcome* out) {
  std::vector<const PendingEntry*> messages;
  std::map<std::string_view, const PendingEntry*> newest_plan;
  std::vector<const PendingEntry*> superseded;
  for (const PendingEntry& e : batch) {
    if (e.kind == PendingKind::kMessage) {
      messages.push_back(&e);
      continue;
    }
    auto [it, inserted] = newest_plan.emplace(e.plan_id, &e);
    if (inserted) continue;
    if (e.plan_version > it->second->plan_version) {
      superseded.push_back(it->second);
      it->second = &e;
    } else {
      superseded.push_back(&e);
    }
  }
  if (!messages.empty()) {
    AGENTD_RETURN_IF_ERROR(write_messages(messages, out));
    if (out->transient) return Status::ok();
  }
  // A version older than another in the same batch is replaced by it anyway.
  for (const PendingEntry* e : superseded) out->ack_ids.push_back(e->id);
  for (const auto& [plan_id, e] : newest_plan) {
    WriteStatus ws = store_->upsert_plan(e->plan_id, e->plan_version, e->bytes ? *e->bytes : std::string_view());
    if (ws.is_ok()) {
      out->ack_ids.push_back(e->id);
      dead_run_ = 0;
      if (options_.on_persisted) out->persisted.push_back(*e);
      continue;
    }
    if (ws.failure().transient()) {
      out->transient = ws.failure();
      return Status::ok();
    }
    AGENTD_RETURN_IF_ERROR(dead_letter(*e, ws.failure(), out));
    if (out->transient) return Status::ok();
  }
  return Status::ok();
}

// Upserts `items` in one ordered bulk; on a permanent error bisects to the
// offender. Stops at the first transient failure (recorded in `out`).
Status Flusher::write_messages(std::span<const PendingEntry* const> items, Outcome* out) {
  std::vector<MessageDoc> docs;
  docs.reserve(items.size());
  for (const PendingEntry* e : items) {
    docs.push_back(MessageDoc{e->plan_id, e->seq, e->bytes ? std::string_view(*e->bytes) : std::string_view()});
  }
  WriteStatus ws = store_->upsert_messages(docs);
  if (ws.is_ok()) {
    if (!items.empty()) dead_run_ = 0;
    int64_t now = now_unix_ms();
    for (const PendingEntry* e : items) {
      out->ack_ids.push_back(e->id);
      ++out->messages;
      m_.latency.observe(std::max<int64_t>(0, now - e->appended_at_ms) / 1e3);
      if (options_.on_persisted) out->persisted.push_back(*e);
    }
    return Status::ok();
  }
  const MongoFailure& f = ws.failure();
  if (f.transient()) {
    out->transient = f;
    return Status::ok();
  }
  if (items.size() > 1) {
    // FerretDB names index 0 whatever failed: split until one is left.
    size_t mid = items.size() / 2;
    AGENTD_RETURN_IF_ERROR(write_messages(items.first(mid), out));
    if (out->transient) return Status::ok();
    return write_messages(items.subspan(mid), out);
  }
  const PendingEntry& e = *items[0];
  if (f.reason == "duplicate_key") {
    // Our own _id already there (an upsert race) is success; another
    // document holding this message_id or (plan_id, seq) is a real conflict.
    auto exists = store_->message_exists(e.plan_id, e.seq);
    if (!exists) {
      MongoFailure t;
      t.reason = "network";
      t.message = exists.status().message();
      out->transient = t;
      return Status::ok();
    }
    if (*exists) {
      dead_run_ = 0;
      out->ack_ids.push_back(e.id);
      ++out->messages;
      if (options_.on_persisted) out->persisted.push_back(e);
      return Status::ok();
    }
  }
  return dead_letter(e, f, out);
}

Status Flusher::dead_letter(const PendingEntry& e, const MongoFailure& f, Outcome* out) {
  std::string what = e.kind == PendingKind::kPlan ? "plan " + e.plan_id + " v" + std::to_string(e.plan_version)
                                                  : "message " + message_doc_id(e.plan_id, e.seq);
  std::string error = "mongodb rejected " + what + " (" + f.reason + "): " + f.message;
  if (options_.dead_letter_run_limit > 0 && dead_run_ >= options_.dead_letter_run_limit) {
    // So many rejections in a row look like the server, not the documents:
    // retry with backoff; after it, one more may go (dead_run_ stays at the
    // limit minus one until something is persisted).
    dead_run_ = options_.dead_letter_run_limit - 1;
    MongoFailure t;
    t.reason = "dead_letter_run";
    t.message = std::to_string(options_.dead_letter_run_limit) +
                " entries in a row rejected permanently; retrying instead of dead-lettering more (next: " + error + ")";
    out->transient = std::move(t);
    return Status::ok();
  }
  AGENTD_RETURN_IF_ERROR(outbox_->dead_letter_sync(e.id, error));
  ++dead_run_;
  ++out->dead;
  m_.dead_letters.inc();
  count_failure(f.reason);
  spdlog::error("flusher: dead letter (pending id {}): {}", e.id, error);
  DeadLetterDoc d;
  d.is_plan = e.kind == PendingKind::kPlan;
  d.plan_id = e.plan_id;
  d.seq_or_version = d.is_plan ? e.plan_version : e.seq;
  d.pending_id = e.id;
  d.error = error;
  d.dead_at_ms = now_unix_ms();
  d.bytes = e.bytes ? std::string_view(*e.bytes) : std::string_view();
  WriteStatus ws = store_->insert_dead_letter(d);  // best-effort: the outbox holds the truth
  if (!ws.is_ok()) spdlog::warn("flusher: could not record the dead letter in MongoDB: {}", ws.failure().message);
  return Status::ok();
}

}  // namespace agentd
