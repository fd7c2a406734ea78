// The message envelope: the one format the outbox stores, REST returns, the
// WebSocket sends and MongoDB holds (contract decision 3).
//
// Canonical bytes (compact JSON, keys in exactly this order, no whitespace):
//
//   envelope := '{"seq":' uint64 ',' tail
//   tail     := '"type":' string ',"data":' object ',"plan_id":' string
//               ',"message_id":' string ',"timestamp":' string
//               ',"user_id":' string ',"session_id":' string
//               ',"metadata":' object ',"v":' int '}'
//
// `seq` comes first so that the producer encodes `tail` (the expensive part:
// data and metadata) once, and the outbox writer finishes the envelope inside
// its transaction with a short prefix. After that the bytes never change.
// `timestamp` is RFC 3339 UTC with milliseconds, the moment the message was
// produced. `data` and `metadata` are canonical JSON objects (core/json.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/json.h"
#include "core/status.h"

namespace agentd {

inline constexpr int kEnvelopeVersion = 1;

// Message types the runtime and the API produce (contract §2.3).
namespace msgtype {
inline constexpr std::string_view kAgentMessage = "agent_message";
inline constexpr std::string_view kAgentMessageStreaming = "agent_message_streaming";
inline constexpr std::string_view kPlanApprovalRequest = "plan_approval_request";
inline constexpr std::string_view kPlanApprovalResponse = "plan_approval_response";
inline constexpr std::string_view kUserClarificationRequest = "user_clarification_request";
inline constexpr std::string_view kUserClarificationResponse = "user_clarification_response";
inline constexpr std::string_view kFinalResultMessage = "final_result_message";
inline constexpr std::string_view kSystemMessage = "system_message";
inline constexpr std::string_view kErrorMessage = "error_message";
inline constexpr std::string_view kTimeoutNotification = "timeout_notification";
}  // namespace msgtype

// What a producer fills in: everything but seq.
struct MessageDraft {
  std::string type;
  std::string plan_id;
  std::string message_id;  // empty: a new UUID is assigned by prepare()
  std::string timestamp;   // empty: now, by prepare()
  std::string user_id;
  std::string session_id;
  std::string data = "{}";      // canonical JSON object (write_canonical or parse_strict output)
  std::string metadata = "{}";  // canonical JSON object
};

// A message ready for MessageLog::append: identity plus the encoded tail.
struct PreparedMessage {
  std::string plan_id;
  std::string message_id;
  std::string tail;  // see grammar above
};

// Encodes the tail. `data`/`metadata` are trusted to be canonical objects.
PreparedMessage prepare(MessageDraft draft);

// The final envelope bytes for `seq`: '{"seq":' seq ',' tail.
std::string finalize(uint64_t seq, std::string_view tail);
// The most finalize() puts before the tail (the longest seq).
inline constexpr size_t kMaxEnvelopeHeadBytes = sizeof("{\"seq\":18446744073709551615,") - 1;

// A decoded envelope; data and metadata stay canonical JSON text.
struct Envelope {
  uint64_t seq = 0;
  std::string type, plan_id, message_id, timestamp, user_id, session_id;
  std::string data = "{}", metadata = "{}";
  int v = kEnvelopeVersion;
};

// Strict decoder: every field present with the right type (errors name the
// field), no unknown fields, seq >= 1, timestamp in RFC 3339 ms UTC, v known,
// plus everything parse_strict() checks.
Result<Envelope> decode_envelope(std::string_view bytes, const JsonLimits& limits = {});

// Canonical bytes of `e`; encode_envelope(decode_envelope(b)) == b for every
// canonical b.
std::string encode_envelope(const Envelope& e);

}  // namespace agentd
