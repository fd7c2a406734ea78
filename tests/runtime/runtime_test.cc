// The agent runtime against a real Outbox (LMDB in a temp folder): the plan
// life cycle, approvals, clarifications, timeouts, cancel, failures, restart
// recovery, concurrency, and the LLM planner/agent against a local
// OpenAI-compatible test server.
#include <doctest/doctest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "core/clock.h"
#include "core/json.h"
#include "core/runtime/runtime.h"
#include "net/llm_client.h"
#include "outbox/outbox.h"
#include "tests/support/forwarding_log.h"
#include "tests/support/process.h"

using namespace agentd;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

const char* kUser = "user-a";

TeamConfig team_from(const std::string& json) {
  auto t = parse_team(json, "test-team.json");
  REQUIRE_MESSAGE(t.is_ok(), t.status().to_string());
  return *t;
}

std::string script_team(const std::string& id, const std::string& script_b = "{}") {
  return R"({"team_id":")" + id +
         R"(","name":"T","description":"test team","agents":[
      {"name":"A","type":"script","description":"does a"},
      {"name":"B","type":"script","description":"does b","script":)" +
         script_b + R"(}]})";
}

// A MessageLog over the outbox that fails appends of one message type with
// kIoError (not sticky: later appends go through), `fail` times; and that
// calls `on_commit` when an append of `hook_type` committed, before the
// runtime hears of it (a request that comes at that moment: an interleaving
// forced, not slept for).
struct FlakyLog final : test::ForwardingLog {
  void append(AppendRequest req, AppendCallback done) override {
    if (req.message && req.message->tail.find("\"type\":\"" + fail_type + "\"") != std::string::npos &&
        fail.fetch_sub(1) > 0) {
      return done(io_error("injected append failure"));
    }
    if (on_commit && req.message && req.message->tail.find("\"type\":\"" + hook_type + "\"") != std::string::npos) {
      std::string plan_id = req.message->plan_id;
      return inner->append(std::move(req),
                           [this, plan_id = std::move(plan_id), done = std::move(done)](Result<AppendResult> r) {
                             if (r) on_commit(plan_id);
                             done(std::move(r));
                           });
    }
    inner->append(std::move(req), std::move(done));
  }
  std::string fail_type;
  std::atomic<int> fail{0};
  std::string hook_type;
  std::function<void(const std::string& plan_id)> on_commit;  // on the outbox's thread
};

