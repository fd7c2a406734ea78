#include "net/http_session.h"
#include "net/fail.h"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <algorithm>

#include "core/json.h"
#include "net/body.h"
#include "net/query.h"
#include "net/sse_session.h"
#include "net/websocket_session.h"

namespace agentd::net {

namespace beast = boost::beast;
namespace asio = boost::asio;

HttpSession::HttpSession(asio::ip::tcp::socket&& socket, ServerState& st)
    : st_(st), router_(st), stream_(std::move(socket)) {
  st_.metrics.open_connections.add(1);
}

HttpSession::~HttpSession() {
  st_.sessions.remove(this);
  st_.metrics.open_connections.add(-1);
  // The connection count follows the socket into a WebsocketSession.
  if (!upgraded_) st_.connections.fetch_sub(1);
}

void HttpSession::run() {
  st_.sessions.add(shared_from_this());
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
}

void HttpSession::shutdown() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    self->closing_ = true;
    // Idle (waiting for a request): closing the socket ends the pending read.
    if (!self->busy_) self->stream_.close();
  });
}

void HttpSession::do_read() {
  if (closing_) return do_close();
  busy_ = false;
  parser_.emplace();
  parser_->body_limit(st_.cfg.max_body_bytes);
  parser_->header_limit(static_cast<std::uint32_t>(st_.cfg.max_header_bytes));
  stream_.expires_after(st_.cfg.header_timeout);
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t n) { self->on_header(ec, n); });
}

// A request the parser rejected (bad method, target, version, header field
// or chunk: 400; header over the limit: 431) gets an answer before the
// close, like the other limits.
// End of stream, timeouts and resets just close.
bool HttpSession::malformed(beast::error_code ec) {
  return ec && ec.category() == http::make_error_code(http::error::bad_field).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message && ec != http::error::body_limit;
}

void HttpSession::bad_request(beast::error_code ec) {
  busy_ = true;
  start_ = std::chrono::steady_clock::now();
  route_ = "unmatched";
  closing_ = true;
  if (ec == http::error::header_limit) {
    return send(json_response(http::status::request_header_fields_too_large,
                              "{\"detail\":\"request header over the limit of " +
                                  std::to_string(st_.cfg.max_header_bytes) + " bytes\"}"),
                false);
  }
  send(json_response(http::status::bad_request, "{\"detail\":\"malformed request: " + ec.message() + "\"}"), false);
}

void HttpSession::on_header(beast::error_code ec, std::size_t) {
  // The parser rejects a Content-Length over body_limit while reading the
  // header: answer 413 for that; close on anything else (end of stream,
  // timeout, malformed header).
  if (malformed(ec)) return bad_request(ec);
  if (ec && ec != http::error::body_limit) return do_close();
  busy_ = true;
  start_ = std::chrono::steady_clock::now();
  const auto& h = parser_->get();
  method_ = std::string(h.method_string());
  // The access log never shows a ?token= secret (WebSocket clients in
  // --auth=token mode pass it there).
  log_target_ = redact_target(h.target());
  version_ = h.version();
  origin_.clear();
  if (auto it = h.find(http::field::origin); it != h.end()) origin_ = std::string(it->value());
  host_.clear();
  if (auto it = h.find(http::field::host); it != h.end()) host_ = std::string(it->value());
  std::string_view path = h.target();
  route_ = std::string(match_route(h.method(), path.substr(0, path.find('?'))).name);
  if (ec || (parser_->content_length() && *parser_->content_length() > st_.cfg.max_body_bytes)) {
    closing_ = true;  // the body stays unread
    return send(
        json_response(http::status::payload_too_large, "{\"detail\":\"request body is over the limit of " +
                                                           std::to_string(st_.cfg.max_body_bytes) + " bytes\"}"),
        false);
  }
  stream_.expires_after(st_.cfg.read_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void HttpSession::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::body_limit) {
    closing_ = true;
    return send(
        json_response(http::status::payload_too_large, "{\"detail\":\"request body is over the limit of " +
                                                           std::to_string(st_.cfg.max_body_bytes) + " bytes\"}"),
        false);
  }
  if (malformed(ec)) return bad_request(ec);
  if (ec) {
    fail(ec, "http read");
    return do_close();
  }
  stream_.expires_never();
  handle(parser_->release());
}

