// Strict JSON for everything that arrives from outside, and the canonical
// compact form every layer stores and sends.
//
// parse_strict() accepts a document only if all of these hold; otherwise it
// returns a Status naming the offending field path (e.g. "data.items[2].$x"):
//   - size   <= limits.max_bytes                       -> kTooLarge
//   - valid JSON, valid UTF-8                          -> kInvalidArgument
//   - nesting depth <= limits.max_depth                -> kInvalidArgument
//   - no object key starts with '$', contains '.' or NUL (MongoDB would read
//     it as an operator or a path)                     -> kInvalidArgument
//   - with limits.client_input (request bodies): no key is empty (the
//     MongoDB driver refuses the document) and no object holds a key twice
//     (unsupported by MongoDB, refused by FerretDB)    -> kInvalidArgument
//   - integers fit in int64 (BSON has no uint64)       -> kInvalidArgument
//   - no string or key holds a lone UTF-16 surrogate escape ("\udc00"):
//     every decoded string is UTF-8                     -> kInvalidArgument
// Numbers are parsed at full precision, so write_canonical(parse_strict(x))
// is a fixed point: encoding it again yields the same bytes.
#pragma once

#include <rapidjson/document.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace agentd {

struct JsonLimits {
  size_t max_bytes = 1 << 20;  // 1 MiB
  int max_depth = 64;
  // The key rules of a document a client hands in, beyond check_key(): no
  // empty key, no key twice in one object. Off when reading bytes agentd
  // stored before these rules existed (they stay readable).
  bool client_input = false;
};

// What agentd stored itself — plan records, envelopes and what they carry
// (m_plan, raw_data) — is read back with these limits, never a request
// body's: the outbox writes no record over kMaxStoredBytes (MongoDB's
// document limit) and BSON nests at most 100 deep, so whatever was written
// stays readable.
inline constexpr size_t kMaxStoredBytes = 16u << 20;
inline constexpr JsonLimits kStoredJson{kMaxStoredBytes, 100, false};

Result<rapidjson::Document> parse_strict(std::string_view text, const JsonLimits& limits = {});

// Compact encoding, keys in document order. This is the canonical form.
std::string write_canonical(const rapidjson::Value& v);

// Appends `s` as a JSON string literal (quotes and escapes included).
void append_json_string(std::string* out, std::string_view s);

// Builds one canonical JSON object field by field (keys in call order).
//   std::string s = JsonObject().str("a", "x").num("n", 3).raw("o", "{}").done();
class JsonObject {
 public:
  JsonObject();
  JsonObject& str(std::string_view key, std::string_view value);
  JsonObject& num(std::string_view key, int64_t value);
  JsonObject& boolean(std::string_view key, bool value);
  JsonObject& null(std::string_view key);
  // `json` must already be canonical JSON (an object, array, ...).
  JsonObject& raw(std::string_view key, std::string_view json);
  std::string done();

 private:
  void key(std::string_view k);
  std::string out_;
  bool first_ = true;
};

// Checks a key the way parse_strict() does; `path` names it in the error.
Status check_key(std::string_view key, std::string_view path);

}  // namespace agentd
