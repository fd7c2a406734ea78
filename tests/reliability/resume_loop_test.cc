// Crash loop of the real binary over resumable plans (issue 15): agentd runs
// many plans of script agents (one asks a clarification) while a driver
// submits, approves (REST and WebSocket) and answers, and is killed with
// SIGKILL at a random moment, AGENTD_RESUME_ITERATIONS times (30 by default;
// bench/run --crash N runs N). The agents record each step execution in a
// side file (script.record: "<plan> <step> <attempt> <pid>").
//
// After the last restart: every plan completed; each plan's log holds each
// step's messages once, one approval request and response, one clarification
// request and answer, one final result, seqs 1..N; a step ran more than once
// only across kills (each execution in another agentd process) and never
// after its completion was logged; an approval or answer agentd acknowledged
// was never asked again; plans held waiting for approval across a kill were
// approved after the restart through REST and through the WebSocket.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/json.h"
#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::test;
using namespace std::chrono_literals;

namespace {

// step -> the number of messages its agent emits (step 2 asks first).
const std::map<int, int> kMessagesPerStep{{1, 2}, {2, 2}, {3, 3}};

std::string write_team(const std::string& dir, const std::string& record) {
  std::filesystem::create_directories(dir + "/teams");
  std::ofstream(dir + "/teams/t.json") << R"({"team_id":"t","name":"T","description":"resume loop","agents":[
      {"name":"A","type":"script","description":"first","script":{"messages":2,"delay_ms":100,"record":")"
                                       << record << R"("}},
      {"name":"B","type":"script","description":"asks","script":{"messages":2,"delay_ms":100,
        "clarify":"Which month?","record":")"
                                       << record << R"("}},
      {"name":"C","type":"script","description":"last","script":{"messages":3,"delay_ms":80,"record":")"
                                       << record << R"("}}]})";
  return dir + "/teams";
}

int env_int(const char* name, int dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::max(1, std::atoi(v)) : dflt;
}

// The plan's complete log, page by page.
std::vector<std::string> log_of(int port, const std::string& plan_id) {
  std::vector<std::string> out;
  uint64_t after = 0;
  for (;;) {
    auto r = http_get(port, "/api/v3/plan/" + plan_id + "/messages?after_seq=" + std::to_string(after) + "&limit=1000");
    REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
    auto d = json(r.body);
    for (const auto& m : d["messages"].GetArray()) out.push_back(write_canonical(m));
    if (!d["has_more"].GetBool()) return out;
    after = d["messages"].Empty() ? after : seq_of(out.back());
  }
}

struct Plan {
  std::string id;
  bool auto_approve = false;
  bool hold = false;            // left waiting for approval until a kill passed
  int seen_awaiting_boot = -1;  // the first boot that saw it awaiting approval
  bool approved = false;        // an approval was acknowledged (200 / ok)
  int approved_boot = -1;
  std::set<std::string> answered;  // clarification request ids acknowledged
};

struct Figures {
  int approvals_after_kill_rest = 0, approvals_after_kill_ws = 0;
  int answers = 0, answers_before_last = 0;  // acknowledged; before the last start
  std::vector<std::string> violations;
};

// The driver: submits plans (up to `want`), approves (REST or WebSocket) and
// answers what waits, until `stop`. Everything it was told is recorded.
class Driver {
 public:
  Driver(std::vector<Plan>& plans, Figures& fig, std::mutex& mu) : plans_(plans), fig_(fig), mu_(mu) {}

  // `last`: the last boot, where nothing is held back.
  void run(int port, int boot, size_t want, bool last, const std::atomic<bool>& stop) {
    last_ = last;
    while (!stop.load()) {
      if (plans_.size() < want) submit(port);
      auto r = http_request(port, "GET", "/api/v3/plans", "", {}, 3000);
      if (r.status != 200) {
        std::this_thread::sleep_for(20ms);
        continue;
      }
      auto d = parse_strict(r.body, JsonLimits{64 << 20, 64});
      if (!d || !d->IsArray()) continue;
      for (const auto& p : d->GetArray()) {
        if (stop.load()) return;
        std::string id = p["plan_id"].GetString(), status = p["status"].GetString();
        Plan* plan = find(id);
        if (!plan) continue;
        if (status == "awaiting_approval") approve(port, boot, *plan);
        if (status == "awaiting_clarification") answer(port, *plan);
      }
      std::this_thread::sleep_for(30ms);
    }
  }

