#include "net/auth.h"

#include <fstream>
#include <sstream>

namespace agentd::net {

namespace http = boost::beast::http;

namespace {

Status unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<AuthMode> parse_auth_mode(std::string_view s) {
  if (s == "dev") return AuthMode::kDev;
  if (s == "header") return AuthMode::kHeader;
  if (s == "token") return AuthMode::kToken;
  return invalid_argument("auth mode: expected dev, header or token, got '" + std::string(s) + "'");
}

std::string_view auth_mode_name(AuthMode m) {
  switch (m) {
    case AuthMode::kDev: return "dev";
    case AuthMode::kHeader: return "header";
    case AuthMode::kToken: return "token";
  }
  return "?";
}

Result<std::unordered_map<std::string, std::string>> Auth::parse_token_file(std::string_view text) {
  std::unordered_map<std::string, std::string> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    size_t sp = line.find_first_of(" \t");
    if (sp == std::string_view::npos) {
      return invalid_argument("token file line " + std::to_string(line_no) + ": expected '<token> <user_id>'");
    }
    std::string token(line.substr(0, sp));
    std::string user(trim(line.substr(sp + 1)));
    if (user.empty() || user.find_first_of(" \t") != std::string::npos) {
      return invalid_argument("token file line " + std::to_string(line_no) + ": expected '<token> <user_id>'");
    }
    out[std::move(token)] = std::move(user);
  }
  return out;
}

Result<Auth> Auth::create(AuthMode mode, const std::string& token_file, std::string cluster_secret) {
  Auth a(mode);
  a.cluster_secret_ = std::move(cluster_secret);
  if (mode != AuthMode::kToken) return a;
  if (token_file.empty()) return invalid_argument("--auth=token needs --auth-token-file");
  std::ifstream in(token_file);
  if (!in) return invalid_argument("--auth-token-file " + token_file + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  auto tokens = parse_token_file(ss.str());
  if (!tokens) return invalid_argument(token_file + ": " + tokens.status().message());
  if (tokens->empty()) return invalid_argument("--auth-token-file " + token_file + ": no tokens");
  a.tokens_ = std::move(*tokens);
  return a;
}

Auth Auth::with_tokens(std::unordered_map<std::string, std::string> tokens) {
  Auth a(AuthMode::kToken);
  a.tokens_ = std::move(tokens);
  return a;
}

bool Auth::from_peer(const http::fields& headers) const {
  auto it = headers.find(kClusterSecretHeader);
  if (cluster_secret_.empty() || it == headers.end()) return false;
  std::string_view got = it->value();
  // Constant time in the secret's length: no early exit on the first mismatch.
  unsigned diff = got.size() == cluster_secret_.size() ? 0u : 1u;
  for (size_t i = 0; i < cluster_secret_.size(); ++i) {
    diff |= static_cast<unsigned char>(cluster_secret_[i]) ^ static_cast<unsigned char>(i < got.size() ? got[i] : 0);
  }
  return diff == 0;
}

Result<Identity> Auth::identify(const http::fields& headers, bool is_websocket, std::string_view query_user,
                                std::string_view query_token) const {
  if (auto it = headers.find(kForwardedUserHeader); it != headers.end()) {
    std::string_view user = trim(it->value());
    if (!from_peer(headers)) return unauthenticated("forwarded identity without the cluster secret");
    if (user.empty()) return unauthenticated("empty forwarded identity");
    return Identity{std::string(user), {}, true};
  }
  std::string_view principal;
  if (auto it = headers.find(kPrincipalHeader); it != headers.end()) principal = trim(it->value());
  switch (mode_) {
    case AuthMode::kDev: {
      if (!principal.empty()) return Identity{std::string(principal), {}};
      if (is_websocket && !query_user.empty()) return Identity{std::string(query_user), {}};
      return Identity{std::string(kZeroUser), {}};
    }
    case AuthMode::kHeader: {
      if (principal.empty()) return unauthenticated("missing x-ms-client-principal-id header");
      return Identity{std::string(principal), {}};
    }
    case AuthMode::kToken: {
      if (auto it = headers.find(http::field::authorization); it != headers.end()) {
        std::string_view v = trim(it->value());
        constexpr std::string_view kBearer = "Bearer ";
        if (v.size() > kBearer.size() && (v.substr(0, kBearer.size()) == kBearer || v.substr(0, 7) == "bearer ")) {
          auto t = tokens_.find(std::string(trim(v.substr(kBearer.size()))));
          if (t != tokens_.end()) return Identity{t->second, {}};
        }
        return unauthenticated("invalid bearer token");
      }
      if (is_websocket) {
        if (!query_token.empty()) {
          auto t = tokens_.find(std::string(query_token));
          if (t != tokens_.end()) return Identity{t->second, {}};
          return unauthenticated("invalid token");
        }
        if (auto it = headers.find(http::field::sec_websocket_protocol); it != headers.end()) {
          std::string_view list = it->value();
          while (!list.empty()) {
            size_t comma = list.find(',');
            std::string_view entry = trim(list.substr(0, comma));
            list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
            std::string_view tok = entry;
            if (tok.substr(0, 7) == "bearer.") tok.remove_prefix(7);
            auto t = tokens_.find(std::string(tok));
            if (t != tokens_.end()) return Identity{t->second, std::string(entry)};
          }
          return unauthenticated("no valid token in Sec-WebSocket-Protocol");
        }
      }
      return unauthenticated("missing bearer token");
    }
  }
  return unauthenticated("unknown auth mode");
}

}  // namespace agentd::net
