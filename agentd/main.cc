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
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agentd/runtime_host.h"
#include "core/metrics.h"
#include "net/mongo_history.h"
#include "net/server.h"
#include "outbox/outbox.h"
#include "store/flusher.h"
#include "store/message_store.h"
#include "store/mongo.h"

namespace {

enum ExitCode { kExitOk = 0, kExitInternal = 1, kExitUsage = 2, kExitDataDir = 3, kExitListen = 4 };

std::string default_data_dir() {
  if (const char* s = std::getenv("XDG_STATE_HOME"); s && *s) return std::string(s) + "/agentd";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.local/state/agentd";
  return "./agentd-data";
}

struct Config {
  std::string listen = "127.0.0.1:8000";
  std::string data_dir = default_data_dir();
  std::string mongo_uri;
  unsigned threads = 2;
  std::string log_level = "info";
  // ---- net (HTTP/WebSocket) ----
  std::string auth = "dev";
  std::string auth_token_file;
  std::string cors_origins;
  size_t max_body_bytes = 1 << 20;
  size_t max_connections = 10000;
  size_t ws_max_per_plan = 2000;
  size_t ws_queue_frames = 4096;
  unsigned header_timeout_ms = 10000;
  unsigned ws_idle_timeout_ms = 60000;
  unsigned shutdown_timeout_ms = 10000;
  uint64_t outbox_max_bytes = 8ull << 30;
  std::string web_dir;
  // ---- store (MongoDB flusher) ----
  std::string write_concern = "1";
  bool journal = true;
  size_t flush_batch = 1000;
  unsigned flush_backoff_max_ms = 30000;
  unsigned flush_drain_timeout_ms = 5000;
};

std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    i = j + 1;
  }
  return out;
}