void HttpSession::handle(Request req) {
  auto t = parse_target(req.target());
  if (!t) {
    route_ = "unmatched";
    return send(error_response(t.status(), st_.cfg.retry_after_seconds), req.keep_alive());
  }
  RouteMatch m = match_route(req.method(), t->path);
  route_ = std::string(m.name);
  if (m.id == RouteId::kSocket && beast::websocket::is_upgrade(req)) return upgrade(std::move(req), m, *t);
  if (m.id == RouteId::kEvents && req.method() == http::verb::get) return events(std::move(req), m, *t);
  bool keep_alive = req.keep_alive();
  auto self = shared_from_this();
  router_.dispatch(m, req, *t, [self, keep_alive](Response res) {
    asio::post(self->stream_.get_executor(),
               [self, keep_alive, res = std::move(res)]() mutable { self->send(std::move(res), keep_alive); });
  });
}

namespace {

// Where a WebSocket starts, read on the read pool (MongoDB may answer).
struct WsFound {
  Result<std::optional<PlanRecord>> plan{std::optional<PlanRecord>()};
  WsStart start;
};

WsFound find_ws_start(ServerState& st, const std::string& plan_id, std::optional<uint64_t> asked,
                      const std::string& user) {
  WsFound f;
  f.plan = st.reader.get_plan(plan_id);
  if (!f.plan || !f.plan->has_value() || (*f.plan)->user_id != user) return f;
  const PlanRecord& rec = **f.plan;
  if (asked) {
    f.start.after_seq = *asked;
    return f;
  }
  // No after_seq (the MACAE UIs): from this user's cursor, else live; plus
  // the plan's open request (contract decision 5).
  f.start.track_cursor = true;
  auto last = st.deps.log->last_seq(plan_id);
  uint64_t live = std::max(rec.last_seq, last ? *last : 0);
  f.start.cursor = st.cursors.open(user, plan_id, live);
  // Several instances: a foreign plan's cursor is its owner's.
  if (st.deps.cluster) f.start.cursor_owner = st.deps.cluster->foreign_owner(plan_id);
  if (f.start.cursor_owner) {
    auto c = st.deps.cluster->remote_cursor(*f.start.cursor_owner, "open", user, plan_id, live);
    if (c) f.start.cursor = ResumeCursors::Ticket{c->start_seq, c->generation};
    if (!c) f.start.cursor_owner.reset();  // owner down: this instance's cursor
  }
  f.start.after_seq = f.start.cursor.start_seq;
  // An awaiting_* status is recorded with the request that asks: the
  // record's last_seq is that request.
  if (rec.status == PlanStatus::kAwaitingApproval || rec.status == PlanStatus::kAwaitingClarification) {
    f.start.open_request_seq = rec.last_seq;
  }
  return f;
}

}  // namespace

void HttpSession::upgrade(Request req, const RouteMatch& m, const Target& t) {
  // Browsers open cross-site WebSockets with the user's cookies and no CORS
  // check: only the server's own origin and --cors-origins may upgrade.
  // Clients that send no Origin (not browsers) are not concerned.
  if (!st_.origins.upgrade_allowed(origin_, host_)) {
    std::string detail =
        "WebSocket origin '" + origin_ + "' is not allowed: not this server's origin, not in --cors-origins";
    return send(json_response(http::status::forbidden, JsonObject().str("detail", detail).done()), false);
  }
  auto id = st_.auth.identify(req, true, t.get("user_id").value_or(""), t.get("token").value_or(""));
  if (!id) return send(error_response(id.status(), st_.cfg.retry_after_seconds), false);
  auto after = t.get_u64("after_seq", 0);
  if (!after) {
    return send(
        json_response(http::status::unprocessable_entity,
                      validation_detail({{{"query", "after_seq"}, after.status().message(), "type_error.integer"}})),
        false);
  }
  std::optional<uint64_t> asked;
  if (t.get("after_seq")) asked = *after;
  std::string plan_id = m.param;
  std::string user = id->user_id;  // a named copy: the second lambda below moves *id
  ServerState& st = st_;           // outlives every session (the server joins the read pool first)
  st_.run_read([&st, plan_id, asked, user] { return find_ws_start(st, plan_id, asked, user); },
               [self = shared_from_this(), plan_id, ident = std::move(*id),
                req = std::make_shared<Request>(std::move(req))](WsFound f) mutable {
                 asio::post(self->stream_.get_executor(),
                            [self, plan_id, ident = std::move(ident), req, f = std::move(f)]() mutable {
                              self->start_websocket(plan_id, ident, std::move(*req), f.plan, f.start);
                            });
               });
}

