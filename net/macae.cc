#include "net/macae.h"

#include <rapidjson/document.h>

#include <cstddef>

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

// A chat bubble; the views point into the parsed envelope, the literals
// below, or the caller's scratch string.
struct Bubble {
  std::string_view agent, agent_type, content;
};

constexpr std::string_view kManager = "Group_Chat_Manager";

Bubble system_bubble(std::string_view text, std::string* scratch) {
  scratch->assign("\u26a0\ufe0f ");
  scratch->append(text);
  return {"system", "SYSTEM_AGENT", *scratch};
}

// The bubble a message is shown as, or nullopt. `scratch` holds a content
// made here (a prefix added); the bubble is used before the next call.
std::optional<Bubble> bubble_of(std::string_view type, const rapidjson::Value& d, bool open_request,
                                std::string* scratch) {
  if (type == msgtype::kAgentMessage) {
    std::string_view agent = member_str(d, "agent_name");
    if (agent.empty()) agent = member_str(d, "agent");
    std::string_view agent_type = member_str(d, "agent_type");
    return Bubble{agent, agent_type.empty() ? "AI_Agent" : agent_type, member_str(d, "content")};
  }
  if (type == msgtype::kUserClarificationRequest) {
    if (open_request) return std::nullopt;
    return Bubble{kManager, "AI_Agent", member_str(d, "question")};
  }
  if (type == msgtype::kUserClarificationResponse) {
    return Bubble{"Human_Agent", "Human_Agent", member_str(d, "answer")};
  }
  if (type == msgtype::kFinalResultMessage) {
    if (member_str(d, "status") != "completed") return system_bubble(member_str(d, "content"), scratch);
    scratch->assign("\U0001F389\U0001F389 ");
    scratch->append(member_str(d, "content"));
    return Bubble{kManager, "AI_Agent", *scratch};
  }
  if (type == msgtype::kErrorMessage || type == msgtype::kSystemMessage) {
    return system_bubble(member_str(d, "content"), scratch);
  }
  if (type == msgtype::kTimeoutNotification) return system_bubble(member_str(d, "message"), scratch);
  if (type == msgtype::kPlanApprovalResponse) {
    auto it = d.FindMember("approved");
    if (it == d.MemberEnd() || !it->value.IsBool() || it->value.GetBool()) return std::nullopt;
    std::string why(member_str(d, "feedback"));
    return system_bubble("Plan rejected" + (why.empty() ? std::string() : ": " + why), scratch);
  }
  return std::nullopt;
}

// The type of a stored envelope without parsing it: the canonical bytes
// start '{"seq":N,"type":"…"' (core/envelope.h).
std::string_view envelope_type(std::string_view bytes) {
  constexpr std::string_view kKey = ",\"type\":\"";
  size_t at = bytes.find(kKey);
  if (at == std::string_view::npos || at > 32) return {};
  size_t from = at + kKey.size(), to = bytes.find('"', from);
  return to == std::string_view::npos ? std::string_view() : bytes.substr(from, to - from);
}

bool may_be_bubble(std::string_view type) {
  for (std::string_view t : {msgtype::kAgentMessage, msgtype::kUserClarificationRequest,
                             msgtype::kUserClarificationResponse, msgtype::kFinalResultMessage, msgtype::kErrorMessage,
                             msgtype::kSystemMessage, msgtype::kTimeoutNotification, msgtype::kPlanApprovalResponse}) {
    if (type == t) return true;
  }
  return false;
}

}  // namespace

void append_chat_view(std::string* out, const std::vector<StoredMessage>& log, const PlanRecord& plan, size_t then) {
  // The open request is the message that moved the plan to awaiting_*: the
  // record's last_seq names it (it was appended with that record).
  uint64_t open_seq = plan.status == PlanStatus::kAwaitingClarification ? plan.last_seq : 0;
  // Written straight into `out` (a long plan's view is megabytes: no
  // buffer to copy from). Reserved for the usual case, the envelope escaped
  // once (its quotes doubled) plus its content again; pages not written are
  // never touched.
  size_t bytes = 2 + then;
  for (const StoredMessage& m : log) bytes += m.bytes->size() * 2 + 256;
  out->reserve(out->size() + bytes);
  // One parse per envelope, in place in a reused copy (strings are not
  // copied out) into a reused pool (no allocation for the usual envelope);
  // bubbles borrow its strings until the next envelope.
  alignas(std::max_align_t) char pool_buffer[16 << 10];  // the pool puts its chunk header first
  rapidjson::MemoryPoolAllocator<> pool(pool_buffer, sizeof pool_buffer);
  rapidjson::Document doc(&pool);
  std::string text, scratch;
  auto put = [out](std::string_view key, std::string_view v) {
    out->append(key);
    append_json_string(out, v);
  };
  out->push_back('[');
  bool first = true;
  for (const StoredMessage& m : log) {
    std::string_view type = envelope_type(*m.bytes);
    if (!may_be_bubble(type)) continue;  // never a bubble: not even parsed
    doc.SetNull();
    pool.Clear();
    // The log holds only envelopes that passed the strict codec: a plain
    // (fast) parse is enough here.
    text.assign(*m.bytes);
    doc.ParseInsitu(text.data());
    if (doc.HasParseError() || !doc.IsObject()) continue;
    auto data = doc.FindMember("data");
    if (data == doc.MemberEnd() || !data->value.IsObject()) continue;
    auto b = bubble_of(type, data->value, m.seq == open_seq, &scratch);
    if (!b || b->content.empty()) continue;
    if (!first) out->push_back(',');
    first = false;
    put("{\"agent\":", b->agent);
    put(",\"agent_type\":", b->agent_type);
    put(",\"content\":", b->content);
    put(",\"timestamp\":", member_str(doc, "timestamp"));
    put(",\"raw_data\":", *m.bytes);
    out->append(",\"steps\":[],\"next_steps\":[],\"seq\":");
    out->append(std::to_string(m.seq));
    put(",\"message_id\":", member_str(doc, "message_id"));
    out->push_back('}');
  }
  out->push_back(']');
}

std::string chat_view(const std::vector<StoredMessage>& log, const PlanRecord& plan) {
  std::string out;
  append_chat_view(&out, log, plan);
  return out;
}

std::string current_m_plan(const PlanRecord& plan) {
  auto doc = parse_strict(plan.m_plan, kStoredJson);
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
  auto doc = parse_strict(s, kStoredJson);  // within a body: bounded by its limit
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
  return read_echoed_frame(raw_data, {}, max).ids;
}

EchoedFrame read_echoed_frame(std::string_view raw_data, std::string_view plan_id, size_t max) {
  EchoedFrame f;
  auto doc = parse_strict(raw_data, kStoredJson);  // within a body: bounded by its limit
  if (!doc) return f;
  collect_ids(*doc, 0, max, &f.ids);
  if (!doc->IsObject()) return f;
  auto it = doc->FindMember("message_id");
  auto pid = doc->FindMember("plan_id");
  bool same_plan = pid == doc->MemberEnd() || (pid->value.IsString() && plan_id == pid->value.GetString());
  if (it != doc->MemberEnd() && it->value.IsString() && it->value.GetStringLength() > 0 && same_plan) {
    f.message_id.emplace(it->value.GetString(), it->value.GetStringLength());
  }
  return f;
}

}  // namespace agentd::net
