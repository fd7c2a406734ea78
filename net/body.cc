#include "net/body.h"

#include "core/json.h"

namespace agentd::net {

std::string validation_detail(const std::vector<FieldError>& errors) {
  std::string out = "{\"detail\":[";
  for (size_t i = 0; i < errors.size(); ++i) {
    if (i) out += ',';
    out += "{\"loc\":[";
    for (size_t j = 0; j < errors[i].loc.size(); ++j) {
      if (j) out += ',';
      append_json_string(&out, errors[i].loc[j]);
    }
    out += "],\"msg\":";
    append_json_string(&out, errors[i].msg);
    out += ",\"type\":";
    append_json_string(&out, errors[i].type);
    out += '}';
  }
  out += "]}";
  return out;
}

Body::Body(std::string_view text, size_t max_bytes) {
  JsonLimits limits;
  limits.max_bytes = max_bytes;
  limits.client_input = true;  // what the MongoDB driver or server would refuse is a 422 here
  auto d = parse_strict(text, limits);
  if (!d) {
    // parse_strict names the field first ("data.x: ..."); keep it in loc.
    const std::string& m = d.status().message();
    std::vector<std::string> loc{"body"};
    size_t colon = m.find(": ");
    if (colon != std::string::npos && colon > 0 && m.find(' ') > colon && m[0] != '$')
      loc.push_back(m.substr(0, colon));
    errors_.push_back({std::move(loc), m, "value_error.jsondecode"});
    return;
  }
  doc_ = std::move(*d);
  if (!doc_.IsObject()) {
    errors_.push_back({{"body"}, "body must be a JSON object", "type_error.dict"});
    return;
  }
  parsed_ = true;
}

const rapidjson::Value* Body::raw(const char* name) const {
  if (!parsed_) return nullptr;
  auto it = doc_.FindMember(name);
  if (it == doc_.MemberEnd() || it->value.IsNull()) return nullptr;
  return &it->value;
}

const rapidjson::Value* Body::field(const char* name, bool required, bool (rapidjson::Value::*is)() const,
                                    const char* msg, const char* type) {
  if (!parsed_) return nullptr;
  const rapidjson::Value* v = raw(name);
  if (!v) {
    if (required) errors_.push_back({{"body", name}, "field required", "value_error.missing"});
    return nullptr;
  }
  if (!(v->*is)()) {
    errors_.push_back({{"body", name}, msg, type});
    return nullptr;
  }
  return v;
}

std::optional<std::string> Body::string(const char* name, bool required) {
  const rapidjson::Value* v = field(name, required, &rapidjson::Value::IsString, "str type expected", "type_error.str");
  if (!v) return std::nullopt;
  return std::string(v->GetString(), v->GetStringLength());
}

std::optional<bool> Body::boolean(const char* name, bool required) {
  const rapidjson::Value* v =
      field(name, required, &rapidjson::Value::IsBool, "value could not be parsed to a boolean", "type_error.bool");
  if (!v) return std::nullopt;
  return v->GetBool();
}

std::optional<std::string> Body::object(const char* name, bool required) {
  const rapidjson::Value* v =
      field(name, required, &rapidjson::Value::IsObject, "value is not a valid dict", "type_error.dict");
  if (!v) return std::nullopt;
  return write_canonical(*v);
}

}  // namespace agentd::net
