#include "net/state.h"

#include <vector>

namespace agentd::net {

void SessionRegistry::add(const std::shared_ptr<Closable>& s) {
  MutexLock lock(&mu_);
  sessions_[s.get()] = s;
}

void SessionRegistry::remove(const Closable* s) {
  MutexLock lock(&mu_);
  sessions_.erase(s);
}

size_t SessionRegistry::size() const {
  MutexLock lock(&mu_);
  return sessions_.size();
}

void SessionRegistry::shutdown_all() {
  std::vector<std::shared_ptr<Closable>> live;
  {
    MutexLock lock(&mu_);
    for (auto& [k, w] : sessions_) {
      if (auto p = w.lock()) live.push_back(std::move(p));
    }
  }
  for (auto& s : live) s->shutdown();
}

}  // namespace agentd::net
