// Small blocking HTTP and WebSocket clients (Boost.Beast) for net's unit and
// end-to-end tests. Every read (HTTP response, WebSocket handshake and
// frame) runs asynchronously under a deadline and is cancelled when it
// passes, so a server bug fails a test instead of hanging it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace agentd::test {

using Headers = std::map<std::string, std::string>;

struct HttpReply {
  int status = 0;  // 0: no reply (connection failed / reset / timeout)
  std::string body;
  Headers headers;  // lower-case names
  std::string error;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// One request on a new connection.
HttpReply http_request(int port, const std::string& method, const std::string& target, const std::string& body = "",
                       const Headers& headers = {}, int timeout_ms = 10000);
inline HttpReply http_get(int port, const std::string& target, const Headers& h = {}) {
  return http_request(port, "GET", target, "", h);
}
inline HttpReply http_post(int port, const std::string& target, const std::string& body, const Headers& h = {}) {
  return http_request(port, "POST", target, body, h);
}

class WsClient {
 public:
  WsClient();
  ~WsClient();
  // Connects and upgrades; false with error() set on failure (e.g. a 404).
  bool connect(int port, const std::string& target, const Headers& headers = {}, int timeout_ms = 10000);
  const std::string& error() const { return error_; }
  int upgrade_status() const { return upgrade_status_; }

  struct Read {
    enum Kind { kFrame, kClosed, kTimeout, kError } kind = kError;
    std::string text;    // the frame
    int close_code = 0;  // kClosed
    std::string close_reason;
  };
  // Waits up to timeout_ms for the next frame. After kTimeout the connection
  // is closed (reads answer kError): wait with one read, not a loop of them.
  Read read(int timeout_ms = 5000);
  bool write(const std::string& text);
  void close();
  // Stops reading: the socket's receive buffer fills and the server's sends stall.
  void set_receive_buffer(int bytes);
  std::string selected_protocol() const { return protocol_; }

 private:
  void set_timeout(int ms);
  boost::asio::io_context ioc_;
  std::unique_ptr<boost::beast::websocket::stream<boost::asio::ip::tcp::socket>> ws_;
  boost::beast::flat_buffer buf_;
  std::string error_, protocol_;
  int upgrade_status_ = 0;
};

// The `seq` field of an envelope (0 if none).
uint64_t seq_of(const std::string& envelope);

}  // namespace agentd::test
