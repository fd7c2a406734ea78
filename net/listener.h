// Listener: accepts TCP connections, each on its own strand, and starts an
// HttpSession for each; connections over cfg.max_connections are closed at
// once (counted in agentd_http_rejected_connections_total).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>

#include <memory>

#include "core/status.h"
#include "net/state.h"

namespace agentd::net {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds and listens; kUnavailable with the OS error when the port is taken.
  static Result<std::shared_ptr<Listener>> create(boost::asio::io_context& ioc, boost::asio::ip::tcp::endpoint ep,
                                                  ServerState& st);
  void run();
  void stop();  // any thread
  boost::asio::ip::tcp::endpoint local_endpoint() const { return endpoint_; }

 private:
  Listener(boost::asio::io_context& ioc, ServerState& st) : ioc_(ioc), acceptor_(ioc), st_(st) {}
  void do_accept();
  void on_accept(boost::beast::error_code ec, boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::tcp::endpoint endpoint_;
  ServerState& st_;
};

}  // namespace agentd::net
