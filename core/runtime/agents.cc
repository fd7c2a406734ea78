// One step of a plan: script agents, LLM agents (streamed live), and a
// step's clarification request.
#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/runtime/plan_run.h"

namespace agentd {

using namespace runtime_internal;
using namespace std::chrono_literals;

// --- steps -------------------------------------------------------------------

asio::awaitable<Runtime::StepOutcome> Runtime::run_step(PlanRun& run, const MPlanStep& step, const AgentConfig& agent,
                                                        std::string* error) {
  if (agent.type == "script") co_return co_await script_step(run, step, agent, error);
  if (agent.type == "llm" || model_) co_return co_await llm_step(run, step, agent, error);
  co_return co_await script_step(run, step, agent, error);
}

asio::awaitable<Runtime::StepOutcome> Runtime::script_step(PlanRun& run, const MPlanStep& step,
                                                           const AgentConfig& agent, std::string* error) {
  const ScriptParams& sp = agent.script;
  for (int i = 0; i < sp.messages; ++i) {
    if (sp.delay_ms > 0) co_await wait_until(run, std::chrono::milliseconds(sp.delay_ms), Await::kTime);
    if (interrupted(run)) co_return co_await end_interrupted(run);
    if (i == 0 && !sp.clarify.empty()) {
      StepOutcome out = co_await ask_clarification(run, agent, sp.clarify);
      if (out != StepOutcome::kOk) co_return out;
    }
    if (i == 0 && !sp.record.empty()) {
      Status recorded = record_execution(sp.record, run.plan_id, run.step_no, run.attempt);
      if (!recorded.is_ok()) {
        *error = "agent " + agent.name + ": " + recorded.message();
        co_return StepOutcome::kFailed;
      }
    }
    if (sp.fail) {
      *error = "agent " + agent.name + " failed on step " + step.id + " (script.fail is set)";
      co_return StepOutcome::kFailed;
    }
    std::string content = agent.name + ": " + step.action;
    if (sp.messages > 1) content += " (" + std::to_string(i + 1) + "/" + std::to_string(sp.messages) + ")";
    if (sp.size > 0) content.resize(static_cast<size_t>(sp.size), '.');
    const std::string data = JsonObject()
                                 .str("agent_name", agent.name)
                                 .str("agent_type", "AI_Agent")
                                 .str("content", content)
                                 .str("step_id", step.id)
                                 .done();
    const std::string id = step_message_id(run.plan_id, run.step_no, std::to_string(i));
    const std::string meta = step_metadata(run.step_no, run.attempt, i + 1 == sp.messages);
    Result<AppendResult> r = co_await emit(run, msgtype::kAgentMessage, data, std::nullopt, id, meta);
    if (!r) {
      const Status why = r.status();
      co_await end_on_append_failure(run, why);
      co_return StepOutcome::kEnded;
    }
    if (run.transcript.size() < kTranscriptMax) run.transcript.push_back(agent.name + ": " + content);
  }
  co_return StepOutcome::kOk;
}

asio::awaitable<Runtime::StepOutcome> Runtime::ask_clarification(PlanRun& run, const AgentConfig& agent,
                                                                 const std::string& question) {
  const std::string rid = clarification_request_id(run.plan_id, run.step_no);
  // Answered before a restart: the answer is in the log and the transcript.
  if (run.recovered.answers.count(rid)) co_return StepOutcome::kOk;
  const bool asked_before = run.recovered.asked.count(rid) > 0;
  {
    MutexLock l(&mu_);
    request_index_[rid] = run.plan_id;
  }
  run.clarify_request_id = rid;
  if (!asked_before) run.answer.reset();  // else an answer may have come since the restart
  const std::string ask = JsonObject()
                              .str("question", question)
                              .str("request_id", rid)
                              .str("plan_id", run.plan_id)
                              .str("agent_name", agent.name)
                              .str("repr", clarification_repr(question, rid))
                              .done();
  const std::string meta = step_metadata(run.step_no, run.attempt, false);
  std::chrono::milliseconds wait = opts_.clarification_timeout;
  if (asked_before) {
    // Asked before a restart: what is left of the timeout.
    wait = remaining(run.recovered.asked[rid], opts_.clarification_timeout);
  } else {
    // The request's message_id is its request_id: an echo that carries only
    // the request_id (the MACAE UIs post one back) is found by it.
    Result<AppendResult> asked =
        co_await emit(run, msgtype::kUserClarificationRequest, ask, PlanStatus::kAwaitingClarification, rid, meta);
    if (!asked) {
      const Status why = asked.status();
      co_await end_on_append_failure(run, why);
      co_return StepOutcome::kEnded;
    }
  }
  bool answered = co_await wait_until(run, wait, Await::kAnswer);
  {
    MutexLock l(&mu_);
    request_index_.erase(rid);
  }
  run.clarify_request_id.clear();
  if (!run.answer && interrupted(run)) co_return co_await end_interrupted(run);
  if (!answered) {
    const std::string note = timeout_data("clarification", rid, opts_.clarification_timeout);
    co_await finish(run, msgtype::kErrorMessage, note, PlanStatus::kCanceled);
    co_return StepOutcome::kEnded;
  }
  const std::string reply = JsonObject()
                                .str("request_id", rid)
                                .str("answer", *run.answer)
                                .str("agent_name", "Human_Agent")
                                .str("agent_type", "Human_Agent")
                                .done();
  const std::string reply_id = step_message_id(run.plan_id, run.step_no, "answer");
  Result<AppendResult> got =
      co_await emit(run, msgtype::kUserClarificationResponse, reply, PlanStatus::kRunning, reply_id, meta);
  if (run.clarify_done) std::exchange(run.clarify_done, nullptr)(got.status());
  if (!got) {
    const Status why = got.status();
    co_await end_on_append_failure(run, why);
    co_return StepOutcome::kEnded;
  }
  run.transcript.push_back("Human_Agent: " + *run.answer);
  co_return StepOutcome::kOk;
}

asio::awaitable<Runtime::StepOutcome> Runtime::llm_step(PlanRun& run, const MPlanStep& step, const AgentConfig& agent,
                                                        std::string* error) {
  if (!model_) {
    *error = "agent " + agent.name + " is an LLM agent but no model is configured (--llm-base-url)";
    co_return StepOutcome::kFailed;
  }
  ChatRequest req;
  req.stream = true;
  req.timeout = opts_.model_timeout;
  req.messages.push_back({"system", agent.system_message.empty() ? "You are " + agent.name + ". " + agent.description
                                                                 : agent.system_message});
  std::string user = "Task: " + run.record.initial_goal + "\nYour step: " + step.action;
  if (!run.transcript.empty()) {
    user += "\nWhat the team said so far:";
    for (const auto& t : run.transcript) user += "\n- " + t;
  }
  req.messages.push_back({"user", user});
  auto self = run.shared_from_this();
  ChunkFn on_chunk = [this, self, name = agent.name](std::string_view delta, bool restart) {
    {
      MutexLock l(&mu_);
      if (restart) self->streaming.clear();  // a retried reply starts over
      self->streaming.append(delta);
    }
    JsonObject o;
    o.str("agent_name", name).str("content", delta).boolean("is_final", false);
    if (restart) o.boolean("restart", true);  // live clients drop what they have shown
    std::string data = o.done();
    std::string frame = JsonObject()
                            .str("type", msgtype::kAgentMessageStreaming)
                            .raw("data", data)
                            .str("plan_id", self->plan_id)
                            .boolean("live", true)
                            .done();
    publish_live(*self, frame);
  };
  auto start = [this, &req, &on_chunk](std::function<void(Result<std::string>)> cb) {
    model_->complete(std::move(req), on_chunk, std::move(cb));
  };
  Result<std::string> reply = co_await async_callback<Result<std::string>>(std::move(start));
  {
    MutexLock l(&mu_);
    run.streaming.clear();
  }
  if (interrupted(run)) co_return co_await end_interrupted(run);
  if (!reply) {
    *error = "agent " + agent.name + ": model error: " + reply.status().message();
    co_return StepOutcome::kFailed;
  }
  if (reply->empty()) {  // whatever the ModelClient: no text is no answer
    *error = "agent " + agent.name + ": model error: empty reply (no content)";
    co_return StepOutcome::kFailed;
  }
  const std::string data = JsonObject()
                               .str("agent_name", agent.name)
                               .str("agent_type", "AI_Agent")
                               .str("content", *reply)
                               .str("step_id", step.id)
                               .done();
  const std::string id = step_message_id(run.plan_id, run.step_no, "0");
  const std::string meta = step_metadata(run.step_no, run.attempt, true);
  Result<AppendResult> r = co_await emit(run, msgtype::kAgentMessage, data, std::nullopt, id, meta);
  if (!r) {
    const Status why = r.status();
    co_await end_on_append_failure(run, why);
    co_return StepOutcome::kEnded;
  }
  if (run.transcript.size() < kTranscriptMax) run.transcript.push_back(agent.name + ": " + *reply);
  co_return StepOutcome::kOk;
}

}  // namespace agentd
