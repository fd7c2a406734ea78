// Applying each op inside the writer's transaction (outbox/outbox_impl.h has
// the file map). An op-level outcome (a duplicate, a refused plan, an
// unknown id) is stored in the op; a returned error fails the transaction.
#include <cassert>
#include <cstring>
#include <limits>

#include "outbox/outbox_impl.h"

namespace agentd {

namespace of = outbox_format;
using namespace outbox_lmdb;
using namespace outbox_internal;

// ---------------------------------------------------------------------------
// Append: resolve (duplicate, refused plan), then put the message, then put
// the plan record, all in the batch's transaction. The request was validated
// on the caller's thread (validate_append()).

Status Outbox::Impl::apply_append(MDB_txn* txn, Op& op, TxnState* st) {
  const AppendRequest& req = op.append;
  assert(validate_append(req).is_ok());
  auto answered = resolve_append(txn, op, st);
  if (!answered.is_ok()) return answered.status();
  if (*answered) return Status::ok();
  if (st->no_space) {  // it would write
    op.append_result = outbox_full();
    return Status::ok();
  }
  AGENTD_RETURN_IF_ERROR(mark_untracked(txn, st));
  AppendResult res;
  if (req.message) {
    AGENTD_RETURN_IF_ERROR(put_message(txn, *req.message, st, &res));
    if (res.duplicate) {  // the plan record is not applied either
      op.append_result = std::move(res);
      return Status::ok();
    }
  }
  if (req.plan) AGENTD_RETURN_IF_ERROR(put_plan_record(txn, req, st, &res));
  op.append_result = std::move(res);
  return Status::ok();
}

// Answers, without writing, an append whose message_id the plan already has
// (when it must not write: open_plan_only, a full map) and an open_plan_only
// append its plan refuses. True when op.append_result is set.
Result<bool> Outbox::Impl::resolve_append(MDB_txn* txn, Op& op, TxnState* st) {
  const AppendRequest& req = op.append;
  if (!req.message) return false;
  const PreparedMessage& m = *req.message;
  if (req.open_plan_only || st->no_space) {
    std::string idkey = of::msgid_key(m.plan_id, m.message_id);
    MDB_val k = mval(idkey), v;
    int rc = mdb_get(txn, msgids, &k, &v);
    if (rc == 0) {
      auto dup = duplicate_of(txn, m, v);
      if (!dup.is_ok()) return dup.status();
      op.append_result = std::move(*dup);
      return true;
    }
    if (rc != MDB_NOTFOUND) return lmdb_error(rc, "read msgids");
  }
  if (!req.open_plan_only) return false;
  MDB_val pk = mval(m.plan_id), pv;
  int rc = mdb_get(txn, plans, &pk, &pv);
  if (rc == MDB_NOTFOUND) {
    op.append_result =
        failed_precondition("plan " + m.plan_id + " is not held by this agentd's outbox; it takes no messages here");
    return true;
  }
  if (rc != 0) return lmdb_error(rc, "read plan record");
  auto stored = decode_plan_or_corruption(m.plan_id, sv(pv));
  if (!stored.is_ok()) return stored.status();
  if (is_final(stored->status)) {
    op.append_result = failed_precondition(
        "plan " + m.plan_id + " is " + std::string(plan_status_name(stored->status)) + ": it takes no more messages");
    return true;
  }
  return false;
}

// Already appended: what is stored, changing nothing. `stored_seq` is the
// message_id's msgids value.
Result<AppendResult> Outbox::Impl::duplicate_of(MDB_txn* txn, const PreparedMessage& m, const MDB_val& stored_seq) {
  if (stored_seq.mv_size != 8) return corruption("corrupt msgids value for " + m.plan_id + "/" + m.message_id);
  AppendResult res;
  res.duplicate = true;
  res.seq = of::get_be64(static_cast<const char*>(stored_seq.mv_data));
  std::string key = of::message_key(m.plan_id, res.seq);
  MDB_val mk = mval(key), mv;
  int rc = mdb_get(txn, messages, &mk, &mv);
  if (rc == MDB_NOTFOUND) return res;  // retention pruned it (MongoDB holds it): the seq is the answer
  if (rc != 0) return lmdb_error(rc, "read message");
  auto stored = of::parse_message_value(sv(mv));
  if (!stored.is_ok()) return stored.status();
  res.bytes = std::make_shared<const std::string>(stored->envelope);
  return res;
}

// Without MongoDB a write makes no pending entry: remember that in the same
// transaction, so that a later run with MongoDB sends it there
// (backfill_untracked()).
Status Outbox::Impl::mark_untracked(MDB_txn* txn, TxnState* st) {
  if (options.track_pending || untracked_marked || st->marks_untracked) return Status::ok();
  MDB_val uk = mval(of::kUntrackedKey), empty{0, nullptr};
  int rc = mdb_put(txn, meta, &uk, &empty, 0);
  if (rc != 0) return lmdb_error(rc, "write untracked flag");
  // A backfill interrupted earlier must start over: its resume position
  // may be past the plans this run appends to, whose new messages it
  // would then never queue (re-scanning queues only pending_id 0).
  MDB_val fk = mval(of::kBackfillFromKey);
  if ((rc = mdb_del(txn, meta, &fk, nullptr)) != 0 && rc != MDB_NOTFOUND) {
    return lmdb_error(rc, "delete backfill_from");
  }
  st->marks_untracked = true;
  return Status::ok();
}

// The moment a message becomes durable is the commit of this transaction
// (writer.cc, run_txn()): here it gets its seq and its bytes.
Status Outbox::Impl::put_message(MDB_txn* txn, const PreparedMessage& m, TxnState* st, AppendResult* res) {
  auto seq = next_seq(txn, m.plan_id, st);
  if (!seq.is_ok()) return seq.status();
  // One descent of msgids both checks for a duplicate and claims the id.
  std::string idkey = of::msgid_key(m.plan_id, m.message_id), seqv;
  of::put_be64(&seqv, *seq);
  MDB_val k = mval(idkey), v = mval(seqv);
  int rc = mdb_put(txn, msgids, &k, &v, MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST) {  // v now holds the stored seq
    auto dup = duplicate_of(txn, m, v);
    if (!dup.is_ok()) return dup.status();
    *res = std::move(*dup);
    return Status::ok();
  }
  if (rc != 0) return lmdb_error(rc, "write msgids");
  res->seq = *seq;
  auto bytes = std::make_shared<const std::string>(finalize(res->seq, m.tail));
  std::string key = of::message_key(m.plan_id, res->seq);
  uint64_t pending_id = options.track_pending ? st->next_pending_id : 0;
  std::string head = of::message_value_head(st->now_ms, pending_id, m.message_id);
  MDB_val mk = mval(key), mv{head.size() + bytes->size(), nullptr};
  rc = mdb_put(txn, messages, &mk, &mv, MDB_NOOVERWRITE | MDB_RESERVE);
  // Invariant: a seq is never reused (the cache matches the last key).
  assert(rc != MDB_KEYEXIST);
  if (rc == MDB_KEYEXIST) return internal_error("seq " + std::to_string(res->seq) + " of " + m.plan_id + " reused");
  if (rc != 0) return lmdb_error(rc, "write message");
  std::memcpy(mv.mv_data, head.data(), head.size());  // the value, written in place
  std::memcpy(static_cast<char*>(mv.mv_data) + head.size(), bytes->data(), bytes->size());
  if (options.track_pending) {
    AGENTD_RETURN_IF_ERROR(put_pending(
        txn, st, of::pending_value(PendingKind::kMessage, 0, st->now_ms, m.plan_id, res->seq, std::string_view())));
  }
  st->last_seq[m.plan_id] = res->seq;
  if (st->collect) st->committed.push_back(CommittedMessage{m.plan_id, res->seq, bytes});
  res->bytes = std::move(bytes);
  return Status::ok();
}

// The plan record at its next version, its user_plans entry, its pending
// entry (with MongoDB).
Status Outbox::Impl::put_plan_record(MDB_txn* txn, const AppendRequest& req, TxnState* st, AppendResult* res) {
  PlanRecord p = *req.plan;
  std::string pk = p.plan_id;
  MDB_val k = mval(pk), v;
  std::optional<PlanRecord> stored;
  int rc = mdb_get(txn, plans, &k, &v);
  if (rc == 0) {
    auto d = decode_plan_or_corruption(p.plan_id, sv(v));
    if (!d.is_ok()) return d.status();
    stored = std::move(*d);
  } else if (rc != MDB_NOTFOUND) {
    return lmdb_error(rc, "read plan record");
  }
  p.version = stored ? stored->version + 1 : 1;
  p.last_seq = req.message ? res->seq : (stored ? stored->last_seq : 0);
  std::string enc = encode_plan(p);
  MDB_val pv = mval(enc);
  if ((rc = mdb_put(txn, plans, &k, &pv, 0)) != 0) return lmdb_error(rc, "write plan record");
  const bool moved = stored && (stored->user_id != p.user_id || stored->created_at != p.created_at);
  if (moved) {
    std::string old = of::user_plans_key(stored->user_id, created_ms(*stored), p.plan_id);
    MDB_val ok = mval(old);
    rc = mdb_del(txn, user_plans, &ok, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "delete user_plans entry");
  }
  if (!stored || moved) {
    std::string uk = of::user_plans_key(p.user_id, created_ms(p), p.plan_id);
    MDB_val ukv = mval(uk), empty{0, nullptr};
    if ((rc = mdb_put(txn, user_plans, &ukv, &empty, 0)) != 0) return lmdb_error(rc, "write user_plans entry");
  }
  if (options.track_pending) {
    AGENTD_RETURN_IF_ERROR(put_pending(
        txn, st, of::pending_value(PendingKind::kPlan, of::kInline, st->now_ms, p.plan_id, p.version, enc)));
  }
  res->plan_version = p.version;
  return Status::ok();
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

// ---------------------------------------------------------------------------
// Acks and dead letters

Status Outbox::Impl::apply_ack(MDB_txn* txn, Op& op) {
  for (uint64_t id : op.ids) {
    std::string key = of::pending_key(id);
    MDB_val k = mval(key);
    int rc = mdb_del(txn, pending, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "delete pending entry");
  }
  op.status = Status::ok();
  return Status::ok();
}

Status Outbox::Impl::apply_drop(MDB_txn* txn, Op& op) {
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

}  // namespace agentd
