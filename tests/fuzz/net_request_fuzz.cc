// net's pure request functions on arbitrary input: parse_target, match_route,
// Target::get/get_u64, path_param (net/query.h, net/router.h), Body and its
// 422 details (net/body.h), and the token-file parser (net/auth.h).
//
// Input: byte 0 picks the HTTP method; the rest up to the first '\n' is the
// request target; everything after it is the request body.
// Properties: nothing crashes; a route parameter is one non-empty segment;
// every 422 detail is a JSON document parse_strict accepts.
#include <boost/beast/http/verb.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/json.h"
#include "net/auth.h"
#include "net/body.h"
#include "net/query.h"
#include "net/router.h"
#include "tests/fuzz/fuzz_check.h"

namespace http = boost::beast::http;
using namespace agentd::net;

namespace {

constexpr http::verb kVerbs[] = {http::verb::get,     http::verb::post,    http::verb::put,  http::verb::head,
                                 http::verb::options, http::verb::delete_, http::verb::patch};

void fuzz_body(std::string_view text, size_t max_bytes) {
  Body b(text, max_bytes);
  (void)b.string("description", true);
  (void)b.string("session_id", false);
  (void)b.boolean("approved", false);
  (void)b.object("m_plan", false);
  (void)b.raw("data");
  if (!b.ok()) {
    auto d = agentd::parse_strict(b.detail());
    FUZZ_CHECK(d.is_ok());
    FUZZ_CHECK(d->IsObject() && d->HasMember("detail"));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  http::verb verb = kVerbs[data[0] % (sizeof(kVerbs) / sizeof(kVerbs[0]))];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t nl = in.find('\n');
  std::string_view target = in.substr(0, nl);
  std::string_view body = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);

  auto t = parse_target(target);
  // Routing sees the raw path too: the session matches before decoding fails.
  (void)match_route(verb, target);
  if (t) {
    RouteMatch m = match_route(verb, t->path);
    if (!m.param.empty()) FUZZ_CHECK(m.param.find('/') == std::string::npos);
    FUZZ_CHECK(!m.name.empty());
    (void)t->get("plan_id");
    (void)t->get_u64("after_seq", 0);
    (void)t->get_u64("limit", 100);
    auto p = path_param(t->path, "/api/v3/plan/", "/messages");
    if (p) FUZZ_CHECK(!p->empty() && p->find('/') == std::string_view::npos);
  }
  fuzz_body(body, 1 << 20);
  fuzz_body(body, 64);
  (void)Auth::parse_token_file(body);
  return 0;
}
