// The OpenAPI document (docs/openapi.json, as embedded into the binary and
// served at /openapi.json) against the router's tables (net/router.h): every
// route is documented and every documented operation is a route, with the
// /api/v4 twins identical to their /api/v3 originals.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include <rapidjson/document.h>

#include "core/json.h"
#include "net/docs.h"
#include "net/router.h"

using namespace agentd;
using namespace agentd::net;

namespace {

rapidjson::Document document() {
  std::string_view text = docs_file("openapi.json");
  REQUIRE_MESSAGE(!text.empty(), "docs/openapi.json is not embedded");
  // Plain rapidjson: the document's "$ref" keys are what parse_strict refuses.
  rapidjson::Document d;
  d.Parse(text.data(), text.size());
  REQUIRE_MESSAGE(!d.HasParseError(), "docs/openapi.json: parse error at offset " << d.GetErrorOffset());
  return d;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "GET /api/v3/plan/{plan_id}/events" for every route of the tables.
std::set<std::string> router_operations() {
  std::set<std::string> out;
  for (const auto& f : kFixedRoutes) out.insert(std::string(http::to_string(f.verb)) + " " + std::string(f.path));
  for (std::string_view v : kApiVersions) {
    for (const auto& a : kApiRoutes) {
      out.insert(std::string(http::to_string(a.verb)) + " " + std::string(v) + std::string(a.pattern));
    }
  }
  return out;
}

std::set<std::string> document_operations(const rapidjson::Document& d) {
  static constexpr const char* kMethods[] = {"get", "put", "post", "delete", "options", "head", "patch", "trace"};
  std::set<std::string> out;
  for (const auto& p : d["paths"].GetObject()) {
    for (const char* m : kMethods) {
      if (p.value.HasMember(m)) {
        std::string upper = m;
        for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        out.insert(upper + " " + p.name.GetString());
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("openapi: the document is OpenAPI 3.1 with unique operation ids") {
  auto d = document();
  REQUIRE(d.IsObject());
  CHECK(std::string(d["openapi"].GetString()).starts_with("3.1"));
  std::set<std::string> ids;
  for (const auto& p : d["paths"].GetObject()) {
    for (const auto& op : p.value.GetObject()) {
      if (!op.value.IsObject() || !op.value.HasMember("operationId")) continue;
      INFO(p.name.GetString() << " " << op.name.GetString());
      CHECK(ids.insert(op.value["operationId"].GetString()).second);
      CHECK(op.value.HasMember("responses"));
    }
  }
  CHECK(ids.size() > 30);
}

TEST_CASE("openapi: every route of the router is documented, and every documented operation is a route") {
  auto d = document();
  auto routes = router_operations();
  auto documented = document_operations(d);
  for (const auto& r : routes) CHECK_MESSAGE(documented.count(r), "route not in docs/openapi.json: " << r);
  for (const auto& o : documented) CHECK_MESSAGE(routes.count(o), "documented but not routed: " << o);
  // And each documented path is what match_route answers for it (a
  // concrete value in place of each {param}).
  for (const auto& o : documented) {
    std::string method = o.substr(0, o.find(' '));
    std::string path = o.substr(o.find(' ') + 1);
    for (size_t at; (at = path.find('{')) != std::string::npos;) path.replace(at, path.find('}') - at + 1, "x-1");
    auto m = match_route(http::string_to_verb(method), path);
    INFO(o);
    CHECK(m.id != RouteId::kNotFound);
    CHECK(m.id != RouteId::kMethodNotAllowed);
  }
}

TEST_CASE("openapi: the /api/v4 twins are the /api/v3 operations (ids prefixed v4_)") {
  auto d = document();
  const auto& paths = d["paths"];
  for (const auto& a : kApiRoutes) {
    std::string v3 = "/api/v3" + std::string(a.pattern), v4 = "/api/v4" + std::string(a.pattern);
    REQUIRE_MESSAGE(paths.HasMember(v3.c_str()), v3);
    REQUIRE_MESSAGE(paths.HasMember(v4.c_str()), v4);
    std::string one = write_canonical(paths[v3.c_str()]);
    std::string two = write_canonical(paths[v4.c_str()]);
    // The only differences: "v3_" -> "v4_" in operation ids (and links).
    size_t at = 0;
    while ((at = one.find("\"v3_", at)) != std::string::npos) one.replace(at, 4, "\"v4_");
    INFO(v3);
    CHECK(one == two);
  }
}

TEST_CASE("openapi: the SSE route documents its stream, resume header and error codes") {
  auto d = document();
  const auto& op = d["paths"]["/api/v3/plan/{plan_id}/events"]["get"];
  CHECK(op["responses"]["200"]["content"].HasMember("text/event-stream"));
  for (const char* code : {"401", "404", "422", "429", "503"}) CHECK_MESSAGE(op["responses"].HasMember(code), code);
  bool last_event_id = false;
  for (const auto& p : op["parameters"].GetArray()) {
    if (p.HasMember("name") && lower(p["name"].GetString()) == "last-event-id") last_event_id = true;
  }
  CHECK(last_event_id);
}

TEST_CASE("openapi: /openapi.json serves the document and /docs the page") {
  auto doc = docs_response("/openapi.json");
  CHECK(doc.result() == http::status::ok);
  CHECK(doc[http::field::content_type] == "application/json");
  CHECK(doc.body() == docs_file("openapi.json"));
  auto page = docs_response("/docs");
  CHECK(page.result() == http::status::ok);
  CHECK(page.body().find("/openapi.json") != std::string::npos);
  // The renderer is embedded when scripts/docs-ui could fetch it (CI: always).
  if (!docs_file("swagger-ui-bundle.js").empty()) {
    CHECK(page.body().find("swagger-ui-bundle.js") != std::string::npos);
    CHECK(docs_response("/docs/swagger-ui-bundle.js").result() == http::status::ok);
    CHECK(docs_response("/docs/swagger-ui.css").result() == http::status::ok);
  }
}
