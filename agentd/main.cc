// agentd: flags and environment -> config, wiring, signals, graceful stop.
// Nothing else lives here: each layer is built in its own folder.
//
// Exit codes: 0 clean stop; 1 internal error; 2 bad flags; 3 data folder
// unusable (cannot create, locked by another agentd, bad format);
// 4 cannot listen.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "net/listener.h"
#include "net/router.h"

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
};

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

  boost::asio::io_context ioc(static_cast<int>(cfg.threads));
  agentd::net::Router router;
  auto listener = agentd::net::Listener::create(ioc, {addr, port}, router);
  if (!listener) {
    spdlog::error("{}", listener.status().message());
    return kExitListen;
  }
  (*listener)->run();
  auto ep = (*listener)->local_endpoint();
  spdlog::info("agentd listening on http://{}:{} (data {}, {})", ep.address().to_string(), ep.port(), cfg.data_dir,
               cfg.mongo_uri.empty() ? "embedded default: no MongoDB" : "MongoDB configured");

  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    spdlog::info("signal {}: stopping", sig);
    (*listener)->stop();
    ioc.stop();
  });

  std::vector<std::thread> threads;
  for (unsigned i = 1; i < cfg.threads; ++i) threads.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  spdlog::info("agentd stopped");
  return kExitOk;
}
