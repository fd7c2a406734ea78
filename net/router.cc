#include "net/router.h"

namespace agentd::net {

Response json_response(const Request& req, http::status status, std::string body) {
  Response res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response Router::handle(const Request& req) const {
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/healthz") {
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return json_response(req, http::status::method_not_allowed, R"({"detail":"Method Not Allowed"})");
    }
    return json_response(req, http::status::ok, R"({"status":"ok"})");
  }
  return json_response(req, http::status::not_found, R"({"detail":"Not Found"})");
}

}  // namespace agentd::net
