#include "core/runtime/runtime.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/clock.h"
#include "core/json.h"

namespace agentd {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr size_t kTranscriptMax = 50;
constexpr auto kForever = std::chrono::milliseconds(std::chrono::hours(24 * 365));

// Turns a callback API `start(cb)` into an awaitable whose result is posted
// back to the awaiting coroutine's executor (its strand).
//
// GCC 12 miscompiles class-type temporaries that live across a suspension
// point (they are relocated bitwise into the frame: SSO strings and
// shared_ptr counts break). So in this file no co_await full-expression
// creates a class-type temporary: arguments are named locals passed by
// reference, and no coroutine is a lambda.
template <typename T, typename Start>
auto async_callback(Start&& start) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      [](auto handler, std::decay_t<Start> start) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto fired = std::make_shared<std::atomic<bool>>(false);
        auto deliver = [h, fired](T v) {
          if (fired->exchange(true)) return;  // once, even after a throw
          auto ex = asio::get_associated_executor(*h);
          asio::post(ex, [h, v = std::move(v)]() mutable { std::move (*h)(std::move(v)); });
        };
        // An exception thrown by `start` (a ModelClient, the planner, a
        // MessageLog) would escape the io_context's run(): it becomes the
        // awaited result instead.
        try {
          start(deliver);
        } catch (const std::exception& x) {
          deliver(T(internal_error(std::string("runtime error: ") + x.what())));
        }
      },
      asio::use_awaitable, std::forward<Start>(start));
}

// A message of `type` for the plan, with the plan record moved to `status`
// when one is given (both commit in one transaction).
AppendRequest make_request(const PlanRecord& rec, std::string_view type, const std::string& data,
                           std::optional<PlanStatus> status, std::string_view message_id = {},
                           std::string_view metadata = {}) {
  MessageDraft d;
  d.type = std::string(type);
  d.message_id = std::string(message_id);
  d.plan_id = rec.plan_id;
  d.user_id = rec.user_id;
  d.session_id = rec.session_id;
  d.data = data;
  if (!metadata.empty()) d.metadata = std::string(metadata);
  AppendRequest req;
  req.message = prepare(std::move(d));
  if (status) {
    req.plan = rec;
    req.plan->status = *status;
    req.plan->updated_at = now_rfc3339();
  }
  return req;
}

std::string status_data(std::string_view content, std::string_view status) {
  return JsonObject().str("content", content).str("status", status).done();
}

// The data of the error_message that ends a plan on a timeout: the MACAE
// UIs show error_message content (they ignore timeout_notification), and the
// timeout_notification fields stay beside it for other clients.
std::string timeout_data(std::string_view kind, std::string_view request_id, std::chrono::milliseconds timeout) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
  std::string what = std::string("No ") + (kind == "approval" ? "approval" : "answer") + " within " +
                     std::to_string(secs) + " s; the plan is canceled";
  return JsonObject()
      .str("content", "Plan canceled: " + what)
      .str("status", "timeout")
      .str("timeout_type", kind)
      .str("request_id", request_id)
      .str("message", what)
      .num("timeout_duration", secs)
      .done();
}

// The string the MACAE v3 UI parses a clarification request from (it reads
// no structured field): UserClarificationRequest(question='…', request_id='…'),
// the question escaped as a Python repr would (\\, \', \n).
std::string clarification_repr(std::string_view question, std::string_view request_id) {
  std::string q;
  for (char c : question) {
    if (c == '\\' || c == '\'') q += '\\';
    if (c == '\n') {
      q += "\\n";
      continue;
    }
    q += c;
  }
  return "UserClarificationRequest(question='" + q + "', request_id='" + std::string(request_id) + "')";
}

// --- resumable steps (see the top of runtime.h) ---

// "<plan_id>:s<step>:<what>": a message a step emits (what = its index, or
// "answer" for the clarification answer).
std::string step_message_id(std::string_view plan_id, size_t step, std::string_view what) {
  return std::string(plan_id) + ":s" + std::to_string(step) + ":" + std::string(what);
}

