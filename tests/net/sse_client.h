// A blocking Server-Sent Events client on a raw socket, for the SSE tests
// (tests/e2e/sse_e2e_test.cc, tests/net/sse_test.cc): every read has a
// deadline, so a server bug fails a test instead of hanging it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/net/client.h"

namespace agentd::test {

struct Event {
  std::string id, event, data;
  bool has_id = false;
};

// A blocking SSE client on a raw socket: every read has a deadline.
class SseClient {
 public:
  ~SseClient() { close(); }

  // Sends the request; reads the status line and headers. The status code
  // (0 on a connection failure).
  int open(int port, const std::string& target, const Headers& headers = {}, int recv_buffer = 0) {
    close();
    buf_.clear();
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (recv_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &recv_buffer, sizeof recv_buffer);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
    std::string req =
        "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\nAccept: text/event-stream\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    req += "\r\n";
    if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return 0;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(5000)) return 0;
    }
    head_ = buf_.substr(0, end + 2);
    buf_.erase(0, end + 4);
    return std::atoi(head_.c_str() + 9);
  }
  const std::string& head() const { return head_; }
  // The rest of a non-stream answer (an error's JSON body), up to the close.
  std::string rest(int timeout_ms = 5000) {
    while (fill(timeout_ms)) {
    }
    return buf_;
  }

  enum class Got { kEvent, kClosed, kTimeout };
  // The next event (comments and the retry field are kept in comments_ / retry_).
  Got next(Event* out, int timeout_ms = 10000) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      size_t end = buf_.find("\n\n");
      if (end != std::string::npos) {
        std::string block = buf_.substr(0, end);
        buf_.erase(0, end + 2);
        Event e;
        bool any = false;
        size_t at = 0;
        while (at <= block.size()) {
          size_t nl = block.find('\n', at);
          if (nl == std::string::npos) nl = block.size();
          std::string line = block.substr(at, nl - at);
          at = nl + 1;
          if (line.empty()) continue;
          if (line[0] == ':') {
            comments_.push_back(line);
            continue;
          }
          size_t colon = line.find(':');
          std::string field = line.substr(0, colon);
          std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
          if (!value.empty() && value[0] == ' ') value.erase(0, 1);
          if (field == "retry") retry_ = std::atoi(value.c_str());
          if (field == "id") e.id = value, e.has_id = true;
          if (field == "event") e.event = value;
          if (field == "data") e.data += value, any = true;
        }
        if (!any) continue;
        *out = std::move(e);
        return Got::kEvent;
      }
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count());
      if (left <= 0) return Got::kTimeout;
      int r = fill_status(left);
      if (r == 0) return Got::kTimeout;
      if (r < 0) return Got::kClosed;
    }
  }
  // Closes without reading what is left (a client that goes away).
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  const std::vector<std::string>& comments() const { return comments_; }
  int retry() const { return retry_; }

 private:
  bool fill(int timeout_ms) { return fill_status(timeout_ms) > 0; }
  // 1: read something; 0: timeout; -1: closed or error.
  int fill_status(int timeout_ms) {
    if (fd_ < 0) return -1;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r == 0) return 0;
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return -1;
    buf_.append(tmp, static_cast<size_t>(n));
    return 1;
  }

  int fd_ = -1;
  std::string buf_, head_;
  std::vector<std::string> comments_;
  int retry_ = 0;
};

}  // namespace agentd::test
