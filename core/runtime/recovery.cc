// recover(): plans a previous process left unfinished, rebuilt from their
// record and log (see the top of runtime.h).
#include <set>

#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/runtime/plan_run.h"

namespace agentd {

using namespace runtime_internal;
using namespace std::chrono_literals;

Status Runtime::recover() {
  auto plans = log_.list_unfinished_plans(1000000);
  if (!plans) return plans.status();
  for (const PlanRecord& rec : *plans) {
    if (find_run(rec.plan_id)) continue;  // resumed by an earlier call
    std::string was(plan_status_name(rec.status));
    std::string why = "agentd stopped while the plan was " + was;
    std::string resume;
    Result<std::shared_ptr<PlanRun>> run = internal_error("not rebuilt");
    if (opts_.resume_after_restart) {
      run = rebuild(rec, &resume);
      if (run.is_ok()) {
        auto r = log_.append_sync(make_request(rec, msgtype::kSystemMessage, resume, std::nullopt));
        if (!r) return r.status();
        {
          // Found from now on by its m_plan id and open request id: an
          // answer may come before the plan's coroutine reaches its wait.
          MutexLock l(&mu_);
          runs_[rec.plan_id] = *run;
          if (!(*run)->m_plan_id.empty()) m_plan_index_[(*run)->m_plan_id] = rec.plan_id;
          if (!(*run)->clarify_request_id.empty()) request_index_[(*run)->clarify_request_id] = rec.plan_id;
          plans_active_.set(static_cast<double>(runs_.size()));
        }
        spdlog::info("plan {} resumed (was {}): {}", rec.plan_id, was, resume);
        spawn(*run);
        continue;
      }
      why = run.status().message();
    }
    // Interrupted (today's behaviour, or a log written before plans could
    // resume), or failed: its log cannot be understood.
    std::string note;
    PlanStatus end = PlanStatus::kInterrupted;
    if (run.status().code() == Code::kInvalidArgument) {
      spdlog::error("plan {} cannot be resumed: {}", rec.plan_id, why);
      note = status_data("Plan failed: agentd could not resume it after a restart: " + why, "error");
      end = PlanStatus::kFailed;
    } else {
      note = status_data("Plan interrupted: " + why + ". Submit it again to retry.", "interrupted");
      spdlog::info("plan {} marked interrupted: {}", rec.plan_id, why);
    }
    auto r = log_.append_sync(make_request(rec, msgtype::kErrorMessage, note, end));
    if (!r) return r.status();
  }
  return Status::ok();
}

namespace {

// What a plan's log says, message by message (rebuild() decides from it).
struct LogFacts {
  std::optional<bool> auto_ok;  // the approval request's metadata
  int64_t approval_asked_ms = -1;
  std::optional<bool> approved;
  std::map<std::string, int64_t> asked;        // open clarification requests
  std::map<std::string, std::string> answers;  // request_id -> answer
  std::set<size_t> done_steps;
  std::map<size_t, int> resumes;  // step -> earlier resumes at it
  std::vector<std::string> transcript;
};

Result<LogFacts> read_log_facts(MessageLog& log, const PlanRecord& rec) {
  LogFacts f;
  const std::string step_prefix = rec.plan_id + ":s";
  for (uint64_t after = 0;;) {
    auto page = log.read_messages(rec.plan_id, after, 1000);
    if (!page) return invalid_argument("its log cannot be read: " + page.status().message());
    if (page->empty()) break;
    for (const StoredMessage& m : *page) {
      after = m.seq;
      const std::string at = "message seq " + std::to_string(m.seq);
      auto e = decode_envelope(*m.bytes, kStoredJson);
      if (!e) return invalid_argument(at + ": " + e.status().message());
      auto data = parse_strict(e->data, kStoredJson);
      auto meta = parse_strict(e->metadata, kStoredJson);
      if (!data || !meta || !data->IsObject() || !meta->IsObject()) return invalid_argument(at + ": data or metadata");
      auto str = [](const rapidjson::Value& o, const char* k) {
        auto it = o.FindMember(k);
        return it != o.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString()) : std::string();
      };
      auto flag = [](const rapidjson::Value& o, const char* k) -> std::optional<bool> {
        auto it = o.FindMember(k);
        if (it == o.MemberEnd() || !it->value.IsBool()) return std::nullopt;
        return it->value.GetBool();
      };
      int64_t ts = 0;
      if (!parse_rfc3339_ms(e->timestamp, &ts)) return invalid_argument(at + ": timestamp");
      if (e->type == msgtype::kPlanApprovalRequest) {
        f.auto_ok = flag(*meta, "auto_approve");
        // Written by an agentd that could not resume plans: interrupted.
        if (!f.auto_ok) return failed_precondition("its log was written by an agentd that could not resume plans");
        f.approval_asked_ms = ts;
      } else if (e->type == msgtype::kPlanApprovalResponse) {
        f.approved = flag(*data, "approved");
        if (!f.approved) return invalid_argument(at + ": plan_approval_response without \"approved\"");
      } else if (e->type == msgtype::kUserClarificationRequest) {
        f.asked[str(*data, "request_id")] = ts;
      } else if (e->type == msgtype::kUserClarificationResponse) {
        std::string rid = str(*data, "request_id");
        f.asked.erase(rid);
        f.answers[rid] = str(*data, "answer");
        if (f.transcript.size() < kTranscriptMax) f.transcript.push_back("Human_Agent: " + f.answers[rid]);
      } else if (e->type == msgtype::kAgentMessage && e->message_id.rfind(step_prefix, 0) == 0) {
        auto step = meta->FindMember("step");
        if (step == meta->MemberEnd() || !step->value.IsInt64() || step->value.GetInt64() < 1) {
          return invalid_argument(at + ": a step's message without metadata.step");
        }
        if (flag(*meta, "step_done").value_or(false)) f.done_steps.insert(static_cast<size_t>(step->value.GetInt64()));
        if (f.transcript.size() < kTranscriptMax) {
          f.transcript.push_back(str(*data, "agent_name") + ": " + str(*data, "content"));
        }
      } else if (e->type == msgtype::kSystemMessage && str(*data, "status") == "resumed") {
        auto step = data->FindMember("step");
        if (step != data->MemberEnd() && step->value.IsInt64() && step->value.GetInt64() > 0) {
          ++f.resumes[static_cast<size_t>(step->value.GetInt64())];
        }
      }
    }
  }

