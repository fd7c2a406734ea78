#include "net/listener.h"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "net/http_session.h"

namespace agentd::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Result<std::shared_ptr<Listener>> Listener::create(asio::io_context& ioc, tcp::endpoint ep, ServerState& st) {
  std::shared_ptr<Listener> l(new Listener(ioc, st));
  boost::beast::error_code ec;
  l->acceptor_.open(ep.protocol(), ec);
  if (!ec) l->acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) l->acceptor_.bind(ep, ec);
  if (!ec) l->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) l->endpoint_ = l->acceptor_.local_endpoint(ec);
  if (ec) {
    return unavailable("listen on " + ep.address().to_string() + ":" + std::to_string(ep.port()) + ": " + ec.message());
  }
  return l;
}

void Listener::run() { do_accept(); }

void Listener::stop() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::beast::error_code ec;
    self->acceptor_.close(ec);
  });
}

void Listener::do_accept() {
  acceptor_.async_accept(
      asio::make_strand(ioc_),
      [self = shared_from_this()](boost::beast::error_code ec, tcp::socket s) { self->on_accept(ec, std::move(s)); });
}

void Listener::on_accept(boost::beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted) return;
  if (ec) {
    spdlog::warn("accept: {}", ec.message());
  } else if (st_.stopping.load()) {
    return;  // the socket closes as it goes out of scope
  } else if (st_.connections.fetch_add(1) >= st_.cfg.max_connections) {
    st_.connections.fetch_sub(1);
    st_.metrics.rejected_connections.inc();
    boost::beast::error_code ignored;
    socket.close(ignored);
  } else {
    boost::beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<HttpSession>(std::move(socket), st_)->run();
  }
  if (acceptor_.is_open()) do_accept();
}

}  // namespace agentd::net
