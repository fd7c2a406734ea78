#include "net/llm_client.h"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include <cctype>

#include "core/json.h"

namespace agentd::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct LlmClient::Attempt {
  Result<std::string> value;
  bool retryable;
};

namespace {

using Attempt = LlmClient::Attempt;

Attempt transient(std::string what) { return {unavailable("model endpoint: " + std::move(what)), true}; }

// True for application/json and application/<x>+json (parameters ignored).
bool is_json(std::string_view content_type) {
  std::string t(content_type.substr(0, content_type.find(';')));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (char& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return t == "application/json" || (t.rfind("application/", 0) == 0 && t.size() > 5 && t.ends_with("+json"));
}

template <typename Stream>
asio::awaitable<Attempt> exchange(Stream& s, http::request<http::string_body>& req, bool streaming,
                                  const ChunkFn& on_chunk, bool* delivered, size_t max_bytes) {
  auto [wec, wn] = co_await http::async_write(s, req, kTuple);
  if (wec) co_return transient("write: " + wec.message());
  beast::flat_buffer buf;
  http::response_parser<http::string_body> p;
  p.body_limit(max_bytes);
  auto [hec, hn] = co_await http::async_read_header(s, buf, p, kTuple);
  if (hec) co_return transient("read: " + hec.message());
  unsigned status = p.get().result_int();
  if (status >= 400) {
    co_await http::async_read(s, buf, p, kTuple);  // best effort: the error text
    std::string body = p.get().body().substr(0, 300);
    std::string what = "HTTP " + std::to_string(status) + ": " + body;
    if (status >= 500 || status == 429) co_return transient(what);
    co_return Attempt{invalid_argument("model endpoint: " + what), false};
  }
  // An endpoint may ignore "stream": true and answer one JSON completion:
  // the Content-Type decides how the body is read, not what was asked.
  if (!streaming || is_json(p.get()[http::field::content_type])) {
    auto [rec, rn] = co_await http::async_read(s, buf, p, kTuple);
    if (rec) co_return transient("read: " + rec.message());
    co_return Attempt{LlmClient::parse_reply(p.get().body()), false};
  }
  // Server-sent events: one "data: {...}" line per delta, "data: [DONE]" last.
  std::string full;
  size_t consumed = 0;
  bool done = false;
  while (!done) {
    if (p.is_done()) break;
    auto [rec, rn] = co_await http::async_read_some(s, buf, p, kTuple);
    if (rec == http::error::end_of_stream || rec == asio::error::eof) break;
    if (rec) co_return transient("read: " + rec.message());
    const std::string& body = p.get().body();
    for (;;) {
      auto nl = body.find('\n', consumed);
      if (nl == std::string::npos) break;
      std::string_view line(body.data() + consumed, nl - consumed);
      consumed = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.substr(0, 5) != "data:") continue;
      line.remove_prefix(5);
      while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
      std::string delta;
      auto more = LlmClient::parse_stream_event(line, &delta);
      if (!more) co_return Attempt{more.status(), false};
      if (!*more) {
        done = true;
        break;
      }
      if (!delta.empty()) {
        full += delta;
        *delivered = true;
        if (on_chunk) on_chunk(delta, false);
      }
    }
  }
  co_return Attempt{full, false};
}

}  // namespace

Result<std::unique_ptr<LlmClient>> LlmClient::create(asio::any_io_executor ex, LlmOptions options) {
  auto u = boost::urls::parse_uri(options.base_url);
  if (!u) return invalid_argument("--llm-base-url: not a URL: " + options.base_url);
  Target t;
  std::string scheme(u->scheme());
  if (scheme != "http" && scheme != "https") return invalid_argument("--llm-base-url: scheme must be http or https");
  t.tls = scheme == "https";
  t.host = std::string(u->host());
  if (t.host.empty()) return invalid_argument("--llm-base-url: no host");
  t.port = u->has_port() ? std::string(u->port()) : (t.tls ? "443" : "80");
  t.path = std::string(u->encoded_path());
  while (!t.path.empty() && t.path.back() == '/') t.path.pop_back();
  t.path += "/chat/completions";
  if (options.model.empty()) return invalid_argument("--llm-model: required with --llm-base-url");
  return std::unique_ptr<LlmClient>(new LlmClient(std::move(ex), std::move(options), std::move(t)));
}

LlmClient::LlmClient(asio::any_io_executor ex, LlmOptions options, Target target)
    : ex_(std::move(ex)), opts_(std::move(options)), target_(std::move(target)) {
  if (target_.tls) {
    tls_ = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    tls_->set_default_verify_paths();
    tls_->set_verify_mode(asio::ssl::verify_peer);
  }
}

std::string LlmClient::request_body(const ChatRequest& req) const {
  std::string msgs = "[";
  for (size_t i = 0; i < req.messages.size(); ++i) {
    if (i) msgs += ',';
    msgs += JsonObject().str("role", req.messages[i].role).str("content", req.messages[i].content).done();
  }
  msgs += ']';
  return JsonObject().str("model", opts_.model).raw("messages", msgs).boolean("stream", req.stream).done();
}