  return f;
}

}  // namespace

Result<std::shared_ptr<Runtime::PlanRun>> Runtime::rebuild(const PlanRecord& rec, std::string* resume) {
  auto team = find_team(rec.team_id);
  if (!team) return invalid_argument("its team '" + rec.team_id + "' is not loaded (deleted, or --teams-dir changed)");
  auto facts = read_log_facts(log_, rec);
  if (!facts) return facts.status();
  const std::optional<bool> auto_ok = facts->auto_ok;
  const std::optional<bool> approved = facts->approved;
  const int64_t approval_asked_ms = facts->approval_asked_ms;
  std::map<std::string, int64_t>& asked = facts->asked;
  std::map<std::string, std::string>& answers = facts->answers;
  const std::set<size_t>& done_steps = facts->done_steps;
  std::map<size_t, int>& resumes = facts->resumes;
  std::vector<std::string>& transcript = facts->transcript;
  const std::string status(plan_status_name(rec.status));
  auto run = std::make_shared<PlanRun>(ex_, rec, team, auto_ok.value_or(opts_.auto_approve));
  run->transcript = std::move(transcript);
  PlanRun::Recovered& rv = run->recovered;
  if (rec.status == PlanStatus::kCreated || rec.status == PlanStatus::kPlanning) {
    // Not planned yet. (A request's own auto_approve is first logged with
    // the approval request: the plan is planned again under the default.)
    if (auto_ok) return invalid_argument("the log holds an approval request but the plan is " + status);
    *resume = resume_data("resumed after restart: planning again", 0, 1);
    return run;
  }
  auto mp = MPlan::from_json(rec.m_plan);
  if (!mp) return mp.status();
  if (!auto_ok) return invalid_argument("the plan is " + status + " but its log holds no approval request");
  rv.m_plan = *mp;
  rv.approval_asked_ms = approval_asked_ms;
  run->m_plan_id = mp->id;
  if (rec.status == PlanStatus::kAwaitingApproval) {
    if (approved) return invalid_argument("the plan is " + status + " but its log holds the approval response");
    // Awaiting from before the plan is found: an approval sent the moment
    // the server listens must find the plan waiting.
    run->awaiting_approval = !run->auto_approve;
    *resume = resume_data(
        run->auto_approve ? "resumed after restart: approving" : "resumed after restart: waiting for approval", 0, 1);
    return run;
  }
  if (!approved || !*approved) return invalid_argument("the plan is " + status + " but its log holds no approval");
  rv.approved = true;
  size_t step = 1;
  while (step <= mp->steps.size() && done_steps.count(step)) ++step;
  rv.first_step = step - 1;
  // Each run that may have started the step counts: the first one, and every
  // earlier resume at it.
  rv.attempt = step <= mp->steps.size() ? 2 + resumes[step] : 1;
  const std::string open_request = clarification_request_id(rec.plan_id, step);
  if (rec.status == PlanStatus::kAwaitingClarification) {
    if (asked.size() != 1 || asked.begin()->first != open_request) {
      return invalid_argument("the plan is " + status + " but its log holds no open request of step " +
                              std::to_string(step));
    }
  } else if (!asked.empty()) {
    return invalid_argument("the plan is " + status + " but request " + asked.begin()->first + " is unanswered");
  }
  if (rec.status == PlanStatus::kAwaitingClarification) run->clarify_request_id = open_request;
  rv.asked = std::move(asked);
  rv.answers = std::move(answers);
  std::string content = step <= mp->steps.size()
                            ? "resumed after restart at step " + std::to_string(step)
                            : "resumed after restart: all " + std::to_string(mp->steps.size()) + " steps done";
  if (rec.status == PlanStatus::kAwaitingClarification) content += " (waiting for an answer)";
  *resume = resume_data(content, step <= mp->steps.size() ? step : 0, rv.attempt);
  return run;
}

}  // namespace agentd
