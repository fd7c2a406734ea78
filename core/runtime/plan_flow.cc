// One plan's coroutine: planning, approval, the steps, the end; emit
// (append with backoff while the outbox is full) and the waits.
#include <boost/asio/redirect_error.hpp>

#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/runtime/plan_run.h"

namespace agentd {

using namespace runtime_internal;
using namespace std::chrono_literals;

// --- emit / finish -------------------------------------------------------------

const std::string Runtime::kNewMessageId;
const std::string Runtime::kNoMetadata;

asio::awaitable<Result<AppendResult>> Runtime::emit(PlanRun& run, std::string_view type, const std::string& data,
                                                    std::optional<PlanStatus> status, const std::string& message_id,
                                                    const std::string& metadata) {
  auto base = std::make_shared<const AppendRequest>(make_request(run.record, type, data, status, message_id, metadata));
  auto backoff = 50ms;
  for (;;) {
    auto start = [this, base](AppendCallback cb) { log_.append(AppendRequest(*base), std::move(cb)); };
    Result<AppendResult> r = co_await async_callback<Result<AppendResult>>(std::move(start));
    if (r.is_ok()) {
      // A duplicate (a message a step that runs again had logged) changed
      // no record; the runtime never moves a status with one.
      if (base->plan && r->duplicate) spdlog::warn("plan {}: status change with a logged message", run.plan_id);
      if (base->plan && !r->duplicate) {
        run.record = *base->plan;
        run.record.version = r->plan_version;
        run.record.last_seq = r->seq;
      }
      co_return r;
    }
    if (r.status().code() != Code::kOutboxFull || stopping_) {
      spdlog::error("plan {}: append failed: {}", run.plan_id, r.status().to_string());
      co_return r;
    }
    // Outbox full: the plan pauses; nothing is announced until the append succeeds.
    if (backoff == 50ms) spdlog::warn("plan {}: outbox full, pausing and retrying", run.plan_id);
    outbox_full_retries_.inc();
    asio::steady_timer t(run.strand, backoff);
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5000ms);
  }
}

asio::awaitable<void> Runtime::finish(PlanRun& run, std::string_view type, const std::string& data, PlanStatus status) {
  Result<AppendResult> r = co_await emit(run, type, data, status);
  Status st = r.status();
  // Out of the indexes first: a caller told "done" that asks again must
  // find the plan finished, not running.
  abandon(run);
  plans_finished_.inc();
  // An approval still waiting is answered "rejected" when the end is recorded.
  if (run.approval_done && st.is_ok()) std::exchange(run.approval_done, nullptr)(Result<std::string>("rejected"));
  answer_pending(run, st);
}

void Runtime::answer_pending(PlanRun& run, const Status& st) {
  if (run.approval_done) std::exchange(run.approval_done, nullptr)(st);
  if (run.clarify_done) std::exchange(run.clarify_done, nullptr)(st);
  // A cancel is decided here, on the strand, against the recorded end: it
  // is "canceled" only when the plan ended canceled. One that came while
  // another end was being appended (the final result, a failure) lost the
  // race and is answered with the real status.
  Status cancel_st = st;
  if (st.is_ok() && run.record.status != PlanStatus::kCanceled) {
    cancel_st =
        failed_precondition("plan is not running (status: " + std::string(plan_status_name(run.record.status)) + ")");
  }
  for (auto& cb : std::exchange(run.cancel_done, {})) cb(cancel_st);
}

asio::awaitable<void> Runtime::end_on_append_failure(PlanRun& run, const Status& why) {
  spdlog::error("plan {}: ended: a message could not be appended: {}", run.plan_id, why.to_string());
  if (stopping_) {  // left as it is; the next start resumes it
    const Status st = unavailable("agentd is shutting down");
    answer_pending(run, st);
    abandon(run);
    co_return;
  }
  // The outbox may still take this one (the failure was about that message).
  const std::string err = status_data("Plan failed: agentd could not record a message: " + why.message(), "error");
  co_await finish(run, msgtype::kErrorMessage, err, PlanStatus::kFailed);
}

