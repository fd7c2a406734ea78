// Auth: who is calling (architecture.md, "Identity").
//
// Three modes:
//  - dev:    the x-ms-client-principal-id header when sent, else (WebSocket)
//            the `user_id` query parameter, else the zero-UUID sample user.
//            For local runs only: anyone can claim any identity.
//  - header: x-ms-client-principal-id is REQUIRED and TRUSTED as is. Use it
//            only behind an authenticating reverse proxy (as MACAE behind App
//            Service auth) that strips the header from client requests and
//            sets it itself; exposed directly, anyone can impersonate anyone.
//  - token:  `Authorization: Bearer <token>` checked against a token file of
//            "<token> <user_id>" lines ('#' starts a comment). WebSockets
//            (browsers cannot set headers) may instead pass `?token=<token>`
//            or a Sec-WebSocket-Protocol entry `<token>` / `bearer.<token>`;
//            the matching entry is echoed back as the selected protocol.
// Missing or unknown identity where required -> kUnauthenticated (401).
//
// Forwarded identity (several instances, docs/scale-out.md): a request that
// another instance forwards carries the caller's user in
// x-agentd-forwarded-user and the cluster secret in x-agentd-cluster-secret.
// In every mode, a request naming a forwarded user is trusted only with the
// right secret; without it (or on an instance with no cluster secret) it is
// refused (401), never read as the user it names.
// Thread-safe: immutable after create().
#pragma once

#include <boost/beast/http.hpp>

#include <string>
#include <string_view>
#include <unordered_map>

#include "core/status.h"

namespace agentd::net {

inline constexpr std::string_view kZeroUser = "00000000-0000-0000-0000-000000000000";
inline constexpr std::string_view kPrincipalHeader = "x-ms-client-principal-id";
inline constexpr std::string_view kForwardedUserHeader = "x-agentd-forwarded-user";
inline constexpr std::string_view kClusterSecretHeader = "x-agentd-cluster-secret";

enum class AuthMode { kDev, kHeader, kToken };

Result<AuthMode> parse_auth_mode(std::string_view s);
std::string_view auth_mode_name(AuthMode m);

struct Identity {
  std::string user_id;
  std::string ws_protocol;  // the Sec-WebSocket-Protocol entry to echo ("" = none)
  bool forwarded = false;   // forwarded by a peer instance (never forwarded again)
};

class Auth {
 public:
  // token mode needs a readable token file with at least one entry.
  // `cluster_secret` (may be empty: no forwarding accepted) authenticates
  // peer instances.
  static Result<Auth> create(AuthMode mode, const std::string& token_file, std::string cluster_secret = {});
  // For tests: token mode with an in-memory table.
  static Auth with_tokens(std::unordered_map<std::string, std::string> tokens);

  AuthMode mode() const { return mode_; }

  // `query_user` / `query_token` are the WebSocket query parameters ("" when
  // absent); `is_websocket` enables the WebSocket-only sources.
  Result<Identity> identify(const boost::beast::http::fields& headers, bool is_websocket,
                            std::string_view query_user = {}, std::string_view query_token = {}) const;

  // True when `headers` carry the cluster secret (a peer instance calling).
  bool from_peer(const boost::beast::http::fields& headers) const;

  // Parses "<token> <user_id>" lines.
  static Result<std::unordered_map<std::string, std::string>> parse_token_file(std::string_view text);

 private:
  explicit Auth(AuthMode m) : mode_(m) {}
  AuthMode mode_;
  std::unordered_map<std::string, std::string> tokens_;  // token -> user_id
  std::string cluster_secret_;
};

}  // namespace agentd::net
