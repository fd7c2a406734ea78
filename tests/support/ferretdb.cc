#include "tests/support/ferretdb.h"

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "core/clock.h"
#include "store/mongo.h"

namespace agentd::test {

std::string ferretdb_binary() {
  if (const char* b = std::getenv("AGENTD_FERRETDB_BIN"); b && *b) return b;
  std::string cache;
  if (const char* c = std::getenv("AGENTD_CACHE_DIR"); c && *c) {
    cache = c;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    cache = std::string(x) + "/agentd";
  } else {
    cache = std::string(std::getenv("HOME") ? std::getenv("HOME") : "/root") + "/.cache/agentd";
  }
  return cache + "/ferretdb-v1.24.2";
}

namespace {

// $AGENTD_FERRETDB_LOG_LEVEL (debug, info, warn, error) when set: for chasing
// a database-side problem; warn keeps CI logs short.
std::string log_level() {
  const char* l = std::getenv("AGENTD_FERRETDB_LOG_LEVEL");
  return l && *l ? l : "warn";
}

}  // namespace

FerretDb::FerretDb() : port_(free_port()), dir_(make_temp_dir("agentd-ferretdb")) {
  log_ = dir_ + "/ferretdb.log";
  uri_ = "mongodb://127.0.0.1:" + std::to_string(port_) + "/";
  std::filesystem::create_directories(dir_ + "/data");
}

FerretDb::~FerretDb() {
  stop();
  if (!keep_) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void FerretDb::start() {
  if (proc_.running()) return;
  std::string bin = ferretdb_binary();
  struct stat st {};
  if (::stat(bin.c_str(), &st) != 0) {
    throw std::runtime_error("FerretDB binary not found at " + bin +
                             ": run scripts/ferretdb-build (or set AGENTD_FERRETDB_BIN / AGENTD_TEST_MONGO_URI)");
  }
  proc_ = ChildProcess::spawn({bin, "--handler=sqlite", "--sqlite-url=file:" + dir_ + "/data/",
                               "--listen-addr=127.0.0.1:" + std::to_string(port_), "--state-dir=-", "--debug-addr=-",
                               "--telemetry=disable", "--log-level=" + log_level()},
                              log_, {"DO_NOT_TRACK=1"});
  mongo_global_init();
  auto pool = MongoPool::open(uri_ + "?serverSelectionTimeoutMS=200&connectTimeoutMS=200");
  if (!pool) throw std::runtime_error(pool.status().to_string());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!proc_.running()) break;
    if ((*pool)->ping().is_ok()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  keep_ = true;
  std::string log = read_file(log_);
  if (log.size() > 4000) log = log.substr(log.size() - 4000);
  throw std::runtime_error("FerretDB did not become ready on port " + std::to_string(port_) + "; log " + log_ + ":\n" +
                           log);
}

void FerretDb::kill() { proc_.kill(); }

void FerretDb::stop() {
  if (!proc_.running()) return;
  proc_.signal(SIGTERM);
  if (proc_.wait(5000) == -1) proc_.kill();
}

namespace {

std::mutex g_mu;
std::unique_ptr<FerretDb> g_shared;  // guarded by g_mu
int g_db_counter = 0;                // guarded by g_mu

}  // namespace

std::string test_mongo_uri() {
  std::lock_guard lock(g_mu);
  std::string db = "agentd_test_" + new_uuid().substr(0, 8) + "_" + std::to_string(++g_db_counter);
  if (const char* u = std::getenv("AGENTD_TEST_MONGO_URI"); u && *u) {
    std::string base = u;
    // Replace or add the database path: mongodb://host[:port]/db?opts
    auto scheme = base.find("://");
    auto slash = base.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    std::string opts;
    auto q = base.find('?');
    if (q != std::string::npos) opts = base.substr(q);
    std::string hosts = slash == std::string::npos ? base.substr(0, q) : base.substr(0, slash);
    return hosts + "/" + db + opts;
  }
  if (!g_shared) {
    g_shared = std::make_unique<FerretDb>();
    g_shared->start();
  }
  return g_shared->uri() + db;
}

std::string test_mongo_log() {
  std::lock_guard lock(g_mu);
  return g_shared ? g_shared->log_path() : std::string();
}

}  // namespace agentd::test