bool split_host_port(const std::string& s, std::string* host, unsigned short* port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  try {
    int p = std::stoi(s.substr(colon + 1));
    if (p < 0 || p > 65535) return false;
    *port = static_cast<unsigned short>(p);
  } catch (...) {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"agentd — agent-execution backend; every message is durable the moment it exists"};
  app.footer(
      "Every flag can also be set by the environment variable shown.\n"
      "Exit codes: 0 clean stop, 1 internal error, 2 bad flags, 3 data folder unusable, 4 cannot listen.");
  app.add_option("--listen", cfg.listen, "HOST:PORT to serve HTTP and WebSocket on")
      ->envname("AGENTD_LISTEN")
      ->capture_default_str();
  app.add_option("--data-dir", cfg.data_dir, "folder of the LMDB outbox (created if missing; locked)")
      ->envname("AGENTD_DATA_DIR")
      ->capture_default_str();
  app.add_option("--mongo-uri", cfg.mongo_uri,
                 "MongoDB URI to flush messages to; empty = embedded default (the outbox is the store)")
      ->envname("AGENTD_MONGO_URI");
  app.add_option("--threads", cfg.threads, "io_context threads serving HTTP/WebSocket")
      ->envname("AGENTD_THREADS")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  app.add_option("--log-level", cfg.log_level, "trace, debug, info, warn, error")
      ->envname("AGENTD_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  // ---- net flags ----
  app.add_option("--auth", cfg.auth,
                 "identity: dev (x-ms-client-principal-id if sent, else the zero-UUID user; local runs only), "
                 "header (x-ms-client-principal-id required and trusted: only behind an authenticating proxy), "
                 "token (Authorization: Bearer checked against --auth-token-file)")
      ->envname("AGENTD_AUTH")
      ->check(CLI::IsMember({"dev", "header", "token"}))
      ->capture_default_str();
  app.add_option("--auth-token-file", cfg.auth_token_file, "file of '<token> <user_id>' lines for --auth=token")
      ->envname("AGENTD_AUTH_TOKEN_FILE");
  app.add_option("--cors-origins", cfg.cors_origins, "comma-separated allowed browser origins ('*' = any)")
      ->envname("AGENTD_CORS_ORIGINS");
  app.add_option("--max-body-bytes", cfg.max_body_bytes, "largest request body; larger -> 413")
      ->envname("AGENTD_MAX_BODY_BYTES")
      ->check(CLI::Range(size_t{1024}, size_t{64} << 20))
      ->capture_default_str();
  app.add_option("--max-connections", cfg.max_connections, "open TCP connections (HTTP + WebSocket) at most")
      ->envname("AGENTD_MAX_CONNECTIONS")
      ->check(CLI::Range(size_t{1}, size_t{1000000}))
      ->capture_default_str();
  app.add_option("--ws-max-per-plan", cfg.ws_max_per_plan, "WebSockets per plan at most")
      ->envname("AGENTD_WS_MAX_PER_PLAN")
      ->check(CLI::Range(size_t{1}, size_t{1000000}))
      ->capture_default_str();
  app.add_option("--ws-queue-frames", cfg.ws_queue_frames,
                 "per-WebSocket send queue; a client that lets it fill is closed as a slow consumer")
      ->envname("AGENTD_WS_QUEUE_FRAMES")
      ->check(CLI::Range(size_t{2}, size_t{1000000}))
      ->capture_default_str();
  app.add_option("--header-timeout-ms", cfg.header_timeout_ms, "idle keep-alive / request header read timeout")
      ->envname("AGENTD_HEADER_TIMEOUT_MS")
      ->check(CLI::Range(10u, 3600000u))
      ->capture_default_str();
  app.add_option("--ws-idle-timeout-ms", cfg.ws_idle_timeout_ms,
                 "WebSocket idle timeout (pings are sent at half of it; no answer -> closed)")
      ->envname("AGENTD_WS_IDLE_TIMEOUT_MS")
      ->check(CLI::Range(100u, 3600000u))
      ->capture_default_str();
  app.add_option("--shutdown-timeout-ms", cfg.shutdown_timeout_ms,
                 "on SIGTERM/SIGINT: time for in-flight requests and WebSocket closes")
      ->envname("AGENTD_SHUTDOWN_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--outbox-max-bytes", cfg.outbox_max_bytes, "outbox size limit; appends beyond it get 503")
      ->envname("AGENTD_OUTBOX_MAX_BYTES")
      ->capture_default_str();
  app.add_option("--web-dir", cfg.web_dir, "serve the web page at / from this folder; empty = the copy built in")
      ->envname("AGENTD_WEB_DIR");
  // ---- store flags ----
  app.add_option("--write-concern", cfg.write_concern,
                 "MongoDB write concern w: a number >= 1 or 'majority' (FerretDB ignores it)")
      ->envname("AGENTD_WRITE_CONCERN")
      ->capture_default_str();
  app.add_option("--journal", cfg.journal, "MongoDB write concern j (journaled)")
      ->envname("AGENTD_JOURNAL")
      ->capture_default_str();
  app.add_option("--flush-batch", cfg.flush_batch, "pending messages per MongoDB bulk write")
      ->envname("AGENTD_FLUSH_BATCH")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  app.add_option("--flush-backoff-max-ms", cfg.flush_backoff_max_ms,
                 "cap of the retry backoff while MongoDB is unreachable (base 50 ms, full jitter)")
      ->envname("AGENTD_FLUSH_BACKOFF_MAX_MS")
      ->check(CLI::Range(100u, 3600000u))
      ->capture_default_str();
  app.add_option("--flush-drain-timeout-ms", cfg.flush_drain_timeout_ms,
                 "on SIGTERM/SIGINT: time to drain pending messages to MongoDB (the rest stays in the outbox)")
      ->envname("AGENTD_FLUSH_DRAIN_TIMEOUT_MS")
      ->capture_default_str();
  agentd::RuntimeFlags runtime_flags;
  agentd::add_runtime_flags(app, runtime_flags);
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
  if (!split_host_port(cfg.listen, &host, &port)) {
    spdlog::error("--listen: expected HOST:PORT, got '{}'", cfg.listen);
    return kExitUsage;
  }
  auto addr = boost::asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    spdlog::error("--listen: '{}' is not an IP address: {}", host, ec.message());
    return kExitUsage;
  }

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
  auto outbox = agentd::Outbox::open(oopts);
  if (!outbox) {
    spdlog::error("--data-dir {}: {}", cfg.data_dir, outbox.status().to_string());
    return kExitDataDir;
  }
  agentd::MetricsRegistry metrics;
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
    if (cfg.write_concern == "majority") {
      mopts.write_concern.majority = true;
    } else {
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
  auto runtime = agentd::RuntimeHost::create(runtime_flags, **outbox, metrics);
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
  scfg.cors_origins = split_csv(cfg.cors_origins);
  scfg.max_body_bytes = cfg.max_body_bytes;
  scfg.max_connections = cfg.max_connections;
  scfg.ws_max_per_plan = cfg.ws_max_per_plan;
  scfg.ws_queue_frames = cfg.ws_queue_frames;
  scfg.header_timeout = std::chrono::milliseconds(cfg.header_timeout_ms);
  scfg.ws_idle_timeout = std::chrono::milliseconds(cfg.ws_idle_timeout_ms);
  agentd::Outbox* ob = outbox->get();
  agentd::net::ServerDeps deps;
  deps.log = ob;
  deps.first_seq = [ob](std::string_view plan_id) { return ob->first_seq(plan_id); };
  deps.history = history.get();
  deps.plans = &(*runtime)->runtime();
  deps.metrics = &metrics;
  deps.outbox_ready = [ob]() -> agentd::Status {
    auto st = ob->stats();
    if (!st) return st.status();
    if (st->max_bytes && st->used_bytes * 100 >= st->max_bytes * 98) {
      return {agentd::Code::kOutboxFull,
              "outbox is full (" + std::to_string(st->used_bytes) + " of " + std::to_string(st->max_bytes) + " bytes)"};
    }
    return agentd::Status::ok();
  };
  if (flusher) {
    // The flusher pings MongoDB while idle or down, so this is current.
    deps.mongo_ready = [fl = flusher.get()]() {
      return fl->mongo_up() ? agentd::Status::ok()
                            : agentd::unavailable("MongoDB unreachable (the outbox holds the backlog)");
    };
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
  (*server)->start();
  if (auto st = (*runtime)->start(); !st.is_ok()) {
    spdlog::error("runtime start: {}", st.to_string());
    return kExitDataDir;
  }
  auto ep = (*server)->local_endpoint();
  spdlog::info("agentd listening on http://{}:{} (data {}, {}, auth {})", ep.address().to_string(), ep.port(),
               cfg.data_dir, cfg.mongo_uri.empty() ? "embedded default: no MongoDB" : "MongoDB configured", cfg.auth);

  // Wait for SIGTERM/SIGINT on this thread, then stop gracefully.
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {}: stopping (in-flight requests finish, WebSockets close with 1001)", sig);
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
  outbox->reset();
  // ==== net (end) ====
  spdlog::info("agentd stopped");
  return kExitOk;
}