bool HttpSession::refuse_stream(const Result<std::optional<PlanRecord>>& plan, std::string_view user,
                                const std::string& plan_id, std::string_view kind) {
  if (!plan) {
    send(error_response(plan.status(), st_.cfg.retry_after_seconds), false);
    return true;
  }
  if (!plan->has_value() || (*plan)->user_id != user) {
    send(json_response(http::status::not_found, R"({"detail":"Plan not found"})"), false);
    return true;
  }
  if (closing_ || st_.stopping.load()) {
    auto res = json_response(http::status::service_unavailable, R"({"detail":"server shutting down"})");
    res.set(http::field::retry_after, std::to_string(st_.cfg.retry_after_seconds));
    send(std::move(res), false);
    return true;
  }
  // Refused before the handshake rather than closed after it: the v4 UI
  // reconnects every second after any close of an open socket, but gives up
  // on a refused handshake. The per-plan cap is shared by WebSockets and SSE
  // (one hub).
  if (st_.hub.subscribers(plan_id) >= st_.cfg.ws_max_per_plan) {
    std::string detail = "too many " + std::string(kind) + " for this plan; retry later";
    auto res = json_response(http::status::too_many_requests, JsonObject().str("detail", detail).done());
    res.set(http::field::retry_after, std::to_string(st_.cfg.retry_after_seconds));
    send(std::move(res), false);
    return true;
  }
  return false;
}

double HttpSession::log_handover(unsigned status, std::string_view what) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  st_.metrics.record_request(route_, status, secs);
  spdlog::info("{} {} {} {} {:.1f}ms", method_, log_target_, status, what, secs * 1000);
  return secs;
}

void HttpSession::start_websocket(const std::string& plan_id, const Identity& ident, Request req,
                                  const Result<std::optional<PlanRecord>>& plan, const WsStart& start) {
  if (refuse_stream(plan, ident.user_id, plan_id, "WebSockets")) return;
  upgraded_ = true;
  auto ws = std::make_shared<WebsocketSession>(stream_.release_socket(), st_, plan_id, ident.user_id, start,
                                               ident.ws_protocol);
  log_handover(101, "user=" + ident.user_id);
  ws->run(std::move(req));
}

void HttpSession::cors(Response& res) const {
  // CORS: a listed origin is reflected with credentials allowed; under "*"
  // any other origin gets "*" and no credentials (browsers then send no
  // cookies and hide the response from credentialed calls). With a list the
  // answer depends on Origin, so every response says so to caches.
  const OriginPolicy& cors = st_.origins;
  if (cors.has_list()) res.set(http::field::vary, "Origin");
  if (!origin_.empty()) {
    bool listed = cors.listed(origin_);
    if (listed || cors.any()) {
      if (listed) {
        res.set(http::field::access_control_allow_origin, origin_);
        res.set(http::field::access_control_allow_credentials, "true");
      } else {
        res.set(http::field::access_control_allow_origin, "*");
      }
      if (res.result() == http::status::no_content) {
        res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
        res.set(http::field::access_control_allow_headers, "Content-Type, Authorization, x-ms-client-principal-id");
        res.set(http::field::access_control_max_age, "600");
      }
    }
  }
}

void HttpSession::send(Response res, bool keep_alive) {
  cors(res);
  if (closing_ || st_.stopping.load()) keep_alive = false;
  res.version(version_);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  if (method_ == "HEAD") {
    // HEAD: the headers GET would send, Content-Length included, no body.
    auto length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  unsigned code = res.result_int();
  st_.metrics.record_request(route_, code, secs);
  spdlog::info("{} {} {} {}B {:.1f}ms", method_, log_target_, code, res.body().size(), secs * 1000);
  res_ = std::make_shared<Response>(std::move(res));
  stream_.expires_after(st_.cfg.read_timeout);
  http::async_write(stream_, *res_, [self = shared_from_this(), keep_alive](beast::error_code e, std::size_t n) {
    self->on_write(keep_alive, e, n);
  });
}

void HttpSession::on_write(bool keep_alive, beast::error_code ec, std::size_t) {
  res_.reset();
  if (ec || !keep_alive) return do_close();
  do_read();
}

void HttpSession::do_close() {
  busy_ = false;
  closing_ = true;
  if (draining_) return;
  draining_ = true;
  beast::error_code ec;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  // Drain what the client still sends (e.g. the body of a 413) for a moment:
  // closing with unread data would reset the connection and could destroy
  // the response before the client read it.
  stream_.expires_after(std::chrono::seconds(1));
  do_drain();
}

void HttpSession::do_drain() {
  buffer_.clear();
  stream_.async_read_some(buffer_.prepare(16 * 1024), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec) {  // the end the drain waits for (the peer closed, or the timeout)
      fail(ec, "http drain");
      return self->stream_.close();
    }
    self->do_drain();
  });
}

