// Planner: turns a task into an m_plan (ordered steps, each an agent and an
// action). RuleBasedPlanner is the deterministic default (no model, no
// network); LlmPlanner asks a ModelClient and validates its answer.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/runtime/model_client.h"
#include "core/runtime/team.h"
#include "core/status.h"

namespace agentd {

struct MPlanStep {
  std::string id, agent, action;
};

// MACAE's MPlan, in the object form the UP frontend accepts (contract §3.2).
struct MPlan {
  std::string id;  // the m_plan_id
  // Filled in by the runtime once the plan is made (the planner does not
  // know them); overall_status is MACAE's, as of when the MPlan was written.
  std::string plan_id, user_id, team_id, overall_status = "in_progress";
  std::string user_request;
  std::vector<std::string> team;  // agent names
  std::string facts;
  std::vector<MPlanStep> steps;
  // {"id","plan_id","user_id","team_id","overall_status","user_request","team","facts",
  //  "steps":[{"id","agent","action"}]}: the full MPlan the MACAE UIs read.
  std::string to_json() const;
  // The inverse of to_json(), for a plan rebuilt from its record after a
  // restart; errors name the field.
  static Result<MPlan> from_json(std::string_view json);
};

class Planner {
 public:
  virtual ~Planner() = default;
  // `done` is called exactly once, possibly on another thread.
  virtual void plan(const TeamConfig& team, const std::string& task, std::function<void(Result<MPlan>)> done) = 0;
};

// One step per team agent, in the team's order; the action names the agent's
// role and the task. Same input, same plan (ids aside).
class RuleBasedPlanner final : public Planner {
 public:
  void plan(const TeamConfig& team, const std::string& task, std::function<void(Result<MPlan>)> done) override;
};

class LlmPlanner final : public Planner {
 public:
  LlmPlanner(ModelClient& model, std::chrono::milliseconds timeout) : model_(model), timeout_(timeout) {}
  void plan(const TeamConfig& team, const std::string& task, std::function<void(Result<MPlan>)> done) override;

  // Parses the model's reply: the first JSON object in it, with
  // {"steps":[{"agent": <a team agent>, "action": s}, ...]} (1..32 steps).
  static Result<MPlan> parse_reply(const TeamConfig& team, const std::string& task, const std::string& reply);

 private:
  ModelClient& model_;
  std::chrono::milliseconds timeout_;
};

}  // namespace agentd
