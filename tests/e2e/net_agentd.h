// The real agentd binary as a child process, for net's end-to-end tests:
// a free port, a temp --data-dir (optionally pre-seeded with plan records
// through the Outbox API), readiness by polling /healthz.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/envelope.h"
#include "core/json.h"
#include "core/plan_record.h"
#include "outbox/outbox.h"
#include "tests/net/client.h"
#include "tests/support/process.h"

namespace agentd::test {

// The user every request runs as in agentd's default --auth=dev mode.
inline constexpr const char* kDevUser = "00000000-0000-0000-0000-000000000000";

// A response body as JSON (the strict parser, limits large enough for any
// test response); fails the test when it does not parse.
inline rapidjson::Document json(const std::string& body) {
  auto d = parse_strict(body, JsonLimits{256u << 20, 64});
  REQUIRE_MESSAGE(d.is_ok(), d.status().to_string() << "\n" << body.substr(0, 300));
  return std::move(d).value();
}

inline std::string agentd_binary() {
  const char* dir = std::getenv("AGENTD_BINARY_DIR");
  REQUIRE_MESSAGE(dir, "AGENTD_BINARY_DIR is not set (run through ctest)");
  return std::string(dir) + "/agentd/agentd";
}

// Runs agentd with `args` until it exits by itself (20 s at most), its output
// appended to `log`: the exit code (128 + signal when killed by one), or -1
// when it did not exit.
inline int run_agentd_to_exit(const std::vector<std::string>& args, const std::string& log,
                              const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv{agentd_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess p = ChildProcess::spawn(argv, log, env);
  int st = p.wait(20000);
  if (st == -1) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

inline std::string agentd_outbox_binary() {
  const char* dir = std::getenv("AGENTD_BINARY_DIR");
  REQUIRE_MESSAGE(dir, "AGENTD_BINARY_DIR is not set (run through ctest)");
  return std::string(dir) + "/tools/agentd-outbox";
}

// Runs agentd-outbox with `args` (output appended to `log`): its exit code,
// or -1 when it did not exit within 20 s.
inline int run_outbox_tool(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv{agentd_outbox_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess p = ChildProcess::spawn(argv, log);
  int st = p.wait(20000);
  if (st == -1) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// A plan that takes external messages (a finished one answers 409): submitted
// to the running binary's runtime, it waits for an approval
// (--approval-timeout-s, 300 s by default) and meanwhile appends nothing.
// `last_seq`: its messages so far (the runtime's), so external ones start
// at last_seq + 1.
struct OpenPlan {
  std::string id;
  uint64_t last_seq = 0;
};
inline OpenPlan open_plan(int port, const Headers& identity = {}) {
  auto r = http_request(port, "POST", "/api/v3/process_request", R"({"description":"a plan for external agents"})",
                        identity);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  OpenPlan p;
  p.id = json(r.body)["plan_id"].GetString();
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < until) {
    auto g = http_request(port, "GET", "/api/v3/plan?plan_id=" + p.id, "", identity);
    REQUIRE_MESSAGE(g.status == 200, g.body);
    auto d = json(g.body);
    if (std::string(d["plan"]["status"].GetString()) == "awaiting_approval") {
      p.last_seq = d["plan"]["last_seq"].GetUint64();
      return p;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("plan " << p.id << " never reached awaiting_approval");
  return p;
}

inline PlanRecord e2e_plan(const std::string& plan_id, const std::string& user) {
  PlanRecord p;
  p.plan_id = plan_id;
  p.user_id = user;
  p.session_id = "s-" + plan_id;
  p.team_id = "team-1";
  p.initial_goal = "goal";
  // Finished: the runtime (when wired) leaves it alone at start-up instead of
  // marking it interrupted; the API accepts external messages either way.
  p.status = PlanStatus::kCompleted;
  p.created_at = p.updated_at = now_rfc3339();
  return p;
}

class Agentd {
 public:
  Agentd() : dir_(make_temp_dir("agentd-net-e2e")) {}
  // Stops agentd the way an operator does (SIGTERM; SIGKILL after 15 s), so
  // that a sanitizer build runs its exit checks (LeakSanitizer), then fails
  // the test if agentd's log holds a sanitizer report from any of its runs;
  // the folder is then kept and named.
  ~Agentd() {
    if (proc_.running()) {
      proc_.signal(SIGTERM);
      if (proc_.wait(15000) == -1) proc_.kill();
    }
    std::string report = sanitizer_report(read_file(log_path()));
    CHECK_MESSAGE(report.empty(), "agentd (" << dir_ << ") reported:\n" << report);
    std::error_code ec;
    if (!keep_ && report.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // The first sanitizer report in `log` (ASan, LSan, UBSan, TSan) with some
  // lines after it, or "".
  static std::string sanitizer_report(const std::string& log) {
    size_t at = std::string::npos;
    for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer"}) {
      at = std::min(at, log.find(marker));
    }
    // UBSan: "file.cc:LINE:COL: runtime error: ..." (not agentd's own "a runtime error:").
    for (size_t p = log.find(": runtime error: "); p != std::string::npos; p = log.find(": runtime error: ", p + 1)) {
      if (p > 0 && log[p - 1] >= '0' && log[p - 1] <= '9') {
        at = std::min(at, p);
        break;
      }
    }
    if (at == std::string::npos) return {};
    size_t from = log.rfind('\n', at);
    from = from == std::string::npos ? 0 : from + 1;
    return log.substr(from, 6000);
  }

  // Plans the runtime would have created (the binary has no runtime wired
  // in every build): written with the Outbox API before start().
  void seed(const std::vector<PlanRecord>& plans) {
    OutboxOptions o;
    o.dir = data_dir();
    auto ob = Outbox::open(o);
    REQUIRE_MESSAGE(ob.is_ok(), ob.status().to_string());
    for (const auto& p : plans) {
      AppendRequest r;
      r.plan = p;
      auto res = (*ob)->append_sync(std::move(r));
      REQUIRE_MESSAGE(res.is_ok(), res.status().to_string());
    }
  }

  // `port` 0: a free one.
  void start(std::vector<std::string> extra = {}, int port = 0) {
    port_ = port ? port : free_port();
    std::vector<std::string> argv{agentd_binary(), "--listen", "127.0.0.1:" + std::to_string(port_), "--data-dir",
                                  data_dir()};
    // warn unless the test asks for another level (e.g. info: the access log).
    if (std::find(extra.begin(), extra.end(), "--log-level") == extra.end()) {
      argv.insert(argv.end(), {"--log-level", "warn"});
    }
    for (auto& a : extra) argv.push_back(std::move(a));
    proc_ = ChildProcess::spawn(argv, log_path());
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < until) {
      if (!proc_.running()) break;
      if (http_request(port_, "GET", "/healthz", "", {}, 1000).status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("agentd did not become healthy; log:\n" << read_file(log_path()));
  }

  int port() const { return port_; }
  std::string data_dir() const { return dir_ + "/data"; }
  std::string log_path() const { return dir_ + "/agentd.log"; }
  const std::string& dir() const { return dir_; }
  ChildProcess& proc() { return proc_; }

 private:
  std::string dir_;
  int port_ = 0;
  ChildProcess proc_;
  bool keep_ = false;
};

}  // namespace agentd::test
