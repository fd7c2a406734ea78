#include "net/websocket_session.h"
#include "net/fail.h"

#include "net/client_frame.h"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "core/clock.h"
#include "core/json.h"
#include "net/cluster.h"

namespace agentd::net {

namespace beast = boost::beast;
namespace asio = boost::asio;
namespace websocket = beast::websocket;

WebsocketSession::WebsocketSession(asio::ip::tcp::socket&& socket, ServerState& st, std::string plan_id,
                                   std::string user_id, WsStart start, std::string protocol)
    : PlanStream(st, std::move(plan_id), socket.get_executor(), st.cfg.ws_queue_frames),
      ws_(std::move(socket)),
      close_timer_(ws_.get_executor()),
      advance_timer_(ws_.get_executor()),
      user_id_(std::move(user_id)),
      protocol_(std::move(protocol)),
      start_(start) {
  st_.metrics.open_connections.add(1);
}

WebsocketSession::~WebsocketSession() {
  st_.sessions.remove(this);
  if (accepted_) st_.metrics.ws_open.add(-1);
  st_.metrics.open_connections.add(-1);
  st_.connections.fetch_sub(1);
}

void WebsocketSession::run(Request req) {
  st_.sessions.add(self());
  ws_.set_option(websocket::stream_base::timeout{
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(st_.cfg.header_timeout),
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(st_.cfg.ws_idle_timeout), true});
  ws_.read_message_max(st_.cfg.ws_max_frame_bytes);
  ws_.set_option(websocket::stream_base::decorator([proto = protocol_](websocket::response_type& res) {
    res.set(http::field::server, "agentd");
    if (!proto.empty()) res.set(http::field::sec_websocket_protocol, proto);
  }));
  auto r = std::make_shared<Request>(std::move(req));
  ws_.async_accept(*r, [self = self(), r](beast::error_code ec) { self->on_accept(ec); });
}

void WebsocketSession::on_accept(beast::error_code ec) {
  if (ec) {
    fail(ec, "ws accept");
    return finish();
  }
  accepted_ = true;
  st_.metrics.ws_open.add(1);
  ws_.text(true);
  if (st_.stopping.load()) return close_with(websocket::close_code::going_away, "server shutting down");
  do_read();
  // Subscribe, then replay (with the plan's open request first, if the
  // start is past it: contract decision 5).
  Status s = start(start_.after_seq, start_.open_request_seq);
  if (!s.is_ok()) return close_with(websocket::close_code::policy_error, "too many sockets for this plan");
}

// ---- client frames --------------------------------------------------------

void WebsocketSession::do_read() {
  ws_.async_read(rbuf_, [self = self()](beast::error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void WebsocketSession::on_read(beast::error_code ec, std::size_t) {
  if (ec) {
    fail(ec, "ws read");
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
  if (queue_size() >= st_.cfg.ws_queue_frames) return close_slow_consumer();
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
      return reply("connection_status", "{\"status\":\"connected\",\"last_seq\":" + std::to_string(queued_seq()) + "}");
    case ClientFrame::Type::kResume:
      // Forget what is queued but not on the wire; replay from the client's seq.
      return restart(f->after_seq);
    case ClientFrame::Type::kPlanApproval:
    case ClientFrame::Type::kClarification: break;
  }
  if (!st_.deps.plans) {
    return reply("error_notification", error_notification_data("runtime_not_configured", "runtime not configured"));
  }
  auto self = this->self();
  if (f->type == ClientFrame::Type::kPlanApproval) {
    ApprovalRequest a;
    a.user_id = user_id_;
    a.m_plan_id = f->m_plan_id.empty() ? plan_id_ : f->m_plan_id;
    a.plan_id = plan_id_;
    a.approved = f->approved;
    a.feedback = f->feedback;
    std::string forwarded = JsonObject()
                                .str("m_plan_id", a.m_plan_id)
                                .str("plan_id", a.plan_id)
                                .boolean("approved", a.approved)
                                .str("feedback", a.feedback)
                                .done();
    st_.deps.plans->approve(std::move(a), [self, forwarded](Result<std::string> r) {
      if (!r && r.status().code() == Code::kNotFound && self->st_.deps.cluster) {
        return self->forward_to_owner("/api/v3/plan_approval", forwarded, "approval_processed");
      }
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
  std::string forwarded =
      JsonObject().str("request_id", c.request_id).str("answer", c.answer).str("plan_id", c.plan_id).done();
  st_.deps.plans->clarify(std::move(c), [self, forwarded](Status s) {
    if (s.code() == Code::kNotFound && self->st_.deps.cluster) {
      return self->forward_to_owner("/api/v3/user_clarification", forwarded, "clarification_processed");
    }
    asio::post(self->ws_.get_executor(), [self, s = std::move(s)] {
      std::string d = JsonObject()
                          .str("status", s.is_ok() ? "clarification recorded" : s.to_string())
                          .boolean("ok", s.is_ok())
                          .done();
      self->reply("clarification_processed", d);
    });
  });
}

// Several instances: the frame's plan is another instance's; its REST form
// goes to the owner as this user (net/cluster.h), and the answer comes back
// as `reply_type` {status, ok}.
void WebsocketSession::forward_to_owner(std::string target, std::string body, std::string reply_type) {
  auto self = this->self();
  asio::post(st_.read_pool,
             [self, target = std::move(target), body = std::move(body), reply_type = std::move(reply_type)] {
               Cluster& cluster = *self->st_.deps.cluster;
               PlanOwner o = cluster.owner_of(self->plan_id_);
               std::string status = "plan not found";
               bool ok = false;
               if (o.kind == PlanOwner::Kind::kPeer) {
                 auto r = cluster.call_owner(o.peer, boost::beast::http::verb::post, target, body, "application/json",
                                             self->user_id_);
                 cluster.forwarded(r ? "ok" : "unreachable").inc();
                 if (!r) {
                   status = r.status().to_string();
                 } else {
                   ok = r->status == 200;
                   auto d = parse_strict(r->body);
                   status = r->body;
                   if (d && d->IsObject()) {
                     for (const char* k : {"status", "detail"}) {
                       if (auto it = d->FindMember(k); it != d->MemberEnd() && it->value.IsString()) {
                         status = it->value.GetString();
                         break;
                       }
                     }
                   }
                 }
               }
               asio::post(self->ws_.get_executor(), [self, reply_type, status, ok] {
                 self->reply(reply_type, JsonObject().str("status", status).boolean("ok", ok).done());
               });
             });
}

// ---- delivery (PlanStream's hooks) ----------------------------------------

void WebsocketSession::close_slow_consumer() {
  if (closing_) return;
  st_.metrics.ws_slow_closed.inc();
  close_with(websocket::close_code::try_again_later,
             "slow consumer: send queue full; reconnect with after_seq=" + std::to_string(written_seq()));
}

void WebsocketSession::slow_consumer() { close_slow_consumer(); }

void WebsocketSession::replay_failed(const Status& s) {
  std::string reason = s.code() == Code::kUnavailable ? s.message() : "replay failed";
  if (reason.size() > 120) reason.resize(120);  // close reasons are at most 123 bytes
  close_with(websocket::close_code::try_again_later, reason);
}

void WebsocketSession::on_replayed() { st_.metrics.ws_replayed.inc(); }

// ---- writes and close ------------------------------------------------------

void WebsocketSession::write_front(const Frame& f) {
  ws_.async_write(asio::buffer(*f.bytes),
                  [self = self()](beast::error_code ec, std::size_t n) { self->on_write(ec, n); });
}

void WebsocketSession::on_write(beast::error_code ec, std::size_t) {
  if (ec) {
    fail(ec, "ws write");
    written(false);
    return finish();
  }
  written(true);  // on_sent(), then the next write or replay page
  if (closing_) do_close();
}

void WebsocketSession::on_sent(const Frame& f) {
  if (f.seq != 0 && start_.track_cursor) {
    if (start_.cursor_owner) {
      advance_remote_cursor();
    } else {
      st_.cursors.advance(user_id_, plan_id_, written_seq(), start_.cursor);
    }
  }
  st_.metrics.ws_frames_sent.inc();
}

void WebsocketSession::advance_remote_cursor() {
  if (advance_armed_) return;  // the armed timer sends the latest written seq
  advance_armed_ = true;
  advance_timer_.expires_after(std::chrono::milliseconds(200));
  advance_timer_.async_wait([self = self()](beast::error_code) {
    self->advance_armed_ = false;
    asio::post(self->st_.read_pool, [self, seq = self->written_seq()] {
      self->st_.deps.cluster->remote_cursor(*self->start_.cursor_owner, "advance", self->user_id_, self->plan_id_, seq,
                                            self->start_.cursor.generation);
    });
  });
}

void WebsocketSession::shutdown() {
  asio::post(ws_.get_executor(), [self = self()] {
    // Not accepted yet: on_accept sees `stopping` and closes with 1001
    // (the handshake timeout bounds a client that never completes it).
    if (!self->accepted_) return;
    self->close_with(websocket::close_code::going_away,
                     "server shutting down; reconnect with after_seq=" + std::to_string(self->written_seq()));
  });
}

void WebsocketSession::close_with(websocket::close_code code, std::string reason) {
  if (closing_) return;
  closing_ = true;
  // Leave the hub and free the queue now (a write in flight keeps only its own frame).
  stop_delivery();
  close_reason_ = websocket::close_reason(code, reason);
  // A client that reads nothing never lets the close finish: cut it off.
  close_timer_.expires_after(std::chrono::seconds(5));
  close_timer_.async_wait([self = self()](beast::error_code ec) {
    if (!ec) beast::get_lowest_layer(self->ws_).close();
  });
  if (!writing()) do_close();
}

void WebsocketSession::do_close() {
  if (close_started_) return;
  close_started_ = true;
  ws_.async_close(close_reason_, [self = self()](beast::error_code) {
    self->close_timer_.cancel();
    // The read loop ends with `closed` and calls finish().
  });
}

void WebsocketSession::finish() {
  if (finished_) return;
  finished_ = true;
  closing_ = true;
  close_timer_.cancel();
  stop_delivery();
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

}  // namespace agentd::net