 private:
  Plan* find(const std::string& id) {
    std::lock_guard l(mu_);
    for (auto& p : plans_)
      if (p.id == id) return &p;
    return nullptr;
  }

  void submit(int port) {
    size_t n;
    {
      std::lock_guard l(mu_);
      n = plans_.size();
    }
    bool auto_ok = n % 2 == 0;
    std::string body =
        JsonObject().str("description", "resume plan " + std::to_string(n)).boolean("auto_approve", auto_ok).done();
    auto r = http_request(port, "POST", "/api/v3/process_request", body, {{"content-type", "application/json"}}, 3000);
    if (r.status != 200) return;  // a kill cut it: nothing was acknowledged
    auto d = parse_strict(r.body);
    if (!d) return;
    Plan p;
    p.id = (*d)["plan_id"].GetString();
    p.auto_approve = auto_ok;
    p.hold = !auto_ok && n % 3 == 1;
    std::lock_guard l(mu_);
    plans_.push_back(p);
  }

  void approve(int port, int boot, Plan& plan) {
    {
      std::lock_guard l(mu_);
      if (plan.approved) {
        fig_.violations.push_back(plan.id + ": awaiting approval again after an acknowledged approval (boot " +
                                  std::to_string(plan.approved_boot) + ")");
        plan.approved = false;  // reported once
        return;
      }
      if (plan.seen_awaiting_boot < 0) plan.seen_awaiting_boot = boot;
      if (plan.hold && plan.seen_awaiting_boot == boot && !last_) return;  // waits for a kill first
    }
    const bool after_kill = plan.seen_awaiting_boot < boot;  // it was waiting when agentd was killed
    const bool ws = after_kill && (fig_.approvals_after_kill_ws <= fig_.approvals_after_kill_rest);
    bool ok = false;
    if (ws) {
      WsClient c;
      if (!c.connect(port, "/api/v3/socket/" + plan.id, {}, 3000)) return;
      // Opened without after_seq: the still-open approval request first.
      auto first = c.read(3000);
      if (first.kind != WsClient::Read::kFrame) return;
      if (first.text.find("\"type\":\"plan_approval_request\"") == std::string::npos) {
        std::lock_guard l(mu_);
        fig_.violations.push_back(plan.id + ": a socket after the restart did not start with the approval request: " +
                                  first.text.substr(0, 200));
        return;
      }
      if (!c.write(R"({"type":"plan_approval_response","data":{"approved":true,"feedback":"via ws"}})")) return;
      for (int i = 0; i < 20; ++i) {
        auto f = c.read(3000);
        if (f.kind != WsClient::Read::kFrame) return;
        if (f.text.find("\"type\":\"approval_processed\"") == std::string::npos) continue;
        ok = f.text.find("\"ok\":true") != std::string::npos;
        if (!ok) {
          std::lock_guard l(mu_);
          fig_.violations.push_back(plan.id + ": WebSocket approval refused: " + f.text.substr(0, 300));
        }
        break;
      }
    } else {
      std::string body =
          JsonObject().str("m_plan_id", plan.id).str("plan_id", plan.id).boolean("approved", true).done();
      auto r = http_request(port, "POST", "/api/v3/plan_approval", body, {{"content-type", "application/json"}}, 3000);
      ok = r.status == 200;
      // 409 for a plan that approves itself (auto_approve) but was killed
      // between its request and its approval: it needs no one.
      if (r.status != 200 && r.status != 0 && !(plan.auto_approve && r.status == 409)) {
        std::lock_guard l(mu_);
        fig_.violations.push_back(plan.id + ": REST approval answered " + std::to_string(r.status) + " " + r.body);
      }
    }
    if (!ok) return;
    std::lock_guard l(mu_);
    plan.approved = true;
    plan.approved_boot = boot;
    if (after_kill) ++(ws ? fig_.approvals_after_kill_ws : fig_.approvals_after_kill_rest);
  }

