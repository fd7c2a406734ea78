// Frames a WebSocket client may send (contract §2.4, agentd's `resume`),
// parsed apart from the session that acts on them so the parser can be
// tested and fuzzed on its own (tests/fuzz/ws_client_frame_fuzz.cc).
//
//   {"type":"ping"} | {"type":"connection_check"}
//   {"type":"resume","after_seq":N}
//   {"type":"plan_approval_response","data":{"approved":b,"m_plan_id"?:s,"feedback"?:s}}
//   {"type":"user_clarification_response","data":{"request_id":s,"answer"?:s}}
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace agentd::net {

struct ClientFrame {
  enum class Type { kPing, kConnectionCheck, kResume, kPlanApproval, kClarification };
  Type type = Type::kPing;
  uint64_t after_seq = 0;  // kResume
  bool approved = false;   // kPlanApproval
  std::string m_plan_id;   // kPlanApproval (empty: the socket's plan)
  std::string feedback;    // kPlanApproval
  std::string request_id;  // kClarification
  std::string answer;      // kClarification
};

// kInvalidArgument ("invalid_message") or kNotFound ("unknown_message_type"),
// with a message naming the field.
Result<ClientFrame> parse_client_frame(std::string_view text);

// The `data` of the error_notification frame answering a rejected frame:
// {"error_type": "invalid_message"|"unknown_message_type"|..., "error_message": ...}.
std::string error_notification_data(const Status& error);
std::string error_notification_data(std::string_view kind, std::string_view message);

}  // namespace agentd::net
