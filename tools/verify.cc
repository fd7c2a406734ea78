// verify: checks every invariant of outbox/format.h in one read snapshot.
//
// Each violation is one line on stdout:
//   PROBLEM <table> plan=<plan> seq=<seq> key=<key>: <what>
// (plan/seq left out where they do not apply). Exit 1 when any was found.
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include "core/clock.h"
#include "core/envelope.h"
#include "core/plan_record.h"
#include "outbox/format.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace agentd::tool {

namespace of = outbox_format;

namespace {

struct PlanMessages {
  uint64_t first = 0, last = 0, count = 0;
};

class Verifier {
 public:
  Verifier(const OutboxSnapshot& s, size_t max_print) : s_(s), max_print_(max_print) {}

  Status run() {
    AGENTD_RETURN_IF_ERROR(check_meta());
    AGENTD_RETURN_IF_ERROR(check_messages());
    AGENTD_RETURN_IF_ERROR(check_msgids());
    AGENTD_RETURN_IF_ERROR(check_plans());
    AGENTD_RETURN_IF_ERROR(check_pending());
    AGENTD_RETURN_IF_ERROR(check_user_plans());
    AGENTD_RETURN_IF_ERROR(check_dead());
    return Status::ok();
  }
  uint64_t problems() const { return problems_; }
  void summary(std::ostream& os) const {
    os << "checked " << plan_records_ << " plan records, " << messages_ << " messages in " << plans_.size()
       << " plans, " << msgids_ << " msgids entries, " << pending_ << " pending entries, " << user_plans_
       << " user_plans entries, " << dead_ << " dead letters\n";
  }

 private:
  void problem(std::string_view table, std::optional<std::string_view> plan, std::optional<uint64_t> seq,
               std::string_view key, const std::string& what) {
    ++problems_;
    if (problems_ > max_print_) return;
    std::cout << "PROBLEM " << table;
    if (plan) std::cout << " plan=" << printable(*plan);
    if (seq) std::cout << " seq=" << *seq;
    std::cout << " key=" << printable(key) << ": " << what << "\n";
  }

  Status check_meta() {
    auto u = s_.get(OutboxTable::kMeta, of::kUntrackedKey);
    if (!u.is_ok()) return u.status();
    untracked_ = u->has_value();
    auto v = s_.get(OutboxTable::kMeta, of::kNextPendingIdKey);
    if (!v.is_ok()) return v.status();
    if (*v) {
      if ((*v)->size() != 8) {
        problem("meta", {}, {}, of::kNextPendingIdKey,
                "next_pending_id is " + std::to_string((*v)->size()) + " bytes, expected 8");
      } else {
        next_pending_id_ = of::get_be64((*v)->data());
      }
    }
    return Status::ok();
  }

