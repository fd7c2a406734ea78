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

std::optional<std::string_view> path_param(std::string_view path, std::string_view prefix, std::string_view suffix) {
  if (path.size() <= prefix.size() + suffix.size()) return std::nullopt;
  if (path.substr(0, prefix.size()) != prefix) return std::nullopt;
  if (path.substr(path.size() - suffix.size()) != suffix) return std::nullopt;
  std::string_view mid = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
  if (mid.empty() || mid.find('/') != std::string_view::npos) return std::nullopt;
  return mid;
}

}  // namespace agentd::net
