#include "net/hub.h"

#include <algorithm>
#include <cassert>

namespace agentd::net {

Status Hub::subscribe(const std::string& plan_id, const std::shared_ptr<Subscriber>& s) {
  MutexLock lock(&mu_);
  List& list = plans_[plan_id];
  // Drop entries whose subscriber died without unsubscribing.
  auto dead = std::remove_if(list.begin(), list.end(), [](const auto& w) { return w.expired(); });
  total_ -= static_cast<size_t>(list.end() - dead);
  list.erase(dead, list.end());
  if (list.size() >= max_per_plan_) {
    return unavailable("plan " + plan_id + " already has " + std::to_string(list.size()) +
                       " WebSocket subscribers (the configured maximum)");
  }
  list.push_back(s);
  ++total_;
  return Status::ok();
}

void Hub::unsubscribe(const std::string& plan_id, const Subscriber* s) {
  MutexLock lock(&mu_);
  auto it = plans_.find(plan_id);
  if (it == plans_.end()) return;
  List& list = it->second;
  auto end = std::remove_if(list.begin(), list.end(), [s](const auto& w) {
    auto p = w.lock();
    return !p || p.get() == s;
  });
  total_ -= static_cast<size_t>(list.end() - end);
  list.erase(end, list.end());
  if (list.empty()) plans_.erase(it);
}

std::vector<std::shared_ptr<Subscriber>> Hub::snapshot(const std::string& plan_id) const {
  List copy;
  {
    MutexLock lock(&mu_);
    auto it = plans_.find(plan_id);
    if (it == plans_.end()) return {};
    copy = it->second;
  }
  // Promote outside the lock: a subscriber's destructor may unsubscribe.
  std::vector<std::shared_ptr<Subscriber>> out;
  out.reserve(copy.size());
  for (auto& w : copy) {
    if (auto p = w.lock()) out.push_back(std::move(p));
  }
  return out;
}

void Hub::publish(const std::vector<CommittedMessage>& batch) {
  size_t i = 0;
  while (i < batch.size()) {
    // One snapshot per run of messages of the same plan.
    size_t j = i + 1;
    while (j < batch.size() && batch[j].plan_id == batch[i].plan_id) ++j;
    auto subs = snapshot(batch[i].plan_id);
    for (size_t k = i; k < j; ++k) {
      // Invariant: committed messages carry a seq and their bytes.
      assert(batch[k].seq > 0 && batch[k].bytes);
      Frame f{batch[k].seq, batch[k].bytes};
      for (auto& s : subs) s->deliver(f);
    }
    i = j;
  }
}

void Hub::publish_live(const std::string& plan_id, std::shared_ptr<const std::string> frame) {
  auto subs = snapshot(plan_id);
  Frame f{0, std::move(frame)};
  for (auto& s : subs) s->deliver(f);
}

size_t Hub::subscribers(const std::string& plan_id) const {
  MutexLock lock(&mu_);
  auto it = plans_.find(plan_id);
  return it == plans_.end() ? 0 : it->second.size();
}

size_t Hub::total_subscribers() const {
  MutexLock lock(&mu_);
  return total_;
}

}  // namespace agentd::net