  void answer(int port, Plan& plan) {
    auto r = http_request(port, "GET", "/api/v3/plan/" + plan.id + "/messages?after_seq=0&limit=1000", "", {}, 3000);
    if (r.status != 200) return;
    auto d = parse_strict(r.body, JsonLimits{64 << 20, 64});
    if (!d) return;
    std::string open;
    for (const auto& m : (*d)["messages"].GetArray()) {
      std::string type = m["type"].GetString();
      if (type == "user_clarification_request") open = m["data"]["request_id"].GetString();
      if (type == "user_clarification_response") open.clear();
    }
    if (open.empty()) return;
    {
      std::lock_guard l(mu_);
      if (plan.answered.count(open)) {
        fig_.violations.push_back(plan.id + ": clarification " + open + " asked again after an acknowledged answer");
        plan.answered.erase(open);  // reported once
        return;
      }
    }
    std::string body = JsonObject().str("request_id", open).str("answer", "March").str("plan_id", plan.id).done();
    auto a =
        http_request(port, "POST", "/api/v3/user_clarification", body, {{"content-type", "application/json"}}, 3000);
    if (a.status != 200) return;
    std::lock_guard l(mu_);
    plan.answered.insert(open);
    ++fig_.answers;
    if (!last_) ++fig_.answers_before_last;
  }

  std::vector<Plan>& plans_;
  bool last_ = false;
  Figures& fig_;
  std::mutex& mu_;
};

}  // namespace

