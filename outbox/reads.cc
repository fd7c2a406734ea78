// Reads (outbox/outbox_impl.h has the file map): each in its own read-only
// transaction on the caller's thread; they never wait for the writer.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "outbox/outbox_impl.h"

namespace agentd {

namespace of = outbox_format;
using namespace outbox_lmdb;
using namespace outbox_internal;

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
  auto p = decode_plan_or_corruption(plan_id, sv(v));
  if (!p.is_ok()) return p.status();
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
    auto p = decode_plan_or_corruption(*plan_id, sv(pv));
    if (!p.is_ok()) return p.status();
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

}  // namespace agentd
