// HttpSession: one HTTP/1.1 connection on its own strand. Reads a request
// (header timeout, then body timeout and limit), routes it, writes the
// response, repeats while keep-alive; hands WebSocket upgrades of
// /api/v3/socket/{plan_id} to a WebsocketSession. One request in flight.
#pragma once

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <memory>
#include <optional>

#include "net/router.h"
#include "net/state.h"

namespace agentd::net {

class HttpSession : public std::enable_shared_from_this<HttpSession>, public Closable {
 public:
  HttpSession(boost::asio::ip::tcp::socket&& socket, ServerState& st);
  ~HttpSession() override;
  void run();
  void shutdown() override;

 private:
  void do_read();
  void on_header(boost::beast::error_code ec, std::size_t);
  static bool malformed(boost::beast::error_code ec);
  void bad_request(boost::beast::error_code ec);
  void on_read(boost::beast::error_code ec, std::size_t);
  void handle(Request req);
  void upgrade(Request req, const RouteMatch& m, const Target& t);
  // GET /plan/{plan_id}/events: checks, then hands the socket to an SseSession.
  void events(Request req, const RouteMatch& m, const Target& t);
  // Sets the CORS headers of `res` for the request's Origin.
  void cors(Response& res) const;
  // On the strand: finishes the response (CORS, keep-alive, log) and writes it.
  void send(Response res, bool keep_alive);
  void on_write(bool keep_alive, boost::beast::error_code ec, std::size_t);
  void do_close();
  void do_drain();

  ServerState& st_;
  Router router_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Response> res_;
  // The request being answered (for the access log and CORS); log_target_
  // is the target with ?token= values redacted (redact_target).
  std::string method_, log_target_, origin_, host_, route_;
  unsigned version_ = 11;
  std::chrono::steady_clock::time_point start_;
  bool busy_ = false;      // a request is being handled or written
  bool closing_ = false;   // close after the in-flight response
  bool upgraded_ = false;  // the socket went to a WebsocketSession
  bool draining_ = false;  // do_close ran
};

}  // namespace agentd::net