// The metadata of what a step emits; `done` marks the step's last message.
std::string step_metadata(size_t step, int attempt, bool done) {
  JsonObject o;
  o.num("step", static_cast<int64_t>(step)).num("attempt", attempt);
  if (done) o.boolean("step_done", true);
  return o.done();
}

// The request_id (and message_id) of step `step`'s clarification request: a
// UUID (the v3 UI's regex reads only hex digits and '-') derived from plan
// and step, so a step that runs again asks with the same id and the log
// holds the request once. Two FNV-1a hashes, version 8 (custom), RFC 4122
// variant.
std::string clarification_request_id(std::string_view plan_id, size_t step) {
  const std::string key = std::string(plan_id) + '\0' + "clarify" + '\0' + std::to_string(step);
  auto fnv = [&key](uint64_t h) {
    for (char c : key) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
    return h;
  };
  uint64_t hi = fnv(14695981039346656037ull), lo = fnv(0x9e3779b97f4a7c15ull);
  hi = (hi & ~uint64_t{0xf000}) | 0x8000;
  lo = (lo & ~(uint64_t{3} << 62)) | (uint64_t{2} << 62);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return buf;
}

// What is left of `timeout` for a request made at `asked_ms` (wall clock):
// a wait resumed after a restart ends when the first one would have.
std::chrono::milliseconds remaining(int64_t asked_ms, std::chrono::milliseconds timeout) {
  int64_t left = asked_ms + timeout.count() - now_unix_ms();
  return std::chrono::milliseconds(std::max<int64_t>(0, left));
}

std::string resume_data(const std::string& content, size_t step, int attempt) {
  return JsonObject()
      .str("content", content)
      .str("status", "resumed")
      .num("step", static_cast<int64_t>(step))
      .num("attempt", attempt)
      .done();
}

// The script agent's `record`: one line per step execution, written with
// one write() to a file opened O_APPEND (lines stay whole).
Status record_execution(const std::string& path, std::string_view plan_id, size_t step, int attempt) {
  const std::string line = std::string(plan_id) + " " + std::to_string(step) + " " + std::to_string(attempt) + " " +
                           std::to_string(::getpid()) + "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("script.record: open " + path + ": " + std::strerror(errno));
  ssize_t n = ::write(fd, line.data(), line.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size())) {
    return io_error("script.record: write " + path + ": " + (n < 0 ? std::strerror(err) : "short write"));
  }
  return Status::ok();
}

}  // namespace

struct Runtime::PlanRun : std::enable_shared_from_this<PlanRun> {
  PlanRun(asio::any_io_executor ex, PlanRecord rec, std::shared_ptr<const TeamConfig> t, bool auto_ok)
      : strand(asio::make_strand(ex)),
        wake(strand),
        plan_id(rec.plan_id),
        user_id(rec.user_id),
        team(std::move(t)),
        auto_approve(auto_ok),
        record(std::move(rec)) {}

  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer wake;  // every wait of the plan; cancel() wakes it
  const std::string plan_id, user_id;
  const std::shared_ptr<const TeamConfig> team;  // kept even if the team is deleted meanwhile
  const bool auto_approve;

  // strand:
  PlanRecord record;  // the latest committed version
  std::string m_plan_id;
  bool awaiting_approval = false;
  std::optional<bool> approved;
  std::string feedback;
  std::function<void(Result<std::string>)> approval_done;
  std::string clarify_request_id;
  std::optional<std::string> answer;
  std::function<void(Status)> clarify_done;
  bool cancel_requested = false;
  std::vector<std::function<void(Status)>> cancel_done;
  std::vector<std::string> transcript;
  // Rebuilt from the log by recover() (empty for a plan submitted now):
  struct Recovered {
    std::optional<MPlan> m_plan;                 // planned before the restart
    int64_t approval_asked_ms = -1;              // its approval request's timestamp; -1: not asked
    bool approved = false;                       // its approval is in the log
    size_t first_step = 0;                       // the first step whose completion is not in the log
    int attempt = 1;                             // that step's attempt
    std::map<std::string, int64_t> asked;        // clarification request_id -> timestamp, unanswered
    std::map<std::string, std::string> answers;  // clarification request_id -> the logged answer
  } recovered;
  size_t step_no = 0;  // the step running (1-based) and its attempt: its messages' ids and metadata
  int attempt = 1;
  bool holds_slot = false;
  bool ended = false;  // abandon() ran: the coroutine answers nothing more

