// Router: maps an HTTP request to a handler and produces the response.
// Handlers run on the connection's strand and must not block on I/O.
#pragma once

#include <boost/beast/http.hpp>

#include <string>

namespace agentd::net {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

class Router {
 public:
  Response handle(const Request& req) const;
};

// A JSON response with the request's version and keep-alive.
Response json_response(const Request& req, http::status status, std::string body);

}  // namespace agentd::net
