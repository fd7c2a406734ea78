#include "core/plan_record.h"

#include <array>
#include <utility>

namespace agentd {
namespace {

constexpr std::array<std::pair<PlanStatus, std::string_view>, 10> kNames{{
    {PlanStatus::kCreated, "created"},
    {PlanStatus::kPlanning, "planning"},
    {PlanStatus::kAwaitingApproval, "awaiting_approval"},
    {PlanStatus::kRunning, "running"},
    {PlanStatus::kAwaitingClarification, "awaiting_clarification"},
    {PlanStatus::kCompleted, "completed"},
    {PlanStatus::kFailed, "failed"},
    {PlanStatus::kRejected, "rejected"},
    {PlanStatus::kCanceled, "canceled"},
    {PlanStatus::kInterrupted, "interrupted"},
}};

}  // namespace

std::string_view plan_status_name(PlanStatus s) {
  for (auto& [k, n] : kNames)
    if (k == s) return n;
  return "unknown";
}

std::optional<PlanStatus> parse_plan_status(std::string_view s) {
  for (auto& [k, n] : kNames)
    if (n == s) return k;
  return std::nullopt;
}

std::string_view overall_status(PlanStatus s) {
  switch (s) {
    case PlanStatus::kCreated: return "created";
    case PlanStatus::kPlanning:
    case PlanStatus::kAwaitingApproval: return "in_progress";
    case PlanStatus::kRunning:
    case PlanStatus::kAwaitingClarification: return "approved";
    case PlanStatus::kCompleted: return "completed";
    case PlanStatus::kFailed:
    case PlanStatus::kInterrupted: return "failed";
    case PlanStatus::kRejected:
    case PlanStatus::kCanceled: return "canceled";
  }
  return "failed";
}

bool is_final(PlanStatus s) {
  switch (s) {
    case PlanStatus::kCompleted:
    case PlanStatus::kFailed:
    case PlanStatus::kRejected:
    case PlanStatus::kCanceled:
    case PlanStatus::kInterrupted: return true;
    default: return false;
  }
}

std::string encode_plan(const PlanRecord& p) {
  std::string o;
  o.reserve(256 + p.initial_goal.size() + p.m_plan.size());
  auto field = [&](const char* name, std::string_view value, bool first = false) {
    o += first ? "{\"" : ",\"";
    o += name;
    o += "\":";
    append_json_string(&o, value);
  };
  field("plan_id", p.plan_id, true);
  field("user_id", p.user_id);
  field("session_id", p.session_id);
  field("team_id", p.team_id);
  field("initial_goal", p.initial_goal);
  field("status", plan_status_name(p.status));
  field("overall_status", overall_status(p.status));
  o += ",\"m_plan\":";
  o += p.m_plan.empty() ? std::string_view("null") : std::string_view(p.m_plan);
  field("created_at", p.created_at);
  field("updated_at", p.updated_at);
  o += ",\"version\":" + std::to_string(p.version);
  o += ",\"last_seq\":" + std::to_string(p.last_seq);
  o += '}';
  return o;
}

Status check_plan_record_size(const PlanRecord& p) {
  constexpr size_t kCounterDigits = 2 * 20;
  size_t n = encode_plan(p).size();
  if (n + kCounterDigits <= kMaxPlanRecordBytes) return Status::ok();
  return Status(Code::kTooLarge, "plan record of " + std::to_string(n) + " bytes is over the limit of " +
                                     std::to_string(kMaxPlanRecordBytes) + " bytes");
}

Result<PlanRecord> decode_plan(std::string_view bytes) {
  auto parsed = parse_strict(bytes, kStoredJson);
  if (!parsed) return parsed.status();
  const rapidjson::Document& d = *parsed;
  if (!d.IsObject()) return invalid_argument("$root: plan record is not a JSON object");
  PlanRecord p;
  auto str = [&](const char* f, std::string* out) -> Status {
    auto it = d.FindMember(f);
    if (it == d.MemberEnd() || !it->value.IsString())
      return invalid_argument(std::string(f) + ": missing or not a string");
    out->assign(it->value.GetString(), it->value.GetStringLength());
    return Status::ok();
  };
  auto u64 = [&](const char* f, uint64_t* out) -> Status {
    auto it = d.FindMember(f);
    if (it == d.MemberEnd() || !it->value.IsUint64())
      return invalid_argument(std::string(f) + ": missing or not an unsigned integer");
    *out = it->value.GetUint64();
    return Status::ok();
  };
  AGENTD_RETURN_IF_ERROR(str("plan_id", &p.plan_id));
  AGENTD_RETURN_IF_ERROR(str("user_id", &p.user_id));
  AGENTD_RETURN_IF_ERROR(str("session_id", &p.session_id));
  AGENTD_RETURN_IF_ERROR(str("team_id", &p.team_id));
  AGENTD_RETURN_IF_ERROR(str("initial_goal", &p.initial_goal));
  std::string status;
  AGENTD_RETURN_IF_ERROR(str("status", &status));
  auto ps = parse_plan_status(status);
  if (!ps) return invalid_argument("status: unknown plan status '" + status + "'");
  p.status = *ps;
  auto mp = d.FindMember("m_plan");
  if (mp == d.MemberEnd() || !(mp->value.IsObject() || mp->value.IsNull())) {
    return invalid_argument("m_plan: missing or not an object or null");
  }
  p.m_plan = write_canonical(mp->value);
  AGENTD_RETURN_IF_ERROR(str("created_at", &p.created_at));
  AGENTD_RETURN_IF_ERROR(str("updated_at", &p.updated_at));
  AGENTD_RETURN_IF_ERROR(u64("version", &p.version));
  AGENTD_RETURN_IF_ERROR(u64("last_seq", &p.last_seq));
  return p;
}

}  // namespace agentd
