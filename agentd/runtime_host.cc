#include "agentd/runtime_host.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace agentd {

// Generated from agentd/teams/*.json by CMake (builtin_teams.cc).
extern const std::vector<std::pair<const char*, const char*>> kBuiltinTeamFiles;

Result<std::vector<TeamConfig>> builtin_teams() {
  std::vector<TeamConfig> teams;
  for (const auto& [name, text] : kBuiltinTeamFiles) {
    auto t = parse_team(text, std::string("built-in ") + name);
    if (!t) return t.status();
    teams.push_back(std::move(t).value());
  }
  return teams;
}

void add_runtime_flags(CLI::App& app, RuntimeFlags& f) {
  app.add_option("--teams-dir", f.teams_dir,
                 "folder of MACAE team JSON files; empty = the built-in example teams (finance-close, research)")
      ->envname("AGENTD_TEAMS_DIR");
  app.add_option("--default-team", f.default_team, "team used when a request names none; empty = the first team")
      ->envname("AGENTD_DEFAULT_TEAM");
  app.add_flag("--auto-approve", f.auto_approve, "approve plans without waiting (a request's auto_approve wins)")
      ->envname("AGENTD_AUTO_APPROVE");
  app.add_option("--max-concurrent-plans", f.max_concurrent_plans, "plans executing steps at once")
      ->envname("AGENTD_MAX_CONCURRENT_PLANS")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--approval-timeout-s", f.approval_timeout_s,
                 "a plan waiting this long for approval is canceled (timeout_notification)")
      ->envname("AGENTD_APPROVAL_TIMEOUT_S")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  app.add_option("--clarification-timeout-s", f.clarification_timeout_s,
                 "a plan waiting this long for a clarification answer is canceled")
      ->envname("AGENTD_CLARIFICATION_TIMEOUT_S")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  app.add_option("--llm-base-url", f.llm_base_url,
                 "OpenAI-compatible endpoint (e.g. https://host/v1); empty = rule-based planner and script agents")
      ->envname("AGENTD_LLM_BASE_URL");
  app.add_option("--llm-model", f.llm_model, "model name sent to the endpoint")->envname("AGENTD_LLM_MODEL");
  app.add_option("--llm-api-key-env", f.llm_api_key_env, "environment variable holding the API key")
      ->envname("AGENTD_LLM_API_KEY_ENV")
      ->capture_default_str();
  app.add_option("--llm-timeout-s", f.llm_timeout_s, "per-request timeout of the model endpoint")
      ->envname("AGENTD_LLM_TIMEOUT_S")
      ->check(CLI::Range(1u, 3600u))
      ->capture_default_str();
  app.add_option("--on-restart", f.on_restart,
                 "plans a crash or stop left unfinished: resume (continue where they stopped) or interrupt "
                 "(end them with an error_message)")
      ->envname("AGENTD_ON_RESTART")
      ->check(CLI::IsMember({"resume", "interrupt"}))
      ->capture_default_str();
}

Result<std::unique_ptr<RuntimeHost>> RuntimeHost::create(const RuntimeFlags& f, MessageLog& log,
                                                         MetricsRegistry& metrics) {
  auto teams = f.teams_dir.empty() ? builtin_teams() : load_teams(f.teams_dir);
  if (!teams) return teams.status();
  std::unique_ptr<RuntimeHost> h(new RuntimeHost());
  if (!f.llm_base_url.empty()) {
    net::LlmOptions lo;
    lo.base_url = f.llm_base_url;
    lo.model = f.llm_model;
    if (const char* k = std::getenv(f.llm_api_key_env.c_str()); k) lo.api_key = k;
    auto llm = net::LlmClient::create(h->ioc_.get_executor(), lo);
    if (!llm) return llm.status();
    h->llm_ = std::move(llm).value();
  }
  RuntimeOptions o;
  o.max_concurrent_plans = f.max_concurrent_plans;
  o.approval_timeout = std::chrono::seconds(f.approval_timeout_s);
  o.clarification_timeout = std::chrono::seconds(f.clarification_timeout_s);
  o.auto_approve = f.auto_approve;
  o.default_team_id = f.default_team;
  o.model_timeout = std::chrono::seconds(f.llm_timeout_s);
  o.uploaded_teams_dir = f.uploaded_teams_dir;
  o.resume_after_restart = f.on_restart != "interrupt";
  for (TeamConfig& t : load_uploaded_teams(f.uploaded_teams_dir)) {
    bool taken = false;
    for (const auto& b : *teams) taken = taken || b.team_id == t.team_id;
    if (taken) {
      spdlog::error("uploaded team {} skipped: a built-in team has its id", t.team_id);
      continue;
    }
    teams->push_back(std::move(t));
  }
  if (!o.default_team_id.empty()) {
    bool known = false;
    for (const auto& t : *teams) known = known || t.team_id == o.default_team_id;
    if (!known) return invalid_argument("--default-team: no team '" + o.default_team_id + "'");
  }
  spdlog::info("runtime: {} team(s) from {}, {}", teams->size(), f.teams_dir.empty() ? "built-in" : f.teams_dir,
               h->llm_ ? "LLM planner and agents at " + f.llm_base_url : "rule-based planner, script agents");
  h->runtime_ =
      std::make_unique<Runtime>(h->ioc_.get_executor(), log, std::move(teams).value(), o, h->llm_.get(), metrics);
  return h;
}

Status RuntimeHost::start() {
  AGENTD_RETURN_IF_ERROR(runtime_->recover());
  thread_ = std::thread([this] { ioc_.run(); });
  return Status::ok();
}

void RuntimeHost::stop(std::chrono::milliseconds deadline) {
  if (!thread_.joinable()) return;
  runtime_->shutdown(deadline);
  work_.reset();
  ioc_.stop();
  thread_.join();
}

RuntimeHost::~RuntimeHost() { stop(std::chrono::milliseconds(0)); }

}  // namespace agentd
