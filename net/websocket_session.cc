#include "net/websocket_session.h"

#include "net/client_frame.h"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "core/clock.h"
#include "core/json.h"

namespace agentd::net {

namespace beast = boost::beast;
namespace asio = boost::asio;
namespace websocket = beast::websocket;

WebsocketSession::WebsocketSession(asio::ip::tcp::socket&& socket, ServerState& st, std::string plan_id,
                                   std::string user_id, WsStart start, std::string protocol)
    : st_(st),
      ws_(std::move(socket)),
      close_timer_(ws_.get_executor()),
      plan_id_(std::move(plan_id)),
      user_id_(std::move(user_id)),
      protocol_(std::move(protocol)),
      start_(start) {
  st_.metrics.open_connections.add(1);
}

WebsocketSession::~WebsocketSession() {
  st_.sessions.remove(this);
  if (subscribed_) st_.hub.unsubscribe(plan_id_, this);
  if (accepted_) st_.metrics.ws_open.add(-1);
  st_.metrics.open_connections.add(-1);
  st_.connections.fetch_sub(1);
}

void WebsocketSession::run(Request req) {
  st_.sessions.add(shared_from_this());
  ws_.set_option(websocket::stream_base::timeout{
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(st_.cfg.header_timeout),
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(st_.cfg.ws_idle_timeout), true});
  ws_.read_message_max(st_.cfg.ws_max_frame_bytes);
  ws_.set_option(websocket::stream_base::decorator([proto = protocol_](websocket::response_type& res) {
    res.set(http::field::server, "agentd");
    if (!proto.empty()) res.set(http::field::sec_websocket_protocol, proto);
  }));
  auto r = std::make_shared<Request>(std::move(req));
  ws_.async_accept(*r, [self = shared_from_this(), r](beast::error_code ec) { self->on_accept(ec); });
}

void WebsocketSession::on_accept(beast::error_code ec) {
  if (ec) return finish();
  accepted_ = true;
  st_.metrics.ws_open.add(1);
  ws_.text(true);
  if (st_.stopping.load()) return close_with(websocket::close_code::going_away, "server shutting down");
  // Subscribe first, then replay: whatever commits from now on arrives live,
  // whatever committed before is in the replay read.
  Status s = st_.hub.subscribe(plan_id_, shared_from_this());
  if (!s.is_ok()) return close_with(websocket::close_code::policy_error, "too many sockets for this plan");
  subscribed_ = true;
  do_read();
  if (start_.open_request_seq == 0 || start_.open_request_seq > start_.after_seq) return start_replay(start_.after_seq);
  // The open request first, then the replay (which waits for it: a page
  // must see the question before what follows it).
  last_seq_ = start_.after_seq;
  replaying_ = true;
  replay_reading_ = true;
  opening_ = true;  // live frames meanwhile are gaps: the replay sends them after
  auto self = shared_from_this();
  uint64_t seq = start_.open_request_seq;
  st_.run_read([this, seq] { return st_.reader.read_messages(plan_id_, seq - 1, 1); },
               [self](Result<std::vector<StoredMessage>> r) {
                 asio::post(self->ws_.get_executor(),
                            [self, r = std::move(r)]() mutable { self->on_open_request(std::move(r)); });
               });
}

void WebsocketSession::on_open_request(Result<std::vector<StoredMessage>> r) {
  replay_reading_ = false;
  opening_ = false;
  if (closing_) return;
  if (!r) spdlog::warn("ws {}: open request {}: {}", plan_id_, start_.open_request_seq, r.status().message());
  if (r && r->size() == 1 && (*r)[0].seq == start_.open_request_seq) push(Frame{(*r)[0].seq, std::move((*r)[0].bytes)});
  do_replay();
}

// ---- client frames --------------------------------------------------------

void WebsocketSession::do_read() {
  ws_.async_read(rbuf_, [self = shared_from_this()](beast::error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void WebsocketSession::on_read(beast::error_code ec, std::size_t) {
  if (ec) {
    if (ec != websocket::error::closed && ec != asio::error::operation_aborted) {
      spdlog::debug("ws {} read: {}", plan_id_, ec.message());
    }
    return finish();
  }
  std::string text = beast::buffers_to_string(rbuf_.data());
  rbuf_.consume(rbuf_.size());
  if (!closing_) on_client_frame(text);
  do_read();
}

void WebsocketSession::reply(std::string type, std::string data_json) {
  // Replies count against the same bound as every other frame: a client
  // that sends and never reads is a slow consumer too.
  if (queue_.size() >= st_.cfg.ws_queue_frames) return close_slow_consumer();
  std::string f = "{\"type\":";
  append_json_string(&f, type);
  f += ",\"data\":" + data_json + ",\"plan_id\":";
  append_json_string(&f, plan_id_);
  f += ",\"timestamp\":";
  append_json_string(&f, now_rfc3339());
  f += '}';
  push(Frame{0, std::make_shared<const std::string>(std::move(f))});
}

void WebsocketSession::on_client_frame(std::string_view text) {
  auto f = parse_client_frame(text);
  if (!f) return reply("error_notification", error_notification_data(f.status()));
  switch (f->type) {
    case ClientFrame::Type::kPing: return reply("pong", "{\"server_time\":\"" + now_rfc3339() + "\"}");
    case ClientFrame::Type::kConnectionCheck:
      return reply("connection_status", "{\"status\":\"connected\",\"last_seq\":" + std::to_string(last_seq_) + "}");
    case ClientFrame::Type::kResume:
      // Forget what is queued but not on the wire; replay from the client's seq.
      while (queue_.size() > (writing_ ? 1u : 0u)) queue_.pop_back();
      queued_.store(queue_.size());
      return start_replay(f->after_seq);
    case ClientFrame::Type::kPlanApproval:
    case ClientFrame::Type::kClarification: break;
  }
  if (!st_.deps.plans) {
    return reply("error_notification", error_notification_data("runtime_not_configured", "runtime not configured"));
  }
  auto self = shared_from_this();
  if (f->type == ClientFrame::Type::kPlanApproval) {
    ApprovalRequest a;
    a.user_id = user_id_;
    a.m_plan_id = f->m_plan_id.empty() ? plan_id_ : f->m_plan_id;
    a.plan_id = plan_id_;
    a.approved = f->approved;
    a.feedback = f->feedback;
    st_.deps.plans->approve(std::move(a), [self](Result<std::string> r) {
      asio::post(self->ws_.get_executor(), [self, r = std::move(r)] {
        std::string d = JsonObject().str("status", r ? *r : r.status().to_string()).boolean("ok", r.is_ok()).done();
        self->reply("approval_processed", d);
      });
    });
    return;
  }
  ClarificationRequest c;
  c.user_id = user_id_;
  c.request_id = f->request_id;
  c.answer = f->answer;
  c.plan_id = plan_id_;
  st_.deps.plans->clarify(std::move(c), [self](Status s) {
    asio::post(self->ws_.get_executor(), [self, s = std::move(s)] {
      std::string d = JsonObject()
                          .str("status", s.is_ok() ? "clarification recorded" : s.to_string())
                          .boolean("ok", s.is_ok())
                          .done();
      self->reply("clarification_processed", d);
    });
  });
}

// ---- delivery -------------------------------------------------------------

void WebsocketSession::deliver(const Frame& frame) {
  if (dead_.load(std::memory_order_relaxed) || slow_.load(std::memory_order_relaxed)) return;
  size_t pending = posted_.fetch_add(1) + 1 + queued_.load(std::memory_order_relaxed);
  if (pending > st_.cfg.ws_queue_frames) {
    posted_.fetch_sub(1);
    if (!slow_.exchange(true)) {
      asio::post(ws_.get_executor(), [self = shared_from_this()] { self->close_slow_consumer(); });
    }
    return;
  }
  asio::post(ws_.get_executor(), [self = shared_from_this(), frame] {
    self->posted_.fetch_sub(1);
    self->on_frame(frame);
  });
}

void WebsocketSession::close_slow_consumer() {
  if (closing_) return;
  slow_.store(true);
  st_.metrics.ws_slow_closed.inc();
  close_with(websocket::close_code::try_again_later,
             "slow consumer: send queue full; reconnect with after_seq=" + std::to_string(written_seq_));
}

void WebsocketSession::on_frame(const Frame& f) {
  if (closing_) return;
  if (f.seq == 0) return push(f);
  if (f.seq <= last_seq_) return;  // already queued (by the replay)
  if (f.seq == last_seq_ + 1 && !opening_) {
    last_seq_ = f.seq;
    return push(f);
  }
  // A gap: the log has the missing seqs (they are committed); read them.
  skipped_live_ = std::max(skipped_live_, f.seq);
  if (!replaying_) start_replay(last_seq_);
}

void WebsocketSession::push(Frame f) {
  if (closing_) return;
  queue_.push_back(std::move(f));
  queued_.store(queue_.size(), std::memory_order_relaxed);
  if (!writing_) do_write();
}

void WebsocketSession::start_replay(uint64_t after_seq) {
  last_seq_ = after_seq;
  replaying_ = true;
  do_replay();
}

void WebsocketSession::do_replay() {
  if (!replaying_ || replay_reading_ || closing_) return;
  size_t room_half = st_.cfg.ws_queue_frames / 2;
  if (queue_.size() >= room_half) return;  // on_write resumes us
  size_t n = std::min(st_.cfg.ws_replay_page, room_half - queue_.size());
  if (n == 0) n = 1;
  replay_reading_ = true;
  replay_asked_ = n;
  uint64_t from = last_seq_;
  auto self = shared_from_this();
  st_.run_read([this, from, n] { return st_.reader.read_messages(plan_id_, from, n); },
               [self, from](Result<std::vector<StoredMessage>> r) {
                 asio::dispatch(self->ws_.get_executor(),
                                [self, from, r = std::move(r)]() mutable { self->on_replay(from, std::move(r)); });
               });
}

void WebsocketSession::on_replay(uint64_t from, Result<std::vector<StoredMessage>> r) {
  replay_reading_ = false;
  if (closing_) return;
  if (!r) {
    spdlog::warn("ws {}: replay after seq {}: {}", plan_id_, from, r.status().message());
    std::string reason = r.status().code() == Code::kUnavailable ? r.status().message() : "replay failed";
    if (reason.size() > 120) reason.resize(120);  // close reasons are at most 123 bytes
    return close_with(websocket::close_code::try_again_later, reason);
  }
  bool contiguous = true;
  for (auto& m : *r) {
    if (m.seq <= last_seq_) continue;  // came live meanwhile
    if (m.seq != last_seq_ + 1) {
      contiguous = false;
      break;
    }
    last_seq_ = m.seq;
    st_.metrics.ws_replayed.inc();
    push(Frame{m.seq, std::move(m.bytes)});
  }
  // A short page means we have read everything committed before the read
  // began; later commits arrive live (we subscribed before the first read),
  // except those dropped as gaps while we read: keep reading for them.
  if (contiguous && r->size() < replay_asked_ && skipped_live_ <= last_seq_) {
    replaying_ = false;
    return;
  }
  do_replay();
}

// ---- writes and close ------------------------------------------------------

void WebsocketSession::do_write() {
  // One write in flight: push() and on_write() both end here, and a replay
  // page completing inside on_write() may already have started one.
  if (writing_ || queue_.empty() || closing_) return;
  writing_ = true;
  ws_.async_write(asio::buffer(*queue_.front().bytes),
                  [self = shared_from_this()](beast::error_code ec, std::size_t n) { self->on_write(ec, n); });
}

void WebsocketSession::on_write(beast::error_code ec, std::size_t) {
  writing_ = false;
  if (ec) return finish();
  if (!queue_.empty()) {
    if (queue_.front().seq > written_seq_) {
      written_seq_ = queue_.front().seq;
      if (start_.track_cursor) st_.cursors.advance(user_id_, plan_id_, written_seq_, start_.cursor);
    }
    queue_.pop_front();
    queued_.store(queue_.size(), std::memory_order_relaxed);
    st_.metrics.ws_frames_sent.inc();
  }
  if (closing_) return do_close();
  if (replaying_) do_replay();
  do_write();
}

void WebsocketSession::shutdown() {
  asio::post(ws_.get_executor(), [self = shared_from_this()] {
    // Not accepted yet: on_accept sees `stopping` and closes with 1001
    // (the handshake timeout bounds a client that never completes it).
    if (!self->accepted_) return;
    self->close_with(websocket::close_code::going_away,
                     "server shutting down; reconnect with after_seq=" + std::to_string(self->written_seq_));
  });
}

void WebsocketSession::close_with(websocket::close_code code, std::string reason) {
  if (closing_) return;
  closing_ = true;
  dead_.store(true);
  if (subscribed_) {
    st_.hub.unsubscribe(plan_id_, this);
    subscribed_ = false;
  }
  // Free the queue now (a write in flight keeps only its own frame).
  while (queue_.size() > (writing_ ? 1u : 0u)) queue_.pop_back();
  queued_.store(queue_.size());
  close_reason_ = websocket::close_reason(code, reason);
  // A client that reads nothing never lets the close finish: cut it off.
  close_timer_.expires_after(std::chrono::seconds(5));
  close_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) beast::get_lowest_layer(self->ws_).close();
  });
  if (!writing_) do_close();
}

void WebsocketSession::do_close() {
  if (close_started_) return;
  close_started_ = true;
  ws_.async_close(close_reason_, [self = shared_from_this()](beast::error_code) {
    self->close_timer_.cancel();
    // The read loop ends with `closed` and calls finish().
  });
}

void WebsocketSession::finish() {
  if (finished_) return;
  finished_ = true;
  dead_.store(true);
  closing_ = true;
  close_timer_.cancel();
  if (subscribed_) {
    st_.hub.unsubscribe(plan_id_, this);
    subscribed_ = false;
  }
  queue_.clear();
  queued_.store(0);
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

}  // namespace agentd::net
