// agentd: flags and environment -> config, wiring, signals, graceful stop.
// Nothing else lives here: each layer is built in its own folder.
//
// Exit codes: 0 clean stop; 1 internal error; 2 bad flags; 3 data folder
// unusable (cannot create, locked by another agentd, bad format);
// 4 cannot listen.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "agentd/config.h"
#include "agentd/runtime_host.h"
#include "core/metrics.h"
#include "net/cluster.h"
#include "net/mongo_history.h"
#include "net/server.h"
#include "outbox/outbox.h"
#include "store/flusher.h"
#include "store/message_store.h"
#include "store/mongo.h"

namespace {

enum ExitCode { kExitOk = 0, kExitInternal = 1, kExitUsage = 2, kExitDataDir = 3, kExitListen = 4 };

int run(int argc, char** argv);

}  // namespace

// Exit codes: see ExitCode. An exception that escapes (a bug, or memory
// exhausted) is logged and ends agentd with 1; the outbox holds everything
// acknowledged, so a supervisor's restart loses nothing.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    spdlog::critical("agentd: internal error: {}", e.what());
  } catch (...) {
    spdlog::critical("agentd: internal error (unknown exception)");
  }
  return kExitInternal;
}

namespace {

// --cluster-secret-file and friends -> the cluster (docs/scale-out.md).
agentd::Result<std::unique_ptr<agentd::net::Cluster>> make_cluster(const agentd::Config& cfg, agentd::Outbox* ob,
                                                                   agentd::MessageStore* store,
                                                                   agentd::net::HistoryReader* history,
                                                                   agentd::MetricsRegistry& metrics) {
  if (!store) return agentd::invalid_argument("--cluster-secret-file: several instances need --mongo-uri");
  std::ifstream in(cfg.cluster_secret_file);
  if (!in) return agentd::invalid_argument("--cluster-secret-file " + cfg.cluster_secret_file + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string secret = ss.str();
  while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
  if (secret.size() < 16) {
    return agentd::invalid_argument("--cluster-secret-file " + cfg.cluster_secret_file +
                                    ": the secret must be at least 16 characters");
  }
  agentd::net::ClusterConfig cc;
  cc.instance_id = cfg.instance_id;
  cc.secret = std::move(secret);
  cc.heartbeat = std::chrono::milliseconds(cfg.cluster_heartbeat_ms);
  cc.stale_after = std::chrono::milliseconds(cfg.cluster_stale_ms);
  cc.advertise_url = cfg.advertise_url.empty() ? "http://" + cfg.listen : cfg.advertise_url;
  auto hp = agentd::net::parse_peer_url(cc.advertise_url);
  if (!hp) return agentd::invalid_argument("--advertise-url: " + hp.status().message());
  if (hp->first == "0.0.0.0" || hp->first == "[::]" || hp->first == "::" || hp->second == "0") {
    return agentd::invalid_argument("--advertise-url: '" + cc.advertise_url +
                                    "' is not an address peers can reach; set --advertise-url");
  }
  return std::make_unique<agentd::net::Cluster>(std::move(cc), ob, store, history, metrics);
}

int run(int argc, char** argv) {
  agentd::Config cfg;
  CLI::App app{"agentd — agent-execution backend; every message is durable the moment it exists"};
  agentd::add_flags(app, cfg);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  auto logger = spdlog::stderr_color_mt("agentd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);

  std::string host;
  unsigned short port = 0;
  boost::system::error_code ec;
  if (!agentd::split_host_port(cfg.listen, &host, &port)) {
    spdlog::error("--listen: expected HOST:PORT, got '{}'", cfg.listen);
    return kExitUsage;
  }
  auto addr = boost::asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    spdlog::error("--listen: '{}' is not an IP address: {}", host, ec.message());
    return kExitUsage;
  }

  if (cfg.instance_id.empty()) cfg.instance_id = agentd::default_instance_id(cfg.data_dir);
  std::error_code fs_ec;
  std::filesystem::create_directories(cfg.data_dir, fs_ec);
  if (fs_ec) {
    spdlog::error("--data-dir {}: cannot create: {}", cfg.data_dir, fs_ec.message());
    return kExitDataDir;
  }

  // ==== net: outbox, MongoDB reads, HTTP/WebSocket server (begin) ====
  // Block SIGINT/SIGTERM in every thread (they inherit the mask); this thread
  // waits for them with sigwait() below.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  agentd::OutboxOptions oopts;
  oopts.dir = cfg.data_dir;
  oopts.track_pending = !cfg.mongo_uri.empty();
  oopts.max_bytes = cfg.outbox_max_bytes;
  oopts.flushed_retention = std::chrono::hours(cfg.outbox_retention_hours);
  oopts.finished_plan_retention = std::chrono::hours(24) * cfg.embedded_retention_days;
  oopts.prune_interval = std::chrono::seconds(cfg.outbox_prune_interval_s);
  auto outbox = agentd::Outbox::open(oopts);
  if (!outbox) {
    spdlog::error("--data-dir {}: {}", cfg.data_dir, outbox.status().to_string());
    return kExitDataDir;
  }
  agentd::MetricsRegistry metrics;
  agentd::export_outbox_metrics(outbox->get(), metrics);
  // ---- store: MongoDB reads for the API, and the flusher (its own thread) ----
  std::unique_ptr<agentd::MongoPool> mongo_pool;
  std::unique_ptr<agentd::MessageStore> message_store;
  std::unique_ptr<agentd::net::StoreHistoryReader> history;
  std::unique_ptr<agentd::Flusher> flusher;
  if (!cfg.mongo_uri.empty()) {
    auto pool = agentd::MongoPool::open(cfg.mongo_uri);
    if (!pool) {
      spdlog::error("--mongo-uri: {}", pool.status().to_string());
      return kExitUsage;
    }
    mongo_pool = std::move(*pool);
    agentd::MessageStoreOptions mopts;
    if (!cfg.cluster_secret_file.empty()) mopts.owner = cfg.instance_id;  // plans carry their owner
    if (cfg.write_concern == "majority") {
      mopts.write_concern.majority = true;
    } else {
      mopts.write_concern.majority = false;
      try {
        mopts.write_concern.w = std::stoi(cfg.write_concern);
      } catch (...) {
        mopts.write_concern.w = 0;
      }
      if (mopts.write_concern.w < 1) {
        spdlog::error("--write-concern: expected a number >= 1 or 'majority', got '{}'", cfg.write_concern);
        return kExitUsage;
      }
    }
    mopts.write_concern.journal = cfg.journal;
    message_store = std::make_unique<agentd::MessageStore>(mongo_pool.get(), mopts);
    history = std::make_unique<agentd::net::StoreHistoryReader>(message_store.get());
    agentd::FlusherOptions fopts;
    fopts.max_batch_count = cfg.flush_batch;
    fopts.backoff_cap = std::chrono::milliseconds(cfg.flush_backoff_max_ms);
    flusher = std::make_unique<agentd::Flusher>(outbox->get(), message_store.get(), &metrics, fopts);
  }

  // ---- runtime: teams, planner, agents (plans run on their own thread) ----
  cfg.runtime.uploaded_teams_dir = cfg.data_dir + "/teams";
  auto runtime = agentd::RuntimeHost::create(cfg.runtime, **outbox, metrics);
  if (!runtime) {
    spdlog::error("{}", runtime.status().to_string());
    return kExitUsage;
  }
  agentd::net::ServerConfig scfg;
  scfg.listen = {addr, port};
  scfg.threads = cfg.threads;
  scfg.web_dir = cfg.web_dir;
  scfg.auth = *agentd::net::parse_auth_mode(cfg.auth);
  scfg.auth_token_file = cfg.auth_token_file;
  scfg.cors_origins = agentd::split_csv(cfg.cors_origins);
  scfg.max_body_bytes = cfg.max_body_bytes;
  scfg.max_connections = cfg.max_connections;
  scfg.ws_max_per_plan = cfg.ws_max_per_plan;
  scfg.ws_queue_frames = cfg.ws_queue_frames;
  scfg.header_timeout = std::chrono::milliseconds(cfg.header_timeout_ms);
  scfg.ws_idle_timeout = std::chrono::milliseconds(cfg.ws_idle_timeout_ms);
  scfg.sse_keepalive = std::chrono::milliseconds(cfg.sse_keepalive_ms);
  agentd::Outbox* ob = outbox->get();
  agentd::net::ServerDeps deps;
  deps.log = ob;
  deps.first_seq = [ob](std::string_view plan_id) { return ob->first_seq(plan_id); };
  deps.history = history.get();
  deps.plans = &(*runtime)->runtime();
  deps.metrics = &metrics;
  deps.outbox_ready = [ob]() { return ob->writable(); };
  deps.dead_letters = [ob]() -> agentd::Result<uint64_t> {
    auto s = ob->stats();
    if (!s) return s.status();
    return s->dead_letters;
  };
  if (flusher) {
    // The flusher pings MongoDB while idle or down, so this is current.
    deps.mongo_ready = [fl = flusher.get()]() {
      return fl->mongo_up() ? agentd::Status::ok()
                            : agentd::unavailable("MongoDB unreachable (the outbox holds the backlog)");
    };
  }
  // ---- cluster: several instances on one MongoDB (docs/scale-out.md) ----
  std::unique_ptr<agentd::net::Cluster> cluster;
  if (!cfg.cluster_secret_file.empty()) {
    auto c = make_cluster(cfg, ob, message_store.get(), history.get(), metrics);
    if (!c) {
      spdlog::error("{}", c.status().message());
      return kExitUsage;
    }
    cluster = std::move(*c);
    deps.cluster = cluster.get();
  }
  auto server = agentd::net::Server::create(scfg, std::move(deps));
  if (!server) {
    spdlog::error("{}", server.status().to_string());
    return server.status().code() == agentd::Code::kUnavailable ? kExitListen : kExitUsage;
  }
  // Every committed batch: counted, fanned out live, and the flusher woken.
  ob->set_observer([fanout = (*server)->commit_observer(), &appended = agentd::appended_messages_counter(metrics),
                    fl = flusher.get()](const std::vector<agentd::CommittedMessage>& batch) {
    appended.inc(batch.size());
    fanout(batch);
    if (fl) fl->notify();
  });
  if (flusher) flusher->start();
  // Plans a crash left unfinished are resumed before the first request: an
  // approval sent the moment agentd answers finds its plan waiting.
  if (auto st = (*runtime)->start(); !st.is_ok()) {
    spdlog::error("runtime start: {}", st.to_string());
    return kExitDataDir;
  }
  (*server)->start();
  if (cluster) {
    cluster->start();
    spdlog::info("cluster: instance {} at {}", cluster->config().instance_id, cluster->config().advertise_url);
  }
  auto ep = (*server)->local_endpoint();
  spdlog::info("agentd listening on http://{}:{} (data {}, {}, auth {})", ep.address().to_string(), ep.port(),
               cfg.data_dir, cfg.mongo_uri.empty() ? "embedded default: no MongoDB" : "MongoDB configured", cfg.auth);

  // Wait for SIGTERM/SIGINT on this thread, then stop gracefully.
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {}: stopping (in-flight requests finish, WebSockets close with 1001)", sig);
  if (cluster) cluster->stop();  // peers stop routing here
  (*server)->stop(std::chrono::milliseconds(cfg.shutdown_timeout_ms));
  (*runtime)->stop(std::chrono::milliseconds(2000));
  if (flusher) {
    agentd::Status drained = flusher->stop(std::chrono::milliseconds(cfg.flush_drain_timeout_ms));
    if (drained.is_ok()) {
      spdlog::info("flusher: everything pending reached MongoDB");
    } else {
      spdlog::warn("flusher: {} (kept in the outbox; flushed at the next start)", drained.message());
    }
  }
  server->reset();
  cluster.reset();
  outbox->reset();
  // ==== net (end) ====
  spdlog::info("agentd stopped");
  return kExitOk;
}

}  // namespace
