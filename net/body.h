// Request bodies: strict JSON (core/json.h) and field checks that produce
// FastAPI-style 422 details:
//   {"detail":[{"loc":["body","description"],"msg":"field required","type":"value_error.missing"}]}
// Unknown extra fields are ignored (contract decision 1); wrong types are 422.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace agentd::net {

struct FieldError {
  std::vector<std::string> loc;  // e.g. {"body", "description"}
  std::string msg;
  std::string type;
};

// {"detail":[...]} for `errors`.
std::string validation_detail(const std::vector<FieldError>& errors);

class Body {
 public:
  // Parses `text` strictly; a parse failure becomes one FieldError (its
  // field path, when the parser named one, goes into loc).
  explicit Body(std::string_view text, size_t max_bytes);

  // Each accessor records a FieldError when the field is missing (if
  // required) or has the wrong type; null counts as absent.
  std::optional<std::string> string(const char* name, bool required);
  std::optional<bool> boolean(const char* name, bool required);
  // An object field, as canonical JSON.
  std::optional<std::string> object(const char* name, bool required);
  const rapidjson::Value* raw(const char* name) const;

  bool ok() const { return errors_.empty(); }
  bool parsed() const { return parsed_; }
  const std::vector<FieldError>& errors() const { return errors_; }
  std::string detail() const { return validation_detail(errors_); }

 private:
  // The field when present (not null) and (value.*is)(); else null, with a
  // FieldError when it is required but missing ("field required") or of
  // another type (`msg`, `type`).
  const rapidjson::Value* field(const char* name, bool required, bool (rapidjson::Value::*is)() const, const char* msg,
                                const char* type);
  rapidjson::Document doc_;
  bool parsed_ = false;
  std::vector<FieldError> errors_;
};

}  // namespace agentd::net
