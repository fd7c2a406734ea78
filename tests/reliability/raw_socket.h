// A raw loopback TCP client for hostile-input tests: bytes exactly as
// written (partial headers, hand-built WebSocket frames), every call bounded
// by SO_RCVTIMEO/SO_SNDTIMEO.
#pragma once

#include <cstdint>
#include <string>

namespace agentd::test {

class RawSocket {
 public:
  RawSocket() = default;
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  ~RawSocket();

  // Connects to 127.0.0.1:port; false on failure.
  bool connect(int port, int timeout_ms = 5000);
  // Sends everything; false on error (e.g. the server closed).
  bool send(const std::string& bytes);
  // Reads what is available, waiting up to the timeout: "" and closed() on
  // end of stream or reset, "" and !closed() on timeout.
  std::string recv_some();
  // Waits until the peer closes (true) or `ms` pass (false), discarding data.
  bool wait_closed(int ms);
  bool closed() const { return closed_; }
  void close();
  int fd() const { return fd_; }

  // WebSocket: the upgrade (true on 101); frames are masked (key 0).
  bool ws_upgrade(const std::string& target);
  bool ws_send(uint8_t opcode, const std::string& payload, bool fin = true);
  struct Frame {
    bool ok = false;  // false: timeout, closed or malformed
    uint8_t opcode = 0;
    std::string payload;
    int close_code() const;  // opcode 8
  };
  Frame ws_read();

 private:
  bool fill(size_t n);  // until buf_ holds n bytes
  int fd_ = -1;
  bool closed_ = false;
  std::string buf_;
};

}  // namespace agentd::test
