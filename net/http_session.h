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
#include <string>
#include <string_view>

#include "net/router.h"
#include "net/sse_session.h"
#include "net/state.h"
#include "net/websocket_session.h"

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
  // GET /api/v3/socket/{plan_id} with an Upgrade: origin, identity and
  // after_seq checked here; the plan and where the stream starts are read on
  // the read pool; then start_websocket hands the socket to a
  // WebsocketSession.
  void upgrade(Request req, const RouteMatch& m, const Target& t);
  void start_websocket(const std::string& plan_id, const Identity& ident, Request req,
                       const Result<std::optional<PlanRecord>>& plan, const WsStart& start);
  // GET /plan/{plan_id}/events: identity and where to start (sse_start:
  // null after answering 422) checked here; the plan is read on the read
  // pool; then start_sse hands the socket to an SseSession.
  void events(Request req, const RouteMatch& m, const Target& t);
  std::optional<SseStart> sse_start(const Request& req, const Target& t);
  void start_sse(const std::string& plan_id, const std::string& user, SseStart start,
                 const Result<std::optional<PlanRecord>>& plan);
  // On the strand, before the socket leaves for a stream session: answers
  // and returns true when the plan is unknown or another user's, the server
  // is closing, or the plan has its cap of streams (`kind` names them).
  bool refuse_stream(const Result<std::optional<PlanRecord>>& plan, std::string_view user, const std::string& plan_id,
                     std::string_view kind);
  // Records the request in metrics and the access log when the socket
  // leaves for a stream session; returns the seconds it took.
  double log_handover(unsigned status, std::string_view what);
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
