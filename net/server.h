// Server: the HTTP + WebSocket front of agentd, ready to wire in main.
//
//   auto server = net::Server::create(cfg, deps);   // binds (kUnavailable: port taken)
//   outbox->set_observer(server->commit_observer()); // before the first append
//   server->start();                                 // cfg.threads io_context threads
//   ... wait for SIGTERM/SIGINT ...
//   server->stop(deadline);  // stop accepting, finish in-flight requests,
//                            // close WebSockets with 1001, join threads
//
// deps' pointers must outlive the Server. With deps.plans set, the server
// installs its live sink (streaming chunks -> hub, never persisted).
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "core/message_log.h"
#include "core/status.h"
#include "net/config.h"
#include "net/state.h"

namespace agentd::net {

class Listener;

class Server {
 public:
  static Result<std::unique_ptr<Server>> create(ServerConfig cfg, ServerDeps deps);
  ~Server();  // stop(0) if still running

  // The outbox's commit observer: live fan-out of every committed message.
  CommitObserver commit_observer();
  Hub& hub() { return state_->hub; }
  ServerState& state() { return *state_; }

  void start();
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Graceful stop, at most `deadline` for in-flight requests and closes;
  // joins the io_context threads and the read pool. The io_context lives
  // on (until ~Server), so a completion posted to it later only queues.
  void stop(std::chrono::milliseconds deadline);

 private:
  Server() = default;
  std::unique_ptr<ServerState> state_;
  boost::asio::io_context ioc_;
  std::shared_ptr<Listener> listener_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

}  // namespace agentd::net
