#include "core/envelope.h"

#include <charconv>
#include <cstring>

#include "core/clock.h"

namespace agentd {

PreparedMessage prepare(MessageDraft d) {
  if (d.message_id.empty()) d.message_id = new_uuid();
  if (d.timestamp.empty()) d.timestamp = now_rfc3339();
  std::string t;
  t.reserve(160 + d.data.size() + d.metadata.size());
  t += "\"type\":";
  append_json_string(&t, d.type);
  t += ",\"data\":";
  t += d.data;
  t += ",\"plan_id\":";
  append_json_string(&t, d.plan_id);
  t += ",\"message_id\":";
  append_json_string(&t, d.message_id);
  t += ",\"timestamp\":";
  append_json_string(&t, d.timestamp);
  t += ",\"user_id\":";
  append_json_string(&t, d.user_id);
  t += ",\"session_id\":";
  append_json_string(&t, d.session_id);
  t += ",\"metadata\":";
  t += d.metadata;
  t += ",\"v\":";
  t += std::to_string(kEnvelopeVersion);
  t += '}';
  return PreparedMessage{std::move(d.plan_id), std::move(d.message_id), std::move(t)};
}

std::string finalize(uint64_t seq, std::string_view tail) {
  static constexpr std::string_view kPrefix = "{\"seq\":";
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, seq);
  (void)ec;
  std::string out;
  out.reserve(kPrefix.size() + static_cast<size_t>(end - digits) + 1 + tail.size());
  out += kPrefix;
  out.append(digits, end);
  out += ',';
  out += tail;
  return out;
}

namespace {

Status wrong_type(const char* field, const char* want) {
  return invalid_argument(std::string(field) + ": missing or not " + want);
}

}  // namespace

Result<Envelope> decode_envelope(std::string_view bytes, const JsonLimits& limits) {
  auto parsed = parse_strict(bytes, limits);
  if (!parsed) return parsed.status();
  const rapidjson::Document& doc = *parsed;
  if (!doc.IsObject()) return invalid_argument("$root: envelope is not a JSON object");

  static constexpr const char* kKnown[] = {"seq",       "type",    "data",       "plan_id",  "message_id",
                                           "timestamp", "user_id", "session_id", "metadata", "v"};
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    bool known = false;
    for (const char* k : kKnown) known = known || std::strcmp(k, it->name.GetString()) == 0;
    if (!known) return invalid_argument(std::string(it->name.GetString()) + ": unknown envelope field");
  }

  Envelope e;
  auto str = [&](const char* field, std::string* out) -> Status {
    auto it = doc.FindMember(field);
    if (it == doc.MemberEnd() || !it->value.IsString()) return wrong_type(field, "a string");
    out->assign(it->value.GetString(), it->value.GetStringLength());
    return Status::ok();
  };
  auto obj = [&](const char* field, std::string* out) -> Status {
    auto it = doc.FindMember(field);
    if (it == doc.MemberEnd() || !it->value.IsObject()) return wrong_type(field, "an object");
    *out = write_canonical(it->value);
    return Status::ok();
  };
  auto seq = doc.FindMember("seq");
  if (seq == doc.MemberEnd() || !seq->value.IsUint64() || seq->value.GetUint64() == 0) {
    return wrong_type("seq", "an integer >= 1");
  }
  e.seq = seq->value.GetUint64();
  AGENTD_RETURN_IF_ERROR(str("type", &e.type));
  if (e.type.empty()) return invalid_argument("type: empty");
  AGENTD_RETURN_IF_ERROR(obj("data", &e.data));
  AGENTD_RETURN_IF_ERROR(str("plan_id", &e.plan_id));
  if (e.plan_id.empty()) return invalid_argument("plan_id: empty");
  AGENTD_RETURN_IF_ERROR(str("message_id", &e.message_id));
  if (e.message_id.empty()) return invalid_argument("message_id: empty");
  AGENTD_RETURN_IF_ERROR(str("timestamp", &e.timestamp));
  int64_t ms;
  if (!parse_rfc3339_ms(e.timestamp, &ms)) {
    return invalid_argument("timestamp: not RFC 3339 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)");
  }
  AGENTD_RETURN_IF_ERROR(str("user_id", &e.user_id));
  AGENTD_RETURN_IF_ERROR(str("session_id", &e.session_id));
  AGENTD_RETURN_IF_ERROR(obj("metadata", &e.metadata));
  auto v = doc.FindMember("v");
  if (v == doc.MemberEnd() || !v->value.IsInt()) return wrong_type("v", "an integer");
  e.v = v->value.GetInt();
  if (e.v != kEnvelopeVersion) {
    return Status(Code::kVersionMismatch, "v: envelope version " + std::to_string(e.v) +
                                              " is not supported (this build reads " +
                                              std::to_string(kEnvelopeVersion) + ")");
  }
  return e;
}

std::string encode_envelope(const Envelope& e) {
  MessageDraft d{e.type, e.plan_id, e.message_id, e.timestamp, e.user_id, e.session_id, e.data, e.metadata};
  return finalize(e.seq, prepare(std::move(d)).tail);
}

}  // namespace agentd
