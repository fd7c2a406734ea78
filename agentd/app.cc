#include "agentd/app.h"

#include <spdlog/spdlog.h>
#include <boost/asio/ip/address.hpp>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/clock.h"

namespace agentd {

namespace {

ExitCode parse_listen(const std::string& listen, boost::asio::ip::tcp::endpoint* ep) {
  std::string host;
  unsigned short port = 0;
  if (!split_host_port(listen, &host, &port)) {
    spdlog::error("--listen: expected HOST:PORT, got '{}'", listen);
    return kExitUsage;
  }
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    spdlog::error("--listen: '{}' is not an IP address: {}", host, ec.message());
    return kExitUsage;
  }
  *ep = {addr, port};
  return kExitOk;
}

}  // namespace

ExitCode App::create(Config cfg, std::unique_ptr<App>* out) {
  boost::asio::ip::tcp::endpoint listen;
  if (ExitCode c = parse_listen(cfg.listen, &listen); c != kExitOk) return c;
  if (cfg.instance_id.empty()) cfg.instance_id = default_instance_id(cfg.data_dir);
  std::error_code fs_ec;
  std::filesystem::create_directories(cfg.data_dir, fs_ec);
  if (fs_ec) {
    spdlog::error("--data-dir {}: cannot create: {}", cfg.data_dir, fs_ec.message());
    return kExitDataDir;
  }
  cfg.runtime.uploaded_teams_dir = cfg.data_dir + "/teams";
  std::unique_ptr<App> app(new App(std::move(cfg)));
  if (ExitCode c = app->open_outbox(); c != kExitOk) return c;
  if (ExitCode c = app->open_mongo(); c != kExitOk) return c;
  if (ExitCode c = app->open_cluster(); c != kExitOk) return c;
  // The runtime: teams, planner, agents (plans run on its own thread).
  auto runtime = RuntimeHost::create(app->cfg_.runtime, *app->outbox_, app->metrics_);
  if (!runtime) {
    spdlog::error("{}", runtime.status().to_string());
    return kExitUsage;
  }
  app->runtime_ = std::move(*runtime);
  if (ExitCode c = app->create_server(listen); c != kExitOk) return c;
  app->attach_observer();
  *out = std::move(app);
  return kExitOk;
}

ExitCode App::open_outbox() {
  OutboxOptions o;
  o.dir = cfg_.data_dir;
  o.track_pending = !cfg_.mongo_uri.empty();
  o.max_bytes = cfg_.outbox_max_bytes;
  o.flushed_retention = std::chrono::hours(cfg_.outbox_retention_hours);
  o.finished_plan_retention = std::chrono::hours(24) * cfg_.embedded_retention_days;
  o.prune_interval = std::chrono::seconds(cfg_.outbox_prune_interval_s);
  auto outbox = Outbox::open(o);
  if (!outbox) {
    spdlog::error("--data-dir {}: {}", cfg_.data_dir, outbox.status().to_string());
    return kExitDataDir;
  }
  outbox_ = std::move(*outbox);
  export_outbox_metrics(outbox_.get(), metrics_);
  return kExitOk;
}

