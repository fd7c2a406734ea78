// agentd-faultproxy (tools/faultproxy): bytes pass intact both ways, and each
// fault does what it says — latency delays, a black hole holds bytes and
// connections until it ends, reset() resets, refuse() refuses — against a
// local echo server. Plus the binary's stdin control channel.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/reliability/raw_socket.h"
#include "tests/support/process.h"
#include "tools/faultproxy/faultproxy.h"

using namespace agentd;
using namespace agentd::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Echoes every byte back, one thread per connection (a handful per test).
class EchoServer {
 public:
  EchoServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    REQUIRE(::listen(fd_, 64) == 0);
    accept_thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        conn_fds_.push_back(c);
        workers_.emplace_back([c] {
          char buf[65536];
          for (;;) {
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) break;
            ssize_t off = 0;
            while (off < n) {
              ssize_t w = ::send(c, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
              if (w <= 0) return;
              off += w;
            }
          }
        });
      }
    });
  }
  ~EchoServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    accept_thread_.join();
    for (int c : conn_fds_) ::shutdown(c, SHUT_RDWR);
    for (auto& w : workers_) w.join();
    for (int c : conn_fds_) ::close(c);
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::vector<int> conn_fds_;  // accept thread only, until the destructor
  std::vector<std::thread> workers_;
};

std::unique_ptr<faultproxy::FaultProxy> start_proxy(uint16_t target) {
  auto p = faultproxy::FaultProxy::start("127.0.0.1", 0, "127.0.0.1", target);
  REQUIRE_MESSAGE(p.is_ok(), p.status().to_string());
  return std::move(*p);
}

// Sends `msg` and reads until as many bytes came back (or a timeout/close).
std::string round_trip(RawSocket& s, const std::string& msg) {
  if (!s.send(msg)) return {};
  std::string got;
  while (got.size() < msg.size()) {
    std::string part = s.recv_some();
    if (part.empty()) break;
    got += part;
  }
  return got;
}

long ms_since(Clock::time_point t) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

// An echo server behind a proxy, and a client connected through it.
struct ProxiedConnection {
  ProxiedConnection() { REQUIRE(s.connect(proxy->port())); }
  EchoServer echo;
  std::unique_ptr<faultproxy::FaultProxy> proxy = start_proxy(echo.port());
  RawSocket s;
};

}  // namespace

TEST_CASE("bytes pass intact both ways, on many connections") {
  EchoServer echo;
  auto proxy = start_proxy(echo.port());
  std::mt19937 rng(7);
  std::string blob(1 << 20, '\0');
  for (auto& c : blob) c = static_cast<char>(rng());
  for (int i = 0; i < 4; ++i) {
    RawSocket s;
    REQUIRE(s.connect(proxy->port()));
    // Sent in pieces so that the echo never has to buffer the whole megabyte.
    std::string back;
    for (size_t off = 0; off < blob.size(); off += 65536) back += round_trip(s, blob.substr(off, 65536));
    CHECK(back == blob);
  }
  auto st = proxy->stats();
  CHECK(st.accepted == 4);
  CHECK(st.bytes_up == 4 * blob.size());
  CHECK(st.bytes_down == 4 * blob.size());
}

TEST_CASE_FIXTURE(ProxiedConnection, "latency delays each chunk; clear() removes it") {
  CHECK(round_trip(s, "warm") == "warm");
  proxy->set_latency(150ms);
  auto t = Clock::now();
  CHECK(round_trip(s, "slow") == "slow");
  CHECK(ms_since(t) >= 290);  // both directions
  proxy->clear();
  t = Clock::now();
  CHECK(round_trip(s, "fast") == "fast");
  CHECK(ms_since(t) < 250);
}

TEST_CASE_FIXTURE(ProxiedConnection, "a black hole holds bytes and new connections until it ends; nothing is lost") {
  CHECK(round_trip(s, "before") == "before");
  proxy->blackhole(600ms);
  auto t = Clock::now();
  CHECK(round_trip(s, "during") == "during");
  CHECK(ms_since(t) >= 500);
  // A connection made during the hole is connected upstream after it.
  proxy->blackhole(400ms);
  RawSocket late;
  REQUIRE(late.connect(proxy->port()));
  t = Clock::now();
  CHECK(round_trip(late, "late") == "late");
  CHECK(ms_since(t) >= 300);
  CHECK(round_trip(s, "after") == "after");
}

TEST_CASE_FIXTURE(ProxiedConnection, "reset() resets open connections; refuse() closes new ones; both recover") {
  CHECK(round_trip(s, "x") == "x");
  proxy->reset();
  CHECK(s.wait_closed(2000));
  CHECK(proxy->stats().resets == 1);
  proxy->refuse(true);
  RawSocket r;
  REQUIRE(r.connect(proxy->port()));
  CHECK(r.wait_closed(2000));
  CHECK(proxy->stats().refused >= 1);
  proxy->refuse(false);
  RawSocket ok;
  REQUIRE(ok.connect(proxy->port()));
  CHECK(round_trip(ok, "back") == "back");
  CHECK(proxy->stats().open == 1);
}

TEST_CASE("an unreachable target: the client's connection is closed, the proxy keeps running") {
  int port = free_port();  // nothing listens there
  auto proxy = start_proxy(static_cast<uint16_t>(port));
  RawSocket s;
  REQUIRE(s.connect(proxy->port()));
  CHECK(s.wait_closed(3000));
  CHECK(proxy->stats().refused == 1);
  CHECK(proxy->stats().open == 0);
}

TEST_CASE("the binary: stdin commands answer one line each") {
  const char* dir = std::getenv("AGENTD_BINARY_DIR");
  REQUIRE(dir);
  EchoServer echo;
  std::string tmp = make_temp_dir("faultproxy");
  int port = free_port();
  // Commands through a FIFO on stdin, answers to the log.
  std::string fifo = tmp + "/ctl";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::string cmd = std::string(dir) +
                    "/tools/faultproxy/agentd-faultproxy --listen 127.0.0.1:" + std::to_string(port) +
                    " --target 127.0.0.1:" + std::to_string(echo.port()) + " < " + fifo;
  ChildProcess p = ChildProcess::spawn({"/bin/sh", "-c", "exec " + cmd}, tmp + "/out");
  FILE* ctl = std::fopen(fifo.c_str(), "w");
  REQUIRE(ctl);
  RawSocket s;
  bool connected = false;
  for (int i = 0; i < 100 && !connected; ++i) {
    connected = s.connect(port, 1000);
    if (!connected) std::this_thread::sleep_for(20ms);
  }
  REQUIRE(connected);
  CHECK(round_trip(s, "hi") == "hi");
  std::fputs("latency 100\nstats\nbogus\nclear\nquit\n", ctl);
  std::fclose(ctl);
  int st = p.wait(5000);
  CHECK(st == 0);
  std::string out = read_file(tmp + "/out");
  CHECK_MESSAGE(out.find("listening on 127.0.0.1:" + std::to_string(port)) != std::string::npos, out);
  CHECK_MESSAGE(out.find("ok latency 100") != std::string::npos, out);
  CHECK_MESSAGE(out.find("ok accepted=1 open=1") != std::string::npos, out);
  CHECK_MESSAGE(out.find("error unknown command: bogus") != std::string::npos, out);
  CHECK_MESSAGE(out.find("ok quit") != std::string::npos, out);
  std::filesystem::remove_all(tmp);
}
