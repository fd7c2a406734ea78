// The test database. Tests that need MongoDB call test_mongo_uri(): it
// returns $AGENTD_TEST_MONGO_URI when set (a real MongoDB; nothing started),
// else starts one FerretDB v1 (SQLite backend, 127.0.0.1, free port,
// telemetry off, data in a temp folder) for the whole test process and
// stops it at exit. Tests that kill and restart the database own a
// FerretDb instance of their own.
//
// The binary is $AGENTD_FERRETDB_BIN, else the cache path that
// scripts/ferretdb-build writes. A missing binary fails the test (never a skip).
#pragma once

#include <string>

#include "tests/support/process.h"

namespace agentd::test {

class FerretDb {
 public:
  // Picks a free port and a temp data folder; does not start.
  FerretDb();
  ~FerretDb();  // stops; removes the data folder unless keep_files()

  // Starts (or restarts on the same port and data) and waits until ping
  // succeeds; throws with the log's tail on failure.
  void start();
  void kill();  // SIGKILL: a crash
  void stop();  // SIGTERM, then SIGKILL after 5 s
  bool running() { return proc_.running(); }

  const std::string& uri() const { return uri_; }
  int port() const { return port_; }
  const std::string& log_path() const { return log_; }
  void keep_files() { keep_ = true; }

 private:
  int port_;
  std::string dir_, log_, uri_;
  ChildProcess proc_;
  bool keep_ = false;
};

std::string ferretdb_binary();
// See the header comment. The database name is unique per call so tests do
// not see each other's data.
std::string test_mongo_uri();
// The shared instance's log, or "" when using $AGENTD_TEST_MONGO_URI.
std::string test_mongo_log();

}  // namespace agentd::test
