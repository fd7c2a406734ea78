#include "tests/net/client.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>

#include <cctype>
#include <chrono>
#include <cstring>

namespace agentd::test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = boost::asio::ip::tcp;

namespace {

void socket_timeouts(tcp::socket& s, int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Runs one asynchronous operation on `ioc` for at most `ms`: its error, or
// timed_out after closing the socket. (A blocking read cannot time out: when
// SO_RCVTIMEO fires, Asio waits for readability in poll() without a limit.
// Cancelling is not enough either: a WebSocket read busy answering a ping
// when cancel() runs starts its next socket read afterwards and waits on.)
template <class Initiate>
beast::error_code with_deadline(boost::asio::io_context& ioc, tcp::socket& s, int ms, Initiate initiate) {
  beast::error_code result;
  bool done = false;
  initiate([&](beast::error_code ec, auto&&...) {
    result = ec;
    done = true;
  });
  ioc.restart();
  ioc.run_for(std::chrono::milliseconds(ms));
  if (done) return result;
  beast::error_code ignored;
  s.close(ignored);  // every pending and later operation fails
  ioc.restart();
  ioc.run();  // the operation's handler
  return boost::asio::error::timed_out;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

HttpReply http_request(int port, const std::string& method, const std::string& target, const std::string& body,
                       const Headers& headers, int timeout_ms) {
  HttpReply out;
  boost::asio::io_context ioc;
  tcp::socket sock(ioc);
  beast::error_code ec;
  sock.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)), ec);
  if (ec) {
    out.error = "connect: " + ec.message();
    return out;
  }
  socket_timeouts(sock, timeout_ms);
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "POST") {
    if (req.find(http::field::content_type) == req.end()) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
  }
  req.keep_alive(false);
  ec = with_deadline(ioc, sock, timeout_ms, [&](auto h) { http::async_write(sock, req, h); });
  if (ec && ec != boost::asio::error::connection_reset && ec != boost::asio::error::broken_pipe) {
    out.error = "write: " + ec.message();
    return out;
  }
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.skip(method == "HEAD");  // a HEAD response has no body, whatever its Content-Length
  parser.body_limit(1ull << 30);
  ec = with_deadline(ioc, sock, timeout_ms, [&](auto h) { http::async_read(sock, buf, parser, h); });
  if (ec) {
    out.error = "read: " + ec.message();
    return out;
  }
  auto& res = parser.get();
  out.status = res.result_int();
  out.body = res.body();
  for (const auto& f : res) out.headers[lower(std::string(f.name_string()))] = std::string(f.value());
  return out;
}

WsClient::WsClient() = default;
WsClient::~WsClient() { close(); }

void WsClient::set_timeout(int ms) { socket_timeouts(ws_->next_layer(), ms); }

bool WsClient::connect(int port, const std::string& target, const Headers& headers, int timeout_ms) {
  ws_ = std::make_unique<websocket::stream<tcp::socket>>(ioc_);
  beast::error_code ec;
  ws_->next_layer().connect(
      tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)), ec);
  if (ec) {
    error_ = "connect: " + ec.message();
    return false;
  }
  set_timeout(timeout_ms);
  ws_->read_message_max(64ull << 20);
  ws_->set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
    for (const auto& [k, v] : headers) req.set(k, v);
  }));
  websocket::response_type res;
  std::string host = "127.0.0.1:" + std::to_string(port);
  ec = with_deadline(ioc_, ws_->next_layer(), timeout_ms, [&](auto h) { ws_->async_handshake(res, host, target, h); });
  upgrade_status_ = res.result_int();
  if (ec) {
    error_ = "handshake: " + ec.message() + " (HTTP " + std::to_string(upgrade_status_) + ")";
    return false;
  }
  if (auto it = res.find(http::field::sec_websocket_protocol); it != res.end()) protocol_ = std::string(it->value());
  return true;
}

WsClient::Read WsClient::read(int timeout_ms) {
  Read r;
  if (!ws_) return r;
  set_timeout(timeout_ms);
  beast::error_code ec;
  buf_.clear();
  ec = with_deadline(ioc_, ws_->next_layer(), timeout_ms, [&](auto h) { ws_->async_read(buf_, h); });
  if (!ec) {
    r.kind = Read::kFrame;
    r.text = beast::buffers_to_string(buf_.data());
    return r;
  }
  if (ec == websocket::error::closed) {
    r.kind = Read::kClosed;
    r.close_code = ws_->reason().code;
    r.close_reason = std::string(ws_->reason().reason.c_str());
    return r;
  }
  if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again ||
      ec == boost::asio::error::timed_out) {
    r.kind = Read::kTimeout;  // the connection is closed: later reads fail
    return r;
  }
  r.kind = Read::kError;
  r.text = ec.message();
  return r;
}

bool WsClient::write(const std::string& text) {
  if (!ws_) return false;
  beast::error_code ec;
  ws_->text(true);
  ws_->write(boost::asio::buffer(text), ec);
  return !ec;
}

void WsClient::set_receive_buffer(int bytes) {
  if (!ws_) return;
  ::setsockopt(ws_->next_layer().native_handle(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

void WsClient::close() {
  if (!ws_) return;
  beast::error_code ec;
  ws_->next_layer().shutdown(tcp::socket::shutdown_both, ec);
  ws_->next_layer().close(ec);
  ws_.reset();
}

uint64_t seq_of(const std::string& envelope) {
  static constexpr std::string_view kPrefix = "{\"seq\":";
  if (envelope.compare(0, kPrefix.size(), kPrefix) != 0) return 0;
  return std::strtoull(envelope.c_str() + kPrefix.size(), nullptr, 10);
}

}  // namespace agentd::test
