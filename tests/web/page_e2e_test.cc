// The web page in headless Chromium against the real binary: pick a team,
// submit, approve, watch the messages arrive over the WebSocket, drop the
// socket and reload mid-run, and end with every seq 1..N shown exactly once
// and the final result. The browser side is tests/web/page_test.cjs
// (playwright-core); it saves a screenshot in the build folder.
#include <doctest/doctest.h>

#include <fstream>

#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::test;

namespace {

std::string cache_dir() {
  if (const char* c = std::getenv("AGENTD_CACHE_DIR"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/agentd";
  return std::string(std::getenv("HOME")) + "/.cache/agentd";
}

}  // namespace

TEST_CASE("web page: submit, approve, live messages with seqs, reconnect and reload without gap or duplicate") {
  std::string node_modules = cache_dir() + "/node/node_modules";
  REQUIRE_MESSAGE(std::filesystem::exists("/usr/bin/chromium"), "chromium is missing: run scripts/setup");
  REQUIRE_MESSAGE(std::filesystem::exists(node_modules + "/playwright-core"),
                  "playwright-core is missing in " << node_modules << ": run scripts/setup");

  Agentd a;
  // Script agents that take a few seconds, so the test can reload mid-run.
  std::filesystem::create_directories(a.dir() + "/teams");
  std::ofstream(a.dir() + "/teams/web.json") << R"({"team_id":"web","name":"Web test team",
    "description":"two script agents","agents":[
      {"name":"Researcher","type":"script","description":"finds facts","script":{"messages":4,"delay_ms":350}},
      {"name":"Writer","type":"script","description":"writes it up","script":{"messages":4,"delay_ms":350}}]})";
  a.start({"--teams-dir", a.dir() + "/teams"});

  const char* bin = std::getenv("AGENTD_BINARY_DIR");
  const char* src = std::getenv("AGENTD_SOURCE_DIR");
  REQUIRE(bin);
  REQUIRE(src);
  std::string shot = std::string(bin) + "/tests/web/page.png";
  std::filesystem::remove(shot);
  std::string log = a.dir() + "/node.log";
  auto node = ChildProcess::spawn({"/usr/bin/node", std::string(src) + "/tests/web/page_test.cjs",
                                   "http://127.0.0.1:" + std::to_string(a.port()), shot, a.dir() + "/chromium"},
                                  log, {"NODE_PATH=" + node_modules});
  int st = node.wait(150000);
  std::string out = read_file(log);
  INFO("page_test.cjs output:\n" << out << "\nagentd log:\n" << read_file(a.log_path()).substr(0, 4000));
  REQUIRE_MESSAGE(st != -1, "page test timed out");
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  CHECK(out.find("PAGE OK") != std::string::npos);
  CHECK(std::filesystem::exists(shot));
  MESSAGE("screenshot: " << shot);
}
