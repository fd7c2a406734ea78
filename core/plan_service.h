// PlanService: what the API asks of the agent runtime (core/runtime/). net/
// calls it; the runtime implements it; main wires the two.
//
// Every call completes through its callback, exactly once, on a thread of the
// runtime's choosing (often the outbox writer): callers post back to their
// own strand. A callback reports success only after everything the call
// announced is durable in the MessageLog.
//
// Error codes map to HTTP: kNotFound 404 (also for another user's plan),
// kInvalidArgument 422, kFailedPrecondition 409, kOutboxFull 503.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace agentd {

// A task's text and session id are copied into the plan record, its m_plan
// and every envelope of the plan: bounded so that all of those stay far
// under kMaxPlanRecordBytes (a longer one is refused, kInvalidArgument).
inline constexpr size_t kMaxTaskBytes = 64u << 10;
inline constexpr size_t kMaxSessionIdBytes = 256;

struct SubmitRequest {
  std::string user_id;
  std::string description;  // at most kMaxTaskBytes
  std::string session_id;   // empty: a new one; at most kMaxSessionIdBytes
  std::string team_id;      // empty: the user's selected team, else the default team
  std::optional<bool> auto_approve;
};

struct SubmitResult {
  std::string plan_id;
  std::string session_id;
};

struct ApprovalRequest {
  std::string user_id;
  std::string m_plan_id;  // the m_plan id or the plan id (contract decision 2)
  std::string plan_id;    // optional; must name the same plan when given
  bool approved = false;
  std::string feedback;
};

struct ClarificationRequest {
  std::string user_id;
  std::string request_id;
  std::string answer;
  std::string plan_id;  // optional
};

// Live-only frames (streaming token chunks): never persisted, never replayed.
using LiveSink = std::function<void(const std::string& plan_id, std::shared_ptr<const std::string> frame)>;

class PlanService {
 public:
  virtual ~PlanService() = default;

  virtual void submit(SubmitRequest req, std::function<void(Result<SubmitResult>)> done) = 0;
  // done: "approval recorded" / "rejected".
  virtual void approve(ApprovalRequest req, std::function<void(Result<std::string>)> done) = 0;
  virtual void clarify(ClarificationRequest req, std::function<void(Status)> done) = 0;
  // Ok only once the plan ended canceled (durable). A cancel that races the
  // plan's own end (its final result, a failure) is decided with that end:
  // kFailedPrecondition "plan is not running (status: completed)" when the
  // other end was recorded first; never "canceled" for a plan that completed.
  virtual void cancel(std::string user_id, std::string plan_id, std::function<void(Status)> done) = 0;

  // Teams (MACAE team format, canonical JSON objects).
  virtual std::vector<std::string> team_configs() const = 0;
  virtual std::optional<std::string> team_config(const std::string& team_id) const = 0;
  virtual Status select_team(const std::string& user_id, const std::string& team_id) = 0;
  // The user's selected team (or the default), as a team config object.
  virtual std::optional<std::string> current_team(const std::string& user_id) const = 0;
  // A team uploaded by a user (MACAE's upload_team_config): validated like a
  // team file, kept across restarts, served by team_configs. Returns the team
  // as served. kInvalidArgument names the field; kAlreadyExists for a taken
  // team_id. Blocking (a file write): not on a network thread.
  virtual Result<std::string> upload_team(const std::string& user_id, std::string_view json) = 0;
  // Deletes an uploaded team. kNotFound for an unknown one, kFailedPrecondition
  // for a built-in (protected) one. Plans already running with it finish.
  virtual Status delete_team(const std::string& user_id, const std::string& team_id) = 0;

  // The live streaming buffer of a plan's current step, if any.
  virtual std::optional<std::string> streaming_message(const std::string& plan_id) const = 0;
  virtual void set_live_sink(LiveSink sink) = 0;
};

}  // namespace agentd
