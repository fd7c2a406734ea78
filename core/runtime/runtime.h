// Runtime: runs multi-agent plans (MACAE's flow) and implements PlanService.
//
//   submit -> planning -> awaiting_approval -> running <-> awaiting_clarification
//          -> completed | failed | rejected | canceled | interrupted
//
// Every message any part of a plan produces goes through the MessageLog the
// moment it is produced, together with the plan record version it announces
// (one transaction). Nothing is announced that was not appended: callers'
// callbacks fire after the append completed.
//
// LLM agents stream their reply live (never persisted) as
// agent_message_streaming frames {agent_name, content, is_final:false}; when
// the model call is retried after a cut stream, one frame with
// "restart": true and empty content says the text starts over (the buffer
// streaming_message() serves is cleared with it). The agent_message appended
// at the end holds the whole reply; an empty reply fails the step.
//
// A plan that cannot append a message (other than "outbox full") or whose
// coroutine ends by an exception is logged at error level, written failed
// (error_message) when the outbox still takes it, and always leaves memory:
// its slot, its run entry and its pending callbacks are released.
//
// Restart (recover()): every plan a previous process left unfinished is
// rebuilt from its record and its log and continued where it stopped (or,
// with resume_after_restart off, marked interrupted):
//   - planning: planned again;
//   - awaiting_approval / a step awaiting an answer: waits again, the
//     timeout counted from the request's timestamp;
//   - running: continues with the first step whose completion is not in the
//     log; a step in progress at the crash runs again, completed ones never.
// What a step emits has a deterministic message_id ("<plan_id>:s<step>:<i>",
// the clarification answer "<plan_id>:s<step>:answer"; the clarification
// request's message_id is its request_id, a UUID derived from plan and
// step), so a step that runs again does not log its messages twice (the
// outbox dedups per plan on message_id). Their metadata says
// {"step": n, "attempt": a} (and "step_done": true on the step's last
// message, which is how the log tells a completed step); attempt counts the
// runs that may have started the step: what a step does outside agentd
// (a model call, the script agent's `record`) may happen once per attempt.
// Each resume is recorded by a system_message {"content": "resumed after
// restart …", "status": "resumed", "step", "attempt"}, appended without a
// plan record (the record's last_seq keeps naming the open request). A plan
// whose log cannot be understood (unknown team, unreadable m_plan or
// message, a log that contradicts its status) is failed with an
// error_message naming why; the others resume.
//
// Threads: each plan runs as a coroutine on its own strand of the executor
// passed in. API calls (approve, clarify, cancel) post to that strand. The
// members of PlanRun marked "strand" are only touched there; the indexes in
// Runtime are guarded by mu_.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/message_log.h"
#include "core/metrics.h"
#include "core/plan_service.h"
#include "core/runtime/model_client.h"
#include "core/runtime/planner.h"
#include "core/runtime/team.h"
#include "core/thread_annotations.h"

namespace agentd {

struct RuntimeOptions {
  int max_concurrent_plans = 16;  // plans executing steps at once
  std::chrono::milliseconds approval_timeout{300000};
  std::chrono::milliseconds clarification_timeout{300000};
  // After a person approved (not auto-approve): the pause before the first
  // step, so that the approving UI has taken the approval's answer before
  // agent messages arrive (MACAE v4 drops earlier ones from its live view).
  std::chrono::milliseconds approval_settle{300};
  bool auto_approve = false;                        // default when a request does not say
  std::string default_team_id;                      // empty: the first team loaded
  size_t max_active_plans = 10000;                  // submit beyond this -> kUnavailable
  std::chrono::milliseconds model_timeout{120000};  // per model request (planner, LLM agents)
  std::string uploaded_teams_dir;                   // where uploaded teams are kept; empty = memory only
  bool resume_after_restart = true;                 // recover(): resume plans (false: mark them interrupted)
};

class Runtime final : public PlanService {
 public:
  // `model` may be null: then planning is rule-based and agents are script
  // agents (type "llm" agents fail their step with a clear error).
  Runtime(boost::asio::any_io_executor ex, MessageLog& log, std::vector<TeamConfig> teams, RuntimeOptions options,
          ModelClient* model, MetricsRegistry& metrics);
  ~Runtime() override;

