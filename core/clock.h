// Time and identifiers shared by every layer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace agentd {

// Milliseconds since the Unix epoch (system clock).
int64_t now_unix_ms();
// RFC 3339 UTC with milliseconds: "2026-11-26T02:31:00.123Z".
std::string format_rfc3339_ms(int64_t unix_ms);
inline std::string now_rfc3339() { return format_rfc3339_ms(now_unix_ms()); }
// Parses exactly the format above; returns false on anything else.
bool parse_rfc3339_ms(std::string_view s, int64_t* unix_ms);

// Random (version 4) UUID in canonical lower-case form.
std::string new_uuid();

}  // namespace agentd
