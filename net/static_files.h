// Static files: the web page (web/) served at "/" for GET and HEAD, from the
// copy embedded at build time (web/embed_web.cmake) or from a folder given by
// --web-dir. Only paths outside the API reach it (the router asks it for
// unmatched routes); anything it does not serve stays a JSON 404.
//
// Accepted paths: "/" (= /index.html) or "/" segment ("/" segment)*, each
// segment of [A-Za-z0-9._-] not starting with '.', so "..", "%2e%2e" (the
// target is percent-decoded before it gets here), "//", backslashes, NUL and
// absolute paths never name a file; they get 404 like any missing file.
#pragma once

#include <boost/beast/http.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace agentd::net {

struct EmbeddedFile {
  std::string_view path;  // relative to web/, e.g. "index.html"
  std::string_view body;
};

// The files of web/ at build time (generated source).
extern const EmbeddedFile kEmbeddedWebFiles[];
extern const size_t kEmbeddedWebFileCount;

// "index.html" for "/", the relative path for an accepted path, nullopt for
// a rejected one (see above).
std::optional<std::string> static_relative_path(std::string_view path);

// Content-Type by extension; application/octet-stream when unknown.
std::string_view static_content_type(std::string_view rel);

// The response to `method` `path` (percent-decoded) when it is a static-file
// request: GET/HEAD outside /api/ -> 200 with the file (HEAD: no body) or a
// JSON 404. nullopt when the request is not for a static file (other
// methods, /api/...), so the caller answers as before. `web_dir` empty = the
// embedded files. Reads a folder file synchronously (small files, local disk).
// `spa_fallback`: a missing file whose last segment has no '.' (an app route
// such as /plan/{id}, not a missing asset) gets index.html, as a single-page
// app's server does so that a reload of any of its pages works.
std::optional<boost::beast::http::response<boost::beast::http::string_body>> serve_static(
    const std::string& web_dir, boost::beast::http::verb method, std::string_view path, bool spa_fallback = false);

}  // namespace agentd::net