  // Start-up: plans a previous process left unfinished are resumed (see the
  // top of this file), or, with resume_after_restart off, marked interrupted
  // by an error_message. Blocking; call before serving requests. Fails only
  // when the log cannot be read or appended to, never because of one plan.
  Status recover();
  // Stops accepting work and wakes every plan; their coroutines end at the
  // next checkpoint without announcing anything more (a later start resumes
  // them). Returns when all ended or the deadline passed.
  void shutdown(std::chrono::milliseconds deadline);
  size_t active_plans() const;

  // PlanService
  void submit(SubmitRequest req, std::function<void(Result<SubmitResult>)> done) override;
  void approve(ApprovalRequest req, std::function<void(Result<std::string>)> done) override;
  void clarify(ClarificationRequest req, std::function<void(Status)> done) override;
  void cancel(std::string user_id, std::string plan_id, std::function<void(Status)> done) override;
  std::vector<std::string> team_configs() const override;
  std::optional<std::string> team_config(const std::string& team_id) const override;
  Status select_team(const std::string& user_id, const std::string& team_id) override;
  std::optional<std::string> current_team(const std::string& user_id) const override;
  Result<std::string> upload_team(const std::string& user_id, std::string_view json) override;
  Status delete_team(const std::string& user_id, const std::string& team_id) override;
  std::optional<std::string> streaming_message(const std::string& plan_id) const override;
  void set_live_sink(LiveSink sink) override;

 private:
  struct PlanRun;
  enum class StepOutcome { kOk, kFailed, kEnded };

