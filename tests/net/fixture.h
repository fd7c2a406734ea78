// An in-process net::Server over a real Outbox (temp dir) with a fake
// PlanService, for tests/net/server_test.cc.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/clock.h"
#include "core/envelope.h"
#include "core/metrics.h"
#include "core/plan_service.h"
#include "net/history.h"
#include "net/server.h"
#include "outbox/outbox.h"
#include "tests/net/client.h"
#include "tests/support/process.h"

namespace agentd::test {

inline PlanRecord make_plan(const std::string& plan_id, const std::string& user,
                            PlanStatus status = PlanStatus::kRunning) {
  PlanRecord p;
  p.plan_id = plan_id;
  p.user_id = user;
  p.session_id = "s-" + plan_id;
  p.team_id = "team-1";
  p.initial_goal = "goal of " + plan_id;
  p.status = status;
  p.created_at = p.updated_at = now_rfc3339();
  return p;
}

inline AppendRequest message_append(const PlanRecord& p, const std::string& content, std::string message_id = {}) {
  MessageDraft d;
  d.type = "agent_message";
  d.plan_id = p.plan_id;
  d.message_id = std::move(message_id);
  d.user_id = p.user_id;
  d.session_id = p.session_id;
  std::string data = "{\"agent_name\":\"Tester\",\"content\":";
  append_json_string(&data, content);
  data += '}';
  d.data = std::move(data);
  AppendRequest r;
  r.message = prepare(std::move(d));
  return r;
}

// Records what the API asked; creates plans in the outbox like the runtime.
class FakePlans : public PlanService {
 public:
  explicit FakePlans(MessageLog* log) : log_(log) {}
  void submit(SubmitRequest req, std::function<void(Result<SubmitResult>)> done) override {
    if (req.description == "full") return done(Status(Code::kOutboxFull, "outbox full"));
    PlanRecord p = make_plan(new_uuid(), req.user_id, PlanStatus::kAwaitingApproval);
    p.initial_goal = req.description;
    if (!req.session_id.empty()) p.session_id = req.session_id;
    AppendRequest a = message_append(p, "planning " + req.description);
    a.plan = p;
    log_->append(std::move(a), [p, done](Result<AppendResult> r) {
      if (!r) return done(r.status());
      done(SubmitResult{p.plan_id, p.session_id});
    });
  }
  void approve(ApprovalRequest req, std::function<void(Result<std::string>)> done) override {
    {
      std::lock_guard lock(mu);
      approvals.push_back(req);
    }
    auto p = log_->get_plan(req.m_plan_id);
    if (!p || !p->has_value() || (*p)->user_id != req.user_id) return done(not_found("Plan not found"));
    done(std::string(req.approved ? "approval recorded" : "rejected"));
  }
  void clarify(ClarificationRequest req, std::function<void(Status)> done) override {
    {
      std::lock_guard lock(mu);
      clarifications.push_back(req);
    }
    done(req.request_id == "unknown" ? not_found("No active plan found for clarification") : Status::ok());
  }
  void cancel(std::string user_id, std::string plan_id, std::function<void(Status)> done) override {
    auto p = log_->get_plan(plan_id);
    if (!p || !p->has_value() || (*p)->user_id != user_id) return done(not_found("Plan not found"));
    done(Status::ok());
  }
  std::vector<std::string> team_configs() const override { return {kTeam}; }
  std::optional<std::string> team_config(const std::string& id) const override {
    if (id == "team-1") return std::string(kTeam);
    return std::nullopt;
  }
  Status select_team(const std::string&, const std::string& team_id) override {
    return team_id == "team-1" ? Status::ok() : not_found("Team configuration not found");
  }
  std::optional<std::string> current_team(const std::string&) const override { return std::string(kTeam); }
  Result<std::string> upload_team(const std::string&, std::string_view json) override {
    std::lock_guard lock(mu);
    uploads.emplace_back(json);
    if (json.find("\"team_id\":\"team-1\"") != std::string_view::npos) {
      return Status(Code::kAlreadyExists, "team_id 'team-1' already exists");
    }
    return std::string(json);
  }
  Status delete_team(const std::string&, const std::string& team_id) override {
    if (team_id == "team-1") return failed_precondition("team 'team-1' is built in and cannot be deleted");
    return team_id == "mine" ? Status::ok() : not_found("Team configuration not found");
  }
  std::optional<std::string> streaming_message(const std::string&) const override { return std::nullopt; }
  void set_live_sink(LiveSink sink) override { live = std::move(sink); }

  static constexpr const char* kTeam = R"({"team_id":"team-1","name":"HR","description":"d","agents":[{"name":"a"}]})";
  std::mutex mu;
  std::vector<ApprovalRequest> approvals;            // guarded by mu
  std::vector<ClarificationRequest> clarifications;  // guarded by mu
  std::vector<std::string> uploads;                  // guarded by mu
  LiveSink live;

 private:
  MessageLog* log_;
};

// Optional seams of a ServerFixture: a MessageLog in front of the outbox
// (given the outbox, it returns the log the server uses) and a HistoryReader
// (with one, reads run on the server's read pool, as with MongoDB).
struct FixtureHooks {
  std::function<MessageLog*(Outbox*)> log;
  net::HistoryReader* history = nullptr;
};

struct ServerFixture {
  explicit ServerFixture(net::ServerConfig cfg = {}, uint64_t outbox_max = 64ull << 20, FixtureHooks hooks = {}) {
    dir = make_temp_dir("agentd-net-test");
    OutboxOptions o;
    o.dir = dir + "/data";
    o.sync = false;
    o.max_bytes = outbox_max;
    auto ob = Outbox::open(o);
    REQUIRE_MESSAGE(ob.is_ok(), ob.status().to_string());
    outbox = std::move(*ob);
    plans = std::make_unique<FakePlans>(outbox.get());
    cfg.listen = {boost::asio::ip::make_address("127.0.0.1"), 0};
    net::ServerDeps deps;
    deps.log = hooks.log ? hooks.log(outbox.get()) : outbox.get();
    deps.history = hooks.history;
    Outbox* raw = outbox.get();
    deps.first_seq = [raw](std::string_view p) { return raw->first_seq(p); };
    deps.plans = plans.get();
    deps.metrics = &metrics;
    auto s = net::Server::create(cfg, std::move(deps));
    REQUIRE_MESSAGE(s.is_ok(), s.status().to_string());
    server = std::move(*s);
    outbox->set_observer(server->commit_observer());
    server->start();
    port = server->local_endpoint().port();
  }
  ~ServerFixture() {
    server->stop(std::chrono::milliseconds(2000));
    server.reset();
    outbox.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  AppendResult append(const PlanRecord& p, const std::string& content, bool with_plan = false) {
    AppendRequest a = message_append(p, content);
    if (with_plan) a.plan = p;
    auto r = outbox->append_sync(std::move(a));
    REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
    return std::move(*r);
  }

  std::string dir;
  MetricsRegistry metrics;
  std::unique_ptr<Outbox> outbox;
  std::unique_ptr<FakePlans> plans;
  std::unique_ptr<net::Server> server;
  int port = 0;
};

}  // namespace agentd::test