// MongoDB reads for the API, and the flusher (its own thread); nothing
// without --mongo-uri (the embedded default).
ExitCode App::open_mongo() {
  MessageStoreOptions mopts;  // --write-concern is checked with or without --mongo-uri
  if (cfg_.write_concern == "majority") {
    mopts.write_concern.majority = true;
  } else {
    mopts.write_concern.majority = false;
    try {
      size_t used = 0;
      mopts.write_concern.w = std::stoi(cfg_.write_concern, &used);
      if (used != cfg_.write_concern.size()) mopts.write_concern.w = 0;
    } catch (...) {
      mopts.write_concern.w = 0;
    }
    if (mopts.write_concern.w < 1) {
      spdlog::error("--write-concern: expected a number >= 1 or 'majority' (tag names are not supported), got '{}'",
                    cfg_.write_concern);
      return kExitUsage;
    }
  }
  mopts.write_concern.journal = cfg_.journal;
  if (cfg_.mongo_uri.empty()) return kExitOk;
  if (!cfg_.cluster_secret_file.empty()) mopts.owner = cfg_.instance_id;  // plans carry their owner
  auto pool = MongoPool::open(cfg_.mongo_uri);
  if (!pool) {
    spdlog::error("--mongo-uri: {}", pool.status().to_string());
    return kExitUsage;
  }
  mongo_pool_ = std::move(*pool);
  message_store_ = std::make_unique<MessageStore>(mongo_pool_.get(), mopts);
  // One write with the flusher's write concern before anything depends on
  // it: a server that refuses it stops agentd here, rather than every flush
  // failing later. Unreachable: the flusher finds out (it retries).
  if (WriteStatus probe = message_store_->probe_write_concern(now_unix_ms()); !probe.is_ok()) {
    const MongoFailure& f = probe.failure();
    if (write_concern_refused(f)) {
      spdlog::error(
          "--write-concern {} --journal {}: MongoDB refuses this write concern {} ({}). A standalone server takes "
          "'majority' or 1, and j:true only with journaling (--journal false otherwise); a replica set takes w up "
          "to its data-bearing members",
          cfg_.write_concern, cfg_.journal ? "true" : "false", describe(mopts.write_concern), f.message);
      return kExitUsage;
    }
    spdlog::warn("MongoDB: write concern {} not checked at start ({}: {}); the flusher retries",
                 describe(mopts.write_concern), f.reason, f.message);
  }
  history_ = std::make_unique<StoreHistoryReader>(message_store_.get());
  FlusherOptions fopts;
  fopts.max_batch_count = cfg_.flush_batch;
  fopts.backoff_cap = std::chrono::milliseconds(cfg_.flush_backoff_max_ms);
  flusher_ = std::make_unique<Flusher>(outbox_.get(), message_store_.get(), &metrics_, fopts);
  return kExitOk;
}

