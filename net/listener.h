// Listener: accepts TCP connections and starts one HttpSession each.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>

#include "core/status.h"
#include "net/router.h"

namespace agentd::net {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds and listens; kUnavailable with the OS error when the port is taken.
  static Result<std::shared_ptr<Listener>> create(boost::asio::io_context& ioc, boost::asio::ip::tcp::endpoint ep,
                                                  const Router& router);
  void run();
  void stop();
  boost::asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  Listener(boost::asio::io_context& ioc, const Router& router) : ioc_(ioc), acceptor_(ioc), router_(router) {}
  void do_accept();
  void on_accept(boost::beast::error_code ec, boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  const Router& router_;
};

}  // namespace agentd::net