  // guarded by Runtime::mu_:
  bool slot_granted = false;
  std::string streaming;
};

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
  std::lock_guard l(mu_);
  return runs_.size();
}

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
          std::lock_guard l(mu_);
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

Result<std::shared_ptr<Runtime::PlanRun>> Runtime::rebuild(const PlanRecord& rec, std::string* resume) {
  auto team = find_team(rec.team_id);
  if (!team) return invalid_argument("its team '" + rec.team_id + "' is not loaded (deleted, or --teams-dir changed)");
  // What the log says, message by message.
  std::optional<bool> auto_ok;  // the approval request's metadata
  int64_t approval_asked_ms = -1;
  std::optional<bool> approved;
  std::map<std::string, int64_t> asked;
  std::map<std::string, std::string> answers;
  std::set<size_t> done_steps;
  std::map<size_t, int> resumes;  // step -> earlier resumes at it
  std::vector<std::string> transcript;
  const std::string step_prefix = rec.plan_id + ":s";
  for (uint64_t after = 0;;) {
    auto page = log_.read_messages(rec.plan_id, after, 1000);
    if (!page) return invalid_argument("its log cannot be read: " + page.status().message());
    if (page->empty()) break;
    for (const StoredMessage& m : *page) {
      after = m.seq;
      const std::string at = "message seq " + std::to_string(m.seq);
      auto e = decode_envelope(*m.bytes);
      if (!e) return invalid_argument(at + ": " + e.status().message());
      auto data = parse_strict(e->data);
      auto meta = parse_strict(e->metadata);
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
        auto_ok = flag(*meta, "auto_approve");
        // Written by an agentd that could not resume plans: interrupted.
        if (!auto_ok) return failed_precondition("its log was written by an agentd that could not resume plans");
        approval_asked_ms = ts;
      } else if (e->type == msgtype::kPlanApprovalResponse) {
        approved = flag(*data, "approved");
        if (!approved) return invalid_argument(at + ": plan_approval_response without \"approved\"");
      } else if (e->type == msgtype::kUserClarificationRequest) {
        asked[str(*data, "request_id")] = ts;
      } else if (e->type == msgtype::kUserClarificationResponse) {
        std::string rid = str(*data, "request_id");
        asked.erase(rid);
        answers[rid] = str(*data, "answer");
        if (transcript.size() < kTranscriptMax) transcript.push_back("Human_Agent: " + answers[rid]);
      } else if (e->type == msgtype::kAgentMessage && e->message_id.rfind(step_prefix, 0) == 0) {
        auto step = meta->FindMember("step");
        if (step == meta->MemberEnd() || !step->value.IsInt64() || step->value.GetInt64() < 1) {
          return invalid_argument(at + ": a step's message without metadata.step");
        }
        if (flag(*meta, "step_done").value_or(false)) done_steps.insert(static_cast<size_t>(step->value.GetInt64()));
        if (transcript.size() < kTranscriptMax) {
          transcript.push_back(str(*data, "agent_name") + ": " + str(*data, "content"));
        }
      } else if (e->type == msgtype::kSystemMessage && str(*data, "status") == "resumed") {
        auto step = data->FindMember("step");
        if (step != data->MemberEnd() && step->value.IsInt64() && step->value.GetInt64() > 0) {
          ++resumes[static_cast<size_t>(step->value.GetInt64())];
        }
      }
    }
  }

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

