// Browser origins: which cross-origin callers --cors-origins lets in, for the
// CORS headers of HTTP responses and for WebSocket upgrades (which browsers
// send cross-site without any CORS check, cookies included).
//
//   allowed  := entry*            (--cors-origins, comma-separated)
//   entry    := "*" | origin      ("*": any origin, never with credentials)
//   origin   := scheme "://" host [":" port]   (compared ignoring case and a
//               default port: 80 for http, 443 for https)
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace agentd::net {

class OriginPolicy {
 public:
  // kInvalidArgument naming the first entry that is neither "*" nor an
  // http(s) origin (e.g. "example.com", "https://a.b/path").
  [[nodiscard]] static Status validate(const std::vector<std::string>& allowed);
  // Entries validate() rejects are ignored.
  explicit OriginPolicy(const std::vector<std::string>& allowed);

  // "*" is in the list.
  bool any() const { return any_; }
  // The list names origins of its own (then responses carry Vary: Origin).
  bool has_list() const { return !listed_.empty(); }
  // `origin` is named in the list (not merely allowed by "*").
  bool listed(std::string_view origin) const;
  // A WebSocket upgrade from `origin` with this Host header may proceed: no
  // Origin (not a browser), the server's own origin (same host:port as
  // `host`), a listed origin, or any origin under "*".
  bool upgrade_allowed(std::string_view origin, std::string_view host) const;

 private:
  bool any_ = false;
  std::vector<std::string> listed_;  // normalized
};

// `origin` in the normalized form the policy compares ("http://a.b:81",
// lower case, default port dropped); "" when not an http(s) origin ("null",
// other schemes, a path, userinfo, no host).
std::string normalize_origin(std::string_view origin);

// `origin` is the server's own origin as the client reached it: its host[:port]
// equals the Host header's (ignoring case and the scheme's default port).
bool same_origin(std::string_view origin, std::string_view host);

}  // namespace agentd::net
