// The plan record (architecture.md, "Plan record"): one shape in the outbox,
// in MongoDB's `plans` collection and in REST responses.
//
// Canonical bytes (compact JSON, keys in exactly this order):
//   '{"plan_id":' s ',"user_id":' s ',"session_id":' s ',"team_id":' s
//   ',"initial_goal":' s ',"status":' s ',"overall_status":' s
//   ',"m_plan":' (object|null) ',"created_at":' s ',"updated_at":' s
//   ',"version":' uint ',"last_seq":' uint '}'
// `overall_status` is derived from `status` (MACAE's values); `version` is
// assigned by the outbox (previous + 1) when a new record is committed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/json.h"
#include "core/status.h"

namespace agentd {

enum class PlanStatus {
  kCreated,
  kPlanning,
  kAwaitingApproval,
  kRunning,
  kAwaitingClarification,
  kCompleted,
  kFailed,
  kRejected,
  kCanceled,
  kInterrupted,
};

std::string_view plan_status_name(PlanStatus s);
std::optional<PlanStatus> parse_plan_status(std::string_view s);
// MACAE's overall_status: created, in_progress, approved, completed, failed, canceled.
std::string_view overall_status(PlanStatus s);
// True for completed, failed, rejected, canceled, interrupted.
bool is_final(PlanStatus s);

struct PlanRecord {
  std::string plan_id, user_id, session_id, team_id, initial_goal;
  PlanStatus status = PlanStatus::kCreated;
  std::string m_plan = "null";         // canonical JSON object, or "null"
  std::string created_at, updated_at;  // RFC 3339 ms UTC
  uint64_t version = 0;
  uint64_t last_seq = 0;
};

// The largest plan record the outbox takes (encode_plan bytes): at most 6.5
// BSON bytes per JSON byte keep its MongoDB document under 16 MiB.
inline constexpr size_t kMaxPlanRecordBytes = 2u << 20;

std::string encode_plan(const PlanRecord& p);
// kTooLarge, naming the size, when `p` could pass kMaxPlanRecordBytes once
// the outbox sets its version and last_seq (up to 20 digits each).
Status check_plan_record_size(const PlanRecord& p);
// Reads with kStoredJson: any record the outbox took.
Result<PlanRecord> decode_plan(std::string_view bytes);

}  // namespace agentd
