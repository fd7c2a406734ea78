// WebsocketSession: GET /api/v3/socket/{plan_id}?after_seq=N (contract
// decision 5; architecture.md invariant 5).
//
// Delivery (net/plan_stream.h, shared with the SSE stream): the session subscribes to the hub first, then replays
// persisted messages with seq > after_seq from the merged read, page by page, and keeps `last_seq_`, the highest
// persisted seq queued. A persisted frame is queued only if its seq is last_seq_ + 1; an older one is skipped (already
// sent) and a newer one means a gap, which starts (or continues) a replay
// from last_seq_. So whichever of live and replay brings a message first,
// each seq is sent once and in order. Live-only frames (seq 0: streaming
// chunks, pongs, replies) are sent as they come and never replayed.
//
// Bounds: one write in flight; the send queue holds at most
// cfg.ws_queue_frames frames. Replay fills it only to half, then waits for
// writes; live frames that would overflow it mark the client a slow
// consumer: the queue is freed, the hub forgets it, and it is closed with
// 1013 and a reason telling it to reconnect with after_seq = the last seq it
// was sent. Shutdown closes with 1001 and the same hint.
//
// Without after_seq (what the MACAE UIs do, having loaded the plan with
// GET /plan) the session starts at the user's resume cursor, else live
// (net/resume_cursors.h), and first sends the plan's still-open approval or
// clarification request, if any (contract decision 5). Such a session moves
// the cursor as it writes.
//
// Client frames (JSON text): {"type":"ping"} -> pong; {"type":"resume",
// "after_seq":N}; {"type":"plan_approval_response","data":{approved,
// feedback, m_plan_id?}} and {"type":"user_clarification_response",
// "data":{request_id, answer}} -> the PlanService, like their REST twins.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <string>

#include "net/cluster.h"
#include "net/plan_stream.h"
#include "net/router.h"
#include "net/state.h"

namespace agentd::net {

// Where a session starts (decided at the upgrade, from the plan record).
struct WsStart {
  uint64_t after_seq = 0;            // replay everything after this seq, then live
  uint64_t open_request_seq = 0;     // an open request to send first (0: none), if <= after_seq
  bool track_cursor = false;         // no after_seq was given: keep the user's cursor
  ResumeCursors::Ticket cursor;      // with track_cursor
  std::optional<Peer> cursor_owner;  // several instances: the plan's owner keeps the cursor
};

class WebsocketSession : public PlanStream, public Closable {
 public:
  WebsocketSession(boost::asio::ip::tcp::socket&& socket, ServerState& st, std::string plan_id, std::string user_id,
                   WsStart start, std::string protocol);
  ~WebsocketSession() override;

  // Accepts the upgrade request (on the socket's strand).
  void run(Request req);
  // Closable: any thread; closes with 1001.
  void shutdown() override;

 private:
  std::shared_ptr<WebsocketSession> self() { return std::static_pointer_cast<WebsocketSession>(shared_from_this()); }
  void on_accept(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t);
  void on_client_frame(std::string_view text);

  // PlanStream's transport hooks (net/plan_stream.h), on the strand.
  void write_front(const Frame& f) override;
  void slow_consumer() override;
  void replay_failed(const Status& s) override;
  void on_sent(const Frame& f) override;
  void on_idle() override {}
  void on_replayed() override;

  void on_write(boost::beast::error_code ec, std::size_t);
  // Frees the queue, leaves the hub, closes with `code` and `reason`.
  void close_with(boost::beast::websocket::close_code code, std::string reason);
  void do_close();
  void finish();  // the connection is over

  void reply(std::string type, std::string data_json);  // a live-only frame
  void forward_to_owner(std::string target, std::string body, std::string reply_type);
  // Frees the queue and closes with 1013 and the resume hint (on the strand).
  void close_slow_consumer();
  // Several instances: moves the owner's cursor (at most every 200 ms).
  void advance_remote_cursor();

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer rbuf_;
  boost::asio::steady_timer close_timer_;
  boost::asio::steady_timer advance_timer_;  // with start_.cursor_owner
  bool advance_armed_ = false;
  const std::string user_id_, protocol_;
  const WsStart start_;

  // Strand-only state (the queue and the delivery are PlanStream's).
  bool accepted_ = false;
  bool closing_ = false;
  bool close_started_ = false;
  bool finished_ = false;
  boost::beast::websocket::close_reason close_reason_;
};

}  // namespace agentd::net
