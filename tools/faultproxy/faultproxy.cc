#include "tools/faultproxy/faultproxy.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <charconv>
#include <map>
#include <thread>

namespace agentd::faultproxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

struct FaultProxy::Impl {
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  tcp::endpoint target;
  std::thread thread;
  std::atomic<int64_t> latency_ms{0};
  std::atomic<int64_t> blackhole_until_ms{0};
  std::atomic<bool> refusing{false};
  std::atomic<uint64_t> accepted{0}, open{0}, refused{0}, resets{0}, bytes_up{0}, bytes_down{0};
  bool stopped = false;

  class Conn;
  std::map<uint64_t, std::shared_ptr<Conn>> conns;  // io thread only
  uint64_t next_id = 0;

  // How long a forward must wait now (black hole first, else latency).
  int64_t hold_ms() const {
    int64_t until = blackhole_until_ms.load();
    int64_t now = now_ms();
    if (until > now) return until - now;
    return latency_ms.load();
  }

  void do_accept();
  void on_accept(error_code ec, tcp::socket s);
};

// One proxied connection: two pumps (client->target, target->client), each
// read -> hold -> write -> read. All on the io thread.
class FaultProxy::Impl::Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(Impl& p, uint64_t id, tcp::socket client)
      : p_(p), id_(id), client_(std::move(client)), upstream_(p.ioc), connect_timer_(p.ioc) {}

  void run() {
    int64_t hold = p_.blackhole_until_ms.load() - now_ms();
    if (hold > 0) {  // a black hole: the connection waits like an unanswered SYN
      connect_timer_.expires_after(std::chrono::milliseconds(hold));
      connect_timer_.async_wait([self = shared_from_this()](error_code ec) {
        if (!ec) self->do_connect();
      });
      return;
    }
    do_connect();
  }

  void reset() {
    error_code ignored;
    client_.set_option(tcp::socket::linger(true, 0), ignored);
    upstream_.set_option(tcp::socket::linger(true, 0), ignored);
    close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    p_.open.fetch_sub(1);  // before the peers can see the close
    error_code ignored;
    connect_timer_.cancel();
    up_.timer.cancel();
    down_.timer.cancel();
    client_.close(ignored);
    upstream_.close(ignored);
    p_.conns.erase(id_);  // may drop the last owner: callers hold a shared_ptr
  }

 private:
  struct Pump {
    explicit Pump(asio::io_context& ioc) : timer(ioc) {}
    std::array<char, 16384> buf;
    size_t len = 0;
    asio::steady_timer timer;
  };

  void do_connect() {
    upstream_.async_connect(p_.target, [self = shared_from_this()](error_code ec) { self->on_connect(ec); });
  }
  void on_connect(error_code ec) {
    if (closed_) return;
    if (ec) {
      p_.refused.fetch_add(1);
      return close();
    }
    error_code ignored;
    upstream_.set_option(tcp::no_delay(true), ignored);
    do_read(up_, client_, upstream_, true);
    do_read(down_, upstream_, client_, false);
  }

  void do_read(Pump& pump, tcp::socket& from, tcp::socket& to, bool up) {
    if (closed_) return;
    int64_t hole = p_.blackhole_until_ms.load() - now_ms();
    if (hole > 0) {  // nothing moves during a black hole: not even reads
      pump.timer.expires_after(std::chrono::milliseconds(hole));
      pump.timer.async_wait([self = shared_from_this(), &pump, &from, &to, up](error_code ec) {
        if (!ec) self->do_read(pump, from, to, up);
      });
      return;
    }
    from.async_read_some(asio::buffer(pump.buf),
                         [self = shared_from_this(), &pump, &from, &to, up](error_code ec, size_t n) {
                           self->on_read(pump, from, to, up, ec, n);
                         });
  }
  void on_read(Pump& pump, tcp::socket& from, tcp::socket& to, bool up, error_code ec, size_t n) {
    if (closed_) return;
    if (ec) return close();
    pump.len = n;
    (up ? p_.bytes_up : p_.bytes_down).fetch_add(n);  // counted before the peer can see them
    int64_t hold = p_.hold_ms();
    if (hold <= 0) return do_write(pump, from, to, up);
    pump.timer.expires_after(std::chrono::milliseconds(hold));
    pump.timer.async_wait([self = shared_from_this(), &pump, &from, &to, up](error_code ec2) {
      if (ec2) return;
      // A black hole that began meanwhile holds the bytes until it ends.
      int64_t hole = self->p_.blackhole_until_ms.load() - now_ms();
      if (hole > 0) {
        pump.timer.expires_after(std::chrono::milliseconds(hole));
        pump.timer.async_wait([self, &pump, &from, &to, up](error_code ec3) {
          if (!ec3) self->do_write(pump, from, to, up);
        });
        return;
      }
      self->do_write(pump, from, to, up);
    });
  }
  void do_write(Pump& pump, tcp::socket& from, tcp::socket& to, bool up) {
    if (closed_) return;
    asio::async_write(to, asio::buffer(pump.buf.data(), pump.len),
                      [self = shared_from_this(), &pump, &from, &to, up](error_code ec, size_t) {
                        if (self->closed_) return;
                        if (ec) return self->close();
                        self->do_read(pump, from, to, up);
                      });
  }

  Impl& p_;
  const uint64_t id_;
  tcp::socket client_, upstream_;
  asio::steady_timer connect_timer_;
  Pump up_{p_.ioc}, down_{p_.ioc};
  bool closed_ = false;
};