void Runtime::end_after_exception(const std::shared_ptr<PlanRun>& run, const std::string& what) {
  const Status failed = internal_error("plan ended by a runtime error: " + what);
  if (run->ended) {
    // Thrown after the plan ended (e.g. by a callback finish() called): its
    // slot and indexes are already released and its end recorded; only
    // callbacks still unanswered are left.
    spdlog::error("plan {}: runtime error after the plan ended: {}", run->plan_id, what);
    answer_pending(*run, failed);
    return;
  }
  spdlog::error("plan {}: ended by a runtime error: {}", run->plan_id, what);
  {
    // The coroutine is gone: the plan must not stay queued for a slot, and
    // a slot already handed to it is released below with the rest.
    MutexLock l(&mu_);
    slot_waiters_.erase(std::remove(slot_waiters_.begin(), slot_waiters_.end(), run.get()), slot_waiters_.end());
    if (run->slot_granted) run->holds_slot = true;
  }
  if (stopping_) {
    answer_pending(*run, failed);
    abandon(*run);
    return;
  }
  const std::string err = status_data("Plan failed: internal error: " + what, "error");
  log_.append(make_request(run->record, msgtype::kErrorMessage, err, PlanStatus::kFailed),
              [this, run, failed](Result<AppendResult> r) {
                if (!r) spdlog::error("plan {}: append failed: {}", run->plan_id, r.status().to_string());
                asio::post(run->strand, [this, run, failed] {
                  answer_pending(*run, failed);
                  abandon(*run);
                  plans_finished_.inc();
                });
              });
}

void Runtime::abandon(PlanRun& run) {
  run.ended = true;
  if (run.holds_slot) release_slot();
  run.holds_slot = false;
  forget(run);
}

asio::awaitable<Runtime::StepOutcome> Runtime::end_interrupted(PlanRun& run) {
  if (stopping_) {  // left as it is: the next start resumes it
    abandon(run);
    co_return StepOutcome::kEnded;
  }
  const std::string canceled = status_data("Plan canceled by the user", "canceled");
  co_await finish(run, msgtype::kErrorMessage, canceled, PlanStatus::kCanceled);
  co_return StepOutcome::kEnded;
}

bool Runtime::ready(PlanRun& run, Await what) {
  switch (what) {
    case Await::kApproval: return run.approved.has_value();
    case Await::kAnswer: return run.answer.has_value();
    case Await::kSlot: {
      MutexLock l(&mu_);
      return run.slot_granted;
    }
    case Await::kTime: return false;
  }
  return false;
}

asio::awaitable<bool> Runtime::wait_until(PlanRun& run, std::chrono::milliseconds timeout, Await what) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready(run, what) && !interrupted(run)) {
    if (std::chrono::steady_clock::now() >= deadline) co_return false;
    run.wake.expires_at(deadline);
    boost::system::error_code ec;
    co_await run.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return true;
}

// --- the plan ------------------------------------------------------------------

asio::awaitable<void> Runtime::run_plan(std::shared_ptr<PlanRun> run) {
  // `run` (this frame's parameter) keeps the plan alive; everything below
  // takes it by reference.
  PlanRun& r = *run;
  co_await plan_body(r);
}

