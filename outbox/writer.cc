// The writer thread: group commit (outbox/outbox_impl.h has the file map).
//
// The leader-and-waiters of LevelDB's DBImpl::Write, with one fixed leader:
// the writer takes everything waiting (bounded by bytes and count), applies
// it in one LMDB write transaction with no lock held, commits with one sync,
// then completes every op of the batch with its own outcome. A failed commit
// is sticky: every later write fails with the same status.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>

#include "core/clock.h"
#include "outbox/outbox_impl.h"

namespace agentd {

namespace of = outbox_format;
using namespace outbox_lmdb;
using namespace outbox_internal;

// Invariant: only one thread opens write transactions (the opener until the
// writer starts, then the writer), so the per-plan seq cache and
// next_pending_id describe the last committed state exactly; one
// transaction's changes to them are merged only after its commit succeeded.
Status Outbox::Impl::begin_write(MDB_txn** txn, std::string_view what) {
  assert(write_thread.load() == std::this_thread::get_id());
  int rc = mdb_txn_begin(env, nullptr, 0, txn);
  return rc == 0 ? Status::ok() : lmdb_error(rc, what);
}

void Outbox::Impl::run() {
  write_thread = std::this_thread::get_id();
  auto next_prune = std::chrono::steady_clock::now() + options.prune_interval;
  for (;;) {
    bool stopping = false;
    std::vector<std::unique_ptr<Op>> batch = next_batch(next_prune, &stopping);
    if (batch.empty() && stopping) return;  // the queue is drained
    // No lock held from here: the transaction, the sync, the callbacks.
    if (!batch.empty()) commit_batch(batch);
    if (std::chrono::steady_clock::now() >= next_prune) next_prune = housekeeping();  // also under constant load
  }
}

// Waits until something is queued, stop, or `until`; then takes everything
// waiting, bounded by bytes and count.
std::vector<std::unique_ptr<Outbox::Impl::Op>> Outbox::Impl::next_batch(std::chrono::steady_clock::time_point until,
                                                                        bool* stopping) {
  std::vector<std::unique_ptr<Op>> batch;
  MutexLock l(&mu);
  while (!stop && queue.empty()) {
    if (!cv.wait_until(until)) break;  // the next housekeeping is due
  }
  *stopping = stop;
  size_t bytes = 0;
  while (!queue.empty() && batch.size() < options.max_batch_count &&
         (batch.empty() || bytes + queue.front()->bytes <= options.max_batch_bytes)) {
    bytes += queue.front()->bytes;
    batch.push_back(std::move(queue.front()));
    queue.pop_front();
  }
  return batch;
}

std::chrono::steady_clock::time_point Outbox::Impl::housekeeping() {
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
  return std::chrono::steady_clock::now() + wait;
}

void Outbox::Impl::commit_batch(std::vector<std::unique_ptr<Op>>& batch) {
  std::shared_ptr<const CommitObserver> obs;
  {
    MutexLock l(&mu);
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

// Whether one more append of an ordinary size would find pages: a write
// transaction puts a probe value of kRoomProbeBytes and is aborted (LMDB
// reports MDB_MAP_FULL from the put that cannot allocate).
bool Outbox::Impl::has_room() {
  MDB_txn* txn;
  if (!begin_write(&txn, "begin room probe").is_ok()) return false;
  std::string probe(kRoomProbeBytes, '\0');
  std::string_view key = "room-probe";
  MDB_val k = mval(key), v = mval(probe);
  int rc = mdb_put(txn, meta, &k, &v, 0);
  mdb_txn_abort(txn);
  return rc == 0;
}

Status Outbox::Impl::run_txn(std::vector<std::unique_ptr<Op>>& batch, TxnState* st) {
  MDB_txn* txn;
  AGENTD_RETURN_IF_ERROR(begin_write(&txn, "begin write transaction"));
  // appended_at_ms never goes backwards, even if the clock steps back.
  st->now_ms = std::max(now_unix_ms(), last_appended_ms);
  st->next_pending_id = next_pending_id;
  Status s;
  for (auto& op : batch) {
    ++st->requests;
    if (!(s = apply(txn, *op, st)).is_ok()) break;
  }
  if (s.is_ok() && st->next_pending_id != next_pending_id) s = put_next_pending_id(txn, st->next_pending_id);
  if (s.is_ok() && fail_next_commit.exchange(false)) {
    s = io_error("commit: injected failure (OutboxTestAccess::fail_next_commit)");
  }
  if (!s.is_ok()) {
    mdb_txn_abort(txn);
    st->committed.clear();
    return s;
  }
  if (int rc = mdb_txn_commit(txn); rc != 0) {
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
    case Op::Kind::kAck: return apply_ack(txn, op);
    case Op::Kind::kDeadLetter: return apply_dead_letter(txn, op, st);
    case Op::Kind::kRetry: return apply_retry(txn, op, st);
    case Op::Kind::kDrop: return apply_drop(txn, op);
    case Op::Kind::kPrune: return apply_prune(txn, op, st);
  }
  return internal_error("unknown op");
}

}  // namespace agentd
