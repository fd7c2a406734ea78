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

#include "core/envelope.h"
#include "core/json.h"
#include "store/message_store.h"
#include "tests/e2e/net_agentd.h"
#include "tests/support/ferretdb.h"

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

// SIGKILLs agentd `iterations` times under REST load (three posters, a
// random 50..400 ms each time), restarting it with `args` on the same data
// folder, and retries each post whose outcome a crash swallowed, with its
// message_id. A crash ends the plans it interrupted (no more messages: 409),
// so each run posts to `per_run` new open plans, added to `plans`; a retry
// is answered 200 (stored before the crash: its seq) or 409 (never stored).
// Returns message_id -> (plan, seq) of every acknowledged post.
std::map<std::string, std::pair<std::string, uint64_t>> crash_loop(Agentd& a, std::vector<std::string>* all_plans,
                                                                   size_t per_run, int iterations,
                                                                   const std::vector<std::string>& args) {
  std::mt19937 rng(20261126);
  std::map<std::string, std::pair<std::string, uint64_t>> acked;  // message_id -> (plan, seq)
  std::vector<std::pair<std::string, std::string>> unknown;       // (plan, message_id): no answer
  int next_id = 0;
  for (int iter = 0; iter < iterations; ++iter) {
    a.start(args);
    int port = a.port();
    // Retry the posts whose outcome the last crash swallowed: at most once each.
    for (const auto& [plan, mid] : unknown) {
      auto r = http_post(port, "/api/v3/agent_message", body_for(plan, mid));
      if (r.status == 409) continue;  // never stored; its plan ended with the crash
      REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
      auto d = parse_strict(r.body);
      REQUIRE(d.is_ok());
      acked[mid] = {plan, (*d)["seq"].GetUint64()};
    }
    unknown.clear();
    std::vector<std::string> plans;
    for (size_t i = 0; i < per_run; ++i) plans.push_back(open_plan(port).id);
    all_plans->insert(all_plans->end(), plans.begin(), plans.end());
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
  return acked;
}

}  // namespace

TEST_CASE("SIGKILLs under load: acknowledged messages survive exactly once, seqs contiguous") {
  const char* env = std::getenv("AGENTD_CRASH_ITERATIONS");
  const int iterations = env && *env ? std::max(1, std::atoi(env)) : 20;
  std::vector<std::string> plans;
  Agentd a;
  auto acked = crash_loop(a, &plans, 3, iterations, {});
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

TEST_CASE("SIGKILLs with MongoDB configured: MongoDB ends up with every acknowledged message once, bytes as served") {
  // The flusher is killed between its MongoDB write and its outbox ack too:
  // the restart replays those batches, which must change nothing.
  FerretDb db;
  db.start();
  const std::string uri = db.uri() + "agentd_crash_loop";
  std::vector<std::string> plans;
  Agentd a;
  const std::vector<std::string> args{"--mongo-uri", uri + "?serverSelectionTimeoutMS=1000"};
  auto acked = crash_loop(a, &plans, 2, 10, args);
  a.start(args);
  // Drained: nothing pending in the outbox.
  auto until = std::chrono::steady_clock::now() + 60s;
  bool drained = false;
  while (!drained && std::chrono::steady_clock::now() < until) {
    std::string m = http_get(a.port(), "/metrics").body;
    drained = m.find("\nagentd_outbox_pending_messages 0\n") != std::string::npos;
    if (!drained) std::this_thread::sleep_for(100ms);
  }
  REQUIRE(drained);
  auto pool = MongoPool::open(uri);
  REQUIRE(pool.is_ok());
  MessageStore store(pool->get());
  size_t total = 0;
  std::map<std::string, std::map<uint64_t, std::string>> in_mongo;  // plan -> seq -> message_id
  for (const auto& plan : plans) {
    auto r = http_get(a.port(), "/api/v3/plan/" + plan + "/messages?after_seq=0&limit=10000");
    REQUIRE(r.status == 200);
    auto d = json(r.body);
    std::vector<std::string> served;
    for (const auto& m : d["messages"].GetArray()) served.push_back(write_canonical(m));
    auto stored = store.read_messages(plan, 0, 100000);
    REQUIRE_MESSAGE(stored.is_ok(), stored.status().to_string());
    REQUIRE(stored->size() == served.size());
    for (size_t i = 0; i < served.size(); ++i) {
      CHECK((*stored)[i].seq == i + 1);
      CHECK(*(*stored)[i].bytes == served[i]);
      auto e = decode_envelope(*(*stored)[i].bytes);
      REQUIRE(e.is_ok());
      in_mongo[plan][(*stored)[i].seq] = e->message_id;
    }
    total += stored->size();
  }
  size_t lost = 0;
  for (const auto& [mid, ps] : acked) {
    auto it = in_mongo[ps.first].find(ps.second);
    if (it == in_mongo[ps.first].end() || it->second != mid) ++lost;
  }
  CHECK(lost == 0);
  auto count = store.count(kMessagesCollection);
  REQUIRE(count.is_ok());
  CHECK(static_cast<size_t>(*count) == total);
  auto dead = store.count(kDeadLettersCollection);
  REQUIRE(dead.is_ok());
  CHECK(*dead == 0);
  MESSAGE(acked.size() << " acknowledged; " << total << " in MongoDB, each once, after 10 SIGKILLs");
  CHECK(acked.size() > 20);
}
