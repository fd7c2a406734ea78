#include "net/client_frame.h"

#include "core/json.h"

namespace agentd::net {

Result<ClientFrame> parse_client_frame(std::string_view text) {
  auto doc = parse_strict(text);
  if (!doc) return doc.status();
  if (!doc->IsObject()) return invalid_argument("not a JSON object");
  auto type_it = doc->FindMember("type");
  if (type_it == doc->MemberEnd() || !type_it->value.IsString()) return invalid_argument("type: missing");
  std::string_view type(type_it->value.GetString(), type_it->value.GetStringLength());
  const rapidjson::Value* data = nullptr;
  if (auto it = doc->FindMember("data"); it != doc->MemberEnd() && it->value.IsObject()) data = &it->value;
  auto str = [data](const char* k) -> std::string {
    if (!data) return {};
    auto it = data->FindMember(k);
    return it != data->MemberEnd() && it->value.IsString()
               ? std::string(it->value.GetString(), it->value.GetStringLength())
               : std::string();
  };

  ClientFrame f;
  if (type == "ping") {
    f.type = ClientFrame::Type::kPing;
  } else if (type == "connection_check") {
    f.type = ClientFrame::Type::kConnectionCheck;
  } else if (type == "resume") {
    auto it = doc->FindMember("after_seq");
    if (it == doc->MemberEnd() || !it->value.IsUint64()) {
      return invalid_argument("after_seq: missing or not an integer");
    }
    f.type = ClientFrame::Type::kResume;
    f.after_seq = it->value.GetUint64();
  } else if (type == "plan_approval_response") {
    if (!data) return invalid_argument("data: missing");
    auto it = data->FindMember("approved");
    if (it == data->MemberEnd() || !it->value.IsBool()) {
      return invalid_argument("data.approved: missing or not a boolean");
    }
    f.type = ClientFrame::Type::kPlanApproval;
    f.approved = it->value.GetBool();
    f.m_plan_id = str("m_plan_id");
    f.feedback = str("feedback");
  } else if (type == "user_clarification_response") {
    f.type = ClientFrame::Type::kClarification;
    f.request_id = str("request_id");
    f.answer = str("answer");
    if (f.request_id.empty()) return invalid_argument("data.request_id: missing");
  } else {
    return not_found("unknown message type: " + std::string(type));
  }
  return f;
}

std::string error_notification_data(std::string_view kind, std::string_view message) {
  return JsonObject().str("error_type", kind).str("error_message", message).done();
}

std::string error_notification_data(const Status& error) {
  return error_notification_data(error.code() == Code::kNotFound ? "unknown_message_type" : "invalid_message",
                                 error.message());
}

}  // namespace agentd::net