void HttpSession::events(Request req, const RouteMatch& m, const Target& t) {
  // EventSource cannot set headers: like a WebSocket, the query may carry
  // the identity (?token=, and ?user_id= in dev mode).
  auto id = st_.auth.identify(req, true, t.get("user_id").value_or(""), t.get("token").value_or(""));
  if (!id) {
    auto res = error_response(id.status(), st_.cfg.retry_after_seconds);
    if (st_.auth.mode() == AuthMode::kToken) res.set(http::field::www_authenticate, "Bearer");
    return send(std::move(res), false);
  }
  auto start = sse_start(req, t);
  if (!start) return;
  std::string plan_id = m.param;
  std::string user = id->user_id;
  ServerState& st = st_;  // outlives every session (the server joins the read pool first)
  st_.run_read([&st, plan_id] { return st.reader.get_plan(plan_id); },
               [self = shared_from_this(), plan_id, user, start = *start](Result<std::optional<PlanRecord>> p) {
                 asio::post(self->stream_.get_executor(), [self, plan_id, user, start, p = std::move(p)] {
                   self->start_sse(plan_id, user, start, p);
                 });
               });
}

std::optional<SseStart> HttpSession::sse_start(const Request& req, const Target& t) {
  auto invalid = [this](std::string_view where, std::string_view field, std::string_view msg, const char* type) {
    send(json_response(http::status::unprocessable_entity,
                       validation_detail({{{std::string(where), std::string(field)}, std::string(msg), type}})),
         false);
    return std::nullopt;
  };
  // Where to start: Last-Event-ID (an EventSource reconnecting) wins over
  // ?after_seq= (the URL it was opened with). Both are checked, whichever
  // is used.
  SseStart start;
  auto after = t.get_u64("after_seq", 0);
  if (!after) return invalid("query", "after_seq", after.status().message(), "type_error.integer");
  start.after_seq = *after;
  if (auto it = req.find("Last-Event-ID"); it != req.end()) {
    Target h;
    h.query.emplace("last-event-id", std::string(it->value()));
    auto v = h.get_u64("last-event-id", 0);
    if (!v) return invalid("header", "last-event-id", v.status().message(), "type_error.integer");
    start.after_seq = *v;
  }
  std::string follow = t.get("follow").value_or("0");
  if (follow != "0" && follow != "1" && follow != "true" && follow != "false") {
    return invalid("query", "follow", "value is not a valid boolean (0, 1, true, false)", "type_error.bool");
  }
  start.follow = follow == "1" || follow == "true";
  return start;
}

void HttpSession::start_sse(const std::string& plan_id, const std::string& user, SseStart start,
                            const Result<std::optional<PlanRecord>>& plan) {
  if (refuse_stream(plan, user, plan_id, "streams")) return;
  start.plan_final = is_final((*plan)->status);
  Response res{http::status::ok, 11};
  res.set(http::field::content_type, "text/event-stream; charset=utf-8");
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Accel-Buffering", "no");  // proxies: do not buffer the stream
  res.keep_alive(false);               // the stream ends with the connection
  cors(res);
  std::string head = "HTTP/1.1 200 OK\r\n";
  for (const auto& f : res.base()) head += std::string(f.name_string()) + ": " + std::string(f.value()) + "\r\n";
  head += "\r\n";
  log_handover(200, "event-stream user=" + user + " after_seq=" + std::to_string(start.after_seq));
  upgraded_ = true;
  auto sse = std::make_shared<SseSession>(stream_.release_socket(), st_, plan_id, start);
  sse->run(std::move(head));
}

}  // namespace agentd::net
