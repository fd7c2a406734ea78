// Load: many WebSocket clients watching many concurrent plans that the
// runtime runs (script agents), against the real binary on loopback. Every
// client must receive its plan's messages 1..N exactly once, in order, with
// no error; agentd's peak RSS is reported.
//
// CI runs a quick variant (200 sockets, 40 plans). The issue's full size:
//   AGENTD_LOAD_SOCKETS=1000 AGENTD_LOAD_PLANS=200 AGENTD_LOAD_SECONDS=60
//     build/release/tests/reliability/reliability_load_test   (one command line)
// (the plans' script agents are paced so that they run for about that long).
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <vector>

#include "core/json.h"
#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

int env_int(const char* name, int dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : dflt;
}

// One WebSocket client: records every persisted frame's seq.
class Watcher : public std::enable_shared_from_this<Watcher> {
 public:
  Watcher(asio::io_context& ioc, std::string plan_id) : ws_(ioc), plan_id_(std::move(plan_id)) {}
  void start(int port) {
    ws_.next_layer().async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
        [self = shared_from_this()](beast::error_code ec) { self->on_connect(ec); });
  }
  const std::vector<uint64_t>& seqs() const { return seqs_; }
  const std::string& error() const { return error_; }
  bool finished() const { return finished_; }
  const std::string& plan_id() const { return plan_id_; }

 private:
  void on_connect(beast::error_code ec) {
    if (ec) return fail("connect", ec);
    ws_.async_handshake("127.0.0.1", "/api/v3/socket/" + plan_id_ + "?after_seq=0",
                        [self = shared_from_this()](beast::error_code e) { self->on_handshake(e); });
  }
  void on_handshake(beast::error_code ec) {
    if (ec) return fail("handshake", ec);
    do_read();
  }
  void do_read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }
  void on_read(beast::error_code ec) {
    if (ec) return fail("read", ec);
    std::string_view f(static_cast<const char*>(buf_.data().data()), buf_.size());
    uint64_t seq = seq_of(std::string(f));
    if (seq > 0) {
      seqs_.push_back(seq);
      if (f.find("\"type\":\"final_result_message\"") != std::string_view::npos) {
        finished_ = true;
        buf_.consume(buf_.size());
        beast::error_code ignored;
        ws_.next_layer().close(ignored);
        return;
      }
    }
    buf_.consume(buf_.size());
    do_read();
  }
  void fail(const char* what, beast::error_code ec) { error_ = std::string(what) + ": " + ec.message(); }

  websocket::stream<tcp::socket> ws_;
  beast::flat_buffer buf_;
  std::string plan_id_;
  std::vector<uint64_t> seqs_;
  std::string error_;
  bool finished_ = false;
};

std::string peak_rss(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return line.substr(6);
  return "?";
}

}  // namespace

TEST_CASE("load: WebSocket clients over concurrent runtime plans, every frame once, no error") {
  const int sockets = env_int("AGENTD_LOAD_SOCKETS", 200);
  const int plans = env_int("AGENTD_LOAD_PLANS", 40);
  const int seconds = env_int("AGENTD_LOAD_SECONDS", 5);
  const int messages = 10;  // per agent, two agents per plan
  const int delay_ms = std::max(1, seconds * 1000 / (2 * messages));
  Agentd a;
  std::filesystem::create_directories(a.dir() + "/teams");
  std::ofstream(a.dir() + "/teams/t.json") << R"({"team_id":"t","name":"T","agents":[
      {"name":"A","type":"script","script":{"messages":)"
                                           << messages << R"(,"delay_ms":)" << delay_ms << R"(,"size":200}},
      {"name":"B","type":"script","script":{"messages":)"
                                           << messages << R"(,"delay_ms":)" << delay_ms << "}}]}";
  a.start({"--teams-dir", a.dir() + "/teams", "--max-concurrent-plans", std::to_string(plans), "--max-connections",
           std::to_string(sockets + 100), "--threads", "2"});

  // Submit every plan first; the watchers join with after_seq=0 while the
  // plans run (history, then live).
  std::vector<std::string> ids;
  for (int i = 0; i < plans; ++i) {
    std::string body =
        JsonObject().str("description", "load " + std::to_string(i)).boolean("auto_approve", true).done();
    HttpReply r = http_post(a.port(), "/api/v3/process_request", body, {{"content-type", "application/json"}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    auto d = parse_strict(r.body);
    REQUIRE(d.is_ok());
    ids.push_back((*d)["plan_id"].GetString());
  }
  asio::io_context ioc;
  std::vector<std::shared_ptr<Watcher>> watchers;
  for (int i = 0; i < sockets; ++i) {
    watchers.push_back(std::make_shared<Watcher>(ioc, ids[static_cast<size_t>(i % plans)]));
    watchers.back()->start(a.port());
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds * 4 + 30);
  while (std::chrono::steady_clock::now() < deadline) {
    ioc.run_for(100ms);
    bool all = true;
    for (const auto& w : watchers) all = all && (w->finished() || !w->error().empty());
    if (all) break;
  }

  // Every plan's messages, as REST holds them: the complete log (paging
  // endpoint); GET /plan for the status and the chat view.
  std::map<std::string, uint64_t> last;
  for (const auto& id : ids) {
    HttpReply r = http_get(a.port(), "/api/v3/plan?plan_id=" + id);
    REQUIRE(r.status == 200);
    auto d = parse_strict(r.body, JsonLimits{64u << 20, 64});
    REQUIRE(d.is_ok());
    CHECK(std::string((*d)["plan"]["status"].GetString()) == "completed");
    CHECK((*d)["messages"].Size() == 2 * messages + 1);  // the agents' messages and the final result
    HttpReply l = http_get(a.port(), "/api/v3/plan/" + id + "/messages?after_seq=0&limit=10000");
    REQUIRE(l.status == 200);
    auto log = parse_strict(l.body, JsonLimits{64u << 20, 64});
    REQUIRE(log.is_ok());
    CHECK_FALSE((*log)["has_more"].GetBool());
    const auto& msgs = (*log)["messages"];
    for (rapidjson::SizeType i = 0; i < msgs.Size(); ++i) CHECK(msgs[i]["seq"].GetUint64() == i + 1);
    last[id] = msgs.Size();
  }
  size_t frames = 0, errors = 0;
  for (const auto& w : watchers) {
    if (!w->error().empty()) ++errors;
    CHECK_MESSAGE(w->error().empty(), w->plan_id() << ": " << w->error());
    CHECK(w->finished());
    std::vector<uint64_t> want(last[w->plan_id()]);
    for (size_t i = 0; i < want.size(); ++i) want[i] = i + 1;
    CHECK(w->seqs() == want);  // exactly once, in order, no gap
    frames += w->seqs().size();
  }
  CHECK(last.begin()->second == 2 + 2 * messages + 1);
  MESSAGE("load: " << sockets << " sockets over " << plans << " plans, " << frames << " frames, " << errors
                   << " errors, agentd peak RSS" << peak_rss(a.proc().pid()));
  CHECK(http_get(a.port(), "/healthz").status == 200);
}
