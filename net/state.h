// ServerState: what every session and handler shares (Beast's shared_state).
// Owned by Server; outlives every session (Server::stop waits for them).
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <unordered_map>

#include "core/message_log.h"
#include "core/metrics.h"
#include "core/plan_service.h"
#include "core/thread_annotations.h"
#include "net/auth.h"
#include "net/config.h"
#include "net/history.h"
#include "net/hub.h"
#include "net/net_metrics.h"
#include "net/origin.h"
#include "net/relay.h"
#include "net/resume_cursors.h"

namespace agentd::net {

class Cluster;

// A session the server can ask to wind down (from any thread).
class Closable {
 public:
  virtual ~Closable() = default;
  // HTTP: finish the in-flight request, then close. WebSocket: close 1001.
  virtual void shutdown() = 0;
};

// Live sessions, for graceful shutdown.
class SessionRegistry {
 public:
  void add(const std::shared_ptr<Closable>& s) EXCLUDES(mu_);
  void remove(const Closable* s) EXCLUDES(mu_);
  size_t size() const EXCLUDES(mu_);
  // Calls shutdown() on every live session (outside the lock).
  void shutdown_all() EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  std::unordered_map<const Closable*, std::weak_ptr<Closable>> sessions_ GUARDED_BY(mu_);
};

struct ServerDeps {
  MessageLog* log = nullptr;  // required: appends and reads
  // Lowest seq the outbox still holds for a plan (Outbox::first_seq); null
  // when nothing is ever pruned.
  std::function<Result<uint64_t>(std::string_view)> first_seq;
  HistoryReader* history = nullptr;      // MongoDB reads; null = embedded default
  PlanService* plans = nullptr;          // null -> 503 "runtime not configured"
  MetricsRegistry* metrics = nullptr;    // required
  std::function<Status()> outbox_ready;  // /readyz fails when not ok
  std::function<Status()> mongo_ready;   // /readyz reports it (never fails on it); null = not configured
  // Messages or plan records MongoDB rejected, kept in the outbox; /readyz
  // reports the count (never fails on it). Null = not configured.
  std::function<Result<uint64_t>()> dead_letters;
  // Several instances on one MongoDB (net/cluster.h); null = one instance.
  // Requires `history`.
  Cluster* cluster = nullptr;
};

struct ServerState {
  ServerState(ServerConfig c, Auth a, ServerDeps d)
      : cfg(std::move(c)),
        auth(std::move(a)),
        origins(cfg.cors_origins),
        deps(std::move(d)),
        hub(cfg.ws_max_per_plan),
        reader(*deps.log, deps.first_seq, deps.history,
               deps.mongo_ready ? std::function<bool()>([f = deps.mongo_ready] { return f().is_ok(); })
                                : std::function<bool()>()),
        metrics(*deps.metrics),
        read_pool(cfg.read_threads == 0 ? 1 : cfg.read_threads) {}

  // Runs `read` where blocking is allowed (the read pool when MongoDB may be
  // asked, else inline) and hands its result to `done` there; callers post
  // back to their strand inside `done`.
  template <typename Read, typename Done>
  void run_read(Read read, Done done) {
    if (!reader.has_history()) return done(read());
    boost::asio::post(read_pool, [read = std::move(read), done = std::move(done)]() mutable { done(read()); });
  }

  const ServerConfig cfg;
  const Auth auth;
  const OriginPolicy origins;  // cfg.cors_origins
  const ServerDeps deps;
  Hub hub;
  MergedReader reader;
  ResumeCursors cursors{100000, std::chrono::minutes(5)};
  NetMetrics metrics;
  boost::asio::thread_pool read_pool;
  SessionRegistry sessions;
  std::atomic<bool> stopping{false};
  std::atomic<size_t> connections{0};
  std::unique_ptr<Relays> relays;  // with deps.cluster: feeds the hub for foreign plans
};

}  // namespace agentd::net