  // Keys parse; seqs of each plan contiguous from its first retained seq;
  // values parse; envelopes decode and match their key; msgids points back.
  Status check_messages() {
    std::string cur;
    PlanMessages* pm = nullptr;
    return s_.scan(OutboxTable::kMessages, {}, [&](std::string_view k, std::string_view v) {
      ++messages_;
      std::string_view plan;
      uint64_t seq = 0;
      if (!split_message_key(k, &plan, &seq)) {
        problem("messages", {}, {}, k, "malformed key (expected plan_id:str16 seq:be64)");
        return true;
      }
      if (!pm || plan != cur) {
        cur = std::string(plan);
        pm = &plans_[cur];
        pm->first = seq;
      } else if (seq != pm->last + 1) {
        problem("messages", plan, seq, k,
                "seq gap: seq " + std::to_string(pm->last + 1) +
                    (seq - 1 > pm->last + 1 ? ".." + std::to_string(seq - 1) : "") + " missing (seq " +
                    std::to_string(pm->last) + " is followed by seq " + std::to_string(seq) + ")");
      }
      if (seq == 0) problem("messages", plan, seq, k, "seq 0 (seqs start at 1)");
      pm->last = seq;
      ++pm->count;
      auto m = of::parse_message_value(v);
      if (!m.is_ok()) {
        problem("messages", plan, seq, k, "value does not parse: " + m.status().message());
        return true;
      }
      check_envelope("messages", plan, seq, k, m->envelope, m->message_id);
      if (m->message_id.empty() || m->message_id.size() > of::kMaxMessageIdLen) {
        problem("messages", plan, seq, k, "message_id length " + std::to_string(m->message_id.size()));
      } else {
        auto idv = s_.get(OutboxTable::kMsgIds, of::msgid_key(plan, m->message_id));
        if (!idv.is_ok()) {
          problem("messages", plan, seq, k, "msgids lookup failed: " + idv.status().message());
        } else if (!*idv) {
          problem("messages", plan, seq, k, "no msgids entry for message_id " + printable(m->message_id));
        } else if ((*idv)->size() != 8 || of::get_be64((*idv)->data()) != seq) {
          problem("messages", plan, seq, k,
                  "msgids entry for message_id " + printable(m->message_id) + " points at seq " +
                      ((*idv)->size() == 8 ? std::to_string(of::get_be64((*idv)->data())) : "<malformed>"));
        }
      }
      if (m->pending_id == 0 && !untracked_) {
        // Appended without MongoDB, and no backfill is due: neither pending,
        // nor flushed, nor a dead letter — MongoDB will never get it.
        problem("messages", plan, seq, k,
                "never queued for MongoDB: no pending entry, not flushed, not a dead letter (pending_id 0 and "
                "no backfill due)");
      }
      if (m->pending_id != 0) {
        auto pv = s_.get(OutboxTable::kPending, of::pending_key(m->pending_id));
        if (pv.is_ok() && *pv) {
          auto p = of::parse_pending_value(**pv);
          if (p.is_ok() && (p->kind != PendingKind::kMessage || p->plan_id != plan || p->number != seq)) {
            problem("messages", plan, seq, k,
                    "its pending_id " + std::to_string(m->pending_id) + " names an entry for another item");
          }
        }
      }
      return true;
    });
  }

  // A decoded envelope must name the key's plan and seq (and message_id).
  void check_envelope(std::string_view table, std::string_view plan, uint64_t seq, std::string_view k,
                      std::string_view bytes, std::optional<std::string_view> message_id) {
    auto e = decode_envelope(bytes, kStoredJson);
    if (!e.is_ok()) {
      problem(table, plan, seq, k, "envelope does not decode: " + e.status().message());
      return;
    }
    if (e->plan_id != plan) problem(table, plan, seq, k, "envelope plan_id is " + printable(e->plan_id));
    if (e->seq != seq) problem(table, plan, seq, k, "envelope seq is " + std::to_string(e->seq));
    if (message_id && e->message_id != *message_id) {
      problem(
          table, plan, seq, k,
          "envelope message_id " + printable(e->message_id) + " differs from the value's " + printable(*message_id));
    }
  }

  Status check_msgids() {
    return s_.scan(OutboxTable::kMsgIds, {}, [&](std::string_view k, std::string_view v) {
      ++msgids_;
      of::Reader r(k, "msgids key");
      std::string_view plan;
      if (!r.str16(&plan) || r.rest().empty()) {
        problem("msgids", {}, {}, k, "malformed key (expected plan_id:str16 message_id)");
        return true;
      }
      std::string_view mid = r.rest();
      if (v.size() != 8) {
        problem("msgids", plan, {}, k, "value is " + std::to_string(v.size()) + " bytes, expected 8");
        return true;
      }
      uint64_t seq = of::get_be64(v.data());
      auto mv = s_.get(OutboxTable::kMessages, of::message_key(plan, seq));
      if (!mv.is_ok() || !*mv) {
        // Retention with MongoDB keeps the entries of what it pruned: a
        // prefix of the plan, below the first message it still holds.
        uint64_t first = 0;
        Status fs =
            s_.scan(OutboxTable::kMessages, of::message_key(plan, 0), [&](std::string_view mk, std::string_view) {
              uint64_t s = 0;
              if (of::parse_message_key(mk, plan, &s)) first = s;
              return false;
            });
        if (!fs.is_ok() || first == 0 || seq >= first) {
          problem("msgids", plan, seq, k, "message_id " + printable(mid) + " points at a missing message");
        }
        return true;
      }
      auto m = of::parse_message_value(**mv);
      if (m.is_ok() && m->message_id != mid) {
        problem("msgids", plan, seq, k,
                "message_id " + printable(mid) + " points at a message whose id is " + printable(m->message_id));
      }
      return true;
    });
  }

