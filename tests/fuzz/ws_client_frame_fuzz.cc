// The WebSocket client-frame parser. WebsocketSession::on_client_frame
// (net/websocket_session.cc) parses and acts in one member function on a
// live session, so it is not separable; this target runs the same parse
// steps on arbitrary text — parse_strict, then the "type", "after_seq" and
// "data" fields read the way on_client_frame reads them — and builds the
// error reply the session would send. Properties: nothing crashes, and every
// reply is a JSON document parse_strict accepts.
#include <rapidjson/document.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/json.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

std::string error_reply(std::string_view kind, std::string_view msg) {
  std::string d = "{\"error_type\":";
  agentd::append_json_string(&d, kind);
  d += ",\"error_message\":";
  agentd::append_json_string(&d, msg);
  d += '}';
  return d;
}

std::string handle(std::string_view text) {
  auto doc = agentd::parse_strict(text);
  if (!doc || !doc->IsObject())
    return error_reply("invalid_message", doc ? "not a JSON object" : doc.status().message());
  auto type_it = doc->FindMember("type");
  if (type_it == doc->MemberEnd() || !type_it->value.IsString()) return error_reply("invalid_message", "type: missing");
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
  if (type == "ping" || type == "connection_check") return "{}";
  if (type == "resume") {
    auto it = doc->FindMember("after_seq");
    if (it == doc->MemberEnd() || !it->value.IsUint64())
      return error_reply("invalid_message", "after_seq: missing or not an integer");
    return "{\"after_seq\":" + std::to_string(it->value.GetUint64()) + "}";
  }
  if (type == "plan_approval_response") {
    if (!data) return error_reply("invalid_message", "data: missing");
    auto it = data->FindMember("approved");
    if (it == data->MemberEnd() || !it->value.IsBool())
      return error_reply("invalid_message", "data.approved: missing or not a boolean");
    std::string out = "{\"feedback\":";
    agentd::append_json_string(&out, str("feedback"));
    out += '}';
    return out;
  }
  if (type == "user_clarification_response") {
    if (str("request_id").empty()) return error_reply("invalid_message", "data.request_id: missing");
    std::string out = "{\"answer\":";
    agentd::append_json_string(&out, str("answer"));
    out += '}';
    return out;
  }
  return error_reply("unknown_message_type", "unknown message type: " + std::string(type));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string reply = handle(std::string_view(reinterpret_cast<const char*>(data), size));
  auto d = agentd::parse_strict(reply, agentd::JsonLimits{8u << 20, 64});
  if (!d) {
    std::fprintf(stderr, "reply not accepted: %s\n%s\n", d.status().to_string().c_str(), reply.c_str());
  }
  FUZZ_CHECK(d.is_ok());
  return 0;
}
