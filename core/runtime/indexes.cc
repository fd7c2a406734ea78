// The indexes under mu_: runs by plan id, m_plan ids, clarification
// requests, teams and the execution slots.
#include <algorithm>
#include <cctype>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/runtime/plan_run.h"

namespace agentd {

using namespace runtime_internal;
using namespace std::chrono_literals;

bool Runtime::interrupted(const PlanRun& run) const { return run.cancel_requested || stopping_; }

std::shared_ptr<const TeamConfig> Runtime::find_team(const std::string& team_id) const {
  MutexLock l(&mu_);
  for (const auto& t : teams_)
    if (t->team_id == team_id) return t;
  return nullptr;
}

std::string Runtime::default_team_id() const {
  if (!opts_.default_team_id.empty()) return opts_.default_team_id;
  MutexLock l(&mu_);
  return teams_.empty() ? std::string() : teams_.front()->team_id;
}

std::shared_ptr<Runtime::PlanRun> Runtime::find_run(const std::string& id) const {
  MutexLock l(&mu_);
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
  MutexLock l(&mu_);
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
      auto m = parse_strict(rec.m_plan, kStoredJson);
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

asio::awaitable<bool> Runtime::acquire_slot(PlanRun& run) {
  {
    MutexLock l(&mu_);
    if (executing_ < opts_.max_concurrent_plans) {
      ++executing_;
      run.holds_slot = true;
      co_return true;
    }
    slot_waiters_.push_back(&run);
  }
  co_await wait_until(run, kForever, Await::kSlot);
  MutexLock l(&mu_);
  if (run.slot_granted) {
    run.holds_slot = true;
    co_return true;
  }
  slot_waiters_.erase(std::remove(slot_waiters_.begin(), slot_waiters_.end(), &run), slot_waiters_.end());
  co_return false;
}

void Runtime::release_slot() {
  MutexLock l(&mu_);
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

// --- teams, streaming ---------------------------------------------------------------

std::vector<std::string> Runtime::team_configs() const {
  std::vector<std::string> out;
  MutexLock l(&mu_);
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
    MutexLock l(&mu_);
    for (const auto& t : teams_) {
      if (t->team_id == id) return Status(Code::kAlreadyExists, "team_id '" + id + "' already exists");
    }
    if (!uploading_.insert(id).second) return Status(Code::kAlreadyExists, "team_id '" + id + "' already exists");
  }
  Status saved = Status::ok();
  if (!opts_.uploaded_teams_dir.empty()) {
    saved = write_file_durably(opts_.uploaded_teams_dir, id + ".json", team->json);
  }
  MutexLock l(&mu_);
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
  MutexLock l(&mu_);
  teams_.erase(std::remove(teams_.begin(), teams_.end(), team), teams_.end());
  spdlog::info("team {} deleted by {}", team_id, user_id);
  return Status::ok();
}

Status Runtime::select_team(const std::string& user_id, const std::string& team_id) {
  if (!find_team(team_id)) return not_found("Team configuration '" + team_id + "' not found");
  MutexLock l(&mu_);
  selected_team_[user_id] = team_id;
  return Status::ok();
}

std::optional<std::string> Runtime::current_team(const std::string& user_id) const {
  std::string id;
  {
    MutexLock l(&mu_);
    auto it = selected_team_.find(user_id);
    if (it != selected_team_.end()) id = it->second;
  }
  if (!id.empty()) {
    if (auto t = team_config(id)) return t;  // unless deleted since
  }
  return team_config(default_team_id());
}

}  // namespace agentd
