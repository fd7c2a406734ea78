// Relays: live frames of foreign plans (several instances, net/cluster.h).
//
// A client that streams a plan another instance owns subscribes to this
// instance's hub as for any plan (net/plan_stream.h); watch() makes sure
// something feeds the hub: one Relay per plan, shared by every local stream
// of it, alive while one of them holds its handle.
//
// A Relay is a WebSocket client of the owner's own socket route
// (/api/v3/socket/{plan_id}?after_seq=N, with the cluster secret and the
// plan's user): the owner's stream resumes from a seq with no gap and no
// duplicate, so the relay publishes each frame it reads into the hub in
// order (persisted frames as committed messages, live-only frames as live
// ones). When the owner cannot be reached it tails MongoDB (seq > last,
// every `poll`) and keeps reconnecting with backoff; reconnected, it
// continues from the last seq it published. PlanStream ignores seqs it has
// queued and reads any gap from the merged read, so a relay that starts late
// or repeats itself costs work, never a gap or a duplicate.
//
// Threads: watch() from any strand; a Relay's state lives on its own strand;
// blocking work (owner lookup, MongoDB tail) on the server's read pool.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include "core/metrics.h"
#include "core/thread_annotations.h"

namespace agentd::net {

struct ServerState;
class Cluster;
class Relay;

class Relays {
 public:
  Relays(ServerState& st, Cluster& cluster, boost::asio::any_io_executor ex, MetricsRegistry& metrics);
  ~Relays();

  // A handle that keeps plan `plan_id`'s relay running; null when this
  // instance's outbox holds the plan (the outbox feeds the hub). Any thread.
  std::shared_ptr<void> watch(const std::string& plan_id);

  std::chrono::milliseconds poll = std::chrono::milliseconds(500);
  std::chrono::milliseconds max_backoff = std::chrono::milliseconds(2000);

 private:
  friend class Relay;
  ServerState& st_;
  Cluster& cluster_;
  const boost::asio::any_io_executor ex_;
  Gauge& active_;
  Counter& reconnects_;
  Counter& relayed_;
  Counter& tailed_;
  Mutex mu_;
  std::unordered_map<std::string, std::weak_ptr<void>> handles_ GUARDED_BY(mu_);
};

}  // namespace agentd::net
