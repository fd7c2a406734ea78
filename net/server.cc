#include "net/server.h"

#include <spdlog/spdlog.h>

#include "net/cluster.h"
#include "net/listener.h"

namespace agentd::net {

Result<std::unique_ptr<Server>> Server::create(ServerConfig cfg, ServerDeps deps) {
  if (!deps.log || !deps.metrics) return invalid_argument("net::Server needs a MessageLog and a MetricsRegistry");
  if (Status o = OriginPolicy::validate(cfg.cors_origins); !o.is_ok()) return o;
  if (deps.cluster && !deps.history) return invalid_argument("several instances need MongoDB (--mongo-uri)");
  auto auth = Auth::create(cfg.auth, cfg.auth_token_file, deps.cluster ? deps.cluster->config().secret : "");
  if (!auth) return auth.status();
  std::unique_ptr<Server> s(new Server());
  auto ep = cfg.listen;
  s->state_ = std::make_unique<ServerState>(std::move(cfg), std::move(*auth), std::move(deps));
  if (Cluster* c = s->state_->deps.cluster) {
    s->state_->reader.set_remote(c);
    s->state_->relays = std::make_unique<Relays>(*s->state_, *c, s->ioc_.get_executor(), *s->state_->deps.metrics);
  }
  auto l = Listener::create(s->ioc_, ep, *s->state_);
  if (!l) return l.status();
  s->listener_ = std::move(*l);
  if (s->state_->deps.plans) {
    Hub* hub = &s->state_->hub;
    s->state_->deps.plans->set_live_sink([hub](const std::string& plan_id, std::shared_ptr<const std::string> frame) {
      hub->publish_live(plan_id, std::move(frame));
    });
  }
  return s;
}

Server::~Server() {
  if (!threads_.empty() && !stopped_) stop(std::chrono::milliseconds(0));
  state_->read_pool.join();
}

CommitObserver Server::commit_observer() {
  Hub* hub = &state_->hub;
  return [hub](const std::vector<CommittedMessage>& batch) { hub->publish(batch); };
}

void Server::start() {
  listener_->run();
  unsigned n = state_->cfg.threads == 0 ? 1 : state_->cfg.threads;
  for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { ioc_.run(); });
}

boost::asio::ip::tcp::endpoint Server::local_endpoint() const { return listener_->local_endpoint(); }

void Server::stop(std::chrono::milliseconds deadline) {
  if (stopped_) return;
  stopped_ = true;
  state_->stopping.store(true);
  listener_->stop();
  state_->sessions.shutdown_all();
  auto until = std::chrono::steady_clock::now() + deadline;
  while (state_->sessions.size() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (size_t left = state_->sessions.size()) spdlog::warn("stop: {} connections still open at the deadline", left);
  ioc_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  // The reads still queued run now (their completions only queue on the
  // stopped io_context); after this nothing of the server calls out.
  state_->read_pool.join();
}

}  // namespace agentd::net