  Status check_plans() {
    return s_.scan(OutboxTable::kPlans, {}, [&](std::string_view k, std::string_view v) {
      ++plan_records_;
      auto p = decode_plan(v);
      if (!p.is_ok()) {
        problem("plans", k, {}, k, "plan record does not decode: " + p.status().message());
        return true;
      }
      if (p->plan_id != k) problem("plans", k, {}, k, "record's plan_id is " + printable(p->plan_id));
      if (p->version == 0) problem("plans", k, {}, k, "version 0 (versions start at 1)");
      plan_versions_[std::string(k)] = p->version;
      auto it = plans_.find(std::string(k));
      uint64_t highest = it == plans_.end() ? 0 : it->second.last;
      if (p->last_seq > highest) {
        problem(
            "plans", k, {}, k,
            "last_seq " + std::to_string(p->last_seq) + " is above the highest stored seq " + std::to_string(highest));
      }
      int64_t created = 0;
      if (!parse_rfc3339_ms(p->created_at, &created)) created = 0;
      auto u = s_.get(OutboxTable::kUserPlans, of::user_plans_key(p->user_id, created, p->plan_id));
      if (u.is_ok() && !*u) problem("plans", k, {}, k, "no user_plans entry for user " + printable(p->user_id));
      return true;
    });
  }

  // Validates one pending value (in "pending" or inside a dead letter).
  void check_pending_value(std::string_view table, std::string_view k, std::string_view v, bool must_inline,
                           std::map<std::string, uint64_t>* last_version) {
    auto p = of::parse_pending_value(v);
    if (!p.is_ok()) {
      problem(table, {}, {}, k, "value does not parse: " + p.status().message());
      return;
    }
    bool is_inline = (p->flags & of::kInline) != 0;
    if (must_inline && !is_inline) problem(table, p->plan_id, {}, k, "entry is not inline");
    if (p->kind == PendingKind::kMessage) {
      uint64_t seq = p->number;
      auto mv = s_.get(OutboxTable::kMessages, of::message_key(p->plan_id, seq));
      if (!is_inline) {
        if (!mv.is_ok() || !*mv) {
          problem(table, p->plan_id, seq, k, "points at a missing message");
        }
      } else {
        check_envelope(table, p->plan_id, seq, k, p->payload, std::nullopt);
      }
      return;
    }
    auto rec = decode_plan(p->payload);
    if (!rec.is_ok()) {
      problem(table, p->plan_id, {}, k, "plan record does not decode: " + rec.status().message());
      return;
    }
    if (rec->plan_id != p->plan_id) problem(table, p->plan_id, {}, k, "record's plan_id is " + rec->plan_id);
    if (rec->version != p->number) {
      problem(table, p->plan_id, {}, k,
              "entry says version " + std::to_string(p->number) + ", record says " + std::to_string(rec->version));
    }
    auto stored = plan_versions_.find(std::string(p->plan_id));
    if (stored == plan_versions_.end()) {
      problem(table, p->plan_id, {}, k, "plan record version " + std::to_string(p->number) + " of an unknown plan");
    } else if (p->number > stored->second) {
      problem(table, p->plan_id, {}, k,
              "version " + std::to_string(p->number) + " is newer than the stored record's " +
                  std::to_string(stored->second));
    }
    if (last_version) {
      auto [it, fresh] = last_version->emplace(std::string(p->plan_id), p->number);
      if (!fresh) {
        if (p->number <= it->second) {
          problem(table, p->plan_id, {}, k,
                  "plan versions not increasing in append order: " + std::to_string(it->second) + " then " +
                      std::to_string(p->number));
        }
        it->second = p->number;
      }
    }
  }

