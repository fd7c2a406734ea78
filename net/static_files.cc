#include "net/static_files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <memory>

namespace agentd::net {

namespace http = boost::beast::http;

namespace {

constexpr size_t kMaxFileBytes = 16u << 20;

bool segment_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

http::response<http::string_body> not_found() {
  http::response<http::string_body> res{http::status::not_found, 11};
  res.set(http::field::content_type, "application/json");
  res.body() = R"({"detail":"Not Found"})";
  return res;
}

// Reads a regular file (not a symlink, not a folder) of at most kMaxFileBytes.
std::optional<std::string> read_file(const std::string& full) {
  struct stat st;
  if (::lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  if (static_cast<size_t>(st.st_size) > kMaxFileBytes) return std::nullopt;
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(full.c_str(), "rb"), &std::fclose);
  if (!f) return std::nullopt;
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t n = out.empty() ? 0 : std::fread(out.data(), 1, out.size(), f.get());
  out.resize(n);
  return out;
}

}  // namespace

std::optional<std::string> static_relative_path(std::string_view path) {
  if (path == "/") return std::string("index.html");
  if (path.empty() || path.front() != '/') return std::nullopt;
  std::string_view rest = path.substr(1);
  // Accepted only when every segment is non-empty, made of segment_char and
  // not led by '.' (no "..", no hidden files).
  size_t start = 0;
  while (start <= rest.size()) {
    size_t end = rest.find('/', start);
    if (end == std::string_view::npos) end = rest.size();
    std::string_view seg = rest.substr(start, end - start);
    if (seg.empty() || seg.front() == '.') return std::nullopt;
    for (char c : seg) {
      if (!segment_char(c)) return std::nullopt;
    }
    start = end + 1;
  }
  return std::string(rest);
}

std::string_view static_content_type(std::string_view rel) {
  struct Type {
    std::string_view ext, type;
  };
  static constexpr Type kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
      {".map", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
      {".ttf", "font/ttf"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
  };
  for (const auto& t : kTypes) {
    if (rel.size() >= t.ext.size() && rel.substr(rel.size() - t.ext.size()) == t.ext) return t.type;
  }
  return "application/octet-stream";
}

std::optional<http::response<http::string_body>> serve_static(const std::string& web_dir, http::verb method,
                                                              std::string_view path, bool spa_fallback) {
  if (method != http::verb::get && method != http::verb::head) return std::nullopt;
  if (path == "/api" || path.starts_with("/api/")) return std::nullopt;
  auto rel = static_relative_path(path);
  if (!rel) return not_found();
  auto load = [&web_dir](const std::string& r) -> std::optional<std::string> {
    if (!web_dir.empty()) return read_file(web_dir + "/" + r);
    for (size_t i = 0; i < kEmbeddedWebFileCount; ++i) {
      if (kEmbeddedWebFiles[i].path == r) return std::string(kEmbeddedWebFiles[i].body);
    }
    return std::nullopt;
  };
  std::optional<std::string> body = load(*rel);
  if (!body && spa_fallback && rel->substr(rel->rfind('/') + 1).find('.') == std::string::npos) {
    rel = "index.html";
    body = load(*rel);
  }
  if (!body) return not_found();
  http::response<http::string_body> res{http::status::ok, 11};
  res.set(http::field::content_type, static_content_type(*rel));
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  res.body() = std::move(*body);  // for HEAD the session sends only the headers
  return res;
}

}  // namespace agentd::net
