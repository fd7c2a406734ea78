// What the MACAE UIs read that is not an envelope as stored (contract
// decisions 2 and 6): GET /plan's chat view and m_plan, and the recognition
// of the frames the UIs echo back through POST /agent_message. Pure
// functions over bytes; no I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/message_log.h"
#include "core/plan_record.h"

namespace agentd::net {

// GET /plan's "messages": the plan's log as MACAE's chat shows it, a JSON
// array of AgentMessageData {agent, agent_type, content, timestamp,
// raw_data (the envelope, as a string), steps, next_steps, seq, message_id}:
//   agent_message                      the agent's bubble
//   user_clarification_request         "Group_Chat_Manager" asks (left out while
//                                      it is the plan's open request: the
//                                      WebSocket sends that one)
//   user_clarification_response        the human's answer
//   final_result_message (completed)   "🎉🎉 " + content, as the UIs show it live
//   error_message, system_message,     a "system" bubble "⚠️ " + text
//   timeout_notification, a rejection
// Everything else (approval requests: m_plan is the card; streaming) is
// not a chat bubble. `plan` tells which request is still open.
// append_chat_view writes it at the end of `out` (GET /plan's answer: no
// copy), with room reserved for it and for `then` more bytes.
std::string chat_view(const std::vector<StoredMessage>& log, const PlanRecord& plan);
void append_chat_view(std::string* out, const std::vector<StoredMessage>& log, const PlanRecord& plan, size_t then = 0);

// The plan's m_plan as the UIs read it: the stored MPlan with
// "overall_status" set to the plan's current one ("null" stays "null").
std::string current_m_plan(const PlanRecord& plan);

// The ids an echoed frame carries: every string under a "message_id" or
// "request_id" key of `raw_data`, at any depth, JSON found in string
// values included (the UIs nest the frame they echo as a JSON string or an
// object). At most `max` ids, depth bounded.
std::vector<std::string> echoed_ids(std::string_view raw_data, size_t max = 32);

// POST /agent_message's raw_data read once: its echoed_ids, and the echoed
// frame's own top-level "message_id" (non-empty) when the frame is of
// `plan_id` (it names no "plan_id", or that one).
struct EchoedFrame {
  std::optional<std::string> message_id;
  std::vector<std::string> ids;
};
EchoedFrame read_echoed_frame(std::string_view raw_data, std::string_view plan_id, size_t max = 32);

}  // namespace agentd::net
