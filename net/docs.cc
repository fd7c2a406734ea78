#include "net/docs.h"

namespace agentd::net {

std::string_view docs_file(std::string_view name) {
  for (size_t i = 0; i < kEmbeddedDocsFileCount; ++i) {
    if (kEmbeddedDocsFiles[i].name == name) return kEmbeddedDocsFiles[i].body;
  }
  return {};
}

namespace {

// /docs when the build could not fetch the renderer (scripts/docs-ui).
constexpr std::string_view kNoRenderer =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>agentd API</title></head><body>"
    "<h1>agentd API</h1><p>This build has no API renderer (scripts/docs-ui could not fetch it). "
    "The OpenAPI document is at <a href=\"/openapi.json\">/openapi.json</a>.</p></body></html>";

Response file_response(std::string_view body, std::string_view type) {
  Response res{http::status::ok, 11};
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  res.body() = std::string(body);
  return res;
}

}  // namespace

Response docs_response(std::string_view path) {
  if (path == "/openapi.json") return file_response(docs_file("openapi.json"), "application/json");
  if (path == "/docs") {
    bool ui = !docs_file("swagger-ui-bundle.js").empty() && !docs_file("swagger-ui.css").empty();
    return file_response(ui ? docs_file("api.html") : kNoRenderer, "text/html; charset=utf-8");
  }
  std::string_view name = path.substr(path.rfind('/') + 1);
  std::string_view body = docs_file(name);
  if (body.empty()) return json_response(http::status::not_found, R"({"detail":"Not Found"})");
  return file_response(body, name.ends_with(".css") ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8");
}

}  // namespace agentd::net
