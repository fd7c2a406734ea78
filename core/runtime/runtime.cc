#include "core/runtime/runtime.h"

#include <boost/asio/co_spawn.hpp>

#include <thread>

#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/runtime/plan_run.h"

namespace agentd {

using namespace runtime_internal;
using namespace std::chrono_literals;

Runtime::Runtime(asio::any_io_executor ex, MessageLog& log, std::vector<TeamConfig> teams, RuntimeOptions options,
                 ModelClient* model, MetricsRegistry& metrics)
    : ex_(std::move(ex)),
      log_(log),

      opts_(std::move(options)),
      model_(model),
      plans_submitted_(metrics.counter("agentd_plans_submitted_total", "Plans submitted")),
      plans_finished_(metrics.counter("agentd_plans_finished_total", "Plans that reached a final status")),
      outbox_full_retries_(metrics.counter("agentd_runtime_outbox_full_retries_total",
                                           "Appends the runtime retried because the outbox was full")),
      plans_active_(metrics.gauge("agentd_plans_active", "Plans in memory (planning, waiting or running)")) {
  for (auto& t : teams) teams_.push_back(std::make_shared<const TeamConfig>(std::move(t)));
  if (model_) {
    planner_ = std::make_unique<LlmPlanner>(*model_, opts_.model_timeout);
  } else {
    planner_ = std::make_unique<RuleBasedPlanner>();
  }
}

Runtime::~Runtime() { shutdown(0ms); }

size_t Runtime::active_plans() const {
  MutexLock l(&mu_);
  return runs_.size();
}

void Runtime::shutdown(std::chrono::milliseconds deadline) {
  stopping_ = true;
  std::vector<std::shared_ptr<PlanRun>> runs;
  {
    MutexLock l(&mu_);
    for (auto& [id, r] : runs_) runs.push_back(r);
  }
  for (auto& r : runs) asio::post(r->strand, [r] { r->wake.cancel(); });
  auto until = std::chrono::steady_clock::now() + deadline;
  while (active_plans() > 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
}

// --- submit ------------------------------------------------------------------

void Runtime::submit(SubmitRequest req, std::function<void(Result<SubmitResult>)> done) {
  if (stopping_) return done(unavailable("agentd is shutting down"));
  if (req.description.empty()) return done(invalid_argument("description: must not be empty"));
  if (req.description.size() > kMaxTaskBytes) {
    return done(invalid_argument("description: " + std::to_string(req.description.size()) +
                                 " bytes, over the limit of " + std::to_string(kMaxTaskBytes)));
  }
  if (req.session_id.size() > kMaxSessionIdBytes) {
    return done(invalid_argument("session_id: " + std::to_string(req.session_id.size()) + " bytes, over the limit of " +
                                 std::to_string(kMaxSessionIdBytes)));
  }
  std::string team_id = req.team_id;
  if (team_id.empty()) {
    MutexLock l(&mu_);
    auto it = selected_team_.find(req.user_id);
    if (it != selected_team_.end()) team_id = it->second;
  }
  if (team_id.empty()) team_id = default_team_id();
  std::shared_ptr<const TeamConfig> team = find_team(team_id);
  if (!team) return done(invalid_argument("team_id: unknown team '" + team_id + "'"));

  PlanRecord rec;
  rec.plan_id = new_uuid();
  rec.user_id = req.user_id;
  rec.session_id = req.session_id.empty() ? new_uuid() : req.session_id;
  rec.team_id = team->team_id;
  rec.initial_goal = req.description;
  rec.status = PlanStatus::kPlanning;
  rec.created_at = rec.updated_at = now_rfc3339();

  auto run = std::make_shared<PlanRun>(ex_, rec, team, req.auto_approve.value_or(opts_.auto_approve));
  {
    MutexLock l(&mu_);
    if (runs_.size() >= opts_.max_active_plans) {
      return done(unavailable("too many active plans (" + std::to_string(runs_.size()) + "); retry later"));
    }
    runs_[rec.plan_id] = run;
    plans_active_.set(static_cast<double>(runs_.size()));
  }
  plans_submitted_.inc();
  AppendRequest append;
  append.plan = rec;
  log_.append(std::move(append), [this, run, done = std::move(done)](Result<AppendResult> r) {
    if (!r) {
      forget(*run);
      return done(r.status());
    }
    run->record.version = r->plan_version;
    done(SubmitResult{run->plan_id, run->record.session_id});
    spawn(run);
  });
}

void Runtime::spawn(const std::shared_ptr<PlanRun>& run) {
  asio::co_spawn(run->strand, run_plan(run), [this, run](std::exception_ptr e) {  // not a coroutine: safe
    if (!e) return;
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    } catch (...) {
    }
    asio::post(run->strand, [this, run, what = std::move(what)] { end_after_exception(run, what); });
  });
}

// --- API calls from other threads ------------------------------------------------

void Runtime::approve(ApprovalRequest req, std::function<void(Result<std::string>)> done) {
  auto run = find_run(req.m_plan_id);
  if (!run || run->user_id != req.user_id) {
    std::string id = req.plan_id.empty() ? req.m_plan_id : req.plan_id;
    return done(check_inactive_plan(req.user_id, id, "awaiting approval"));
  }
  if (!req.plan_id.empty() && req.plan_id != run->plan_id) {
    return done(invalid_argument("plan_id: names another plan than m_plan_id"));
  }
  asio::post(run->strand, [run, req = std::move(req), done = std::move(done)]() mutable {
    if (!run->awaiting_approval || run->approved || run->approval_done) {
      return done(failed_precondition(
          "plan is not awaiting approval (status: " + std::string(plan_status_name(run->record.status)) + ")"));
    }
    run->approved = req.approved;
    run->feedback = req.feedback;
    run->approval_done = std::move(done);
    run->wake.cancel();
  });
}

void Runtime::clarify(ClarificationRequest req, std::function<void(Status)> done) {
  std::shared_ptr<PlanRun> run;
  {
    MutexLock l(&mu_);
    auto it = request_index_.find(req.request_id);
    if (it != request_index_.end()) {
      auto r = runs_.find(it->second);
      if (r != runs_.end()) run = r->second;
    }
  }
  if (!run || run->user_id != req.user_id) return done(not_found("No active plan found for clarification"));
  if (!req.plan_id.empty() && req.plan_id != run->plan_id) {
    return done(invalid_argument("plan_id: names another plan than the request_id's"));
  }
  asio::post(run->strand, [run, req = std::move(req), done = std::move(done)]() mutable {
    if (run->clarify_request_id != req.request_id || run->answer || run->clarify_done) {
      return done(not_found("No active plan found for clarification"));
    }
    run->answer = req.answer;
    run->clarify_done = std::move(done);
    run->wake.cancel();
  });
}

void Runtime::cancel(std::string user_id, std::string plan_id, std::function<void(Status)> done) {
  auto run = find_run(plan_id);
  if (!run || run->user_id != user_id || run->plan_id != plan_id) {
    return done(check_inactive_plan(user_id, plan_id, "running"));
  }
  asio::post(run->strand, [run, done = std::move(done)]() mutable {
    if (run->ended) {  // found just before it left the indexes: nobody would answer
      return done(failed_precondition(
          "plan is not running (status: " + std::string(plan_status_name(run->record.status)) + ")"));
    }
    run->cancel_requested = true;
    run->cancel_done.push_back(std::move(done));
    run->wake.cancel();
  });
}

std::optional<std::string> Runtime::streaming_message(const std::string& plan_id) const {
  MutexLock l(&mu_);
  auto it = runs_.find(plan_id);
  if (it == runs_.end() || it->second->streaming.empty()) return std::nullopt;
  return it->second->streaming;
}

void Runtime::set_live_sink(LiveSink sink) {
  MutexLock l(&mu_);
  live_sink_ = std::move(sink);
}

void Runtime::publish_live(const PlanRun& run, const std::string& frame) {
  LiveSink sink;
  {
    MutexLock l(&mu_);
    sink = live_sink_;
  }
  if (sink) sink(run.plan_id, std::make_shared<const std::string>(frame));
}

}  // namespace agentd
