#include "net/query.h"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <charconv>

namespace agentd::net {

std::optional<std::string> Target::get(std::string_view key) const {
  auto it = query.find(std::string(key));
  if (it == query.end()) return std::nullopt;
  return it->second;
}

Result<uint64_t> Target::get_u64(std::string_view key, uint64_t def) const {
  auto v = get(key);
  if (!v) return def;
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (v->empty() || ec != std::errc() || p != v->data() + v->size()) {
    return invalid_argument(std::string(key) + ": expected a non-negative integer");
  }
  return out;
}

Result<Target> parse_target(std::string_view target) {
  auto u = boost::urls::parse_origin_form(target);
  if (!u) return invalid_argument("request target: " + u.error().message());
  Target t;
  t.path = std::string(u->path());  // decoded
  for (auto p : u->params()) {
    t.query.emplace(std::string(p.key), p.has_value ? std::string(p.value) : std::string());
  }
  return t;
}

namespace {

// `key` percent-decoded where the escapes are valid ('+' left as is: no
// space can make "token"), lower-cased.
std::string lenient_key(std::string_view key) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    char c = key[i];
    if (c == '%' && i + 2 < key.size() && hex(key[i + 1]) >= 0 && hex(key[i + 2]) >= 0) {
      c = static_cast<char>(hex(key[i + 1]) * 16 + hex(key[i + 2]));
      i += 2;
    }
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    out += c;
  }
  return out;
}

}  // namespace

std::string redact_target(std::string_view target) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q + 1));
  std::string_view rest = target.substr(q + 1);
  for (bool first = true;; first = false) {
    size_t amp = rest.find('&');
    std::string_view param = rest.substr(0, amp);
    size_t eq = param.find('=');
    if (!first) out += '&';
    if (eq != std::string_view::npos && lenient_key(param.substr(0, eq)) == "token") {
      out.append(param.substr(0, eq + 1));
      out += "REDACTED";
    } else {
      out.append(param);
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return out;
}

std::optional<std::string_view> path_param(std::string_view path, std::string_view prefix, std::string_view suffix) {
  if (path.size() <= prefix.size() + suffix.size()) return std::nullopt;
  if (path.substr(0, prefix.size()) != prefix) return std::nullopt;
  if (path.substr(path.size() - suffix.size()) != suffix) return std::nullopt;
  std::string_view mid = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
  if (mid.empty() || mid.find('/') != std::string_view::npos) return std::nullopt;
  return mid;
}

}  // namespace agentd::net