void Runtime::shutdown(std::chrono::milliseconds deadline) {
  stopping_ = true;
  std::vector<std::shared_ptr<PlanRun>> runs;
  {
    std::lock_guard l(mu_);
    for (auto& [id, r] : runs_) runs.push_back(r);
  }
  for (auto& r : runs) asio::post(r->strand, [r] { r->wake.cancel(); });
  auto until = std::chrono::steady_clock::now() + deadline;
  while (active_plans() > 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
}

bool Runtime::interrupted(const PlanRun& run) const { return run.cancel_requested || stopping_; }

std::shared_ptr<const TeamConfig> Runtime::find_team(const std::string& team_id) const {
  std::lock_guard l(mu_);
  for (const auto& t : teams_)
    if (t->team_id == team_id) return t;
  return nullptr;
}

std::string Runtime::default_team_id() const {
  if (!opts_.default_team_id.empty()) return opts_.default_team_id;
  std::lock_guard l(mu_);
  return teams_.empty() ? std::string() : teams_.front()->team_id;
}

std::shared_ptr<Runtime::PlanRun> Runtime::find_run(const std::string& id) const {
  std::lock_guard l(mu_);
  auto it = runs_.find(id);
  if (it != runs_.end()) return it->second;
  auto m = m_plan_index_.find(id);
  if (m != m_plan_index_.end()) {
    auto r = runs_.find(m->second);
    if (r != runs_.end()) return r->second;
  }
  return nullptr;
}

void Runtime::forget(const PlanRun& run) {
  std::lock_guard l(mu_);
  runs_.erase(run.plan_id);
  if (!run.m_plan_id.empty()) m_plan_index_.erase(run.m_plan_id);
  if (!run.clarify_request_id.empty()) request_index_.erase(run.clarify_request_id);
  plans_active_.set(static_cast<double>(runs_.size()));
}

Status Runtime::check_inactive_plan(const std::string& user_id, const std::string& id, const char* what) {
  // `id` is a plan id, or (approvals) an m_plan id: those are found among
  // the user's plans, a rare path that only answers 409 or 404.
  auto p = log_.get_plan(id);
  if (!p) return p.status();
  std::optional<PlanRecord> found;
  if (*p && (*p)->user_id == user_id) found = **p;
  if (!found) {
    auto mine = log_.list_plans(user_id, 100000);
    if (!mine) return mine.status();
    for (const PlanRecord& rec : *mine) {
      auto m = parse_strict(rec.m_plan);
      if (m && m->IsObject() && m->HasMember("id") && (*m)["id"].IsString() && id == (*m)["id"].GetString()) {
        found = rec;
        break;
      }
    }
  }
  if (!found) return not_found("Plan not found");
  return failed_precondition(std::string("plan is not ") + what +
                             " (status: " + std::string(plan_status_name(found->status)) + ")");
}

// --- submit ------------------------------------------------------------------

void Runtime::submit(SubmitRequest req, std::function<void(Result<SubmitResult>)> done) {
  if (stopping_) return done(unavailable("agentd is shutting down"));
  if (req.description.empty()) return done(invalid_argument("description: must not be empty"));
  std::string team_id = req.team_id;
  if (team_id.empty()) {
    std::lock_guard l(mu_);
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
    std::lock_guard l(mu_);
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
  for (auto& cb : std::exchange(run.cancel_done, {})) cb(st);
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
    std::lock_guard l(mu_);
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

// After a wait: a requested cancel ends the plan (announced); a shutdown
// leaves it as it is (the next start resumes it).
#define AGENTD_END_IF_INTERRUPTED(run)                                                   \
  do {                                                                                   \
    if (stopping_) {                                                                     \
      abandon(run);                                                                      \
      co_return StepOutcome::kEnded;                                                     \
    }                                                                                    \
    if ((run).cancel_requested) {                                                        \
      const std::string canceled = status_data("Plan canceled by the user", "canceled"); \
      co_await finish((run), msgtype::kErrorMessage, canceled, PlanStatus::kCanceled);   \
      co_return StepOutcome::kEnded;                                                     \
    }                                                                                    \
  } while (0)

bool Runtime::ready(PlanRun& run, Await what) {
  switch (what) {
    case Await::kApproval: return run.approved.has_value();
    case Await::kAnswer: return run.answer.has_value();
    case Await::kSlot: {
      std::lock_guard l(mu_);
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
    auto start_planning = [this, &run](std::function<void(Result<MPlan>)> cb) {
      planner_->plan(*run.team, run.record.initial_goal, std::move(cb));
    };
    Result<MPlan> made = co_await async_callback<Result<MPlan>>(std::move(start_planning));
    AGENTD_END_IF_INTERRUPTED(run);
    if (!made) {
      const std::string err = status_data("Planning failed: " + made.status().message(), "error");
      co_await finish(run, msgtype::kErrorMessage, err, PlanStatus::kFailed);
      co_return StepOutcome::kEnded;
    }
    planned = std::move(made).value();
    planned->plan_id = run.plan_id;
    planned->user_id = run.user_id;
    planned->team_id = run.team->team_id;
    run.record.m_plan = planned->to_json();
  }
  const MPlan& mp = *planned;
  run.m_plan_id = mp.id;
  {
    std::lock_guard l(mu_);
    m_plan_index_[mp.id] = run.plan_id;
  }
  if (!run.recovered.approved) {
    StepOutcome out = co_await approval(run, mp);
    if (out != StepOutcome::kOk) co_return out;
  }

  co_await acquire_slot(run);
  for (size_t k = run.recovered.first_step; k < mp.steps.size(); ++k) {
    AGENTD_END_IF_INTERRUPTED(run);
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
  AGENTD_END_IF_INTERRUPTED(run);
  const std::string summary = "Completed " + std::to_string(mp.steps.size()) + " steps for: " + run.record.initial_goal;
  const std::string final_data =
      JsonObject().str("content", summary).str("status", "completed").str("summary", summary).done();
  co_await finish(run, msgtype::kFinalResultMessage, final_data, PlanStatus::kCompleted);
  co_return StepOutcome::kEnded;
}

// Asks for the approval of `mp` (unless the log holds the request: then
// waits for what is left of its timeout) and records the answer. kOk: approved.
asio::awaitable<Runtime::StepOutcome> Runtime::approval(PlanRun& run, const MPlan& mp) {
  std::chrono::milliseconds wait = opts_.approval_timeout;
  if (run.recovered.approval_asked_ms >= 0) {
    wait = remaining(run.recovered.approval_asked_ms, opts_.approval_timeout);
  } else {
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
  }

  if (run.auto_approve) {
    run.approved = true;
    run.feedback = "auto-approved";
  } else {
    bool answered = co_await wait_until(run, wait, Await::kApproval);
    run.awaiting_approval = false;
    if (!run.approved) AGENTD_END_IF_INTERRUPTED(run);
    if (!answered) {
      const std::string note = timeout_data("approval", run.m_plan_id, opts_.approval_timeout);
      co_await finish(run, msgtype::kErrorMessage, note, PlanStatus::kCanceled);
      co_return StepOutcome::kEnded;
    }
  }
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
    AGENTD_END_IF_INTERRUPTED(run);
  }
  co_return StepOutcome::kOk;
}

asio::awaitable<bool> Runtime::acquire_slot(PlanRun& run) {
  {
    std::lock_guard l(mu_);
    if (executing_ < opts_.max_concurrent_plans) {
      ++executing_;
      run.holds_slot = true;
      co_return true;
    }
    slot_waiters_.push_back(&run);
  }
  co_await wait_until(run, kForever, Await::kSlot);
  std::lock_guard l(mu_);
  if (run.slot_granted) {
    run.holds_slot = true;
    co_return true;
  }
  slot_waiters_.erase(std::remove(slot_waiters_.begin(), slot_waiters_.end(), &run), slot_waiters_.end());
  co_return false;
}

void Runtime::release_slot() {
  std::lock_guard l(mu_);
  if (!slot_waiters_.empty()) {
    // Hand the slot straight to the next waiter (executing_ is unchanged).
    // A waiter stays alive while queued: it is removed before its plan ends.
    PlanRun* w = slot_waiters_.front();
    slot_waiters_.pop_front();
    w->slot_granted = true;
    asio::post(w->strand, [w] { w->wake.cancel(); });
    return;
  }
  --executing_;
}

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
    AGENTD_END_IF_INTERRUPTED(run);
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
    std::lock_guard l(mu_);
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
    std::lock_guard l(mu_);
    request_index_.erase(rid);
  }
  run.clarify_request_id.clear();
  if (!run.answer) AGENTD_END_IF_INTERRUPTED(run);
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
      std::lock_guard l(mu_);
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
    std::lock_guard l(mu_);
    run.streaming.clear();
  }
  AGENTD_END_IF_INTERRUPTED(run);
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
    std::lock_guard l(mu_);
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

// --- teams, streaming ---------------------------------------------------------------

std::vector<std::string> Runtime::team_configs() const {
  std::vector<std::string> out;
  std::lock_guard l(mu_);
  for (const auto& t : teams_) out.push_back(t->json);
  return out;
}

std::optional<std::string> Runtime::team_config(const std::string& team_id) const {
  auto t = find_team(team_id);
  if (!t) return std::nullopt;
  return t->json;
}

Result<std::string> Runtime::upload_team(const std::string& user_id, std::string_view json) {
  auto parsed = parse_team(json, "team file", /*uploaded=*/true);
  if (!parsed) return parsed.status();
  auto team = std::make_shared<const TeamConfig>(std::move(parsed).value());
  const std::string& id = team->team_id;
  // The id names the team's file: a plain name, no path.
  bool plain = id.size() <= 100 && id.front() != '.' && std::all_of(id.begin(), id.end(), [](char c) {
                 return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
               });
  if (!plain) return invalid_argument("team file: team_id: use letters, digits, '-', '_' and '.' (at most 100)");
  {
    std::lock_guard l(mu_);
    for (const auto& t : teams_) {
      if (t->team_id == id) return Status(Code::kAlreadyExists, "team_id '" + id + "' already exists");
    }
    if (!uploading_.insert(id).second) return Status(Code::kAlreadyExists, "team_id '" + id + "' already exists");
  }
  Status saved = Status::ok();
  if (!opts_.uploaded_teams_dir.empty()) {
    saved = write_file_durably(opts_.uploaded_teams_dir, id + ".json", team->json);
  }
  std::lock_guard l(mu_);
  uploading_.erase(id);
  if (!saved.is_ok()) return saved;
  teams_.push_back(team);
  spdlog::info("team {} uploaded by {}", id, user_id);
  return team->json;
}

Status Runtime::delete_team(const std::string& user_id, const std::string& team_id) {
  auto team = find_team(team_id);
  if (!team) return not_found("Team configuration not found");
  if (!team->uploaded) return failed_precondition("team '" + team_id + "' is built in and cannot be deleted");
  if (!opts_.uploaded_teams_dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::remove(std::filesystem::path(opts_.uploaded_teams_dir) / (team_id + ".json"), ec)) {
      if (ec) return io_error("deleting team " + team_id + ": " + ec.message());
      return not_found("Team configuration not found");  // deleted meanwhile
    }
  }
  std::lock_guard l(mu_);
  teams_.erase(std::remove(teams_.begin(), teams_.end(), team), teams_.end());
  spdlog::info("team {} deleted by {}", team_id, user_id);
  return Status::ok();
}

Status Runtime::select_team(const std::string& user_id, const std::string& team_id) {
  if (!find_team(team_id)) return not_found("Team configuration '" + team_id + "' not found");
  std::lock_guard l(mu_);
  selected_team_[user_id] = team_id;
  return Status::ok();
}

std::optional<std::string> Runtime::current_team(const std::string& user_id) const {
  std::string id;
  {
    std::lock_guard l(mu_);
    auto it = selected_team_.find(user_id);
    if (it != selected_team_.end()) id = it->second;
  }
  if (!id.empty()) {
    if (auto t = team_config(id)) return t;  // unless deleted since
  }
  return team_config(default_team_id());
}

std::optional<std::string> Runtime::streaming_message(const std::string& plan_id) const {
  std::lock_guard l(mu_);
  auto it = runs_.find(plan_id);
  if (it == runs_.end() || it->second->streaming.empty()) return std::nullopt;
  return it->second->streaming;
}

void Runtime::set_live_sink(LiveSink sink) {
  std::lock_guard l(mu_);
  live_sink_ = std::move(sink);
}

void Runtime::publish_live(const PlanRun& run, const std::string& frame) {
  LiveSink sink;
  {
    std::lock_guard l(mu_);
    sink = live_sink_;
  }
  if (sink) sink(run.plan_id, std::make_shared<const std::string>(frame));
}

}  // namespace agentd
