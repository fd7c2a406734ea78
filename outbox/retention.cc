// Retention and backfill (outbox/outbox_impl.h has the file map).
//
// Retention, with MongoDB (track_pending): messages older than the retention
// cutoff and flushed go, except each plan's last one; a finished plan MongoDB
// holds entirely goes whole. Embedded: finished plans not updated since the
// cutoff go entirely (messages, index entries, plan record).
//
// Backfill: a run with MongoDB after runs without it queues what they
// appended (backfill_untracked()).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "core/clock.h"
#include "outbox/outbox_impl.h"

namespace agentd {

namespace of = outbox_format;
using namespace outbox_lmdb;
using namespace outbox_internal;

namespace {

// A message whose pending id is below the first fresh message entry's is
// not pending any more (flushed, or dead-lettered with its bytes inline).
Result<uint64_t> first_fresh_pending(MDB_txn* txn, MDB_dbi pending) {
  Cursor c(txn, pending);
  AGENTD_RETURN_IF_ERROR(c.status());
  MDB_val k, v;
  int rc = c.get(&k, &v, MDB_FIRST);
  for (; rc == 0; rc = c.get(&k, &v, MDB_NEXT)) {
    auto p = of::parse_pending_value(sv(v));
    if (!p.is_ok()) return p.status();
    if (p->kind == PendingKind::kMessage && !(p->flags & of::kInline)) return of::parse_id_key(sv(k), "pending");
  }
  if (rc != MDB_NOTFOUND) return lmdb_error(rc, "scan pending");
  return std::numeric_limits<uint64_t>::max();
}

// Plans whose record MongoDB may not hold yet (a pending plan entry): a
// finished plan is removed whole only when none is. With a long backlog
// (more entries than kMaxPendingScan) no plan is removed this pass
// (*may_remove false).
Status plans_with_pending_record(MDB_txn* txn, MDB_dbi pending, std::unordered_set<std::string>* out,
                                 bool* may_remove) {
  MDB_stat ps;
  int rc = mdb_stat(txn, pending, &ps);
  if (rc != 0) return lmdb_error(rc, "mdb_stat pending");
  *may_remove = ps.ms_entries <= kMaxPendingScan;
  if (!*may_remove) return Status::ok();
  Cursor c(txn, pending);
  AGENTD_RETURN_IF_ERROR(c.status());
  MDB_val k, v;
  for (rc = c.get(&k, &v, MDB_FIRST); rc == 0; rc = c.get(&k, &v, MDB_NEXT)) {
    auto p = of::parse_pending_value(sv(v));
    if (!p.is_ok()) return p.status();
    if (p->kind == PendingKind::kPlan) out->emplace(p->plan_id);
  }
  if (rc != MDB_NOTFOUND) return lmdb_error(rc, "scan pending");
  return Status::ok();
}

}  // namespace

Status Outbox::Impl::apply_prune(MDB_txn* txn, Op& op, TxnState* st) {
  op.status = Status::ok();
  if (options.track_pending) return prune_flushed(txn, op, st);
  if (options.finished_plan_retention.count() <= 0) return Status::ok();
  return prune_finished(txn, op, st);
}

// With MongoDB. Visits each plan that has messages by jumping over its key
// range, from where the last pass stopped, within a time budget (the writer
// waits meanwhile); at least one plan per pass.
Status Outbox::Impl::prune_flushed(MDB_txn* txn, Op& op, TxnState* st) {
  size_t budget = kPruneBudget;
  int64_t cutoff = st->now_ms - static_cast<int64_t>(options.flushed_retention.count()) * 1000;
  auto first_pending = first_fresh_pending(txn, pending);
  if (!first_pending.is_ok()) return first_pending.status();
  std::unordered_set<std::string> record_pending;
  bool may_remove = true;
  AGENTD_RETURN_IF_ERROR(plans_with_pending_record(txn, pending, &record_pending, &may_remove));
  const auto t0 = std::chrono::steady_clock::now();
  std::string plan;
  for (size_t visited = 0;; ++visited) {
    std::string from = visited > 0             ? of::message_key(plan, std::numeric_limits<uint64_t>::max())
                       : !prune_resume.empty() ? of::message_key(prune_resume, 0)
                                               : std::string();
    auto next = plan_at_or_after(txn, from);
    if (!next.is_ok()) return next.status();
    if (next->empty()) {  // the walk reached the end: the next pass starts over
      prune_resume.clear();
      break;
    }
    plan = std::move(*next);
    if (budget == 0 || (visited > 0 && std::chrono::steady_clock::now() - t0 >= options.prune_time_budget)) {
      prune_resume = plan;
      op.prune_more = true;
      break;
    }
    // A finished plan MongoDB holds entirely (messages and record) goes
    // whole: it takes no more appends, so its seqs need no anchor here.
    std::optional<PlanRecord> finished;
    if (may_remove && record_pending.count(plan) == 0) {
      auto rec = finished_before(txn, plan, cutoff);
      if (!rec.is_ok()) return rec.status();
      finished = std::move(*rec);
    }
    bool gone = false;
    AGENTD_RETURN_IF_ERROR(prune_plan_messages(txn, plan, cutoff, *first_pending, !finished, &budget, &gone));
    if (finished && gone) AGENTD_RETURN_IF_ERROR(remove_plan(txn, *finished, st));
  }
  return Status::ok();
}

Result<std::string> Outbox::Impl::plan_at_or_after(MDB_txn* txn, const std::string& from) {
  Cursor c(txn, messages);
  AGENTD_RETURN_IF_ERROR(c.status());
  MDB_val k = mval(from), v;
  int rc = from.empty() ? c.get(&k, &v, MDB_FIRST) : c.get(&k, &v, MDB_SET_RANGE);
  if (rc == MDB_NOTFOUND) return std::string();
  if (rc != 0) return lmdb_error(rc, "scan messages");
  of::Reader r(sv(k), "message key");
  std::string_view p;
  if (!r.str16(&p)) return r.error("plan_id");
  return std::string(p);
}

Result<std::optional<PlanRecord>> Outbox::Impl::finished_before(MDB_txn* txn, const std::string& plan_id,
                                                                int64_t cutoff) {
  MDB_val pk = mval(plan_id), pv;
  int rc = mdb_get(txn, plans, &pk, &pv);
  if (rc == MDB_NOTFOUND) return std::optional<PlanRecord>();
  if (rc != 0) return lmdb_error(rc, "read plan record");
  auto rec = decode_plan_or_corruption(plan_id, sv(pv));
  if (!rec.is_ok()) return rec.status();
  int64_t updated = 0;
  if (is_final(rec->status) && parse_rfc3339_ms(rec->updated_at, &updated) && updated < cutoff) {
    return std::optional<PlanRecord>(std::move(*rec));
  }
  return std::optional<PlanRecord>();
}

// Embedded: finished plans not updated since the cutoff go entirely.
Status Outbox::Impl::prune_finished(MDB_txn* txn, Op& op, TxnState* st) {
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
      auto p = decode_plan_or_corruption(sv(k), sv(v));
      if (!p.is_ok()) return p.status();
      int64_t updated = 0;
      if (is_final(p->status) && parse_rfc3339_ms(p->updated_at, &updated) && updated < cutoff) {
        doomed.push_back(std::move(*p));
      }
    }
    if (rc != MDB_NOTFOUND) return lmdb_error(rc, "scan plans");
  }
  size_t budget = kPruneBudget;
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
      // Where format.h's invariant is kept: with MongoDB, a message it does
      // not hold (pending, or dead-lettered: kNotInMongo) stays, and so does
      // the rest of its plan.
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

