#include "net/resume_cursors.h"

namespace agentd::net {

std::string ResumeCursors::key(std::string_view user, std::string_view plan) {
  // A length prefix keeps ("a:b", "c") and ("a", "b:c") apart.
  std::string k = std::to_string(user.size());
  k += ':';
  k.append(user);
  k.append(plan);
  return k;
}

void ResumeCursors::put(std::string k, uint64_t seq, bool forward_only) {
  if (capacity_ == 0) return;
  auto now = Clock::now();
  std::lock_guard l(mu_);
  auto it = map_.find(k);
  if (it != map_.end()) {
    Entry& e = it->second;
    bool live = now - e.at < ttl_;
    if (!forward_only || !live || seq > e.seq) e.seq = seq;
    e.at = now;
    lru_.splice(lru_.begin(), lru_, e.lru);
    return;
  }
  while (map_.size() >= capacity_) {
    map_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(k);
  map_.emplace(std::move(k), Entry{seq, now, lru_.begin()});
}

void ResumeCursors::set(std::string_view user, std::string_view plan, uint64_t seq) {
  put(key(user, plan), seq, false);
}

void ResumeCursors::advance(std::string_view user, std::string_view plan, uint64_t seq) {
  put(key(user, plan), seq, true);
}

std::optional<uint64_t> ResumeCursors::get(std::string_view user, std::string_view plan) const {
  std::lock_guard l(mu_);
  auto it = map_.find(key(user, plan));
  if (it == map_.end() || Clock::now() - it->second.at >= ttl_) return std::nullopt;
  return it->second.seq;
}

size_t ResumeCursors::size() const {
  std::lock_guard l(mu_);
  return map_.size();
}

}  // namespace agentd::net