// The whole plan after submit, or the rest of it after a restart (the
// parts run.recovered says are in the log are skipped). Returns kEnded when
// the plan reached a final status (or was left for the next start).
asio::awaitable<Runtime::StepOutcome> Runtime::plan_body(PlanRun& run) {
  std::optional<MPlan> planned = std::move(run.recovered.m_plan);
  if (!planned) {
    StepOutcome out = co_await make_plan(run, &planned);
    if (out != StepOutcome::kOk) co_return out;
  }
  const MPlan& mp = *planned;
  run.m_plan_id = mp.id;
  {
    MutexLock l(&mu_);
    m_plan_index_[mp.id] = run.plan_id;
  }
  if (!run.recovered.approved) {
    StepOutcome out = co_await approval(run, mp);
    if (out != StepOutcome::kOk) co_return out;
  }
  co_await acquire_slot(run);
  StepOutcome out = co_await run_steps(run, mp);
  if (out != StepOutcome::kOk) co_return out;
  if (interrupted(run)) co_return co_await end_interrupted(run);
  const std::string summary = "Completed " + std::to_string(mp.steps.size()) + " steps for: " + run.record.initial_goal;
  const std::string final_data =
      JsonObject().str("content", summary).str("status", "completed").str("summary", summary).done();
  co_await finish(run, msgtype::kFinalResultMessage, final_data, PlanStatus::kCompleted);
  co_return StepOutcome::kEnded;
}

asio::awaitable<Runtime::StepOutcome> Runtime::make_plan(PlanRun& run, std::optional<MPlan>* planned) {
  auto start_planning = [this, &run](std::function<void(Result<MPlan>)> cb) {
    planner_->plan(*run.team, run.record.initial_goal, std::move(cb));
  };
  Result<MPlan> made = co_await async_callback<Result<MPlan>>(std::move(start_planning));
  if (interrupted(run)) co_return co_await end_interrupted(run);
  if (!made) {
    const std::string err = status_data("Planning failed: " + made.status().message(), "error");
    co_await finish(run, msgtype::kErrorMessage, err, PlanStatus::kFailed);
    co_return StepOutcome::kEnded;
  }
  MPlan& mp = planned->emplace(std::move(made).value());
  mp.plan_id = run.plan_id;
  mp.user_id = run.user_id;
  mp.team_id = run.team->team_id;
  run.record.m_plan = mp.to_json();
  // The rule planner repeats the task in every step: a long task for a big
  // team can make a plan record the outbox refuses. The plan fails, saying
  // so, with a record it takes.
  if (Status fits = check_plan_record_size(run.record); !fits.is_ok()) {
    run.record.m_plan = "null";
    const std::string err =
        status_data("Planning failed: " + fits.message() + " (a shorter task, or fewer steps)", "error");
    co_await finish(run, msgtype::kErrorMessage, err, PlanStatus::kFailed);
    co_return StepOutcome::kEnded;
  }
  co_return StepOutcome::kOk;
}

asio::awaitable<Runtime::StepOutcome> Runtime::run_steps(PlanRun& run, const MPlan& mp) {
  for (size_t k = run.recovered.first_step; k < mp.steps.size(); ++k) {
    if (interrupted(run)) co_return co_await end_interrupted(run);
    const MPlanStep& step = mp.steps[k];
    run.step_no = k + 1;
    run.attempt = k == run.recovered.first_step ? run.recovered.attempt : 1;
    const AgentConfig* agent = nullptr;
    for (const auto& a : run.team->agents)
      if (a.name == step.agent) agent = &a;
    std::string error;
    StepOutcome out = StepOutcome::kFailed;
    if (!agent) {
      error = "step " + step.id + ": agent '" + step.agent + "' is not in team " + run.team->team_id;
    } else {
      out = co_await run_step(run, step, *agent, &error);
    }
    if (out == StepOutcome::kEnded) co_return out;
    if (out == StepOutcome::kFailed) {
      const std::string err =
          JsonObject().str("content", error).str("status", "error").str("agent_name", step.agent).done();
      co_await finish(run, msgtype::kErrorMessage, err, PlanStatus::kFailed);
      co_return StepOutcome::kEnded;
    }
  }
  co_return StepOutcome::kOk;
}