void FaultProxy::Impl::do_accept() {
  acceptor.async_accept([this](error_code ec, tcp::socket s) { on_accept(ec, std::move(s)); });
}

void FaultProxy::Impl::on_accept(error_code ec, tcp::socket s) {
  if (stopped || ec == asio::error::operation_aborted) return;
  if (!ec) {
    accepted.fetch_add(1);
    if (refusing.load()) {
      refused.fetch_add(1);
      error_code ignored;
      s.set_option(tcp::socket::linger(true, 0), ignored);
      s.close(ignored);
    } else {
      error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      open.fetch_add(1);
      auto c = std::make_shared<Conn>(*this, next_id, std::move(s));
      conns.emplace(next_id++, c);
      c->run();
    }
  }
  do_accept();
}

FaultProxy::FaultProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FaultProxy::~FaultProxy() { stop(); }

Result<std::unique_ptr<FaultProxy>> FaultProxy::start(const std::string& listen_host, uint16_t listen_port,
                                                      const std::string& target_host, uint16_t target_port) {
  auto impl = std::make_unique<Impl>();
  error_code ec;
  auto laddr = asio::ip::make_address(listen_host, ec);
  if (ec) return invalid_argument("listen address '" + listen_host + "': " + ec.message());
  auto taddr = asio::ip::make_address(target_host, ec);
  if (ec) return invalid_argument("target address '" + target_host + "': " + ec.message());
  impl->target = tcp::endpoint(taddr, target_port);
  tcp::endpoint lep(laddr, listen_port);
  impl->acceptor.open(lep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(lep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status(Code::kUnavailable,
                  "listen on " + listen_host + ":" + std::to_string(listen_port) + ": " + ec.message());
  impl->do_accept();
  Impl* p = impl.get();
  impl->thread = std::thread([p] { p->ioc.run(); });
  return std::unique_ptr<FaultProxy>(new FaultProxy(std::move(impl)));
}

uint16_t FaultProxy::port() const {
  error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void FaultProxy::set_latency(std::chrono::milliseconds ms) { impl_->latency_ms.store(ms.count()); }

void FaultProxy::blackhole(std::chrono::milliseconds ms) { impl_->blackhole_until_ms.store(now_ms() + ms.count()); }

void FaultProxy::reset() {
  asio::post(impl_->ioc, [p = impl_.get()] {
    auto conns = p->conns;  // reset() erases from the map
    for (auto& [id, c] : conns) {
      p->resets.fetch_add(1);
      c->reset();
    }
  });
}

void FaultProxy::refuse(bool on) { impl_->refusing.store(on); }

void FaultProxy::clear() {
  impl_->latency_ms.store(0);
  impl_->blackhole_until_ms.store(0);
  impl_->refusing.store(false);
}

Stats FaultProxy::stats() const {
  Stats s;
  s.accepted = impl_->accepted.load();
  s.open = impl_->open.load();
  s.refused = impl_->refused.load();
  s.resets = impl_->resets.load();
  s.bytes_up = impl_->bytes_up.load();
  s.bytes_down = impl_->bytes_down.load();
  return s;
}

void FaultProxy::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  asio::post(impl_->ioc, [p = impl_.get()] {
    p->stopped = true;
    error_code ignored;
    p->acceptor.close(ignored);
    auto conns = p->conns;
    for (auto& [id, c] : conns) c->close();
  });
  impl_->thread.join();
}

Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return invalid_argument("expected HOST:PORT, got '" + s + "'");
  unsigned port = 0;
  const char* b = s.data() + colon + 1;
  const char* e = s.data() + s.size();
  auto [p, ec] = std::from_chars(b, e, port);
  if (ec != std::errc() || p != e || port > 65535) return invalid_argument("bad port in '" + s + "'");
  std::string host = s.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  return std::make_pair(host, static_cast<uint16_t>(port));
}

}  // namespace agentd::faultproxy
