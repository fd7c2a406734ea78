#include "net/multipart.h"

#include <algorithm>
#include <cctype>

namespace agentd::net {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value of parameter `name` in a header value ("form-data; name=\"file\"").
std::string param_value(std::string_view header, std::string_view name) {
  size_t pos = 0;
  while ((pos = header.find(';', pos)) != std::string_view::npos) {
    std::string_view p = trim(header.substr(pos + 1));
    pos += 1;
    size_t eq = p.find('=');
    if (eq == std::string_view::npos || lower(trim(p.substr(0, eq))) != name) continue;
    std::string_view v = trim(p.substr(eq + 1));
    if (!v.empty() && v.front() == '"') {
      size_t close = v.find('"', 1);
      return std::string(v.substr(1, close == std::string_view::npos ? v.size() - 1 : close - 1));
    }
    return std::string(v.substr(0, v.find(';')));
  }
  return {};
}

}  // namespace

Result<std::string> multipart_boundary(std::string_view content_type) {
  std::string_view type = trim(content_type.substr(0, content_type.find(';')));
  if (lower(type) != "multipart/form-data") {
    return invalid_argument("Content-Type: expected multipart/form-data or application/json");
  }
  std::string b = param_value(content_type, "boundary");
  if (b.empty() || b.size() > 70) return invalid_argument("Content-Type: multipart boundary missing or too long");
  return b;
}

Result<std::string> multipart_field(std::string_view body, std::string_view boundary, std::string_view field) {
  const std::string delim = "--" + std::string(boundary);
  size_t pos = body.find(delim);
  if (pos == std::string_view::npos) return invalid_argument("multipart body: no boundary line");
  for (;;) {
    pos += delim.size();
    if (body.substr(pos, 2) == "--") break;  // the closing delimiter
    if (body.substr(pos, 2) != "\r\n") return invalid_argument("multipart body: malformed boundary line");
    pos += 2;
    size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos) return invalid_argument("multipart body: part without headers end");
    std::string_view headers = body.substr(pos, headers_end - pos);
    size_t content = headers_end + 4;
    size_t next = body.find("\r\n" + delim, content);
    if (next == std::string_view::npos) return invalid_argument("multipart body: part without closing boundary");
    std::string name;
    size_t line = 0;
    while (line <= headers.size()) {
      size_t eol = headers.find("\r\n", line);
      std::string_view h = headers.substr(line, eol == std::string_view::npos ? std::string_view::npos : eol - line);
      size_t colon = h.find(':');
      if (colon != std::string_view::npos && lower(trim(h.substr(0, colon))) == "content-disposition") {
        name = param_value(h.substr(colon + 1), "name");
      }
      if (eol == std::string_view::npos) break;
      line = eol + 2;
    }
    if (name == field) return std::string(body.substr(content, next - content));
    pos = next + 2;
  }
  return invalid_argument("multipart body: no part named '" + std::string(field) + "'");
}

}  // namespace agentd::net