  void check_id(std::string_view table, std::string_view k) {
    if (k.size() != 8) {
      problem(table, {}, {}, k, "key is " + std::to_string(k.size()) + " bytes, expected 8");
      return;
    }
    uint64_t id = of::get_be64(k.data());
    if (id == 0) problem(table, {}, {}, k, "id 0");
    if (next_pending_id_ && id >= *next_pending_id_) {
      problem(table, {}, {}, k,
              "id " + std::to_string(id) + " is not below next_pending_id " + std::to_string(*next_pending_id_));
    }
  }

  Status check_pending() {
    std::map<std::string, uint64_t> last_version;
    return s_.scan(OutboxTable::kPending, {}, [&](std::string_view k, std::string_view v) {
      ++pending_;
      check_id("pending", k);
      check_pending_value("pending", k, v, false, &last_version);
      return true;
    });
  }

  Status check_user_plans() {
    return s_.scan(OutboxTable::kUserPlans, {}, [&](std::string_view k, std::string_view) {
      ++user_plans_;
      of::Reader r(k, "user_plans key");
      std::string_view user;
      uint64_t inv = 0;
      if (!r.str16(&user) || !r.be64(&inv) || r.rest().empty()) {
        problem("user_plans", {}, {}, k, "malformed key (expected user_id:str16 inv_created_ms:be64 plan_id)");
        return true;
      }
      std::string_view plan = r.rest();
      auto pv = s_.get(OutboxTable::kPlans, plan);
      if (!pv.is_ok() || !*pv) {
        problem("user_plans", plan, {}, k, "entry for a missing plan record");
        return true;
      }
      auto p = decode_plan(**pv);
      if (p.is_ok() && p->user_id != user) {
        problem("user_plans", plan, {}, k,
                "entry for user " + printable(user) + " but the plan's user is " + printable(p->user_id));
      }
      return true;
    });
  }

  Status check_dead() {
    return s_.scan(OutboxTable::kDead, {}, [&](std::string_view k, std::string_view v) {
      ++dead_;
      check_id("dead", k);
      auto d = of::parse_dead_value(v);
      if (!d.is_ok()) {
        problem("dead", {}, {}, k, "value does not parse: " + d.status().message());
        return true;
      }
      check_pending_value("dead", k, d->pending, true, nullptr);
      return true;
    });
  }

  const OutboxSnapshot& s_;
  size_t max_print_;
  uint64_t problems_ = 0;
  std::optional<uint64_t> next_pending_id_;
  bool untracked_ = false;  // meta "untracked": messages with pending_id 0 await a backfill
  std::map<std::string, PlanMessages> plans_;
  std::map<std::string, uint64_t> plan_versions_;
  uint64_t messages_ = 0, msgids_ = 0, plan_records_ = 0, pending_ = 0, user_plans_ = 0, dead_ = 0;
};

}  // namespace

int run_verify(const VerifyOptions& o) {
  int exit = kExitOk;
  auto reader = open_read_only(o.dir, &exit);
  if (!reader) return exit;
  auto snap = reader->snapshot();
  if (!snap.is_ok()) return report_error("verify", snap.status(), exit_code(snap.status()));
  Verifier v(**snap, o.max_problems);
  Status st = v.run();
  if (!st.is_ok()) return report_error("verify: LMDB failed while reading", st, exit_code(st));
  if (v.problems() > o.max_problems) {
    std::cout << "... " << (v.problems() - o.max_problems) << " more problems not shown\n";
  }
  v.summary(std::cout);
  if (v.problems() > 0) {
    std::cout << "verify: FAILED, " << v.problems() << " problem" << (v.problems() == 1 ? "" : "s") << " in " << o.dir
              << "\n";
    return kExitFailed;
  }
  std::cout << "verify: OK, every invariant holds in " << o.dir << "\n";
  return kExitOk;
}

}  // namespace agentd::tool
