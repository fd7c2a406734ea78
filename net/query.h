// Request-target parsing: path and decoded query parameters.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace agentd::net {

struct Target {
  std::string path;                               // percent-decoded
  std::multimap<std::string, std::string> query;  // decoded; '+' is a space

  // First value of `key`, if present.
  std::optional<std::string> get(std::string_view key) const;
  // `key` as an unsigned integer; `def` when absent; kInvalidArgument naming
  // the parameter when not a non-negative integer.
  Result<uint64_t> get_u64(std::string_view key, uint64_t def) const;
};

// kInvalidArgument when the target is not an origin-form ("/path?query").
Result<Target> parse_target(std::string_view target);

// The target as it may be logged: the value of every `token` query parameter
// (the key compared after percent-decoding, ignoring case) replaced by
// "REDACTED"; everything else byte for byte. Works on any bytes, including
// targets parse_target rejects: "/s/p?a=1&token=abc&b" -> "/s/p?a=1&token=REDACTED&b".
std::string redact_target(std::string_view target);

// "/api/v3/plan/abc/messages" with prefix "/api/v3/plan/" and suffix
// "/messages" -> "abc"; nullopt when it does not match or the middle is empty
// or contains '/'.
std::optional<std::string_view> path_param(std::string_view path, std::string_view prefix, std::string_view suffix);

}  // namespace agentd::net
