// Builders shared by the flusher tests and benchmark.
#pragma once

#include <cstdint>
#include <string>

#include "core/envelope.h"
#include "core/plan_record.h"

namespace agentd::test {

// Final envelope bytes of a message (message_id defaults to "<plan>-<seq>").
inline std::string make_envelope(const std::string& plan_id, uint64_t seq, std::string data = R"({"content":"x"})",
                                 std::string message_id = {}) {
  MessageDraft d;
  d.type = std::string(msgtype::kAgentMessage);
  d.plan_id = plan_id;
  d.message_id = message_id.empty() ? plan_id + "-" + std::to_string(seq) : std::move(message_id);
  d.user_id = "user";
  d.session_id = "session";
  d.data = std::move(data);
  return finalize(seq, prepare(std::move(d)).tail);
}

inline PlanRecord make_plan(const std::string& plan_id, const std::string& user_id, const std::string& created_at,
                            uint64_t version, PlanStatus status = PlanStatus::kCreated) {
  PlanRecord p;
  p.plan_id = plan_id;
  p.user_id = user_id;
  p.session_id = "session";
  p.team_id = "team";
  p.initial_goal = "goal of " + plan_id;
  p.status = status;
  p.m_plan = R"({"steps":[{"agent":"A","action":"do"}]})";
  p.created_at = created_at;
  p.updated_at = created_at;
  p.version = version;
  p.last_seq = version;
  return p;
}

}  // namespace agentd::test
