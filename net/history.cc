#include "net/history.h"

#include <algorithm>
#include <unordered_map>

namespace agentd::net {

namespace {

// `to` == 0: the end of the range is not known here (the outbox holds
// nothing of the plan and its record's last_seq is not past `from`).
Status pruned_unavailable(std::string_view plan_id, uint64_t from, uint64_t to, const Status& cause) {
  std::string range =
      to >= from ? std::to_string(from) + ".." + std::to_string(to) : "from " + std::to_string(from) + " on";
  return unavailable("messages " + range + " of plan " + std::string(plan_id) +
                     " were pruned from the outbox and MongoDB is unreachable: " + cause.message());
}

}  // namespace

Result<std::vector<StoredMessage>> MergedReader::read_messages(std::string_view plan_id, uint64_t after_seq,
                                                               size_t limit, ReadNote* note) {
  if (remote_) {
    // A plan whose record the outbox does not hold is another instance's (or
    // one this instance finished and pruned: the cluster says "self").
    auto p = log_.get_plan(plan_id);
    if (!p) return p.status();
    if (!p->has_value()) return remote_->read_messages(plan_id, after_seq, limit, note);
  }
  return read_local(plan_id, after_seq, limit);
}

Result<std::vector<StoredMessage>> MergedReader::read_local(std::string_view plan_id, uint64_t after_seq,
                                                            size_t limit) {
  // A prune between our first_seq() and the outbox read shows up as a hole;
  // the second attempt then sees the new first_seq.
  for (int attempt = 0;; ++attempt) {
    bool retry = false;
    auto r = read_once(plan_id, after_seq, limit, &retry);
    if (!retry || attempt == 2) return r;
  }
}

Result<std::vector<StoredMessage>> MergedReader::read_once(std::string_view plan_id, uint64_t after_seq, size_t limit,
                                                           bool* retry) {
  std::vector<StoredMessage> out;
  if (limit == 0) return out;
  uint64_t first = 1;
  if (first_seq_) {
    auto f = first_seq_(plan_id);
    if (!f) return f.status();
    first = *f;
  }
  uint64_t next = after_seq + 1;
  if (history_ && (first == 0 || next < first)) {
    // Some or all of what is wanted lives only in MongoDB.
    size_t want = first == 0 ? limit : static_cast<size_t>(std::min<uint64_t>(limit, first - next));
    Result<std::vector<StoredMessage>> h = unavailable("last ping failed");
    if (up()) {
      h = history_->read_messages(plan_id, after_seq, want);
    } else if (first == 0) {
      // Nothing in the outbox and MongoDB down: a plan whose record says it
      // never had a message past after_seq has nothing to miss. (The record's
      // last_seq is a lower bound: appends without a record do not move it.)
      auto p = log_.get_plan(plan_id);
      if (p && p->has_value() && (*p)->last_seq <= after_seq) return out;
    }
    if (!h) {
      uint64_t to = first - 1;  // first == 0: up to the record's last_seq, if it says more
      if (first == 0) {
        auto p = log_.get_plan(plan_id);
        to = p && p->has_value() ? (*p)->last_seq : 0;
      }
      return pruned_unavailable(plan_id, next, to, h.status());
    }
    for (auto& m : *h) {
      if (m.seq != next) {
        return unavailable("MongoDB is missing message " + std::to_string(next) + " of plan " + std::string(plan_id) +
                           " (next there is " + std::to_string(m.seq) + ")");
      }
      out.push_back(std::move(m));
      ++next;
    }
    if (out.size() == limit) return out;
    if (first == 0) {
      // The outbox holds nothing of this plan (yet): MongoDB's answer is it,
      // unless messages were appended since.
      auto o = log_.read_messages(plan_id, next - 1, limit - out.size());
      if (!o) return o.status();
      if (!o->empty() && o->front().seq != next) {
        *retry = true;
        return pruned_unavailable(plan_id, next, o->front().seq - 1, unavailable("raced with pruning"));
      }
      for (auto& m : *o) out.push_back(std::move(m));
      return out;
    }
    if (next < first) {
      return pruned_unavailable(plan_id, next, first - 1, unavailable("MongoDB returned fewer messages than pruned"));
    }
  }
  auto o = log_.read_messages(plan_id, next - 1, limit - out.size());
  if (!o) return o.status();
  if (!o->empty() && o->front().seq != next) {
    // Pruned under us (or pruned with no MongoDB configured).
    if (history_) *retry = true;
    if (history_ || next > 1) {
      return pruned_unavailable(plan_id, next, o->front().seq - 1, unavailable("pruned while reading"));
    }
  }
  for (auto& m : *o) out.push_back(std::move(m));
  return out;
}

Result<std::optional<PlanRecord>> MergedReader::get_plan(std::string_view plan_id, ReadNote* note) {
  auto p = log_.get_plan(plan_id);
  if (!p) return p.status();
  if (p->has_value()) return p;
  if (remote_) return remote_->get_plan(plan_id, note);
  if (!history_ || !up()) return p;
  return history_->get_plan(plan_id);
}

Result<std::vector<PlanRecord>> MergedReader::list_plans(std::string_view user_id, size_t limit) {
  auto local = log_.list_plans(user_id, limit);
  if (!local) return local.status();
  if (!history_ || !up()) return local;
  auto remote = history_->list_plans(user_id, limit);
  if (!remote) return local;  // MongoDB down: the outbox's plans are still right
  std::vector<PlanRecord> peers;
  if (remote_) {
    auto pp = remote_->peer_plans(user_id, limit);
    if (pp) peers = std::move(*pp);
  }
  std::unordered_map<std::string, PlanRecord> by_id;
  for (auto* list : {&*local, &*remote, &peers}) {
    for (auto& p : *list) {
      auto it = by_id.find(p.plan_id);
      if (it == by_id.end() || it->second.version < p.version) by_id[p.plan_id] = std::move(p);
    }
  }
  std::vector<PlanRecord> out;
  out.reserve(by_id.size());
  for (auto& [id, p] : by_id) out.push_back(std::move(p));
  std::sort(out.begin(), out.end(), [](const PlanRecord& a, const PlanRecord& b) {
    return a.created_at != b.created_at ? a.created_at > b.created_at : a.plan_id > b.plan_id;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace agentd::net
