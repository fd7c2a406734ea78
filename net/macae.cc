#include "net/macae.h"

#include <rapidjson/document.h>

#include "core/envelope.h"
#include "core/json.h"

namespace agentd::net {

namespace {

std::string_view member_str(const rapidjson::Value& o, const char* key) {
  if (!o.IsObject()) return {};
  auto it = o.FindMember(key);
  if (it == o.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

struct Bubble {
  std::string agent, agent_type, content;
};

constexpr std::string_view kManager = "Group_Chat_Manager";

Bubble system_bubble(std::string_view text) { return {"system", "SYSTEM_AGENT", "\u26a0\ufe0f " + std::string(text)}; }

// The bubble a message is shown as, or nullopt.
std::optional<Bubble> bubble_of(std::string_view type, const rapidjson::Value& d, bool open_request) {
  if (type == msgtype::kAgentMessage) {
    std::string_view agent = member_str(d, "agent_name");
    if (agent.empty()) agent = member_str(d, "agent");
    std::string_view agent_type = member_str(d, "agent_type");
    return Bubble{std::string(agent), agent_type.empty() ? "AI_Agent" : std::string(agent_type),
                  std::string(member_str(d, "content"))};
  }
  if (type == msgtype::kUserClarificationRequest) {
    if (open_request) return std::nullopt;
    return Bubble{std::string(kManager), "AI_Agent", std::string(member_str(d, "question"))};
  }
  if (type == msgtype::kUserClarificationResponse) {
    return Bubble{"Human_Agent", "Human_Agent", std::string(member_str(d, "answer"))};
  }
  if (type == msgtype::kFinalResultMessage) {
    if (member_str(d, "status") != "completed") return system_bubble(member_str(d, "content"));
    return Bubble{std::string(kManager), "AI_Agent", "\U0001F389\U0001F389 " + std::string(member_str(d, "content"))};
  }
  if (type == msgtype::kErrorMessage || type == msgtype::kSystemMessage) return system_bubble(member_str(d, "content"));
  if (type == msgtype::kTimeoutNotification) return system_bubble(member_str(d, "message"));
  if (type == msgtype::kPlanApprovalResponse) {
    auto it = d.FindMember("approved");
    if (it == d.MemberEnd() || !it->value.IsBool() || it->value.GetBool()) return std::nullopt;
    std::string why(member_str(d, "feedback"));
    return system_bubble("Plan rejected" + (why.empty() ? std::string() : ": " + why));
  }
  return std::nullopt;
}

}  // namespace

std::string chat_view(const std::vector<StoredMessage>& log, const PlanRecord& plan) {
  // The open request is the message that moved the plan to awaiting_*: the
  // record's last_seq names it (it was appended with that record).
  uint64_t open_seq = plan.status == PlanStatus::kAwaitingClarification ? plan.last_seq : 0;
  std::string out = "[";
  bool first = true;
  for (const StoredMessage& m : log) {
    auto doc = parse_strict(*m.bytes);
    if (!doc || !doc->IsObject()) continue;  // the log holds only valid envelopes
    std::string_view type = member_str(*doc, "type");
    auto data = doc->FindMember("data");
    if (data == doc->MemberEnd() || !data->value.IsObject()) continue;
    auto b = bubble_of(type, data->value, m.seq == open_seq);
    if (!b || b->content.empty()) continue;
    std::string entry = JsonObject()
                            .str("agent", b->agent)
                            .str("agent_type", b->agent_type)
                            .str("content", b->content)
                            .str("timestamp", member_str(*doc, "timestamp"))
                            .str("raw_data", *m.bytes)
                            .raw("steps", "[]")
                            .raw("next_steps", "[]")
                            .num("seq", static_cast<int64_t>(m.seq))
                            .str("message_id", member_str(*doc, "message_id"))
                            .done();
    if (!first) out += ',';
    first = false;
    out += entry;
  }
  out += ']';
  return out;
}

std::string current_m_plan(const PlanRecord& plan) {
  auto doc = parse_strict(plan.m_plan);
  if (!doc || !doc->IsObject()) return plan.m_plan;
  std::string_view status = overall_status(plan.status);
  rapidjson::Value v(status.data(), static_cast<rapidjson::SizeType>(status.size()), doc->GetAllocator());
  auto it = doc->FindMember("overall_status");
  if (it != doc->MemberEnd()) {
    it->value = v;
  } else {
    doc->AddMember("overall_status", v, doc->GetAllocator());
  }
  return write_canonical(*doc);
}

namespace {

void collect_ids(const rapidjson::Value& v, int depth, size_t max, std::vector<std::string>* out);

// A string value may itself be JSON (the UIs stringify the frame they echo).
void collect_from_string(std::string_view s, int depth, size_t max, std::vector<std::string>* out) {
  if (s.size() < 2 || (s.front() != '{' && s.front() != '[')) return;
  auto doc = parse_strict(s);
  if (doc) collect_ids(*doc, depth + 1, max, out);
}

void collect_ids(const rapidjson::Value& v, int depth, size_t max, std::vector<std::string>* out) {
  if (depth > 16 || out->size() >= max) return;
  if (v.IsArray()) {
    for (const auto& e : v.GetArray()) collect_ids(e, depth + 1, max, out);
    return;
  }
  if (v.IsString()) return collect_from_string({v.GetString(), v.GetStringLength()}, depth, max, out);
  if (!v.IsObject()) return;
  for (const auto& m : v.GetObject()) {
    if (out->size() >= max) return;
    std::string_view k(m.name.GetString(), m.name.GetStringLength());
    if ((k == "message_id" || k == "request_id") && m.value.IsString() && m.value.GetStringLength() > 0) {
      out->emplace_back(m.value.GetString(), m.value.GetStringLength());
      continue;
    }
    collect_ids(m.value, depth + 1, max, out);
  }
}

}  // namespace

std::vector<std::string> echoed_ids(std::string_view raw_data, size_t max) {
  std::vector<std::string> out;
  auto doc = parse_strict(raw_data);
  if (doc) collect_ids(*doc, 0, max, &out);
  return out;
}

}  // namespace agentd::net
