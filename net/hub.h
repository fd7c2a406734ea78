// Hub: per-plan live fan-out (style.md 11). Fed by the outbox's commit
// observer (every committed message, whoever appended it) and by the
// runtime's live sink (streaming chunks, never persisted).
//
// publish() encodes nothing: the committed bytes are already a shared
// immutable string. It copies the plan's subscriber list (weak pointers)
// under the lock and delivers outside it, so a subscriber may subscribe,
// unsubscribe or be destroyed concurrently. Subscriber::deliver is called on
// the publisher's thread (often the outbox writer): it must only enqueue.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/message_log.h"
#include "core/status.h"
#include "core/thread_annotations.h"

namespace agentd::net {

// One frame for a subscriber: seq > 0 for persisted messages, 0 for live-only.
struct Frame {
  uint64_t seq = 0;
  std::shared_ptr<const std::string> bytes;
};

class Subscriber {
 public:
  virtual ~Subscriber() = default;
  // Called on any thread; must not block and must not call back into the hub.
  virtual void deliver(const Frame& frame) = 0;
};

class Hub {
 public:
  explicit Hub(size_t max_per_plan) : max_per_plan_(max_per_plan) {}

  // kUnavailable when the plan already has max_per_plan subscribers.
  Status subscribe(const std::string& plan_id, const std::shared_ptr<Subscriber>& s) EXCLUDES(mu_);
  void unsubscribe(const std::string& plan_id, const Subscriber* s) EXCLUDES(mu_);

  // The outbox commit observer: messages in seq order per plan. Delivers
  // outside the lock.
  void publish(const std::vector<CommittedMessage>& batch) EXCLUDES(mu_);
  void publish_live(const std::string& plan_id, std::shared_ptr<const std::string> frame) EXCLUDES(mu_);

  size_t subscribers(const std::string& plan_id) const EXCLUDES(mu_);
  size_t total_subscribers() const EXCLUDES(mu_);

 private:
  using List = std::vector<std::weak_ptr<Subscriber>>;
  // Copies the plan's live subscribers; empty if none.
  std::vector<std::shared_ptr<Subscriber>> snapshot(const std::string& plan_id) const EXCLUDES(mu_);

  const size_t max_per_plan_;
  mutable Mutex mu_;
  std::unordered_map<std::string, List> plans_ GUARDED_BY(mu_);
  size_t total_ GUARDED_BY(mu_) = 0;
};

}  // namespace agentd::net