TEST_CASE("SIGKILLs while plans run: every plan resumes and completes, each step's messages once") {
  const int iterations = env_int("AGENTD_RESUME_ITERATIONS", 30);
  const size_t total = static_cast<size_t>(env_int("AGENTD_RESUME_PLANS", std::max(40, iterations * 3 / 2)));
  const unsigned seed = static_cast<unsigned>(env_int("AGENTD_RESUME_SEED", 15));
  std::mt19937 rng(seed);
  Agentd a;
  const std::string record = a.dir() + "/executions.txt";
  const std::vector<std::string> args{"--teams-dir", write_team(a.dir(), record), "--max-concurrent-plans", "8"};

  std::vector<Plan> plans;
  Figures fig;
  std::mutex mu;
  Driver driver(plans, fig, mu);
  std::vector<int> boot_pids;
  const auto started = std::chrono::steady_clock::now();
  for (int boot = 0; boot < iterations; ++boot) {
    a.start(args);
    boot_pids.push_back(a.proc().pid());
    // Plans arrive over the first two thirds of the loop: later kills hit running ones.
    size_t want = std::min(
        total, (total * static_cast<size_t>(boot + 1) * 3 + iterations * 2 - 1) / static_cast<size_t>(iterations * 2));
    std::atomic<bool> stop{false};
    std::thread t([&, boot, want] { driver.run(a.port(), boot, want, false, stop); });
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(150, 900)(rng)));
    a.proc().kill();  // SIGKILL
    stop = true;
    t.join();
  }
  // The last start: everything finishes.
  a.start(args);
  const int last_boot = iterations;
  boot_pids.push_back(a.proc().pid());
  {
    std::atomic<bool> stop{false};
    std::thread t([&] { driver.run(a.port(), last_boot, total, true, stop); });
    auto until = std::chrono::steady_clock::now() + 90s;
    for (;;) {
      auto r = http_get(a.port(), "/api/v3/plans");
      REQUIRE(r.status == 200);
      auto d = json(r.body);
      size_t finished = 0;
      for (const auto& p : d.GetArray()) finished += std::string(p["status"].GetString()) == "completed";
      std::lock_guard l(mu);
      if (plans.size() == total && finished == d.GetArray().Size() && finished >= total) break;
      if (std::chrono::steady_clock::now() > until) break;
      std::this_thread::sleep_for(100ms);
    }
    stop = true;
    t.join();
  }

  for (const auto& v : fig.violations) MESSAGE(v);
  CHECK(fig.violations.empty());
  REQUIRE(plans.size() == total);

  // The side file: plan -> step -> [(attempt, pid)].
  std::map<std::string, std::map<int, std::vector<std::pair<int, int>>>> ran;
  {
    std::istringstream in(read_file(record));
    std::string plan;
    int step = 0, attempt = 0, pid = 0;
    while (in >> plan >> step >> attempt >> pid) ran[plan][step].emplace_back(attempt, pid);
  }
  size_t executions = 0, reruns = 0, steps_rerun = 0, resumes = 0;
  for (const Plan& p : plans) {
    CAPTURE(p.id);
    auto rec = http_get(a.port(), "/api/v3/plan?plan_id=" + p.id);
    REQUIRE(rec.status == 200);
    CHECK(std::string(json(rec.body)["plan"]["status"].GetString()) == "completed");
    std::vector<std::string> log = log_of(a.port(), p.id);
    std::map<std::string, int> ids, types;
    std::map<int, int> done_attempt;  // step -> attempt of its step_done message
    uint64_t expect = 1;
    for (const auto& bytes : log) {
      auto e = json(bytes);
      CHECK(e["seq"].GetUint64() == expect++);
      std::string type = e["type"].GetString(), mid = e["message_id"].GetString();
      ++ids[mid];
      ++types[type];
      if (type == "system_message") ++resumes;
      if (type == "agent_message" && e["metadata"].HasMember("step_done")) {
        done_attempt[e["metadata"]["step"].GetInt()] = e["metadata"]["attempt"].GetInt();
      }
    }
    for (const auto& [mid, n] : ids) CHECK_MESSAGE(n == 1, mid << " logged " << n << " times");
    for (const auto& [step, n] : kMessagesPerStep) {
      for (int i = 0; i < n; ++i) {
        std::string mid = p.id + ":s" + std::to_string(step) + ":" + std::to_string(i);
        CHECK_MESSAGE(ids.count(mid) == 1, mid << " missing");
      }
    }
    CHECK(types["plan_approval_request"] == 1);
    CHECK(types["plan_approval_response"] == 1);
    CHECK(types["user_clarification_request"] == 1);
    CHECK(types["user_clarification_response"] == 1);
    CHECK(types["final_result_message"] == 1);
    CHECK(types["error_message"] == 0);
    CHECK(types["agent_message"] == 7);
    // Each step ran at least once; more only across kills (another agentd
    // each time), and never after its completion was logged.
    for (const auto& [step, n] : kMessagesPerStep) {
      CAPTURE(step);
      const auto& runs = ran[p.id][step];
      REQUIRE(!runs.empty());
      executions += runs.size();
      if (runs.size() > 1) {
        ++steps_rerun;
        reruns += runs.size() - 1;
      }
      std::set<int> pids;
      for (size_t i = 0; i < runs.size(); ++i) {
        CHECK_MESSAGE(pids.insert(runs[i].second).second, "step ran twice in one agentd process");
        if (i > 0) CHECK(runs[i].first > runs[i - 1].first);
        // Every execution but the last was cut by a kill: its process is not the last one.
        if (i + 1 < runs.size()) CHECK(runs[i].second != boot_pids.back());
      }
      CHECK_MESSAGE(done_attempt[step] == runs.back().first, "an execution after the step's completion was logged");
    }
  }
  size_t approved_before_kill = 0;
  for (const Plan& p : plans) approved_before_kill += p.approved_boot >= 0 && p.approved_boot < last_boot;
  const size_t steps = total * kMessagesPerStep.size();
  MESSAGE(
      iterations << " SIGKILLs, " << total << " plans, " << steps << " steps: " << executions << " step executions, "
                 << steps_rerun << " steps ran again (" << reruns << " extra runs), " << resumes
                 << " resumes logged; approvals after a kill: " << fig.approvals_after_kill_rest << " REST, "
                 << fig.approvals_after_kill_ws << " WebSocket; " << approved_before_kill << " approvals and "
                 << fig.answers_before_last << " of " << fig.answers
                 << " answers given in a process later killed, none asked again; seed " << seed << "; "
                 << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count()
                 << " s");
  CHECK(fig.approvals_after_kill_rest > 0);
  CHECK(fig.approvals_after_kill_ws > 0);
  CHECK(resumes > 0);
}
