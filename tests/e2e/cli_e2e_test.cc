// The agentd command line, end to end against the real binary: --help lists
// every flag and the README documents each one; bad flags exit 2 naming the
// flag; AGENTD_* environment variables stand in for flags; an address in use
// exits 4.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <set>
#include <string>
#include <vector>

#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::test;

namespace {

struct Run {
  int code = -1;
  std::string out;
};

// Runs agentd until it exits by itself: its exit code and output.
Run run_to_exit(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  std::string dir = make_temp_dir("agentd-cli");
  Run r;
  r.code = run_agentd_to_exit(args, dir + "/out", env);
  r.out = read_file(dir + "/out");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return r;
}

// The flags --help lists: every "--name" at the start of an option line.
std::set<std::string> help_flags(const std::string& help) {
  std::set<std::string> flags;
  size_t pos = 0;
  while ((pos = help.find("\n  ", pos)) != std::string::npos) {
    pos += 3;
    size_t start = help.find("--", pos);
    if (start == std::string::npos || help.find_first_not_of(" -,h", pos) < start) continue;
    size_t end = help.find_first_of(" \n", start);
    flags.insert(help.substr(start, end - start));
  }
  return flags;
}

}  // namespace

TEST_CASE("--help lists every flag with its environment variable, and README.md documents each") {
  Run r = run_to_exit({"--help"});
  REQUIRE_MESSAGE(r.code == 0, r.out);
  auto flags = help_flags(r.out);
  for (const char* f :
       {"--listen", "--data-dir", "--mongo-uri", "--auth", "--outbox-max-bytes", "--outbox-retention-hours",
        "--embedded-retention-days", "--flush-drain-timeout-ms", "--llm-base-url", "--max-concurrent-plans"}) {
    CHECK_MESSAGE(flags.count(f) == 1, f << " missing from --help:\n" << r.out);
  }
  REQUIRE(flags.size() > 30);
  // The flusher's write concern defaults to what a failover cannot roll back.
  auto wc = r.out.find("--write-concern");
  REQUIRE(wc != std::string::npos);
  CHECK_MESSAGE(r.out.substr(wc, r.out.find('\n', wc) - wc).find("=majority") != std::string::npos, r.out);
  const char* src = std::getenv("AGENTD_SOURCE_DIR");
  REQUIRE_MESSAGE(src, "AGENTD_SOURCE_DIR is not set (run through ctest)");
  std::string readme = read_file(std::string(src) + "/README.md");
  for (const auto& f : flags) {
    if (f == "--help") continue;
    CHECK_MESSAGE(readme.find("`" + f + "`") != std::string::npos, f << " is not documented in README.md");
    // Each flag's variable: AGENTD_ + upper-case name with '_' for '-'.
    std::string env = "AGENTD_";
    for (char c : f.substr(2)) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK_MESSAGE(r.out.find("Env:" + env) != std::string::npos, f << " has no " << env);
  }
}

TEST_CASE("bad flags exit 2 and name the flag") {
  for (const auto& args : std::vector<std::vector<std::string>>{{"--no-such-flag"},
                                                                {"--threads", "0"},
                                                                {"--outbox-retention-hours", "-1"},
                                                                {"--auth", "nobody"},
                                                                {"--listen", "localhost"},
                                                                {"--write-concern", "nosuchtag"},
                                                                {"--write-concern", "2x"}}) {
    Run r = run_to_exit(args);
    CAPTURE(args[0]);
    CHECK_MESSAGE(r.code == 2, "exit " << r.code << ":\n" << r.out);
    CHECK_MESSAGE(r.out.find(args[0]) != std::string::npos, r.out);
  }
}

TEST_CASE("AGENTD_* variables stand in for flags; an address in use exits 4") {
  std::string dir = make_temp_dir("agentd-cli-env");
  int port = free_port();
  ChildProcess p = ChildProcess::spawn(
      {agentd_binary()}, dir + "/log",
      {"AGENTD_LISTEN=127.0.0.1:" + std::to_string(port), "AGENTD_DATA_DIR=" + dir + "/data", "AGENTD_LOG_LEVEL=warn"});
  bool up = false;
  for (int i = 0; i < 500 && !up && p.running(); ++i) {
    up = http_request(port, "GET", "/healthz", "", {}, 1000).status == 200;
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE_MESSAGE(up, read_file(dir + "/log"));
  CHECK(std::filesystem::exists(dir + "/data"));

  // A second agentd on the same address (another data folder): exit 4.
  Run second = run_to_exit({"--listen", "127.0.0.1:" + std::to_string(port), "--data-dir", dir + "/data2"});
  CHECK_MESSAGE(second.code == 4, "exit " << second.code << ":\n" << second.out);

  p.signal(SIGTERM);
  int st = p.wait(15000);
  CHECK(st != -1);
  CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
