// Crash loop of the real server (issue 9): agentd under REST load is killed
// with SIGKILL at a random moment and restarted on the same data folder, 20
// times (AGENTD_CRASH_ITERATIONS=200 for the long run bench/run --crash does). After each restart: every message whose
// append was acknowledged is present exactly once with its seq and message_id; seqs per plan are 1..N without a gap; a
// post whose outcome was lost with the crash, retried with the same message_id, is stored at most once.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/json.h"
#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::test;
using namespace std::chrono_literals;

namespace {

std::string body_for(const std::string& plan, const std::string& message_id) {
  return R"({"plan_id":")" + plan + R"(","agent":"Ext","content":"c )" + message_id + R"(","message_id":")" +
         message_id + "\"}";
}

// plan -> (seq -> message_id), read over REST page by page (GET /plan caps
// its message list; long runs pass that cap).
std::map<std::string, std::map<uint64_t, std::string>> read_all(int port, const std::vector<std::string>& plans) {
  std::map<std::string, std::map<uint64_t, std::string>> out;
  for (const auto& p : plans) {
    uint64_t after = 0;
    for (;;) {
      auto r = http_get(port, "/api/v3/plan/" + p + "/messages?after_seq=" + std::to_string(after) + "&limit=5000");
      REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
      auto d = parse_strict(r.body, JsonLimits{256 << 20, 64});
      REQUIRE(d.is_ok());
      auto page = (*d)["messages"].GetArray();
      if (page.Empty()) break;
      for (auto& m : page) {
        uint64_t seq = m["seq"].GetUint64();
        CHECK_MESSAGE(out[p].count(seq) == 0, p << " seq " << seq << " listed twice");
        out[p][seq] = m["message_id"].GetString();
        after = std::max(after, seq);
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("SIGKILLs under load: acknowledged messages survive exactly once, seqs contiguous") {
  const char* env = std::getenv("AGENTD_CRASH_ITERATIONS");
  const int iterations = env && *env ? std::max(1, std::atoi(env)) : 20;
  const std::vector<std::string> plans{"plan-c1", "plan-c2", "plan-c3"};
  Agentd a;
  std::vector<PlanRecord> seeds;
  for (const auto& p : plans) seeds.push_back(e2e_plan(p, kDevUser));
  a.seed(seeds);
  std::mt19937 rng(20261126);
  std::map<std::string, std::pair<std::string, uint64_t>> acked;  // message_id -> (plan, seq)
  std::vector<std::pair<std::string, std::string>> unknown;       // (plan, message_id): no answer
  int next_id = 0;
  for (int iter = 0; iter < iterations; ++iter) {
    a.start();
    int port = a.port();
    // Retry the posts whose outcome the last crash swallowed: at most once each.
    for (const auto& [plan, mid] : unknown) {
      auto r = http_post(port, "/api/v3/agent_message", body_for(plan, mid));
      REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
      auto d = parse_strict(r.body);
      REQUIRE(d.is_ok());
      acked[mid] = {plan, (*d)["seq"].GetUint64()};
    }
    unknown.clear();
    // Load: three posters; SIGKILL after a random 50..400 ms.
    std::mutex mu;
    std::atomic<bool> stop{false};
    std::vector<std::thread> posters;
    for (int t = 0; t < 3; ++t) {
      posters.emplace_back([&, t] {
        for (int i = 0; !stop.load() && i < 10000; ++i) {
          std::string mid;
          {
            std::lock_guard<std::mutex> l(mu);
            mid = "m-" + std::to_string(next_id++);
          }
          const std::string& plan = plans[static_cast<size_t>(t + i) % plans.size()];
          auto r = http_request(port, "POST", "/api/v3/agent_message", body_for(plan, mid), {}, 3000);
          std::lock_guard<std::mutex> l(mu);
          if (r.status == 200) {
            auto d = parse_strict(r.body);
            if (d.is_ok()) {
              acked[mid] = {plan, (*d)["seq"].GetUint64()};
              continue;
            }
          }
          unknown.emplace_back(plan, mid);  // killed mid-request (or refused after the kill)
          return;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 400)(rng)));
    a.proc().kill();
    stop = true;
    for (auto& t : posters) t.join();
  }
  // Final restart: check everything.
  a.start();
  auto stored = read_all(a.port(), plans);
  std::set<std::string> seen_ids;
  size_t total = 0;
  for (const auto& [plan, by_seq] : stored) {
    uint64_t expect = 1;
    for (const auto& [seq, mid] : by_seq) {
      CHECK_MESSAGE(seq == expect, plan << " gap before seq " << seq);
      expect = seq + 1;
      CHECK_MESSAGE(seen_ids.insert(mid).second, "message_id " << mid << " stored twice");
      ++total;
    }
  }
  size_t lost = 0;
  for (const auto& [mid, ps] : acked) {
    auto pit = stored.find(ps.first);
    bool ok = pit != stored.end() && pit->second.count(ps.second) && pit->second.at(ps.second) == mid;
    if (!ok && ++lost <= 10) MESSAGE("acknowledged " << mid << " (" << ps.first << " seq " << ps.second << ") lost");
  }
  CHECK(lost == 0);
  MESSAGE(acked.size() << " acknowledged, " << total << " stored after " << iterations << " SIGKILLs");
  CHECK(acked.size() > 20);
}