namespace {

Result<std::unique_ptr<net::Cluster>> make_cluster(const Config& cfg, Outbox* ob, MessageStore* store,
                                                   net::HistoryReader* history, MetricsRegistry& metrics) {
  if (!store) return invalid_argument("--cluster-secret-file: several instances need --mongo-uri");
  std::ifstream in(cfg.cluster_secret_file);
  if (!in) return invalid_argument("--cluster-secret-file " + cfg.cluster_secret_file + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string secret = ss.str();
  while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
  if (secret.size() < 16) {
    return invalid_argument("--cluster-secret-file " + cfg.cluster_secret_file +
                            ": the secret must be at least 16 characters");
  }
  net::ClusterConfig cc;
  cc.instance_id = cfg.instance_id;
  cc.secret = std::move(secret);
  cc.heartbeat = std::chrono::milliseconds(cfg.cluster_heartbeat_ms);
  cc.stale_after = std::chrono::milliseconds(cfg.cluster_stale_ms);
  cc.advertise_url = cfg.advertise_url.empty() ? "http://" + cfg.listen : cfg.advertise_url;
  auto hp = net::parse_peer_url(cc.advertise_url);
  if (!hp) return invalid_argument("--advertise-url: " + hp.status().message());
  if (hp->first == "0.0.0.0" || hp->first == "[::]" || hp->first == "::" || hp->second == "0") {
    return invalid_argument("--advertise-url: '" + cc.advertise_url +
                            "' is not an address peers can reach; set --advertise-url");
  }
  return std::make_unique<net::Cluster>(std::move(cc), ob, store, history, metrics);
}

}  // namespace

ExitCode App::open_cluster() {
  if (cfg_.cluster_secret_file.empty()) return kExitOk;
  auto c = make_cluster(cfg_, outbox_.get(), message_store_.get(), history_.get(), metrics_);
  if (!c) {
    spdlog::error("{}", c.status().message());
    return kExitUsage;
  }
  cluster_ = std::move(*c);
  return kExitOk;
}

ExitCode App::create_server(const boost::asio::ip::tcp::endpoint& listen) {
  net::ServerConfig scfg;
  scfg.listen = listen;
  scfg.threads = cfg_.threads;
  scfg.web_dir = cfg_.web_dir;
  scfg.auth = *net::parse_auth_mode(cfg_.auth);
  scfg.auth_token_file = cfg_.auth_token_file;
  scfg.cors_origins = split_csv(cfg_.cors_origins);
  scfg.max_body_bytes = cfg_.max_body_bytes;
  scfg.max_connections = cfg_.max_connections;
  scfg.ws_max_per_plan = cfg_.ws_max_per_plan;
  scfg.ws_queue_frames = cfg_.ws_queue_frames;
  scfg.header_timeout = std::chrono::milliseconds(cfg_.header_timeout_ms);
  scfg.ws_idle_timeout = std::chrono::milliseconds(cfg_.ws_idle_timeout_ms);
  scfg.sse_keepalive = std::chrono::milliseconds(cfg_.sse_keepalive_ms);
  Outbox* ob = outbox_.get();
  net::ServerDeps deps;
  deps.log = ob;
  deps.first_seq = [ob](std::string_view plan_id) { return ob->first_seq(plan_id); };
  deps.history = history_.get();
  deps.plans = &runtime_->runtime();
  deps.metrics = &metrics_;
  deps.outbox_ready = [ob]() { return ob->writable(); };
  deps.dead_letters = [ob]() -> Result<uint64_t> {
    auto s = ob->stats();
    if (!s) return s.status();
    return s->dead_letters;
  };
  if (flusher_) {
    // The flusher pings MongoDB while idle or down, so this is current.
    deps.mongo_ready = [fl = flusher_.get()]() {
      return fl->mongo_up() ? Status::ok() : unavailable("MongoDB unreachable (the outbox holds the backlog)");
    };
  }
  deps.cluster = cluster_.get();
  auto server = net::Server::create(scfg, std::move(deps));
  if (!server) {
    spdlog::error("{}", server.status().to_string());
    return server.status().code() == Code::kUnavailable ? kExitListen : kExitUsage;
  }
  server_ = std::move(*server);
  return kExitOk;
}

void App::attach_observer() {
  outbox_->set_observer([fanout = server_->commit_observer(), &appended = appended_messages_counter(metrics_),
                         fl = flusher_.get()](const std::vector<CommittedMessage>& batch) {
    appended.inc(batch.size());
    fanout(batch);
    if (fl) fl->notify();
  });
}

ExitCode App::start() {
  started_ = true;
  if (flusher_) flusher_->start();
  if (Status st = runtime_->start(); !st.is_ok()) {
    spdlog::error("runtime start: {}", st.to_string());
    return kExitDataDir;
  }
  server_->start();
  if (cluster_) {
    cluster_->start();
    spdlog::info("cluster: instance {} at {}", cluster_->config().instance_id, cluster_->config().advertise_url);
  }
  auto ep = server_->local_endpoint();
  spdlog::info("agentd listening on http://{}:{} (data {}, {}, auth {})", ep.address().to_string(), ep.port(),
               cfg_.data_dir, cfg_.mongo_uri.empty() ? "embedded default: no MongoDB" : "MongoDB configured",
               cfg_.auth);
  return kExitOk;
}

void App::stop() {
  if (stopped_) return;
  stopped_ = true;
  outbox_->set_observer(nullptr);
  if (!started_) return;
  if (cluster_) cluster_->stop();  // peers stop routing here
  server_->stop(std::chrono::milliseconds(cfg_.shutdown_timeout_ms));
  runtime_->stop(std::chrono::milliseconds(2000));
  if (flusher_) {
    Status drained = flusher_->stop(std::chrono::milliseconds(cfg_.flush_drain_timeout_ms));
    if (drained.is_ok()) {
      spdlog::info("flusher: everything pending reached MongoDB");
    } else {
      spdlog::warn("flusher: {} (kept in the outbox; flushed at the next start)", drained.message());
    }
  }
  outbox_->wait_idle();
}

App::~App() {
  // A create() that failed half-way destroys a partly built App: the parts
  // built so far have started nothing.
  if (outbox_) stop();
}

}  // namespace agentd
