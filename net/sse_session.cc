#include "net/sse_session.h"
#include "net/fail.h"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "core/envelope.h"
#include "core/json.h"

namespace agentd::net {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Frames the session makes itself (the retry hint, keep-alive comments) are
// SSE text already; envelopes and live frames are JSON objects.
bool is_sse_text(const Frame& f) { return f.seq == 0 && !f.bytes->empty() && f.bytes->front() != '{'; }

Frame sse_text(std::string text) { return Frame{0, std::make_shared<const std::string>(std::move(text))}; }

}  // namespace

SseSession::SseSession(asio::ip::tcp::socket&& socket, ServerState& st, std::string plan_id, SseStart start)
    : PlanStream(st, std::move(plan_id), socket.get_executor(), st.cfg.ws_queue_frames),
      socket_(std::move(socket)),
      write_timer_(socket_.get_executor()),
      keepalive_timer_(socket_.get_executor()),
      start_(start) {
  st_.metrics.open_connections.add(1);
}

SseSession::~SseSession() {
  st_.sessions.remove(this);
  if (counted_) st_.metrics.sse_open.add(-1);
  st_.metrics.open_connections.add(-1);
  st_.connections.fetch_sub(1);  // taken over from the HttpSession
}

std::string SseSession::frame_type(std::string_view bytes) {
  // Envelopes start {"seq":N,"type":"…" (the canonical prefix, envelope.h)
  // and live frames {"type":"…"; types are plain identifiers (no escapes).
  // Anything else: the SSE default.
  auto fallback = [] { return std::string("message"); };
  if (!bytes.starts_with('{')) return fallback();
  bytes.remove_prefix(1);
  if (bytes.starts_with("\"seq\":")) {
    bytes.remove_prefix(6);
    size_t digits = 0;
    while (digits < bytes.size() && bytes[digits] >= '0' && bytes[digits] <= '9') ++digits;
    if (digits == 0 || digits >= bytes.size() || bytes[digits] != ',') return fallback();
    bytes.remove_prefix(digits + 1);
  }
  if (!bytes.starts_with("\"type\":\"")) return fallback();
  bytes.remove_prefix(8);
  size_t end = bytes.find('"');
  if (end == std::string_view::npos || end == 0 || end > 64) return fallback();
  std::string_view t = bytes.substr(0, end);
  for (char c : t) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
          c == '.')) {
      return fallback();
    }
  }
  return std::string(t);
}

bool SseSession::terminal(std::string_view bytes) {
  std::string type = frame_type(bytes);
  if (type == msgtype::kFinalResultMessage || type == msgtype::kErrorMessage) return true;
  if (type != msgtype::kPlanApprovalResponse) return false;
  auto d = parse_strict(bytes, kStoredJson);
  if (!d || !d->IsObject()) return false;
  auto data = d->FindMember("data");
  if (data == d->MemberEnd() || !data->value.IsObject()) return false;
  auto approved = data->value.FindMember("approved");
  return approved != data->value.MemberEnd() && approved->value.IsBool() && !approved->value.GetBool();
}

void SseSession::run(std::string head) {
  st_.sessions.add(std::static_pointer_cast<SseSession>(shared_from_this()));
  counted_ = true;
  st_.metrics.sse_open.add(1);
  head_ = std::move(head);
  head_ += "retry: " + std::to_string(st_.cfg.sse_retry.count()) + "\n\n";
  auto self = std::static_pointer_cast<SseSession>(shared_from_this());
  write_timer_.expires_after(st_.cfg.ws_idle_timeout);
  write_timer_.async_wait([self](error_code ec) {
    if (!ec) self->finish();
  });
  asio::async_write(socket_, asio::buffer(head_), [self](error_code ec, std::size_t) { self->on_head(ec); });
}

void SseSession::on_head(error_code ec) {
  write_timer_.cancel();
  if (ec) fail(ec, "sse head write");
  if (ec || finished_) return finish();
  if (st_.stopping.load()) return finish();
  do_read();
  Status s = start(start_.after_seq);
  if (!s.is_ok()) {
    spdlog::debug("sse {}: {}", plan_id_, s.message());
    return finish();
  }
  keep_alive();
}

// The client sends nothing after its request: a read completes when it goes
// away (or misbehaves), and ends the stream at once.
void SseSession::do_read() {
  auto self = std::static_pointer_cast<SseSession>(shared_from_this());
  socket_.async_read_some(asio::buffer(rbuf_), [self](error_code, std::size_t) { self->finish(); });
}

void SseSession::keep_alive() {
  if (finished_) return;
  keepalive_timer_.expires_after(st_.cfg.sse_keepalive);
  auto self = std::static_pointer_cast<SseSession>(shared_from_this());
  keepalive_timer_.async_wait([self](error_code ec) {
    if (ec || self->finished_) return;
    if (self->queue_empty()) self->push(sse_text(": keep-alive\n\n"));
    self->keep_alive();
  });
}

void SseSession::write_front(const Frame& f) {
  std::array<asio::const_buffer, 3> bufs;
  static constexpr std::string_view kEnd = "\n\n";
  if (is_sse_text(f)) {
    bufs = {asio::buffer(*f.bytes), asio::const_buffer(), asio::const_buffer()};
  } else {
    head_.clear();
    if (f.seq) head_ += "id: " + std::to_string(f.seq) + "\n";
    head_ += "event: " + frame_type(*f.bytes) + "\ndata: ";
    // Envelopes are compact JSON: one line (string escapes keep newlines out).
    bufs = {asio::buffer(head_), asio::buffer(*f.bytes), asio::buffer(kEnd.data(), kEnd.size())};
  }
  auto self = std::static_pointer_cast<SseSession>(shared_from_this());
  // A client that takes nothing for the idle timeout is cut off.
  write_timer_.expires_after(st_.cfg.ws_idle_timeout);
  write_timer_.async_wait([self](error_code ec) {
    if (!ec) self->finish();
  });
  asio::async_write(socket_, bufs, [self](error_code ec, std::size_t) {
    self->write_timer_.cancel();
    if (ec) fail(ec, "sse write");
    if (ec || self->finished_) {
      self->written(false);
      return self->finish();
    }
    self->written(true);
  });
}

void SseSession::on_sent(const Frame& f) {
  if (!is_sse_text(f)) st_.metrics.sse_events_sent.inc();
  if (f.seq == 0 || start_.follow) return;
  if (terminal(*f.bytes)) {
    stop_delivery();
    finish();
  }
}

void SseSession::on_idle() {
  // A plan that was final when the stream began: everything stored is out.
  if (start_.plan_final && !start_.follow) ending_ = true;
  if (ending_) {
    stop_delivery();
    finish();
  }
}

void SseSession::slow_consumer() {
  st_.metrics.sse_slow_closed.inc();
  spdlog::info("sse {}: slow consumer closed after seq {}", plan_id_, written_seq());
  finish();
}

void SseSession::replay_failed(const Status& s) {
  spdlog::warn("sse {}: closed: {}", plan_id_, s.message());
  finish();
}

void SseSession::shutdown() {
  asio::post(socket_.get_executor(), [self = std::static_pointer_cast<SseSession>(shared_from_this())] {
    self->stop_delivery();
    self->finish();
  });
}

void SseSession::finish() {
  if (finished_) return;
  finished_ = true;
  stop_delivery();
  write_timer_.cancel();
  keepalive_timer_.cancel();
  error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

}  // namespace agentd::net
