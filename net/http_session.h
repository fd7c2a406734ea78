// HttpSession: one HTTP/1.1 connection, on its own strand; reads a request,
// asks the router, writes the response, repeats while keep-alive.
#pragma once

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <memory>
#include <optional>

#include "net/router.h"

namespace agentd::net {

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket&& socket, const Router& router)
      : stream_(std::move(socket)), router_(router) {}
  void run();

 private:
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t);
  void on_write(bool keep_alive, boost::beast::error_code ec, std::size_t);
  void do_close();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Response> res_;
  const Router& router_;
};

}  // namespace agentd::net
