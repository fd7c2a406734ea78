// FaultProxy: a loopback TCP proxy that injects faults between a client and
// a server (issue 9: agentd <-> MongoDB/FerretDB). Every accepted connection
// gets its own upstream connection to the target; bytes are forwarded both
// ways, subject to the current faults:
//
//   latency(ms)    each chunk waits this long before it is forwarded
//   blackhole(ms)  for this long nothing is forwarded and new connections are
//                  not connected upstream (like a dropped route: TCP keeps the
//                  bytes, they arrive when the hole ends, unless a peer gives
//                  up first)
//   reset()        every open connection is reset (RST to both peers)
//   refuse(on)     new connections are accepted and closed at once
//   clear()        no latency, no black hole, no refusal
//
// Threads: one io_context thread of its own. Control calls are thread-safe
// (atomics, or posted to the io thread); stats() is a snapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"

namespace agentd::faultproxy {

struct Stats {
  uint64_t accepted = 0;    // connections accepted
  uint64_t open = 0;        // currently open
  uint64_t refused = 0;     // closed at accept (refuse mode or upstream unreachable)
  uint64_t resets = 0;      // connections reset by reset()
  uint64_t bytes_up = 0;    // client -> target
  uint64_t bytes_down = 0;  // target -> client
};

class FaultProxy {
 public:
  // Listens on listen_host:listen_port (0 = any free port) and forwards to
  // target_host:target_port. kUnavailable when the listen address is taken.
  static Result<std::unique_ptr<FaultProxy>> start(const std::string& listen_host, uint16_t listen_port,
                                                   const std::string& target_host, uint16_t target_port);
  ~FaultProxy();  // stop()
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  uint16_t port() const;

  void set_latency(std::chrono::milliseconds ms);
  void blackhole(std::chrono::milliseconds ms);
  void reset();
  void refuse(bool on);
  void clear();
  Stats stats() const;

  // Closes the listener and every connection; joins the io thread.
  void stop();

  struct Impl;

 private:
  explicit FaultProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "host:port" -> host, port; kInvalidArgument otherwise.
Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& s);

}  // namespace agentd::faultproxy
