// fail(): how an async handler that ends on an error says what failed
// (style.md 9: `if (ec) return fail(ec, "what");` in Beast's examples).
// Expected ends of a connection (the peer closed, a timeout, our own cancel
// or close) are logged at debug level; anything else at warn.
#pragma once

#include <spdlog/spdlog.h>
#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/websocket/error.hpp>

#include <string_view>

namespace agentd::net {

inline void fail(const boost::beast::error_code& ec, std::string_view what) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  bool expected = ec == asio::error::operation_aborted || ec == asio::error::eof ||
                  ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
                  ec == beast::error::timeout || ec == beast::http::error::end_of_stream ||
                  ec == beast::websocket::error::closed;
  if (expected) {
    spdlog::debug("{}: {}", what, ec.message());
  } else {
    spdlog::warn("{}: {}", what, ec.message());
  }
}

}  // namespace agentd::net