Result<std::string> LlmClient::parse_reply(std::string_view body) {
  auto d = parse_strict(body, JsonLimits{16u << 20, 64});
  if (!d) return invalid_argument("model reply: " + d.status().message());
  const auto& v = *d;
  if (!v.IsObject() || !v.HasMember("choices") || !v["choices"].IsArray() || v["choices"].Empty()) {
    return invalid_argument("model reply: choices: missing or empty");
  }
  const auto& c = v["choices"][0];
  if (!c.IsObject() || !c.HasMember("message") || !c["message"].IsObject() || !c["message"].HasMember("content") ||
      !c["message"]["content"].IsString()) {
    return invalid_argument("model reply: choices[0].message.content: missing or not a string");
  }
  return std::string(c["message"]["content"].GetString(), c["message"]["content"].GetStringLength());
}

Result<bool> LlmClient::parse_stream_event(std::string_view data, std::string* delta) {
  if (data == "[DONE]") return false;
  auto d = parse_strict(data);
  if (!d) return invalid_argument("model stream event: " + d.status().message());
  const auto& v = *d;
  if (!v.IsObject() || !v.HasMember("choices") || !v["choices"].IsArray()) {
    return invalid_argument("model stream event: choices: missing");
  }
  if (v["choices"].Empty()) return true;
  const auto& c = v["choices"][0];
  if (c.IsObject() && c.HasMember("delta") && c["delta"].IsObject() && c["delta"].HasMember("content") &&
      c["delta"]["content"].IsString()) {
    delta->assign(c["delta"]["content"].GetString(), c["delta"]["content"].GetStringLength());
  }
  return true;
}

// One call's state, shared by its attempts. Coroutines take it by
// reference (GCC 12: no class-type temporaries across suspension points).
struct LlmClient::Call {
  http::request<http::string_body> req;
  bool stream = false;
  std::chrono::milliseconds timeout{0};
  ChunkFn on_chunk;
  bool delivered = false;  // the current attempt passed chunks to on_chunk
  std::function<void(Result<std::string>)> done;
};

void LlmClient::complete(ChatRequest req, ChunkFn on_chunk, std::function<void(Result<std::string>)> done) {
  auto call = std::make_shared<Call>();
  call->req = http::request<http::string_body>(http::verb::post, target_.path, 11);
  call->req.set(http::field::host, target_.host);
  call->req.set(http::field::user_agent, "agentd");
  call->req.set(http::field::content_type, "application/json");
  if (req.stream) call->req.set(http::field::accept, "text/event-stream");
  if (!opts_.api_key.empty()) call->req.set(http::field::authorization, "Bearer " + opts_.api_key);
  call->req.body() = request_body(req);
  call->req.prepare_payload();
  call->stream = req.stream;
  call->timeout = req.timeout;
  call->on_chunk = std::move(on_chunk);
  call->done = std::move(done);
  asio::co_spawn(asio::make_strand(ex_), run(call), asio::detached);
}

asio::awaitable<void> LlmClient::run(std::shared_ptr<Call> call) {
  Call& c = *call;
  auto backoff = std::chrono::milliseconds(250);
  for (int attempt = 0;; ++attempt) {
    Attempt a = co_await attempt_once(c);
    if (a.value.is_ok() && a.value->empty()) {
      // A completion without text is no answer: an error, like a 4xx.
      a = Attempt{invalid_argument("model endpoint: empty reply (no content)"), false};
    }
    if (a.value.is_ok() || !a.retryable || attempt >= opts_.retries) {
      c.done(std::move(a.value));
      co_return;
    }
    asio::steady_timer t(co_await asio::this_coro::executor, backoff);
    co_await t.async_wait(kTuple);
    backoff *= 2;
    if (c.delivered) {
      // The retry starts the reply over; what was streamed is void.
      c.delivered = false;
      if (c.on_chunk) c.on_chunk({}, true);
    }
  }
}

asio::awaitable<Attempt> LlmClient::attempt_once(Call& c) {
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(target_.host, target_.port, kTuple);
  if (rec) co_return transient("resolve " + target_.host + ": " + rec.message());
  if (!target_.tls) {
    beast::tcp_stream s(ex);
    s.expires_after(c.timeout);
    auto [cec, ep] = co_await s.async_connect(results, kTuple);
    if (cec) co_return transient("connect: " + cec.message());
    Attempt a = co_await exchange(s, c.req, c.stream, c.on_chunk, &c.delivered, opts_.max_reply_bytes);
    beast::error_code ignored;
    s.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return a;
  }
  beast::ssl_stream<beast::tcp_stream> s(ex, *tls_);
  if (!SSL_set_tlsext_host_name(s.native_handle(), target_.host.c_str())) {
    co_return Attempt{invalid_argument("TLS: cannot set SNI host name"), false};
  }
  s.set_verify_callback(asio::ssl::host_name_verification(target_.host));
  beast::get_lowest_layer(s).expires_after(c.timeout);
  auto [cec, ep] = co_await beast::get_lowest_layer(s).async_connect(results, kTuple);
  if (cec) co_return transient("connect: " + cec.message());
  auto [hec] = co_await s.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (hec) co_return Attempt{unavailable("model endpoint: TLS handshake: " + hec.message()), true};
  Attempt a = co_await exchange(s, c.req, c.stream, c.on_chunk, &c.delivered, opts_.max_reply_bytes);
  co_return a;
}

}  // namespace agentd::net
