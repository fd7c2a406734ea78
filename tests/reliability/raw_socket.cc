#include "tests/reliability/raw_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <utility>

namespace agentd::test {

RawSocket::~RawSocket() { close(); }

void RawSocket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawSocket::connect(int port, int timeout_ms) {
  close();
  closed_ = false;
  buf_.clear();
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close();
    return false;
  }
  return true;
}

bool RawSocket::send(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string RawSocket::recv_some() {
  if (!buf_.empty()) return std::exchange(buf_, {});
  char tmp[65536];
  ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
  if (n > 0) return std::string(tmp, static_cast<size_t>(n));
  if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed_ = true;
  return {};
}

bool RawSocket::wait_closed(int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
    recv_some();
    if (closed_) return true;
  }
  return false;
}

bool RawSocket::fill(size_t n) {
  while (buf_.size() < n) {
    char tmp[65536];
    ssize_t got = ::recv(fd_, tmp, sizeof tmp, 0);
    if (got <= 0) {
      if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<size_t>(got));
  }
  return true;
}

bool RawSocket::ws_upgrade(const std::string& target) {
  std::string req = "GET " + target +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  if (!send(req)) return false;
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    size_t before = buf_.size();
    if (!fill(before + 1)) return false;
  }
  bool ok = buf_.compare(0, 12, "HTTP/1.1 101") == 0;
  buf_.erase(0, end + 4);
  return ok;
}

bool RawSocket::ws_send(uint8_t opcode, const std::string& payload, bool fin) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | (opcode & 0x0f)));
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(0x80 | payload.size()));
  } else if (payload.size() < 65536) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size() & 0xff));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xff));
  }
  f.append(4, '\0');  // masking key 0: the payload goes as is
  f += payload;
  return send(f);
}

RawSocket::Frame RawSocket::ws_read() {
  Frame fr;
  if (!fill(2)) return fr;
  uint8_t b0 = static_cast<uint8_t>(buf_[0]), b1 = static_cast<uint8_t>(buf_[1]);
  size_t len = b1 & 0x7f, hdr = 2;
  if (len == 126) {
    if (!fill(4)) return fr;
    len = (static_cast<uint8_t>(buf_[2]) << 8) | static_cast<uint8_t>(buf_[3]);
    hdr = 4;
  } else if (len == 127) {
    if (!fill(10)) return fr;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<uint8_t>(buf_[2 + i]);
    hdr = 10;
  }
  if ((b1 & 0x80) != 0 || len > (64u << 20)) return fr;  // servers do not mask
  if (!fill(hdr + len)) return fr;
  fr.ok = true;
  fr.opcode = b0 & 0x0f;
  fr.payload = buf_.substr(hdr, len);
  buf_.erase(0, hdr + len);
  return fr;
}

int RawSocket::Frame::close_code() const {
  if (opcode != 8 || payload.size() < 2) return 0;
  return (static_cast<uint8_t>(payload[0]) << 8) | static_cast<uint8_t>(payload[1]);
}

}  // namespace agentd::test