// An io_context with two threads, an outbox and a runtime, torn down in order.
struct Harness {
  explicit Harness(std::vector<TeamConfig> teams, RuntimeOptions opts = {}, ModelClient* model = nullptr,
                   std::string dir = test::make_temp_dir("agentd-runtime"), FlakyLog* flaky = nullptr)
      : dir_(std::move(dir)), work_(asio::make_work_guard(ioc_)) {
    OutboxOptions o;
    o.dir = dir_;
    auto ob = Outbox::open(o);
    REQUIRE_MESSAGE(ob.is_ok(), ob.status().to_string());
    outbox = std::move(ob).value();
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { ioc_.run(); });
    MessageLog* log = outbox.get();
    if (flaky) {
      flaky->inner = outbox.get();
      log = flaky;
    }
    runtime = std::make_unique<Runtime>(ioc_.get_executor(), *log, std::move(teams), opts, model, metrics);
  }
  ~Harness() {
    runtime->shutdown(2000ms);
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_) t.join();
    runtime.reset();
    outbox.reset();
    if (!keep_dir) std::filesystem::remove_all(dir_);
  }

  SubmitResult submit(const std::string& task, std::optional<bool> auto_approve = std::nullopt,
                      const std::string& team = "") {
    std::promise<Result<SubmitResult>> p;
    runtime->submit(SubmitRequest{kUser, task, "", team, auto_approve},
                    [&](Result<SubmitResult> r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
    return *r;
  }
  Result<std::string> approve(ApprovalRequest req) {
    std::promise<Result<std::string>> p;
    runtime->approve(std::move(req), [&](Result<std::string> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  Status clarify(ClarificationRequest req) {
    std::promise<Status> p;
    runtime->clarify(std::move(req), [&](Status s) { p.set_value(std::move(s)); });
    return p.get_future().get();
  }
  Status cancel(const std::string& user, const std::string& plan_id) {
    std::promise<Status> p;
    runtime->cancel(user, plan_id, [&](Status s) { p.set_value(std::move(s)); });
    return p.get_future().get();
  }
  PlanRecord plan(const std::string& id) {
    auto p = outbox->get_plan(id);
    REQUIRE(p.is_ok());
    REQUIRE(p->has_value());
    return **p;
  }
  PlanRecord wait_status(const std::string& id, PlanStatus want, std::chrono::milliseconds timeout = 10s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      auto p = outbox->get_plan(id);
      if (p.is_ok() && p->has_value() && (*p)->status == want) return **p;
      std::this_thread::sleep_for(5ms);
    }
    FAIL("plan " << id << " did not reach " << plan_status_name(want) << "; it is "
                 << plan_status_name(plan(id).status));
    return {};
  }
  // Waits for the plan to fail; its last message is the error_message whose
  // content contains `what`.
  void wait_failed_with(const std::string& id, const std::string& what) {
    wait_status(id, PlanStatus::kFailed);
    auto msgs = messages(id);
    REQUIRE(msgs.back().type == "error_message");
    CHECK(field(msgs.back(), "content").find(what) != std::string::npos);
  }
  // The runtime's active plans once none is left, or after 5 s: a plan is
  // forgotten just after its end commits (which wait_status sees).
  size_t wait_inactive() {
    auto until = std::chrono::steady_clock::now() + 5s;
    while (runtime->active_plans() > 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
    return runtime->active_plans();
  }
  std::vector<Envelope> messages(const std::string& id) {
    auto m = outbox->read_messages(id, 0, 100000);
    REQUIRE(m.is_ok());
    std::vector<Envelope> out;
    uint64_t expect = 1;
    for (const auto& s : *m) {
      CHECK(s.seq == expect++);
      auto e = decode_envelope(*s.bytes, kStoredJson);
      REQUIRE_MESSAGE(e.is_ok(), e.status().to_string());
      out.push_back(*e);
    }
    return out;
  }
  std::vector<std::string> types(const std::string& id) {
    std::vector<std::string> t;
    for (const auto& e : messages(id)) t.push_back(e.type);
    return t;
  }
  std::string field(const Envelope& e, const char* name) {
    auto d = parse_strict(e.data, kStoredJson);
    REQUIRE(d.is_ok());
    auto it = d->FindMember(name);
    if (it == d->MemberEnd()) return "<missing>";
    return it->value.IsString() ? it->value.GetString() : write_canonical(it->value);
  }

  MetricsRegistry metrics;
  std::unique_ptr<Outbox> outbox;
  std::unique_ptr<Runtime> runtime;
  bool keep_dir = false;

 private:
  std::string dir_;
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("auto-approved plan runs every step and closes with a final result") {
  Harness h({team_from(script_team("t1", R"({"messages":3})"))});
  auto s = h.submit("close the books", true);
  PlanRecord done = h.wait_status(s.plan_id, PlanStatus::kCompleted);
  CHECK(done.user_id == kUser);
  CHECK(done.team_id == "t1");
  CHECK(done.initial_goal == "close the books");
  CHECK(done.session_id == s.session_id);
  std::vector<std::string> want = {"plan_approval_request", "plan_approval_response", "agent_message",
                                   "agent_message",         "agent_message",          "agent_message",
                                   "final_result_message"};
  CHECK(h.types(s.plan_id) == want);
  auto msgs = h.messages(s.plan_id);
  CHECK(done.last_seq == msgs.size());
  // created(planning), awaiting_approval, running, completed: four versions.
  CHECK(done.version == 4);
  CHECK(h.field(msgs[0], "status") == "PENDING_APPROVAL");
  CHECK(h.field(msgs[1], "approved") == "true");
  CHECK(h.field(msgs[2], "agent_name") == "A");
  CHECK(h.field(msgs[6], "status") == "completed");
  for (const auto& e : msgs) {
    CHECK(e.user_id == kUser);
    CHECK(e.session_id == s.session_id);
  }
  auto mp = parse_strict(done.m_plan);
  REQUIRE(mp.is_ok());
  CHECK((*mp)["steps"].Size() == 2);
  CHECK(std::string((*mp)["steps"][1]["agent"].GetString()) == "B");
  // The full MPlan the MACAE UIs read, in the record and under the approval
  // request's data.plan (with status and context).
  CHECK(std::string((*mp)["plan_id"].GetString()) == s.plan_id);
  CHECK(std::string((*mp)["user_id"].GetString()) == kUser);
  CHECK(std::string((*mp)["team_id"].GetString()) == "t1");
  CHECK(std::string((*mp)["user_request"].GetString()) == "close the books");
  CHECK((*mp)["overall_status"].IsString());
  auto ask = parse_strict(msgs[0].data);
  REQUIRE(ask.is_ok());
  CHECK_FALSE(ask->HasMember("m_plan"));
  REQUIRE((*ask)["plan"].IsObject());
  CHECK(write_canonical((*ask)["plan"]) == done.m_plan);
  CHECK(h.field(msgs[0], "m_plan_id") == std::string((*mp)["id"].GetString()));
  CHECK(h.field(msgs[0], "plan_id") == s.plan_id);
  CHECK(std::string((*ask)["context"]["task"].GetString()) == "close the books");
  CHECK((*ask)["context"]["participant_descriptions"].IsObject());
  // Counted just after the final append commits (which wait_status sees).
  auto& finished = h.metrics.counter("agentd_plans_finished_total", "");
  auto until = std::chrono::steady_clock::now() + 5s;
  while (finished.value() < 1 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
  CHECK(finished.value() == 1);
}

TEST_CASE("approval by m_plan_id or plan id; wrong, repeated, foreign and unknown approvals") {
  Harness h({team_from(script_team("t1"))});
  auto s = h.submit("task one", false);
  h.wait_status(s.plan_id, PlanStatus::kAwaitingApproval);
  auto msgs = h.messages(s.plan_id);
  std::string m_plan_id = h.field(msgs[0], "m_plan_id");
  CHECK(m_plan_id.size() == 36);

  auto other = h.submit("task two", false);
  h.wait_status(other.plan_id, PlanStatus::kAwaitingApproval);

  auto mismatch = h.approve({kUser, m_plan_id, other.plan_id, true, ""});
  CHECK(mismatch.status().code() == Code::kInvalidArgument);
  auto foreign = h.approve({"user-b", m_plan_id, "", true, ""});
  CHECK(foreign.status().code() == Code::kNotFound);
  auto unknown = h.approve({kUser, "no-such-plan", "", true, ""});
  CHECK(unknown.status().code() == Code::kNotFound);

  auto ok = h.approve({kUser, m_plan_id, s.plan_id, true, "Plan approved by user"});
  REQUIRE_MESSAGE(ok.is_ok(), ok.status().to_string());
  CHECK(*ok == "approval recorded");
  h.wait_status(s.plan_id, PlanStatus::kCompleted);
  auto again = h.approve({kUser, m_plan_id, "", true, ""});
  CHECK(again.status().code() == Code::kFailedPrecondition);
  auto again_by_plan = h.approve({kUser, s.plan_id, "", true, ""});
  CHECK(again_by_plan.status().code() == Code::kFailedPrecondition);

  // The plan id works as m_plan_id too (contract decision 2).
  auto ok2 = h.approve({kUser, other.plan_id, "", true, ""});
  REQUIRE(ok2.is_ok());
  h.wait_status(other.plan_id, PlanStatus::kCompleted);
}

TEST_CASE("a rejected plan is kept, marked rejected, with the response message") {
  Harness h({team_from(script_team("t1"))});
  auto s = h.submit("do not do it", false);
  h.wait_status(s.plan_id, PlanStatus::kAwaitingApproval);
  auto r = h.approve({kUser, s.plan_id, "", false, "no thanks"});
  REQUIRE(r.is_ok());
  CHECK(*r == "rejected");
  PlanRecord p = h.plan(s.plan_id);
  CHECK(p.status == PlanStatus::kRejected);
  auto msgs = h.messages(s.plan_id);
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[1].type == "plan_approval_response");
  CHECK(h.field(msgs[1], "approved") == "false");
  CHECK(h.field(msgs[1], "feedback") == "no thanks");
}

TEST_CASE("approval timeout cancels the plan with an error_message that keeps the timeout_notification fields") {
  RuntimeOptions o;
  o.approval_timeout = 200ms;
  Harness h({team_from(script_team("t1"))}, o);
  auto s = h.submit("nobody answers", false);
  h.wait_status(s.plan_id, PlanStatus::kCanceled);
  auto msgs = h.messages(s.plan_id);
  REQUIRE(msgs.size() == 2);
  // The MACAE UIs show error_message content; timeout_notification's fields
  // stay beside it.
  CHECK(msgs[1].type == "error_message");
  CHECK(h.field(msgs[1], "status") == "timeout");
  CHECK(h.field(msgs[1], "content").find("Plan canceled: No approval within") == 0);
  CHECK(h.field(msgs[1], "timeout_type") == "approval");
  CHECK(h.field(msgs[1], "request_id") == h.field(msgs[0], "m_plan_id"));
  CHECK(h.field(msgs[1], "message").find("No approval within") == 0);
  CHECK(h.field(msgs[1], "timeout_duration") != "<missing>");
  CHECK(h.wait_inactive() == 0);
}

TEST_CASE("clarification pauses the step until answered") {
  Harness h({team_from(script_team("t1", R"({"clarify":"Which month?"})"))});
  auto s = h.submit("close a month", true);
  h.wait_status(s.plan_id, PlanStatus::kAwaitingClarification);
  auto msgs = h.messages(s.plan_id);
  REQUIRE(msgs.back().type == "user_clarification_request");
  CHECK(h.field(msgs.back(), "question") == "Which month?");
  std::string rid = h.field(msgs.back(), "request_id");
  // The v3 UI parses the repr string; an echo carrying only the request_id
  // finds the request by its message_id.
  CHECK(h.field(msgs.back(), "repr") == "UserClarificationRequest(question='Which month?', request_id='" + rid + "')");
  CHECK(msgs.back().message_id == rid);

  CHECK(h.clarify({kUser, "unknown-request", "x", ""}).code() == Code::kNotFound);
  CHECK(h.clarify({"user-b", rid, "x", ""}).code() == Code::kNotFound);
  Status st = h.clarify({kUser, rid, "March", s.plan_id});
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  h.wait_status(s.plan_id, PlanStatus::kCompleted);
  CHECK(h.clarify({kUser, rid, "again", ""}).code() == Code::kNotFound);
  auto all = h.messages(s.plan_id);
  bool found = false;
  for (const auto& e : all) {
    if (e.type == "user_clarification_response") {
      found = true;
      CHECK(h.field(e, "answer") == "March");
      CHECK(h.field(e, "agent_type") == "Human_Agent");
    }
  }
  CHECK(found);
}

TEST_CASE("clarification timeout cancels the plan") {
  RuntimeOptions o;
  o.clarification_timeout = 150ms;
  Harness h({team_from(script_team("t1", R"({"clarify":"Which?"})"))}, o);
  auto s = h.submit("x", true);
  h.wait_status(s.plan_id, PlanStatus::kCanceled);
  auto msgs = h.messages(s.plan_id);
  REQUIRE(msgs.size() >= 2);
  const Envelope& asked = msgs[msgs.size() - 2];
  REQUIRE(asked.type == "user_clarification_request");
  CHECK(msgs.back().type == "error_message");
  CHECK(h.field(msgs.back(), "status") == "timeout");
  CHECK(h.field(msgs.back(), "content").find("Plan canceled: No answer within") == 0);
  CHECK(h.field(msgs.back(), "timeout_type") == "clarification");
  CHECK(h.field(msgs.back(), "request_id") == h.field(asked, "request_id"));
}

TEST_CASE("a user cancels a running plan; cancel of a finished or foreign plan") {
  Harness h({team_from(script_team("t1", R"({"messages":1000,"delay_ms":20})"))});
  auto s = h.submit("long", true);
  h.wait_status(s.plan_id, PlanStatus::kRunning);
  CHECK(h.cancel("user-b", s.plan_id).code() == Code::kNotFound);
  Status st = h.cancel(kUser, s.plan_id);
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  CHECK(h.plan(s.plan_id).status == PlanStatus::kCanceled);  // durable before the callback
  auto msgs = h.messages(s.plan_id);
  CHECK(msgs.back().type == "error_message");
  CHECK(h.field(msgs.back(), "status") == "canceled");
  CHECK(h.field(msgs.back(), "content") == "Plan canceled by the user");
  CHECK(h.cancel(kUser, s.plan_id).code() == Code::kFailedPrecondition);
  CHECK(h.cancel(kUser, "nope").code() == Code::kNotFound);
}

// Issue 13, item 10: an approval sent the moment the approval request
// commits (a client that saw it live) finds the plan waiting: it was refused
// 409 when the plan was marked waiting only after the append returned, and
// the plan then timed out.
TEST_CASE("an approval sent the moment the approval request commits is accepted") {
  FlakyLog hook;
  hook.hook_type = "plan_approval_request";
  Harness* hp = nullptr;
  std::promise<Result<std::string>> answer;
  hook.on_commit = [&](const std::string& plan_id) {
    hp->runtime->approve({kUser, plan_id, "", true, "at once"},
                         [&](Result<std::string> r) { answer.set_value(std::move(r)); });
  };
  RuntimeOptions o;
  o.approval_timeout = 2s;  // what a refused approval would end in
  Harness h({team_from(script_team("t1"))}, o, nullptr, test::make_temp_dir("agentd-runtime"), &hook);
  hp = &h;
  auto s = h.submit("approve at once", false);
  auto fut = answer.get_future();
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  auto r = fut.get();
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  CHECK(*r == "approval recorded");
  h.wait_status(s.plan_id, PlanStatus::kCompleted);
}

// Issue 13, item 10: a cancel is decided on the plan's strand against its
// ending. The final append wins when the cancel comes while it commits: the
// cancel is answered 409 with the real status (it was answered "canceled"
// for a completed plan).
TEST_CASE("a cancel racing the final append is refused with the plan's real status, never answered canceled") {
  FlakyLog hook;
  hook.hook_type = "final_result_message";
  Harness* hp = nullptr;
  std::promise<Status> answer;
  hook.on_commit = [&](const std::string& plan_id) {
    // The final result is committed; the runtime has not heard yet.
    hp->runtime->cancel(kUser, plan_id, [&](Status st) { answer.set_value(std::move(st)); });
  };
  Harness h({team_from(script_team("t1"))}, {}, nullptr, test::make_temp_dir("agentd-runtime"), &hook);
  hp = &h;
  auto s = h.submit("race the end", true);
  auto fut = answer.get_future();
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  Status st = fut.get();
  CHECK_MESSAGE(st.code() == Code::kFailedPrecondition, st.to_string());
  CHECK_MESSAGE(st.message().find("status: completed") != std::string::npos, st.to_string());
  CHECK(h.wait_status(s.plan_id, PlanStatus::kCompleted).status == PlanStatus::kCompleted);
  CHECK(h.types(s.plan_id).back() == "final_result_message");
  CHECK(h.wait_inactive() == 0);
}

// The other side: a cancel that comes before the ending began wins — the
// plan ends canceled and no final result follows.
TEST_CASE("a cancel during the last step's append wins: the plan ends canceled, no final result after") {
  FlakyLog hook;
  hook.hook_type = "agent_message";
  Harness* hp = nullptr;
  std::promise<Status> answer;
  std::atomic<int> seen{0};
  hook.on_commit = [&](const std::string& plan_id) {
    // The last step's (B's) only message is committed: cancel before the
    // runtime goes on to the final result.
    if (seen.fetch_add(1) == 1) {
      hp->runtime->cancel(kUser, plan_id, [&](Status st) { answer.set_value(std::move(st)); });
    }
  };
  Harness h({team_from(script_team("t1"))}, {}, nullptr, test::make_temp_dir("agentd-runtime"), &hook);
  hp = &h;
  auto s = h.submit("cancel at the end", true);
  auto fut = answer.get_future();
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  Status st = fut.get();
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  CHECK(h.plan(s.plan_id).status == PlanStatus::kCanceled);
  auto types = h.types(s.plan_id);
  CHECK(std::count(types.begin(), types.end(), "final_result_message") == 0);
  CHECK(types.back() == "error_message");
  CHECK(h.wait_inactive() == 0);
}

TEST_CASE("an agent error becomes an error message and a failed plan") {
  Harness h({team_from(script_team("t1", R"({"fail":true})"))});
  auto s = h.submit("will fail", true);
  h.wait_status(s.plan_id, PlanStatus::kFailed);
  auto msgs = h.messages(s.plan_id);
  CHECK(msgs.back().type == "error_message");
  CHECK(h.field(msgs.back(), "agent_name") == "B");
  CHECK(h.field(msgs.back(), "content").find("failed on step 2") != std::string::npos);
}

TEST_CASE("unknown team and empty description are rejected") {
  Harness h({team_from(script_team("t1"))});
  std::promise<Result<SubmitResult>> p1, p2;
  h.runtime->submit({kUser, "x", "", "nope", true}, [&](Result<SubmitResult> r) { p1.set_value(std::move(r)); });
  CHECK(p1.get_future().get().status().code() == Code::kInvalidArgument);
  h.runtime->submit({kUser, "", "", "", true}, [&](Result<SubmitResult> r) { p2.set_value(std::move(r)); });
  CHECK(p2.get_future().get().status().code() == Code::kInvalidArgument);
}

// The task is copied into the plan record, its m_plan and the approval
// request: a bounded length keeps them readable (a 600 KB task once made a
// 3 MB plan record that read back as corrupt).
TEST_CASE("a task over kMaxTaskBytes or a session_id over kMaxSessionIdBytes is rejected, naming the field") {
  Harness h({team_from(script_team("t1"))});
  auto submit = [&](std::string description, std::string session_id) {
    std::promise<Result<SubmitResult>> p;
    h.runtime->submit({kUser, std::move(description), std::move(session_id), "t1", true},
                      [&](Result<SubmitResult> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  };
  auto long_task = submit(std::string(kMaxTaskBytes + 1, 't'), "");
  CHECK(long_task.status().code() == Code::kInvalidArgument);
  CHECK(long_task.status().message().find("description: 65537 bytes, over the limit of 65536") != std::string::npos);
  auto long_session = submit("task", std::string(kMaxSessionIdBytes + 1, 's'));
  CHECK(long_session.status().code() == Code::kInvalidArgument);
  CHECK(long_session.status().message().find("session_id:") != std::string::npos);
  // At the limit: the plan runs to the end and reads back.
  auto at_limit = submit(std::string(kMaxTaskBytes, 't'), std::string(kMaxSessionIdBytes, 's'));
  REQUIRE_MESSAGE(at_limit.is_ok(), at_limit.status().to_string());
  h.wait_status(at_limit->plan_id, PlanStatus::kCompleted);
}

// The rule planner repeats the task in each step: 40 agents and a 64 KiB
// task make a 2.6 MB m_plan. The plan fails, naming why, and stays readable
// (before, the outbox refused the record and the plan never ended).
TEST_CASE("a plan whose record would pass kMaxPlanRecordBytes fails at planning, naming the size") {
  std::string agents;
  for (int i = 0; i < 40; ++i) {
    agents += std::string(i ? "," : "") + R"({"name":"A)" + std::to_string(i) + R"(","type":"script"})";
  }
  Harness h({team_from(R"({"team_id":"big","name":"Big","agents":[)" + agents + "]}")});
  std::promise<Result<SubmitResult>> p;
  h.runtime->submit({kUser, std::string(kMaxTaskBytes, 't'), "", "big", true},
                    [&](Result<SubmitResult> r) { p.set_value(std::move(r)); });
  auto s = p.get_future().get();
  REQUIRE_MESSAGE(s.is_ok(), s.status().to_string());
  h.wait_status(s->plan_id, PlanStatus::kFailed);
  auto msgs = h.messages(s->plan_id);
  REQUIRE_FALSE(msgs.empty());
  CHECK(msgs.back().type == "error_message");
  CHECK_MESSAGE(h.field(msgs.back(), "content").find("Planning failed: plan record of") != std::string::npos,
                h.field(msgs.back(), "content"));
}

TEST_CASE("teams: list, get, select") {
  Harness h({team_from(script_team("t1")), team_from(script_team("t2"))});
  CHECK(h.runtime->team_configs().size() == 2);
  CHECK(h.runtime->team_config("t2").has_value());
  CHECK_FALSE(h.runtime->team_config("zz").has_value());
  CHECK(h.runtime->current_team(kUser)->find("\"t1\"") != std::string::npos);
  CHECK(h.runtime->select_team(kUser, "zz").code() == Code::kNotFound);
  REQUIRE(h.runtime->select_team(kUser, "t2").is_ok());
  CHECK(h.runtime->current_team(kUser)->find("\"t2\"") != std::string::npos);
  auto s = h.submit("on t2", true);
  CHECK(h.wait_status(s.plan_id, PlanStatus::kCompleted).team_id == "t2");
}

TEST_CASE("50 concurrent plans with a concurrency bound of 4 all complete") {
  RuntimeOptions o;
  o.max_concurrent_plans = 4;
  Harness h({team_from(script_team("t1", R"({"messages":5,"delay_ms":2})"))}, o);
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(h.submit("plan " + std::to_string(i), true).plan_id);
  for (const auto& id : ids) {
    h.wait_status(id, PlanStatus::kCompleted, 60s);
    CHECK(h.messages(id).size() == 9);  // request, response, 1 + 5 agent messages, final
  }
  CHECK(h.wait_inactive() == 0);
}

TEST_CASE("restart with resume off: unfinished plans are marked interrupted with an error_message") {
  std::string dir = test::make_temp_dir("agentd-runtime-restart");
  std::string waiting, running;
  {
    Harness h({team_from(script_team("t1", R"({"messages":1000,"delay_ms":20})"))}, {}, nullptr, dir);
    h.keep_dir = true;
    waiting = h.submit("waits", false).plan_id;
    running = h.submit("runs", true).plan_id;
    h.wait_status(waiting, PlanStatus::kAwaitingApproval);
    h.wait_status(running, PlanStatus::kRunning);
  }  // shutdown: nothing more is announced
  RuntimeOptions interrupt;
  interrupt.resume_after_restart = false;
  Harness h({team_from(script_team("t1"))}, interrupt, nullptr, dir);
  CHECK(h.plan(running).status == PlanStatus::kRunning);
  REQUIRE(h.runtime->recover().is_ok());
  for (const auto& id : {waiting, running}) {
    PlanRecord p = h.plan(id);
    CHECK(p.status == PlanStatus::kInterrupted);
    auto msgs = h.messages(id);
    CHECK(msgs.back().type == "error_message");
    CHECK(h.field(msgs.back(), "status") == "interrupted");
    CHECK(h.field(msgs.back(), "content").find("Plan interrupted") == 0);
  }
  size_t before = h.messages(running).size();
  REQUIRE(h.runtime->recover().is_ok());  // idempotent: nothing left to mark
  CHECK(h.messages(running).size() == before);
  CHECK(h.messages(running).back().type == "error_message");
}

// --- resume after a restart (recover() with resume_after_restart on) ----------------

namespace {

// A team whose agents record each step execution in `record` (script.record).
std::string recording_team(const std::string& record, const std::string& b_extra = "") {
  return R"({"team_id":"t1","name":"T","description":"test team","agents":[
      {"name":"A","type":"script","description":"does a","script":{"record":")" +
         record + R"("}},
      {"name":"B","type":"script","description":"does b","script":{"messages":3,"delay_ms":250,"record":")" +
         record + "\"" + b_extra + "}}]}";
}

// The lines of a script.record file: (plan, step, attempt).
std::vector<std::tuple<std::string, int, int>> executions(const std::string& path) {
  std::vector<std::tuple<std::string, int, int>> out;
  std::istringstream in(test::read_file(path));
  std::string plan;
  int step = 0, attempt = 0, pid = 0;
  while (in >> plan >> step >> attempt >> pid) out.emplace_back(plan, step, attempt);
  return out;
}

void wait_message(Harness& h, const std::string& plan_id, const std::string& message_id) {
  auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    auto m = h.outbox->find_message(plan_id, message_id);
    if (m.is_ok() && m->has_value()) return;
    std::this_thread::sleep_for(5ms);
  }
  FAIL("message " << message_id << " never logged");
}

std::string metadata_field(const Envelope& e, const char* name) {
  auto d = parse_strict(e.metadata);
  REQUIRE(d.is_ok());
  auto it = d->FindMember(name);
  return it == d->MemberEnd() ? "<missing>" : write_canonical(it->value);
}

// Appends a message (and the record moved to `status`) as the runtime would.
void seed(Outbox& ob, PlanRecord& rec, const std::string& type, const std::string& data,
          std::optional<PlanStatus> status, const std::string& message_id, const std::string& metadata = "{}") {
  MessageDraft d;
  d.type = type;
  d.plan_id = rec.plan_id;
  d.message_id = message_id;
  d.user_id = rec.user_id;
  d.session_id = rec.session_id;
  d.data = data;
  d.metadata = metadata;
  AppendRequest r;
  r.message = prepare(std::move(d));
  if (status) {
    rec.status = *status;
    r.plan = rec;
  }
  auto res = ob.append_sync(std::move(r));
  REQUIRE_MESSAGE(res.is_ok(), res.status().to_string());
}

PlanRecord seed_plan(Outbox& ob, const std::string& id, const std::string& team, PlanStatus status,
                     const std::string& m_plan = "null") {
  PlanRecord p;
  p.plan_id = id;
  p.user_id = kUser;
  p.session_id = "s-" + id;
  p.team_id = team;
  p.initial_goal = "seeded " + id;
  p.status = status;
  p.m_plan = m_plan;
  p.created_at = p.updated_at = now_rfc3339();
  AppendRequest r;
  r.plan = p;
  auto res = ob.append_sync(std::move(r));
  REQUIRE_MESSAGE(res.is_ok(), res.status().to_string());
  return p;
}

std::string two_step_m_plan(const std::string& plan_id) {
  MPlan mp;
  mp.id = "mp-" + plan_id;
  mp.plan_id = plan_id;
  mp.user_id = kUser;
  mp.team_id = "t1";
  mp.user_request = "seeded " + plan_id;
  mp.team = {"A", "B"};
  mp.steps = {{"1", "A", "a"}, {"2", "B", "b"}};
  return mp.to_json();
}

}  // namespace

TEST_CASE("resume: a plan awaiting approval keeps waiting and is approved after the restart") {
  std::string dir = test::make_temp_dir("agentd-runtime-resume");
  std::string id, m_plan_id;
  {
    Harness h({team_from(script_team("t1"))}, {}, nullptr, dir);
    h.keep_dir = true;
    id = h.submit("waits", false).plan_id;
    h.wait_status(id, PlanStatus::kAwaitingApproval);
    m_plan_id = h.field(h.messages(id)[0], "m_plan_id");
    CHECK(metadata_field(h.messages(id)[0], "auto_approve") == "false");
  }
  Harness h({team_from(script_team("t1"))}, {}, nullptr, dir);
  REQUIRE(h.runtime->recover().is_ok());
  auto msgs = h.messages(id);
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[1].type == "system_message");
  CHECK(h.field(msgs[1], "content") == "resumed after restart: waiting for approval");
  CHECK(h.field(msgs[1], "status") == "resumed");
  // The record still names the open request (WebSockets without after_seq send it first).
  PlanRecord rec = h.plan(id);
  CHECK(rec.status == PlanStatus::kAwaitingApproval);
  CHECK(rec.last_seq == 1);
  REQUIRE(h.runtime->recover().is_ok());  // a second call resumes nothing twice
  CHECK(h.messages(id).size() == 2);
  auto ok = h.approve({kUser, m_plan_id, id, true, ""});
  REQUIRE_MESSAGE(ok.is_ok(), ok.status().to_string());
  h.wait_status(id, PlanStatus::kCompleted);
  std::vector<std::string> want = {"plan_approval_request", "system_message", "plan_approval_response",
                                   "agent_message",         "agent_message",  "final_result_message"};
  CHECK(h.types(id) == want);
}

// A 64 KiB task for 20 agents: the rule plan repeats it in each step, a
// 1.4 MB m_plan in a record under kMaxPlanRecordBytes. Resuming reads it back
// with the stored limits (with a request body's 1 MiB the plan was failed as
// "cannot be understood").
TEST_CASE("resume: a plan whose m_plan is over 1 MiB keeps waiting for its approval") {
  std::string agents;
  for (int i = 0; i < 20; ++i) {
    agents += std::string(i ? "," : "") + R"({"name":"A)" + std::to_string(i) + R"(","type":"script"})";
  }
  const std::string team = R"({"team_id":"wide","name":"Wide","agents":[)" + agents + "]}";
  std::string dir = test::make_temp_dir("agentd-runtime-resume-wide");
  std::string id;
  {
    Harness h({team_from(team)}, {}, nullptr, dir);
    h.keep_dir = true;
    std::promise<Result<SubmitResult>> p;
    h.runtime->submit({kUser, std::string(kMaxTaskBytes, 't'), "", "wide", false},
                      [&](Result<SubmitResult> r) { p.set_value(std::move(r)); });
    auto s = p.get_future().get();
    REQUIRE_MESSAGE(s.is_ok(), s.status().to_string());
    id = s->plan_id;
    h.wait_status(id, PlanStatus::kAwaitingApproval);
    CHECK(h.plan(id).m_plan.size() > (1u << 20));
  }
  Harness h({team_from(team)}, {}, nullptr, dir);
  REQUIRE(h.runtime->recover().is_ok());
  auto msgs = h.messages(id);
  REQUIRE(msgs.size() == 2);
  CHECK_MESSAGE(h.field(msgs[1], "content") == "resumed after restart: waiting for approval",
                h.field(msgs[1], "content"));
  CHECK(h.plan(id).status == PlanStatus::kAwaitingApproval);
}

TEST_CASE("resume: an approval wait's timeout counts from the request's timestamp") {
  RuntimeOptions o;
  o.approval_timeout = 2000ms;
  std::string dir = test::make_temp_dir("agentd-runtime-resume");
  std::string soon, expired;
  auto ms = [](const Envelope& e) {
    int64_t t = 0;
    REQUIRE(parse_rfc3339_ms(e.timestamp, &t));
    return t;
  };
  {
    Harness h({team_from(script_team("t1"))}, o, nullptr, dir);
    h.keep_dir = true;
    soon = h.submit("soon", false).plan_id;
    h.wait_status(soon, PlanStatus::kAwaitingApproval);
    std::this_thread::sleep_for(1500ms);
  }
  {
    Harness h({team_from(script_team("t1"))}, o, nullptr, dir);
    h.keep_dir = true;
    REQUIRE(h.runtime->recover().is_ok());
    h.wait_status(soon, PlanStatus::kCanceled, 10s);
    auto msgs = h.messages(soon);
    CHECK(msgs.back().type == "error_message");
    CHECK(h.field(msgs.back(), "status") == "timeout");
    CHECK(h.field(msgs.back(), "timeout_type") == "approval");
    CHECK(h.field(msgs.back(), "request_id") == h.field(msgs[0], "m_plan_id"));
    // Ended when the first wait would have (2 s after the request), not 2 s
    // after the restart (3.5 s); the rest is start-up time.
    int64_t waited = ms(msgs.back()) - ms(msgs[0]);
    CHECK(waited >= 2000);
    CHECK(waited < 3200);
    expired = h.submit("expires while agentd is down", false).plan_id;
    h.wait_status(expired, PlanStatus::kAwaitingApproval);
  }
  std::this_thread::sleep_for(2100ms);
  Harness h({team_from(script_team("t1"))}, o, nullptr, dir);
  REQUIRE(h.runtime->recover().is_ok());
  h.wait_status(expired, PlanStatus::kCanceled, 5s);
  auto msgs = h.messages(expired);
  CHECK(h.field(msgs.back(), "status") == "timeout");
  CHECK(ms(msgs.back()) - ms(msgs[1]) < 1000);  // at once after the resume note
}

TEST_CASE("resume: a running plan continues at its first incomplete step; completed steps never run again") {
  std::string dir = test::make_temp_dir("agentd-runtime-resume");
  std::string record = dir + "-record.txt";
  std::string id;
  {
    Harness h({team_from(recording_team(record))}, {}, nullptr, dir);
    h.keep_dir = true;
    id = h.submit("runs", true).plan_id;
    wait_message(h, id, id + ":s2:0");  // step 2 in progress (1 of 3 messages)
  }                                     // stopped mid-step, like a crash: nothing more announced
  Harness h({team_from(recording_team(record))}, {}, nullptr, dir);
  REQUIRE(h.runtime->recover().is_ok());
  h.wait_status(id, PlanStatus::kCompleted);
  auto msgs = h.messages(id);  // seqs 1..N (checked inside)
  std::vector<std::string> ids;
  for (const auto& e : msgs) {
    if (e.type == "agent_message") ids.push_back(e.message_id);
  }
  // Each step's messages once, deterministic ids.
  CHECK(ids == std::vector<std::string>{id + ":s1:0", id + ":s2:0", id + ":s2:1", id + ":s2:2"});
  const Envelope* resumed = nullptr;
  for (const auto& e : msgs) {
    if (e.type == "system_message") resumed = &e;
    if (e.message_id == id + ":s1:0") {
      CHECK(metadata_field(e, "attempt") == "1");
      CHECK(metadata_field(e, "step_done") == "true");
    }
    if (e.message_id == id + ":s2:0") CHECK(metadata_field(e, "attempt") == "1");
    if (e.message_id == id + ":s2:2") {
      CHECK(metadata_field(e, "attempt") == "2");
      CHECK(metadata_field(e, "step_done") == "true");
    }
  }
  REQUIRE(resumed);
  CHECK(h.field(*resumed, "content") == "resumed after restart at step 2");
  CHECK(h.field(*resumed, "step") == "2");
  CHECK(h.field(*resumed, "attempt") == "2");
  // Step 1 ran once; step 2, in progress at the stop, twice.
  auto ran = executions(record);
  using E = std::tuple<std::string, int, int>;
  CHECK(ran == std::vector<E>{E{id, 1, 1}, E{id, 2, 1}, E{id, 2, 2}});
  std::filesystem::remove(record);
}

TEST_CASE("resume: a clarification is asked once; waiting keeps waiting; an answer given before is honoured") {
  std::string dir = test::make_temp_dir("agentd-runtime-resume");
  std::string record = dir + "-record.txt";
  const std::string team = recording_team(record, R"(,"clarify":"Which month?")");
  std::string waiting, answered, rid_waiting, rid_answered;
  {
    Harness h({team_from(team)}, {}, nullptr, dir);
    h.keep_dir = true;
    waiting = h.submit("waits for an answer", true).plan_id;
    answered = h.submit("answered before the stop", true).plan_id;
    h.wait_status(waiting, PlanStatus::kAwaitingClarification);
    h.wait_status(answered, PlanStatus::kAwaitingClarification);
    rid_waiting = h.field(h.messages(waiting).back(), "request_id");
    rid_answered = h.field(h.messages(answered).back(), "request_id");
    CHECK(h.messages(waiting).back().message_id == rid_waiting);
    CHECK(rid_waiting.size() == 36);
    CHECK(rid_waiting.find_first_not_of("0123456789abcdef-") == std::string::npos);
    REQUIRE(h.clarify({kUser, rid_answered, "March", answered}).is_ok());
    wait_message(h, answered, answered + ":s2:0");
  }
  Harness h({team_from(team)}, {}, nullptr, dir);
  REQUIRE(h.runtime->recover().is_ok());
  CHECK(h.plan(waiting).status == PlanStatus::kAwaitingClarification);
  CHECK(h.plan(waiting).last_seq == h.messages(waiting).size() - 1);  // the open request, before the resume note
  h.wait_status(answered, PlanStatus::kCompleted);
  REQUIRE(h.clarify({kUser, rid_waiting, "April", waiting}).is_ok());
  h.wait_status(waiting, PlanStatus::kCompleted);
  for (const auto& [id, rid, answer] : {std::tuple{waiting, rid_waiting, "April"}, {answered, rid_answered, "March"}}) {
    CAPTURE(id);
    size_t asks = 0, answers = 0;
    for (const auto& e : h.messages(id)) {
      if (e.type == "user_clarification_request") {
        ++asks;
        CHECK(e.message_id == rid);
      }
      if (e.type == "user_clarification_response") {
        ++answers;
        CHECK(h.field(e, "answer") == answer);
        CHECK(e.message_id == id + ":s2:answer");
      }
    }
    CHECK(asks == 1);
    CHECK(answers == 1);
  }
  // The waiting plan's step 2 started its work once (after the answer); the
  // answered one's twice (in progress at the stop).
  size_t waiting_runs = 0, answered_runs = 0;
  for (const auto& [plan, step, attempt] : executions(record)) {
    if (step != 2) continue;
    waiting_runs += plan == waiting;
    answered_runs += plan == answered;
  }
  CHECK(waiting_runs == 1);
  CHECK(answered_runs == 2);
  std::filesystem::remove(record);
}

TEST_CASE("resume: a plan still planning plans again; one whose steps are all logged gets its final result") {
  std::string dir = test::make_temp_dir("agentd-runtime-resume");
  {
    OutboxOptions oo;
    oo.dir = dir;
    auto ob = Outbox::open(oo);
    REQUIRE(ob.is_ok());
    seed_plan(**ob, "planning", "t1", PlanStatus::kPlanning);
    PlanRecord done = seed_plan(**ob, "all-done", "t1", PlanStatus::kPlanning, two_step_m_plan("all-done"));
    seed(**ob, done, "plan_approval_request", "{}", PlanStatus::kAwaitingApproval, "r", R"({"auto_approve":true})");
    seed(**ob, done, "plan_approval_response", R"({"approved":true})", PlanStatus::kRunning, "a");
    seed(**ob, done, "agent_message", R"({"content":"x"})", std::nullopt, "all-done:s1:0",
         R"({"step":1,"attempt":1,"step_done":true})");
    seed(**ob, done, "agent_message", R"({"content":"y"})", std::nullopt, "all-done:s2:0",
         R"({"step":2,"attempt":1,"step_done":true})");
  }
  Harness h({team_from(script_team("t1"))}, {}, nullptr, dir);
  REQUIRE(h.runtime->recover().is_ok());
  h.wait_status("planning", PlanStatus::kAwaitingApproval);
  auto msgs = h.messages("planning");
  REQUIRE(msgs.size() == 2);
  CHECK(h.field(msgs[0], "content") == "resumed after restart: planning again");
  CHECK(msgs[1].type == "plan_approval_request");
  CHECK(h.plan("planning").m_plan != "null");
  h.wait_status("all-done", PlanStatus::kCompleted);
  std::vector<std::string> want = {"plan_approval_request", "plan_approval_response", "agent_message",
                                   "agent_message",         "system_message",         "final_result_message"};
  CHECK(h.types("all-done") == want);
  CHECK(h.field(h.messages("all-done")[4], "content") == "resumed after restart: all 2 steps done");
}

TEST_CASE("resume: a plan whose log cannot be understood is failed, naming why; the others resume") {
  std::string dir = test::make_temp_dir("agentd-runtime-resume");
  std::string good;
  {
    Harness h({team_from(script_team("t1"))}, {}, nullptr, dir);
    h.keep_dir = true;
    good = h.submit("fine", false).plan_id;
    h.wait_status(good, PlanStatus::kAwaitingApproval);
    Outbox& ob = *h.outbox;
    seed_plan(ob, "no-team", "gone", PlanStatus::kRunning, two_step_m_plan("no-team"));
    seed_plan(ob, "bad-m-plan", "t1", PlanStatus::kAwaitingApproval, R"({"id":"x"})");
    PlanRecord contra = seed_plan(ob, "contradicts", "t1", PlanStatus::kPlanning, two_step_m_plan("contradicts"));
    seed(ob, contra, "plan_approval_request", "{}", PlanStatus::kRunning, "r", R"({"auto_approve":false})");
    PlanRecord bad_msg = seed_plan(ob, "bad-step", "t1", PlanStatus::kPlanning, two_step_m_plan("bad-step"));
    seed(ob, bad_msg, "plan_approval_request", "{}", PlanStatus::kAwaitingApproval, "r", R"({"auto_approve":true})");
    seed(ob, bad_msg, "plan_approval_response", R"({"approved":true})", PlanStatus::kRunning, "a");
    seed(ob, bad_msg, "agent_message", "{}", std::nullopt, "bad-step:s1:0", R"({"attempt":"x"})");
    PlanRecord legacy = seed_plan(ob, "legacy", "t1", PlanStatus::kPlanning, two_step_m_plan("legacy"));
    seed(ob, legacy, "plan_approval_request", "{}", PlanStatus::kAwaitingApproval, "r");
  }
  Harness h({team_from(script_team("t1"))}, {}, nullptr, dir);
  REQUIRE(h.runtime->recover().is_ok());
  for (auto [id, why] : {std::pair<std::string, std::string>{"no-team", "its team 'gone' is not loaded"},
                         {"bad-m-plan", "m_plan.plan_id: missing or not a string"},
                         {"contradicts", "but its log holds no approval"},
                         {"bad-step", "message seq 3: a step's message without metadata.step"}}) {
    CAPTURE(id);
    CHECK(h.plan(id).status == PlanStatus::kFailed);
    auto last = h.messages(id).back();
    CHECK(last.type == "error_message");
    CHECK(h.field(last, "status") == "error");
    std::string content = h.field(last, "content");
    CHECK(content.rfind("Plan failed: agentd could not resume it after a restart: ", 0) == 0);
    CHECK_MESSAGE(content.find(why) != std::string::npos, content);
  }
  // Written by an agentd that could not resume: interrupted, as before.
  CHECK(h.plan("legacy").status == PlanStatus::kInterrupted);
  CHECK(h.field(h.messages("legacy").back(), "status") == "interrupted");
  CHECK(h.plan(good).status == PlanStatus::kAwaitingApproval);
  REQUIRE(h.approve({kUser, good, "", true, ""}).is_ok());
  h.wait_status(good, PlanStatus::kCompleted);
}

TEST_CASE("script.record is refused in an uploaded team") {
  auto t =
      parse_team(R"({"team_id":"x","name":"n","agents":[{"name":"A","type":"script","script":{"record":"/tmp/f"}}]})",
                 "upload", /*uploaded=*/true);
  REQUIRE_FALSE(t.is_ok());
  CHECK(t.status().message().rfind("upload: agents[0].script.record: not allowed in an uploaded team", 0) == 0);
}

// --- LLM planner and agent against the local test server -------------------------

namespace {

struct FakeLlm {
  FakeLlm() : port(test::free_port()), dir(test::make_temp_dir("agentd-fakellm")) {
    log = dir + "/requests.jsonl";
    std::string script = std::string(std::getenv("AGENTD_SOURCE_DIR")) + "/tests/support/fake_llm.py";
    proc =
        test::ChildProcess::spawn({"/usr/bin/env", "python3", script, std::to_string(port), log}, dir + "/server.log");
    // Wait until it accepts connections.
    for (int i = 0; i < 200; ++i) {
      if (test::read_file(dir + "/server.log").find("listening") != std::string::npos) return;
      std::this_thread::sleep_for(20ms);
    }
    FAIL("fake LLM server did not start");
  }
  ~FakeLlm() { std::filesystem::remove_all(dir); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/v1"; }
  int port;
  std::string dir, log;
  test::ChildProcess proc;
};

std::string llm_team() {
  return R"({"team_id":"llm","name":"L","description":"d","agents":[
    {"name":"Writer","type":"llm","description":"writes","system_message":"You write."},
    {"name":"Checker","type":"llm","description":"checks"}]})";
}

}  // namespace

TEST_CASE("LLM planner and agents: request shape, streaming chunks live-only, full reply persisted") {
  FakeLlm llm;
  asio::io_context client_io;
  auto guard = asio::make_work_guard(client_io);
  std::thread client_thread([&] { client_io.run(); });
  auto client = net::LlmClient::create(client_io.get_executor(), {llm.url(), "test-model", "sk-test", 1});
  REQUIRE(client.is_ok());
  {
    Harness h({team_from(llm_team())}, {}, client->get());
    std::mutex mu;
    std::vector<std::string> live;
    h.runtime->set_live_sink([&](const std::string&, std::shared_ptr<const std::string> f) {
      std::lock_guard l(mu);
      live.push_back(*f);
    });
    auto s = h.submit("write a haiku", true);
    h.wait_status(s.plan_id, PlanStatus::kCompleted);
    auto msgs = h.messages(s.plan_id);
    auto mp = parse_strict(h.plan(s.plan_id).m_plan);
    REQUIRE(mp.is_ok());
    CHECK(std::string((*mp)["steps"][0]["action"].GetString()) == "LLM step for Writer");
    REQUIRE(msgs.size() == 5);
    CHECK(msgs[2].type == "agent_message");
    CHECK(h.field(msgs[2], "content").rfind("Reply to: Task: write a haiku", 0) == 0);
    {
      std::lock_guard l(mu);
      REQUIRE(live.size() >= 2);
      CHECK(live[0].find("\"type\":\"agent_message_streaming\"") != std::string::npos);
      CHECK(live[0].find("\"live\":true") != std::string::npos);
    }
    for (const auto& e : msgs) CHECK(e.type != "agent_message_streaming");  // never persisted
    std::string reqs = test::read_file(llm.log);
    CHECK(reqs.find("\"path\": \"/v1/chat/completions\"") != std::string::npos);
    CHECK(reqs.find("\"auth\": \"Bearer sk-test\"") != std::string::npos);
    CHECK(reqs.find("\"model\": \"test-model\"") != std::string::npos);
    CHECK(reqs.find("\"stream\": true") != std::string::npos);
    CHECK(reqs.find("You write.") != std::string::npos);

    // A 500 from the model (after retries) fails the plan with an error message.
    auto bad = h.submit("FAIL500 please", true);
    h.wait_status(bad.plan_id, PlanStatus::kFailed);
    CHECK(h.types(bad.plan_id).back() == "error_message");
  }
  guard.reset();
  client_io.stop();
  client_thread.join();
}

TEST_CASE("LLM client: timeout and reply parsing") {
  FakeLlm llm;
  asio::io_context io;
  auto client = net::LlmClient::create(io.get_executor(), {llm.url(), "m", "", 0});
  REQUIRE(client.is_ok());
  std::optional<Result<std::string>> got;
  ChatRequest req;
  req.messages.push_back({"user", "SLOW"});
  req.timeout = 300ms;
  (*client)->complete(req, nullptr, [&](Result<std::string> r) { got.emplace(std::move(r)); });
  io.run();
  REQUIRE(got.has_value());
  CHECK(got->status().code() == Code::kUnavailable);

  CHECK(net::LlmClient::parse_reply(R"({"choices":[{"message":{"content":"hi"}}]})").value() == "hi");
  CHECK_FALSE(net::LlmClient::parse_reply(R"({"choices":[]})").is_ok());
  std::string delta;
  CHECK(net::LlmClient::parse_stream_event(R"({"choices":[{"delta":{"content":"x"}}]})", &delta).value());
  CHECK(delta == "x");
  CHECK_FALSE(net::LlmClient::parse_stream_event("[DONE]", &delta).value());
  CHECK_FALSE(net::LlmClient::create(io.get_executor(), {"ftp://x", "m"}).is_ok());
  CHECK_FALSE(net::LlmClient::create(io.get_executor(), {"http://x/v1", ""}).is_ok());
}

TEST_CASE("the LLM planner rejects a plan naming agents outside the team") {
  TeamConfig t = team_from(llm_team());
  auto bad = LlmPlanner::parse_reply(t, "x", R"(sure: {"steps":[{"agent":"Ghost","action":"a"}]})");
  REQUIRE_FALSE(bad.is_ok());
  CHECK(bad.status().message().find("'Ghost' is not in team llm") != std::string::npos);
  auto ok = LlmPlanner::parse_reply(t, "x", R"(```{"steps":[{"agent":"Checker","action":"check"}]}```)");
  REQUIRE(ok.is_ok());
  CHECK(ok->steps.size() == 1);
  CHECK_FALSE(LlmPlanner::parse_reply(t, "x", "no json here").is_ok());
}

TEST_CASE("team files: errors name the file and the field") {
  auto e1 = parse_team(R"({"team_id":"x","name":"n","agents":[]})", "a.json");
  CHECK(e1.status().message() == "a.json: agents: missing, not an array, or empty");
  auto e2 = parse_team(R"({"team_id":"x","name":"n","agents":[{"name":"A"}]})", "b.json");
  CHECK(e2.status().message() == "b.json: agents[0].type: missing");
  auto e3 = parse_team(R"({"team_id":"x","name":"n","agents":[{"name":"A","type":"script","script":{"messages":0}}]})",
                       "c.json");
  CHECK(e3.status().message().rfind("c.json: agents[0].script.messages: not an integer", 0) == 0);
  auto e4 = parse_team(R"({"name":"n"})", "d.json");
  CHECK(e4.status().message() == "d.json: team_id: missing");
  auto e5 = parse_team("{", "e.json");
  CHECK(e5.status().message().rfind("e.json: invalid JSON", 0) == 0);
  std::string src = std::getenv("AGENTD_SOURCE_DIR");
  auto shipped = load_teams(src + "/agentd/teams");
  REQUIRE_MESSAGE(shipped.is_ok(), shipped.status().to_string());
  CHECK(shipped->size() == 2);
  CHECK_FALSE(load_teams(src + "/no-such-dir").is_ok());
}

namespace {

// An LLM-team harness on its own client thread (the model client's executor).
struct LlmHarness {
  explicit LlmHarness(FakeLlm& llm, int retries = 1) : guard(asio::make_work_guard(io)) {
    thread = std::thread([this] { io.run(); });
    auto c = net::LlmClient::create(io.get_executor(), {llm.url(), "test-model", "", retries});
    REQUIRE(c.is_ok());
    client = std::move(c).value();
    h = std::make_unique<Harness>(std::vector<TeamConfig>{team_from(llm_team())}, RuntimeOptions{}, client.get());
  }
  ~LlmHarness() {
    h.reset();
    guard.reset();
    io.stop();
    thread.join();
  }
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  std::thread thread;
  std::unique_ptr<net::LlmClient> client;
  std::unique_ptr<Harness> h;
};

}  // namespace

TEST_CASE("LLM agents: an endpoint that ignores stream:true and answers plain JSON is read as a completion") {
  FakeLlm llm;
  LlmHarness l(llm);
  Harness& h = *l.h;
  auto s = h.submit("NOSTREAM haiku", true);
  h.wait_status(s.plan_id, PlanStatus::kCompleted);
  auto msgs = h.messages(s.plan_id);
  REQUIRE(msgs.size() == 5);
  CHECK(msgs[2].type == "agent_message");
  CHECK(h.field(msgs[2], "content").rfind("Reply to: Task: NOSTREAM haiku", 0) == 0);
  CHECK(h.field(msgs[3], "content").rfind("Reply to: Task: NOSTREAM haiku", 0) == 0);
  CHECK(test::read_file(llm.log).find("\"stream\": true") != std::string::npos);  // it was asked to stream
}

TEST_CASE("LLM agents: an empty reply (plain JSON or streamed) fails the step and the plan with an error") {
  FakeLlm llm;
  LlmHarness l(llm);
  Harness& h = *l.h;
  for (std::string task : {"NOSTREAM EMPTY", "EMPTY streamed"}) {
    CAPTURE(task);
    auto s = h.submit(task, true);
    h.wait_status(s.plan_id, PlanStatus::kFailed);
    auto msgs = h.messages(s.plan_id);
    for (const auto& e : msgs) CHECK(e.type != "agent_message");
    REQUIRE(msgs.back().type == "error_message");
    CHECK(h.field(msgs.back(), "agent_name") == "Writer");
    CHECK(h.field(msgs.back(), "content").find("empty reply") != std::string::npos);
  }
  // The client itself answers an error, whoever calls it.
  for (bool stream : {false, true}) {
    std::promise<Result<std::string>> got;
    ChatRequest req;
    req.messages.push_back({"user", "NOSTREAM EMPTY"});
    req.stream = stream;
    l.client->complete(req, nullptr, [&](Result<std::string> r) { got.set_value(std::move(r)); });
    Result<std::string> r = got.get_future().get();
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(r.status().message().find("empty reply") != std::string::npos);
  }
}

TEST_CASE("LLM agents: a stream cut mid-reply is retried and the streaming text restarts, never doubles") {
  FakeLlm llm;
  LlmHarness l(llm);
  Harness& h = *l.h;
  std::mutex mu;
  std::vector<std::string> live, buffers;  // live frames' data; streaming_message at each frame
  std::string plan_id;
  h.runtime->set_live_sink([&](const std::string& id, std::shared_ptr<const std::string> f) {
    auto buf = h.runtime->streaming_message(id);
    auto d = parse_strict(*f);
    REQUIRE(d.is_ok());
    std::lock_guard lk(mu);
    live.push_back(write_canonical((*d)["data"]));
    buffers.push_back(buf.value_or(""));
  });
  auto s = h.submit("DROPONCE poem", true);
  h.wait_status(s.plan_id, PlanStatus::kCompleted);
  auto msgs = h.messages(s.plan_id);
  REQUIRE(msgs.size() == 5);
  std::string writer = h.field(msgs[2], "content");
  std::string checker = h.field(msgs[3], "content");
  CHECK(writer.rfind("Reply to: Task: DROPONCE poem", 0) == 0);
  CHECK(writer.find("Reply to:", 1) == std::string::npos);
  CHECK(checker.find("Reply to:", 1) == std::string::npos);
  // Each request was sent twice: the first reply was cut.
  std::string reqs = test::read_file(llm.log);
  size_t n = 0;
  for (size_t at = reqs.find("You write."); at != std::string::npos; at = reqs.find("You write.", at + 1)) ++n;
  CHECK(n == 2);

  std::lock_guard lk(mu);
  REQUIRE(!buffers.empty());
  bool restarted = false;
  std::string since_restart;
  for (size_t i = 0; i < live.size(); ++i) {
    CAPTURE(buffers[i]);
    // The buffer GET /plan serves is always a prefix of one agent's reply.
    CHECK((writer.rfind(buffers[i], 0) == 0 || checker.rfind(buffers[i], 0) == 0));
    auto d = parse_strict(live[i]);
    REQUIRE(d.is_ok());
    bool writer_frame = std::string((*d)["agent_name"].GetString()) == "Writer";
    if (d->HasMember("restart") && (*d)["restart"].GetBool()) {
      restarted = true;
      if (writer_frame) since_restart.clear();
      CHECK(buffers[i].empty());
      continue;
    }
    if (writer_frame) since_restart += (*d)["content"].GetString();
  }
  CHECK(restarted);
  CHECK(since_restart == writer);  // live frames after the last restart spell the reply once
}

TEST_CASE("team files: agent types are a known set; starting_tasks entries are checked") {
  auto with_agent = [](const std::string& type_field) {
    return R"({"team_id":"x","name":"n","agents":[{"name":"A","type":"script"},{"name":"B")" + type_field + "}]}";
  };
  auto typo = parse_team(with_agent(R"(,"type":"scirpt")"), "typo.json");
  REQUIRE_FALSE(typo.is_ok());
  CHECK(typo.status().message().rfind("typo.json: agents[1].type: unknown agent type 'scirpt'", 0) == 0);
  CHECK(parse_team(with_agent(R"(,"type":7)"), "n.json").status().message() == "n.json: agents[1].type: not a string");
  CHECK(parse_team(with_agent(""), "m.json").status().message() == "m.json: agents[1].type: missing");
  for (std::string t : {"script", "llm", "ai_agent", ""}) {
    CAPTURE(t);
    auto ok = parse_team(with_agent(R"(,"type":")" + t + "\""), "ok.json");
    CHECK_MESSAGE(ok.is_ok(), ok.status().to_string());
  }

  auto with_tasks = [](const std::string& tasks) {
    return R"({"team_id":"x","name":"n","agents":[{"name":"A","type":"script"}],"starting_tasks":)" + tasks + "}";
  };
  const std::string good = R"({"id":"t1","name":"Close","prompt":"Close March","created":"","creator":"me","logo":""})";
  CHECK(parse_team(with_tasks("[" + good + "]"), "s.json").is_ok());
  CHECK(parse_team(with_tasks("[]"), "s.json").is_ok());
  CHECK(parse_team(with_tasks("{}"), "s.json").status().message() == "s.json: starting_tasks: not an array");
  CHECK(parse_team(with_tasks("[" + good + ",3]"), "s.json").status().message() ==
        "s.json: starting_tasks[1]: not an object");
  CHECK(parse_team(with_tasks(R"([{"name":"a","prompt":"p"}])"), "s.json").status().message() ==
        "s.json: starting_tasks[0].id: missing");
  CHECK(parse_team(with_tasks(R"([{"id":"a","prompt":"p"}])"), "s.json").status().message() ==
        "s.json: starting_tasks[0].name: missing");
  CHECK(parse_team(with_tasks(R"([{"id":"a","name":"n","prompt":""}])"), "s.json").status().message() ==
        "s.json: starting_tasks[0].prompt: empty");
  CHECK(parse_team(with_tasks(R"([{"id":"a","name":"n","prompt":"p","logo":1}])"), "s.json").status().message() ==
        "s.json: starting_tasks[0].logo: not a string");
  CHECK(parse_team(with_tasks("[" + good + "," + good + "]"), "s.json").status().message() ==
        "s.json: starting_tasks[1].id: duplicate starting task id 't1'");
}

TEST_CASE("an append that fails (not outbox full) ends the plan failed, frees its slot and its run entry") {
  RuntimeOptions o;
  o.max_concurrent_plans = 1;
  FlakyLog flaky;
  flaky.fail_type = "agent_message";
  flaky.fail = 1;
  Harness h({team_from(script_team("t1"))}, o, nullptr, test::make_temp_dir("agentd-runtime"), &flaky);
  auto s = h.submit("first", true);
  h.wait_failed_with(s.plan_id, "injected append failure");
  // The slot was freed: the next plan runs (max_concurrent_plans is 1).
  auto next = h.submit("second", true);
  h.wait_status(next.plan_id, PlanStatus::kCompleted);
  CHECK(h.wait_inactive() == 0);
}

namespace {

// Plans every task over the team's first agent; its agent call throws
// when the task says THROW (an exception escaping the plan's coroutine).
struct ThrowingModel final : ModelClient {
  void complete(ChatRequest req, ChunkFn, std::function<void(Result<std::string>)> done) override {
    if (req.messages.front().content.rfind("You plan work", 0) == 0) {
      return done(std::string(R"({"steps":[{"agent":"Writer","action":"write"}]})"));
    }
    if (req.messages.back().content.find("THROW") != std::string::npos) throw std::runtime_error("injected throw");
    done(std::string("written"));
  }
};

}  // namespace

TEST_CASE("an exception escaping a plan ends it failed, frees its slot and its run entry") {
  // A callback the plan calls (here the clarify caller's) throws inside the
  // plan's coroutine, which holds the only slot.
  RuntimeOptions o;
  o.max_concurrent_plans = 1;
  Harness h({team_from(script_team("t1", R"({"clarify":"Which?"})"))}, o);
  auto s = h.submit("ask", true);
  h.wait_status(s.plan_id, PlanStatus::kAwaitingClarification);
  std::string rid = h.field(h.messages(s.plan_id).back(), "request_id");
  std::promise<Status> answered;
  h.runtime->clarify({kUser, rid, "this", s.plan_id}, [&](Status st) {
    answered.set_value(st);
    throw std::runtime_error("injected throw from a callback");
  });
  CHECK(answered.get_future().get().is_ok());
  h.wait_failed_with(s.plan_id, "injected throw from a callback");
  CHECK(h.wait_inactive() == 0);
  auto next = h.submit("fine", true);  // its step needs the slot the failed plan held
  h.wait_status(next.plan_id, PlanStatus::kAwaitingClarification);
}

TEST_CASE("a callback that throws after its plan ended does not end the plan a second time") {
  // The cancel's callback runs in finish(), after the plan left the indexes
  // and released its slot; its throw must not write a "failed" end over the
  // "canceled" one (nor release the slot again).
  RuntimeOptions o;
  o.max_concurrent_plans = 1;
  Harness h({team_from(script_team("t1", R"({"clarify":"Which?"})"))}, o);
  auto s = h.submit("ask", true);
  h.wait_status(s.plan_id, PlanStatus::kAwaitingClarification);
  std::promise<Status> answered;
  h.runtime->cancel(kUser, s.plan_id, [&](Status st) {
    answered.set_value(st);
    throw std::runtime_error("injected throw from a cancel callback");
  });
  CHECK(answered.get_future().get().is_ok());
  h.wait_status(s.plan_id, PlanStatus::kCanceled);
  std::this_thread::sleep_for(300ms);  // what a second end would have appended by now
  CHECK(h.plan(s.plan_id).status == PlanStatus::kCanceled);
  // The cancel's end is the plan's only end: one error_message, "canceled".
  auto msgs = h.messages(s.plan_id);
  REQUIRE(!msgs.empty());
  CHECK(msgs.back().type == "error_message");
  CHECK(h.field(msgs.back(), "status") == "canceled");
  size_t ends = 0;
  for (const auto& e : msgs) ends += e.type == "error_message" || e.type == "final_result_message";
  CHECK(ends == 1);
  // One slot, still one: two plans that need it run one after the other.
  // Either may plan first and take the slot; the other must not get one too.
  auto a = h.submit("first", true);
  auto b = h.submit("second", true);
  auto asking = [&](const SubmitResult& r) { return h.plan(r.plan_id).status == PlanStatus::kAwaitingClarification; };
  auto until = std::chrono::steady_clock::now() + 10s;
  while (!asking(a) && !asking(b) && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  REQUIRE((asking(a) || asking(b)));
  std::this_thread::sleep_for(200ms);
  CHECK(asking(a) != asking(b));
}

TEST_CASE("a model client that throws fails the step, not the process") {
  RuntimeOptions o;
  o.max_concurrent_plans = 1;
  ThrowingModel model;
  Harness h({team_from(llm_team())}, o, &model);
  auto s = h.submit("THROW please", true);
  h.wait_failed_with(s.plan_id, "injected throw");
  auto next = h.submit("fine", true);
  h.wait_status(next.plan_id, PlanStatus::kCompleted);
  CHECK(h.wait_inactive() == 0);
}