  // Starts the plan's coroutine on its strand.
  void spawn(const std::shared_ptr<PlanRun>& run);
  // Rebuilds an unfinished plan from its record and log (recover()); an
  // error names what cannot be understood. `resume` gets the data of the
  // system_message that records the resume.
  Result<std::shared_ptr<PlanRun>> rebuild(const PlanRecord& rec, std::string* resume);
  boost::asio::awaitable<void> run_plan(std::shared_ptr<PlanRun> run);
  // The plan flow (plan_flow.cc). Each returns kOk to go on, kEnded when
  // the plan ended (or was left for the next start).
  boost::asio::awaitable<StepOutcome> plan_body(PlanRun& run);
  // Plans the run's goal with the planner into *planned.
  boost::asio::awaitable<StepOutcome> make_plan(PlanRun& run, std::optional<MPlan>* planned);
  boost::asio::awaitable<StepOutcome> approval(PlanRun& run, const MPlan& mp);
  boost::asio::awaitable<StepOutcome> ask_approval(PlanRun& run, const MPlan& mp);
  // Records the answer (run.approved, run.feedback); kOk when approved.
  boost::asio::awaitable<StepOutcome> record_approval(PlanRun& run);
  // The steps from the first one the log does not hold as done.
  boost::asio::awaitable<StepOutcome> run_steps(PlanRun& run, const MPlan& mp);
  boost::asio::awaitable<StepOutcome> run_step(PlanRun& run, const MPlanStep& step, const AgentConfig& agent,
                                               std::string* error);
  boost::asio::awaitable<StepOutcome> script_step(PlanRun& run, const MPlanStep& step, const AgentConfig& agent,
                                                  std::string* error);
  boost::asio::awaitable<StepOutcome> ask_clarification(PlanRun& run, const AgentConfig& agent,
                                                        const std::string& question);
  boost::asio::awaitable<StepOutcome> llm_step(PlanRun& run, const MPlanStep& step, const AgentConfig& agent,
                                               std::string* error);
  // Appends a message (and the plan record moved to `status`, when given),
  // retrying with backoff while the outbox is full.
  // `message_id` empty: a new one; `metadata`: a canonical JSON object.
  // (The defaults are named objects, not temporaries: see the coroutine rule
  // at async_callback in plan_run.h.)
  static const std::string kNewMessageId;
  static const std::string kNoMetadata;
  boost::asio::awaitable<Result<AppendResult>> emit(PlanRun& run, std::string_view type, const std::string& data,
                                                    std::optional<PlanStatus> status,
                                                    const std::string& message_id = kNewMessageId,
                                                    const std::string& metadata = kNoMetadata);
  // Ends the plan with `status` announced by a message of `type`.
  boost::asio::awaitable<void> finish(PlanRun& run, std::string_view type, const std::string& data, PlanStatus status);
  // Drops the plan from memory (releasing its slot) without announcing more.
  void abandon(PlanRun& run);
  // Completes the plan's pending approve/clarify/cancel callbacks with `st`;
  // a cancel gets ok only if the recorded end is "canceled" (else 409 with
  // the real status: it lost the race with that end).
  void answer_pending(PlanRun& run, const Status& st);
  // Ends a plan whose append failed (other than "outbox full"): logged at
  // error level; unless agentd is stopping, an error_message moves the plan
  // to failed when the outbox still takes it. Always frees the slot and the
  // run entry and answers pending callbacks.
  boost::asio::awaitable<void> end_on_append_failure(PlanRun& run, const Status& why);
  // Ends a plan whose coroutine ended by an exception (on the plan's strand):
  // the same, without a coroutine.
  void end_after_exception(const std::shared_ptr<PlanRun>& run, const std::string& what);
  // After a wait that interrupted(run) ended: a requested cancel ends the
  // plan (announced); a shutdown leaves it as it is (the next start resumes
  // it). Always kEnded. Call as
  //   if (interrupted(run)) co_return co_await end_interrupted(run);
  boost::asio::awaitable<StepOutcome> end_interrupted(PlanRun& run);
  // Waits on the run's wake timer until ready(what) or the timeout; false on
  // timeout. Returns early (true) when cancel or shutdown is requested.
  enum class Await { kApproval, kAnswer, kSlot, kTime };
  bool ready(PlanRun& run, Await what);
  boost::asio::awaitable<bool> wait_until(PlanRun& run, std::chrono::milliseconds timeout, Await what);
  boost::asio::awaitable<bool> acquire_slot(PlanRun& run);
  void release_slot();
  void forget(const PlanRun& run);
  bool interrupted(const PlanRun& run) const;
  std::shared_ptr<const TeamConfig> find_team(const std::string& team_id) const;
  std::string default_team_id() const;
  std::shared_ptr<PlanRun> find_run(const std::string& id) const;
  Status check_inactive_plan(const std::string& user_id, const std::string& plan_id, const char* what);
  void publish_live(const PlanRun& run, const std::string& frame);

  boost::asio::any_io_executor ex_;
  MessageLog& log_;
  std::vector<std::shared_ptr<const TeamConfig>> teams_ GUARDED_BY(mu_);
  std::set<std::string> uploading_ GUARDED_BY(mu_);  // team ids being saved
  const RuntimeOptions opts_;
  ModelClient* model_;
  std::unique_ptr<Planner> planner_;
  std::atomic<bool> stopping_{false};

  Counter& plans_submitted_;
  Counter& plans_finished_;
  Counter& outbox_full_retries_;
  Gauge& plans_active_;

  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<PlanRun>> runs_ GUARDED_BY(mu_);  // by plan_id
  std::map<std::string, std::string> m_plan_index_ GUARDED_BY(mu_);       // m_plan_id -> plan_id
  std::map<std::string, std::string> request_index_ GUARDED_BY(mu_);      // clarification request_id -> plan_id
  std::map<std::string, std::string> selected_team_ GUARDED_BY(mu_);      // user_id -> team_id
  int executing_ GUARDED_BY(mu_) = 0;                                     // slots in use
  std::deque<PlanRun*> slot_waiters_ GUARDED_BY(mu_);
  LiveSink live_sink_ GUARDED_BY(mu_);
};

}  // namespace agentd
