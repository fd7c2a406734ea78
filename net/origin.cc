#include "net/origin.h"

#include <algorithm>

namespace agentd::net {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// "host[:port]" lower-cased with the default port of `scheme` dropped; ""
// when malformed (empty host, empty or non-numeric port, path, userinfo).
std::string normalize_authority(std::string_view authority, std::string_view scheme) {
  if (authority.empty() || authority.find_first_of("/?#@ \t") != std::string_view::npos) return {};
  std::string a = lower(authority);
  // The port follows the last ':' outside an IPv6 literal's brackets.
  size_t colon = a.rfind(':');
  if (colon != std::string::npos && a.find(']', colon) == std::string::npos) {
    std::string_view port = std::string_view(a).substr(colon + 1);
    if (port.empty() || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return {};
    }
    if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443")) a.resize(colon);
  }
  if (a.empty() || a.front() == ':') return {};
  return a;
}

}  // namespace

std::string normalize_origin(std::string_view origin) {
  size_t sep = origin.find("://");
  if (sep == std::string_view::npos) return {};
  std::string scheme = lower(origin.substr(0, sep));
  if (scheme != "http" && scheme != "https") return {};
  std::string authority = normalize_authority(origin.substr(sep + 3), scheme);
  if (authority.empty()) return {};
  return scheme + "://" + authority;
}

bool same_origin(std::string_view origin, std::string_view host) {
  std::string o = normalize_origin(origin);
  if (o.empty()) return false;
  std::string scheme = o.substr(0, o.find(':'));
  std::string h = normalize_authority(host, scheme);
  return !h.empty() && o.substr(scheme.size() + 3) == h;
}

Status OriginPolicy::validate(const std::vector<std::string>& allowed) {
  for (const auto& a : allowed) {
    if (a != "*" && normalize_origin(a).empty()) {
      return invalid_argument("--cors-origins: '" + a + "' is neither '*' nor an origin like https://host[:port]");
    }
  }
  return Status::ok();
}

OriginPolicy::OriginPolicy(const std::vector<std::string>& allowed) {
  for (const auto& a : allowed) {
    if (a == "*") {
      any_ = true;
    } else if (auto n = normalize_origin(a); !n.empty()) {
      listed_.push_back(std::move(n));
    }
  }
}

bool OriginPolicy::listed(std::string_view origin) const {
  std::string n = normalize_origin(origin);
  return !n.empty() && std::find(listed_.begin(), listed_.end(), n) != listed_.end();
}

bool OriginPolicy::upgrade_allowed(std::string_view origin, std::string_view host) const {
  return origin.empty() || any_ || same_origin(origin, host) || listed(origin);
}

}  // namespace agentd::net