// A run with MongoDB after runs without it (meta "untracked" set): every
// message whose pending_id is 0 gets a pending entry now, and its value the
// new pending_id, in (plan, seq) order; then every plan record is queued at
// its current version. Without this the flusher would never send them and
// retention would take them for flushed. Runs before the writer starts, in
// transactions of kBackfillChunk entries; meta "backfill_from" holds where
// to continue if the process stops halfway, and the flag goes last.
Status Outbox::Impl::backfill_untracked(uint64_t* pending_count) {
  {
    ReadTxn txn(env);
    AGENTD_RETURN_IF_ERROR(txn.status());
    MDB_val k = mval(of::kUntrackedKey), v;
    int rc = mdb_get(txn.get(), meta, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::ok();
    if (rc != 0) return lmdb_error(rc, "read untracked flag");
  }
  uint64_t messages_queued = 0, plans_queued = 0;
  for (bool done = false; !done;) {
    MDB_txn* txn;
    AGENTD_RETURN_IF_ERROR(begin_write(&txn, "begin backfill transaction"));
    TxnState tx;  // hands out pending ids as an append would
    tx.next_pending_id = next_pending_id;
    tx.now_ms = std::max(now_unix_ms(), last_appended_ms);
    Status s = backfill_chunk(txn, &tx, &done, &messages_queued, &plans_queued);
    if (s.is_ok()) s = put_next_pending_id(txn, tx.next_pending_id);
    if (!s.is_ok()) {
      mdb_txn_abort(txn);
      return s;
    }
    if (int rc = mdb_txn_commit(txn); rc != 0) return lmdb_error(rc, "commit backfill transaction");
    *pending_count += tx.next_pending_id - next_pending_id;
    next_pending_id = tx.next_pending_id;
  }
  spdlog::warn("outbox {}: earlier runs had no MongoDB; queued their {} messages and {} plan records for the flusher",
               options.dir, messages_queued, plans_queued);
  return Status::ok();
}

// One backfill transaction: up to kBackfillChunk entries from meta
// "backfill_from" ("m" + message key, or "p" + plan id; none: the first
// message), then where the next one starts, or (*done) the flags removed.
Status Outbox::Impl::backfill_chunk(MDB_txn* txn, TxnState* tx, bool* done, uint64_t* messages_queued,
                                    uint64_t* plans_queued) {
  std::string from;
  MDB_val fk = mval(of::kBackfillFromKey), v;
  int rc = mdb_get(txn, meta, &fk, &v);
  if (rc == 0) {
    from.assign(static_cast<const char*>(v.mv_data), v.mv_size);
  } else if (rc != MDB_NOTFOUND) {
    return lmdb_error(rc, "read backfill_from");
  }
  if (from.empty()) from = "m";
  std::string next;  // "": the last chunk
  if (from[0] == 'm') {
    AGENTD_RETURN_IF_ERROR(backfill_messages(txn, from.substr(1), tx, &next, messages_queued));
  } else {
    AGENTD_RETURN_IF_ERROR(backfill_plans(txn, from.substr(1), tx, &next, plans_queued));
  }
  *done = next.empty();  // the plans are queued too
  if (!*done) {
    MDB_val nv = mval(next);
    if ((rc = mdb_put(txn, meta, &fk, &nv, 0)) != 0) return lmdb_error(rc, "write backfill_from");
    return Status::ok();
  }
  MDB_val uk = mval(of::kUntrackedKey);
  if ((rc = mdb_del(txn, meta, &uk, nullptr)) != 0) return lmdb_error(rc, "delete untracked flag");
  if ((rc = mdb_del(txn, meta, &fk, nullptr)) != 0 && rc != MDB_NOTFOUND) {
    return lmdb_error(rc, "delete backfill_from");
  }
  return Status::ok();
}

// Queues the messages not queued yet (pending_id 0) from message key
// `start` on; *next: "m" + the key to continue at, or "p" (the plans next).
Status Outbox::Impl::backfill_messages(MDB_txn* txn, const std::string& start, TxnState* tx, std::string* next,
                                       uint64_t* queued) {
  Cursor c(txn, messages);
  AGENTD_RETURN_IF_ERROR(c.status());
  MDB_val ck = mval(start), cv_;
  int crc = start.empty() ? c.get(&ck, &cv_, MDB_FIRST) : c.get(&ck, &cv_, MDB_SET_RANGE);
  size_t n = 0;
  for (; crc == 0 && n < kBackfillChunk; crc = c.get(&ck, &cv_, MDB_NEXT), ++n) {
    auto m = of::parse_message_value(sv(cv_));
    if (!m.is_ok()) return m.status();
    if (m->pending_id != 0) continue;
    of::Reader r(sv(ck), "message key");
    std::string_view plan;
    uint64_t seq = 0;
    if (!r.str16(&plan) || !r.be64(&seq)) return r.error("message key");
    std::string pv = of::pending_value(PendingKind::kMessage, 0, m->appended_at_ms, plan, seq, std::string_view());
    std::string value = of::message_value(m->appended_at_ms, tx->next_pending_id, m->message_id, m->envelope);
    MDB_val nv = mval(value);
    if ((crc = c.put(&ck, &nv, MDB_CURRENT)) != 0) return lmdb_error(crc, "rewrite message value");
    ++*queued;
    AGENTD_RETURN_IF_ERROR(put_pending(txn, tx, pv));
  }
  if (crc == 0) {
    *next = "m" + std::string(sv(ck));
  } else if (crc == MDB_NOTFOUND) {
    *next = "p";
  } else {
    return lmdb_error(crc, "scan for backfill");
  }
  return Status::ok();
}

// Queues every plan record at its current version from plan id `start` on;
// *next: "p" + the plan to continue at, or "" (done).
Status Outbox::Impl::backfill_plans(MDB_txn* txn, const std::string& start, TxnState* tx, std::string* next,
                                    uint64_t* queued) {
  Cursor c(txn, plans);
  AGENTD_RETURN_IF_ERROR(c.status());
  MDB_val ck = mval(start), cv_;
  int crc = start.empty() ? c.get(&ck, &cv_, MDB_FIRST) : c.get(&ck, &cv_, MDB_SET_RANGE);
  size_t n = 0;
  for (; crc == 0 && n < kBackfillChunk; crc = c.get(&ck, &cv_, MDB_NEXT), ++n) {
    auto p = decode_plan_or_corruption(sv(ck), sv(cv_));
    if (!p.is_ok()) return p.status();
    ++*queued;
    AGENTD_RETURN_IF_ERROR(put_pending(
        txn, tx, of::pending_value(PendingKind::kPlan, of::kInline, tx->now_ms, p->plan_id, p->version, sv(cv_))));
  }
  if (crc == 0) {
    *next = "p" + std::string(sv(ck));
  } else if (crc != MDB_NOTFOUND) {
    return lmdb_error(crc, "scan for backfill");
  }
  return Status::ok();
}

}  // namespace agentd
