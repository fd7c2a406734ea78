#include "net/relay.h"

#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <charconv>

#include "net/cluster.h"
#include "net/state.h"

namespace agentd::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

// The seq of a persisted envelope ('{"seq":N,...', core/envelope.h); 0 for
// a live-only frame.
uint64_t envelope_seq(std::string_view b) {
  constexpr std::string_view kHead = "{\"seq\":";
  if (!b.starts_with(kHead)) return 0;
  uint64_t seq = 0;
  auto [p, ec] = std::from_chars(b.data() + kHead.size(), b.data() + b.size(), seq);
  if (ec != std::errc() || p == b.data() + b.size() || *p != ',') return 0;
  return seq;
}

}  // namespace

// One foreign plan's feed. States: resolving (read pool) -> connecting ->
// reading; on failure: tailing MongoDB + a reconnect timer. All on strand_.
class Relay : public std::enable_shared_from_this<Relay> {
 public:
  Relay(Relays& owner, std::string plan_id)
      : r_(owner),
        plan_id_(std::move(plan_id)),
        strand_(asio::make_strand(owner.ex_)),
        timer_(strand_),
        poll_timer_(strand_) {}

  void start() {
    r_.active_.add(1);
    asio::post(strand_, [self = shared_from_this()] { self->resolve(); });
  }

  // From the handle's destructor (any thread).
  void stop() {
    asio::post(strand_, [self = shared_from_this()] {
      self->stopped_ = true;
      self->timer_.cancel();
      self->poll_timer_.cancel();
      if (self->ws_) {
        beast::get_lowest_layer(*self->ws_).cancel();
        beast::error_code ec;
        beast::get_lowest_layer(*self->ws_).socket().close(ec);
      }
      self->r_.active_.add(-1);
    });
  }

 private:
  // Who owns the plan and as whom to ask (blocking: on the read pool).
  void resolve() {
    if (stopped_) return;
    auto self = shared_from_this();
    asio::post(r_.st_.read_pool, [self] {
      PlanOwner o = self->r_.cluster_.owner_of(self->plan_id_);
      auto p = self->r_.st_.reader.get_plan(self->plan_id_);
      std::string user = p && p->has_value() ? (*p)->user_id : "";
      uint64_t last = p && p->has_value() ? (*p)->last_seq : 0;
      asio::post(self->strand_,
                 [self, o = std::move(o), user = std::move(user), last] { self->on_resolved(o, user, last); });
    });
  }

  void on_resolved(const PlanOwner& o, const std::string& user, uint64_t last) {
    if (stopped_) return;
    if (o.kind != PlanOwner::Kind::kPeer || user.empty()) {
      // Not known yet (or this instance's own, pruned): try again later.
      return retry();
    }
    peer_ = o.peer;
    user_ = user;
    // The record's last_seq is a lower bound of what was committed: start
    // there (the streams read anything older themselves).
    if (last_ == 0) last_ = last;
    connect();
  }

  void connect() {
    if (stopped_) return;
    if (peer_.host.empty()) return retry();
    ws_ = std::make_unique<websocket::stream<beast::tcp_stream>>(strand_);
    resolver_ = std::make_unique<tcp::resolver>(strand_);
    beast::get_lowest_layer(*ws_).expires_after(r_.cluster_.config().peer_timeout);
    resolver_->async_resolve(peer_.host, peer_.port,
                             [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type res) {
                               self->on_resolve(ec, std::move(res));
                             });
  }

