#include "net/http_session.h"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>

#include <chrono>

namespace agentd::net {

namespace beast = boost::beast;

void HttpSession::run() {
  boost::asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
}

void HttpSession::do_read() {
  parser_.emplace();
  parser_->body_limit(1 << 20);
  parser_->header_limit(16 * 1024);
  stream_.expires_after(std::chrono::seconds(30));
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void HttpSession::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream) return do_close();
  if (ec) return do_close();
  const Request& req = parser_->get();
  res_ = std::make_shared<Response>(router_.handle(req));
  bool keep_alive = res_->keep_alive();
  http::async_write(stream_, *res_, [self = shared_from_this(), keep_alive](beast::error_code e, std::size_t n) {
    self->on_write(keep_alive, e, n);
  });
}

void HttpSession::on_write(bool keep_alive, beast::error_code ec, std::size_t) {
  if (ec) return do_close();
  res_.reset();
  if (!keep_alive) return do_close();
  do_read();
}

void HttpSession::do_close() {
  beast::error_code ec;
  stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
}

}  // namespace agentd::net
