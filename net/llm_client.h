// LlmClient: core's ModelClient over HTTP(S) — an OpenAI-compatible
// chat-completions endpoint (POST {base_url}/chat/completions), through a
// Beast client with TLS (OpenSSL, peer and host name verified).
//
// Each call runs as a coroutine on its own strand of the executor given;
// nothing blocks. Per attempt the whole exchange is bounded by
// ChatRequest::timeout. Transport errors, timeouts and 5xx are retried
// (`retries` times, backoff 250 ms doubling); 4xx and malformed replies are
// not. With stream=true the reply is read as server-sent events and each
// delta goes to on_chunk as it arrives — when the endpoint answers
// text/event-stream: a JSON reply (application/json, as from endpoints that
// ignore "stream") is read as one non-streaming completion
// (choices[0].message.content) and no chunk is delivered. A reply without
// text (empty or missing content) is an error (kInvalidArgument, not
// retried). A stream cut after some deltas (transport error, 5xx) is
// retried like any transient failure: the reply starts over and on_chunk
// first hears ("", restart = true) — consumers drop what they had shown, so
// nobody sees the text twice (model_client.h).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

#include "core/runtime/model_client.h"

namespace agentd::net {

struct LlmOptions {
  std::string base_url;  // e.g. https://api.example.com/v1 or http://127.0.0.1:9000/v1
  std::string model;
  std::string api_key;  // sent as Authorization: Bearer when not empty
  int retries = 2;
  size_t max_reply_bytes = 8u << 20;
};

class LlmClient final : public ModelClient {
 public:
  // kInvalidArgument when base_url is not an http(s) URL.
  static Result<std::unique_ptr<LlmClient>> create(boost::asio::any_io_executor ex, LlmOptions options);

  void complete(ChatRequest req, ChunkFn on_chunk, std::function<void(Result<std::string>)> done) override;

  // Exposed for tests: the request body sent for `req`.
  std::string request_body(const ChatRequest& req) const;
  // Parses a non-streaming reply body: choices[0].message.content.
  static Result<std::string> parse_reply(std::string_view body);
  // Parses one SSE data payload of a streaming reply; false at "[DONE]".
  static Result<bool> parse_stream_event(std::string_view data, std::string* delta);

  struct Call;     // one complete() call (llm_client.cc)
  struct Attempt;  // the outcome of one HTTP exchange

 private:
  struct Target {
    bool tls = false;
    std::string host, port, path;
  };
  LlmClient(boost::asio::any_io_executor ex, LlmOptions options, Target target);
  boost::asio::awaitable<void> run(std::shared_ptr<Call> call);
  boost::asio::awaitable<Attempt> attempt_once(Call& c);

  boost::asio::any_io_executor ex_;
  const LlmOptions opts_;
  const Target target_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
};

}  // namespace agentd::net