// Asks for the approval of `mp` (unless the log holds the request: then
// waits for what is left of its timeout) and records the answer. kOk: approved.
asio::awaitable<Runtime::StepOutcome> Runtime::approval(PlanRun& run, const MPlan& mp) {
  std::chrono::milliseconds wait = opts_.approval_timeout;
  if (run.recovered.approval_asked_ms >= 0) {
    wait = remaining(run.recovered.approval_asked_ms, opts_.approval_timeout);
  } else {
    StepOutcome asked = co_await ask_approval(run, mp);
    if (asked != StepOutcome::kOk) co_return asked;
  }
  if (run.auto_approve) {
    run.approved = true;
    run.feedback = "auto-approved";
  } else {
    bool answered = co_await wait_until(run, wait, Await::kApproval);
    run.awaiting_approval = false;
    if (!run.approved && interrupted(run)) co_return co_await end_interrupted(run);
    if (!answered) {
      const std::string note = timeout_data("approval", run.m_plan_id, opts_.approval_timeout);
      co_await finish(run, msgtype::kErrorMessage, note, PlanStatus::kCanceled);
      co_return StepOutcome::kEnded;
    }
  }
  co_return co_await record_approval(run);
}

asio::awaitable<Runtime::StepOutcome> Runtime::ask_approval(PlanRun& run, const MPlan& mp) {
  JsonObject descriptions;
  for (const auto& a : run.team->agents) {
    // A name that is no valid document key ('.', '$') is left out: MongoDB
    // would refuse the whole message.
    if (check_key(a.name, "participant_descriptions").is_ok()) descriptions.str(a.name, a.description);
  }
  const std::string context =
      JsonObject().str("task", run.record.initial_goal).raw("participant_descriptions", descriptions.done()).done();
  // MACAE's PlanApprovalRequest: the MPlan under "plan" (what both UIs read).
  const std::string request = JsonObject()
                                  .raw("plan", run.record.m_plan)
                                  .str("status", "PENDING_APPROVAL")
                                  .raw("context", context)
                                  .str("plan_id", run.plan_id)
                                  .str("m_plan_id", mp.id)
                                  .done();
  // What a restart needs to know (recover()): whether this plan approves itself.
  const std::string meta = JsonObject().boolean("auto_approve", run.auto_approve).done();
  // Awaiting from before the request is announced: an approval sent the
  // moment a client sees it must find the plan waiting.
  run.awaiting_approval = !run.auto_approve;
  Result<AppendResult> asked =
      co_await emit(run, msgtype::kPlanApprovalRequest, request, PlanStatus::kAwaitingApproval, kNewMessageId, meta);
  if (!asked) {
    const Status why = asked.status();
    co_await end_on_append_failure(run, why);
    co_return StepOutcome::kEnded;
  }
  co_return StepOutcome::kOk;
}

asio::awaitable<Runtime::StepOutcome> Runtime::record_approval(PlanRun& run) {
  const std::string response = JsonObject()
                                   .str("plan_id", run.plan_id)
                                   .str("m_plan_id", run.m_plan_id)
                                   .boolean("approved", *run.approved)
                                   .str("feedback", run.feedback)
                                   .done();
  if (!*run.approved) {
    co_await finish(run, msgtype::kPlanApprovalResponse, response, PlanStatus::kRejected);
    co_return StepOutcome::kEnded;
  }
  Result<AppendResult> ok = co_await emit(run, msgtype::kPlanApprovalResponse, response, PlanStatus::kRunning);
  if (run.approval_done) {
    std::exchange(run.approval_done, nullptr)(ok ? Result<std::string>("approval recorded") : ok.status());
  }
  if (!ok) {
    const Status why = ok.status();
    co_await end_on_append_failure(run, why);
    co_return StepOutcome::kEnded;
  }
  if (!run.auto_approve && opts_.approval_settle.count() > 0) {
    // The v4 UI shows agent messages only once it has handled its own
    // approval call's answer; one that arrives first is dropped from its
    // live view. A person just clicked: a short pause costs nothing.
    co_await wait_until(run, opts_.approval_settle, Await::kTime);
    if (interrupted(run)) co_return co_await end_interrupted(run);
  }
  co_return StepOutcome::kOk;
}

}  // namespace agentd
