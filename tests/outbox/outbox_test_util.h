// Helpers shared by the outbox tests and the crash child.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/envelope.h"
#include "core/message_log.h"
#include "core/plan_record.h"

namespace agentd::test {

inline PreparedMessage make_message(const std::string& plan_id, const std::string& message_id,
                                    const std::string& content = "hello") {
  MessageDraft d;
  d.type = std::string(msgtype::kAgentMessage);
  d.plan_id = plan_id;
  d.message_id = message_id;
  d.timestamp = "2026-11-26T02:31:00.123Z";
  d.user_id = "u-1";
  d.session_id = "s-1";
  d.data = "{\"content\":\"" + content + "\"}";
  return prepare(std::move(d));
}

inline AppendRequest message_request(const std::string& plan_id, const std::string& message_id,
                                     const std::string& content = "hello") {
  AppendRequest r;
  r.message = make_message(plan_id, message_id, content);
  return r;
}

inline PlanRecord make_plan(const std::string& plan_id, const std::string& user_id, const std::string& created_at,
                            PlanStatus status = PlanStatus::kRunning) {
  PlanRecord p;
  p.plan_id = plan_id;
  p.user_id = user_id;
  p.session_id = "s-1";
  p.team_id = "t-1";
  p.initial_goal = "goal of " + plan_id;
  p.status = status;
  p.created_at = created_at;
  p.updated_at = created_at;
  return p;
}

// FNV-1a, 64 bits: what the crash child reports for each message's bytes.
inline uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace agentd::test