  void on_resolve(beast::error_code ec, tcp::resolver::results_type res) {
    if (ec) return fail(ec, "resolve");
    beast::get_lowest_layer(*ws_).async_connect(
        res, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) { self->on_connect(ec); });
  }

  void on_connect(beast::error_code ec) {
    if (ec) return fail(ec, "connect");
    beast::get_lowest_layer(*ws_).expires_never();
    websocket::stream_base::timeout t = websocket::stream_base::timeout::suggested(beast::role_type::client);
    t.handshake_timeout = r_.cluster_.config().peer_timeout;
    t.idle_timeout = std::chrono::seconds(20);
    t.keep_alive_pings = true;
    ws_->set_option(t);
    ws_->read_message_max(64u << 20);
    std::string secret = r_.cluster_.config().secret, user = user_;
    ws_->set_option(websocket::stream_base::decorator([secret, user](websocket::request_type& req) {
      req.set(kClusterSecretHeader, secret);
      req.set(kForwardedUserHeader, user);
    }));
    std::string target = "/api/v3/socket/" + plan_id_ + "?after_seq=" + std::to_string(last_);
    ws_->async_handshake(peer_.host + ":" + peer_.port, target,
                         [self = shared_from_this()](beast::error_code ec) { self->on_handshake(ec); });
  }

  void on_handshake(beast::error_code ec) {
    if (ec) return fail(ec, "handshake");
    if (down_) spdlog::info("relay {}: owner {} reachable again, continuing after seq {}", plan_id_, peer_.id, last_);
    down_ = false;
    backoff_ = std::chrono::milliseconds(0);
    poll_timer_.cancel();
    do_read();
  }

  void do_read() {
    ws_->async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) return fail(ec, "read");
    auto bytes = std::make_shared<const std::string>(beast::buffers_to_string(buf_.data()));
    buf_.consume(buf_.size());
    publish(std::move(bytes));
    do_read();
  }

  void publish(std::shared_ptr<const std::string> bytes) {
    uint64_t seq = envelope_seq(*bytes);
    if (seq == 0) {
      // A live-only frame (a streaming chunk): the relay sends no client
      // frames, so nothing else comes unasked.
      r_.st_.hub.publish_live(plan_id_, std::move(bytes));
      return;
    }
    if (seq <= last_) return;
    last_ = seq;
    r_.relayed_.inc();
    r_.st_.hub.publish({CommittedMessage{plan_id_, seq, std::move(bytes)}});
  }

  void fail(beast::error_code ec, const char* what) {
    if (stopped_ || ec == asio::error::operation_aborted) return;
    if (!down_) {
      spdlog::warn("relay {}: owner {} {}: {} (tailing MongoDB until it is back)", plan_id_, peer_.id, what,
                   ec.message());
    }
    down_ = true;
    ws_.reset();
    start_tail();
    retry();
  }

  void retry() {
    if (stopped_) return;
    backoff_ = std::min(r_.max_backoff, std::max(std::chrono::milliseconds(250), backoff_ * 2));
    r_.reconnects_.inc();
    timer_.expires_after(backoff_);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      // Resolve again: the registry may have a new address for the owner.
      if (!ec && !self->stopped_) self->resolve();
    });
  }

  // While the owner is down: what it flushed before dying, from MongoDB.
  void start_tail() {
    if (tailing_ || stopped_) return;
    tailing_ = true;
    poll_timer_.expires_after(r_.poll);
    poll_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      self->tailing_ = false;
      if (ec || self->stopped_ || !self->down_) return;
      self->tail_once();
    });
  }

  void tail_once() {
    auto self = shared_from_this();
    uint64_t from = last_;
    tailing_ = true;
    asio::post(r_.st_.read_pool, [self, from] {
      auto m = self->r_.st_.deps.history ? self->r_.st_.deps.history->read_messages(self->plan_id_, from, 256)
                                         : Result<std::vector<StoredMessage>>(std::vector<StoredMessage>());
      asio::post(self->strand_, [self, m = std::move(m)]() mutable {
        self->tailing_ = false;
        if (self->stopped_) return;
        if (m) {
          for (auto& x : *m) {
            if (x.seq != self->last_ + 1) break;  // only contiguous: the streams fill gaps themselves
            self->r_.tailed_.inc();
            self->publish(std::move(x.bytes));
          }
        }
        if (self->down_) self->start_tail();
      });
    });
  }

  Relays& r_;
  const std::string plan_id_;
  asio::strand<asio::any_io_executor> strand_;
  asio::steady_timer timer_, poll_timer_;
  std::unique_ptr<tcp::resolver> resolver_;
  std::unique_ptr<websocket::stream<beast::tcp_stream>> ws_;
  beast::flat_buffer buf_;
  Peer peer_;
  std::string user_;
  uint64_t last_ = 0;  // highest seq published
  bool stopped_ = false, down_ = false, tailing_ = false;
  std::chrono::milliseconds backoff_{0};
};

namespace {

struct Handle {
  std::shared_ptr<Relay> relay;
  ~Handle() { relay->stop(); }
};

}  // namespace

Relays::Relays(ServerState& st, Cluster& cluster, asio::any_io_executor ex, MetricsRegistry& metrics)
    : st_(st),
      cluster_(cluster),
      ex_(std::move(ex)),
      active_(metrics.gauge("agentd_cluster_relays", "Foreign plans relayed from their owner to local streams")),
      reconnects_(metrics.counter("agentd_cluster_relay_retries_total",
                                  "Relay connection attempts after a failure or before the owner was known")),
      relayed_(metrics.counter("agentd_cluster_relayed_messages_total", "Messages relayed live from owners")),
      tailed_(metrics.counter("agentd_cluster_tailed_messages_total",
                              "Messages of foreign plans read from MongoDB while their owner was unreachable")) {}

Relays::~Relays() = default;

std::shared_ptr<void> Relays::watch(const std::string& plan_id) {
  auto local = st_.deps.log->get_plan(plan_id);
  if (!local || local->has_value()) return nullptr;
  MutexLock l(&mu_);
  auto& slot = handles_[plan_id];
  if (auto h = slot.lock()) return h;
  if (handles_.size() > 1024) {
    std::erase_if(handles_, [](const auto& kv) { return kv.second.expired(); });
  }
  auto relay = std::make_shared<Relay>(*this, plan_id);
  relay->start();
  // (stop() runs when the last stream lets go of the handle.)
  auto h = std::make_shared<Handle>();
  h->relay = std::move(relay);
  handles_[plan_id] = h;
  return h;
}

}  // namespace agentd::net
