// ServerConfig: everything the HTTP/WebSocket server is told by main (each
// field has an agentd flag and an AGENTD_* variable, see agentd --help).
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "net/auth.h"

namespace agentd::net {

struct ServerConfig {
  boost::asio::ip::tcp::endpoint listen{boost::asio::ip::make_address("127.0.0.1"), 8000};
  unsigned threads = 2;       // io_context threads
  unsigned read_threads = 2;  // blocking MongoDB history reads (only with a HistoryReader)

  AuthMode auth = AuthMode::kDev;
  std::string auth_token_file;
  std::vector<std::string> cors_origins;  // "*" allows any origin

  size_t max_body_bytes = 1 << 20;  // larger -> 413
  size_t max_header_bytes = 16 << 10;
  size_t max_connections = 10000;                   // TCP connections (HTTP + WebSocket); beyond: closed at accept
  std::chrono::milliseconds header_timeout{10000};  // idle keep-alive + reading the request header
  std::chrono::milliseconds read_timeout{30000};    // reading the body

  size_t ws_max_per_plan = 2000;
  size_t ws_queue_frames = 4096;                     // per-socket send queue; full -> slow consumer, closed
  size_t ws_max_frame_bytes = 64 << 10;              // client -> server frames
  std::chrono::milliseconds ws_idle_timeout{60000};  // no traffic (pings answered count) -> closed
  size_t ws_replay_page = 512;                       // messages read per replay step
  // SSE streams (net/sse_session.h) share the WebSocket limits above
  // (per-plan cap, queue, idle timeout as the write timeout).
  std::chrono::milliseconds sse_keepalive{15000};  // a comment after this long without an event
  std::chrono::milliseconds sse_retry{2000};       // the `retry:` hint: EventSource's reconnection delay

  size_t plan_messages_cap = 10000;  // GET /plan: more -> truncated + next_after_seq
  size_t page_max = 10000;           // GET /plan/{id}/messages limit cap
  int retry_after_seconds = 2;
  std::string web_dir;  // the web page's files; empty = the copy embedded at build time (web/)
};

}  // namespace agentd::net
