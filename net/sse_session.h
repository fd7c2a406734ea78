// SseSession: GET /api/v3/plan/{plan_id}/events (and /api/v4/...), the
// plan's messages as Server-Sent Events (works with `curl -N` and the
// browser's EventSource).
//
// Stream (text/event-stream, the connection closes when the stream ends):
//   retry: <ms>                        once, first: the reconnection delay
//   id: <seq>                          persisted messages, in seq order,
//   event: <type>                      exactly once each: `data` is the
//   data: <envelope bytes>             stored envelope, the WebSocket's bytes
//   event: <type> / data: <frame>      live-only frames (streaming chunks): no id
//   : keep-alive                       a comment every --sse-keepalive-ms
// It starts after the `Last-Event-ID` header's seq (what EventSource sends
// when it reconnects), else `?after_seq=`, else 0 (everything), and is
// delivered by PlanStream (net/plan_stream.h): subscribe, replay, live; no
// gap, no duplicate.
//
// End: after the plan's terminal message (final_result_message,
// error_message, a plan_approval_response with approved=false) is written,
// or, for a plan whose record was already final when the stream began, once
// everything stored is written, unless `?follow=1` (then it stays open).
// A client whose queue (--ws-queue-frames) fills is closed (a slow consumer)
// and resumes with Last-Event-ID; so is one that does not take a write for
// --ws-idle-timeout-ms. Shutdown closes the stream (clients reconnect).
//
// Identity, isolation (404 for another user's plan) and the per-plan cap
// (--ws-max-per-plan, shared with WebSockets; 429 beyond) are checked by
// HttpSession before the stream starts, as for a WebSocket; EventSource
// cannot set headers, so `?token=` and (dev mode) `?user_id=` are accepted too.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <memory>
#include <string>

#include "net/plan_stream.h"

namespace agentd::net {

struct SseStart {
  uint64_t after_seq = 0;
  bool follow = false;      // stay open after the terminal message
  bool plan_final = false;  // the plan record was final when the stream began
};

class SseSession : public PlanStream, public Closable {
 public:
  SseSession(boost::asio::ip::tcp::socket&& socket, ServerState& st, std::string plan_id, SseStart start);
  ~SseSession() override;

  // Writes `head` (the HTTP response header, built by HttpSession) and the
  // retry hint, then streams. On the socket's strand.
  void run(std::string head);
  // Closable: any thread.
  void shutdown() override;

  // The event name of a frame: its JSON "type" ("message" when none).
  static std::string frame_type(std::string_view bytes);
  // Whether an envelope ends its plan (see above).
  static bool terminal(std::string_view bytes);

 private:
  void write_front(const Frame& f) override;
  void slow_consumer() override;
  void replay_failed(const Status& s) override;
  void on_sent(const Frame& f) override;
  void on_idle() override;

  void on_head(boost::system::error_code ec);
  void do_read();
  void keep_alive();
  void finish();  // the stream is over: close the socket

  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer write_timer_, keepalive_timer_;
  const SseStart start_;
  std::string head_;  // the HTTP header, then the event lines of the frame being written
  std::array<char, 256> rbuf_{};
  bool ending_ = false;    // close once the queue is written (a final plan caught up)
  bool finished_ = false;  // finish() ran
  bool counted_ = false;   // counted in sse_open
};

}  // namespace agentd::net
