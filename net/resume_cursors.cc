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

ResumeCursors::Entry& ResumeCursors::entry(const std::string& k, uint64_t seq, Clock::time_point now, bool* fresh) {
  auto it = map_.find(k);
  if (it != map_.end()) {
    Entry& e = it->second;
    *fresh = now - e.at >= ttl_;  // expired: as good as new
    if (*fresh) e.seq = seq;
    e.at = now;
    lru_.splice(lru_.begin(), lru_, e.lru);
    return e;
  }
  while (!map_.empty() && map_.size() >= capacity_) {
    map_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(k);
  *fresh = true;
  return map_.emplace(k, Entry{seq, 0, now, lru_.begin()}).first->second;
}

void ResumeCursors::set(std::string_view user, std::string_view plan, uint64_t seq) {
  if (capacity_ == 0) return;
  MutexLock l(&mu_);
  bool fresh = false;
  Entry& e = entry(key(user, plan), seq, Clock::now(), &fresh);
  e.seq = seq;
  e.generation = next_generation_++;
}

ResumeCursors::Ticket ResumeCursors::open(std::string_view user, std::string_view plan, uint64_t live_seq) {
  if (capacity_ == 0) return Ticket{live_seq, 0};
  MutexLock l(&mu_);
  bool fresh = false;
  Entry& e = entry(key(user, plan), live_seq, Clock::now(), &fresh);
  if (fresh) e.generation = next_generation_++;
  return Ticket{e.seq, e.generation};
}

void ResumeCursors::advance(std::string_view user, std::string_view plan, uint64_t seq, const Ticket& t) {
  MutexLock l(&mu_);
  auto it = map_.find(key(user, plan));
  if (it == map_.end() || it->second.generation != t.generation) return;  // replaced (or dropped)
  Entry& e = it->second;
  if (seq > e.seq) e.seq = seq;
  e.at = Clock::now();
  lru_.splice(lru_.begin(), lru_, e.lru);
}

std::optional<uint64_t> ResumeCursors::get(std::string_view user, std::string_view plan) const {
  MutexLock l(&mu_);
  auto it = map_.find(key(user, plan));
  if (it == map_.end() || Clock::now() - it->second.at >= ttl_) return std::nullopt;
  return it->second.seq;
}

size_t ResumeCursors::size() const {
  MutexLock l(&mu_);
  return map_.size();
}

}  // namespace agentd::net
