// Server-Sent Events (net/sse_session.h, net/plan_stream.h) on the in-process
// server over a real Outbox (also run under TSan by scripts/test): event
// names and terminal messages, concurrent appends with streams that
// disconnect and resume, live-only frames without id, the end after the
// terminal message; and the Allow header of a 405 (net/router.h).
#include <doctest/doctest.h>

#include <atomic>
#include <random>
#include <thread>

#include "net/router.h"
#include "net/sse_session.h"
#include "tests/net/fixture.h"
#include "tests/net/sse_client.h"

using namespace agentd;
using namespace agentd::test;

TEST_CASE("sse: the event name is the frame's type; terminal messages end the stream") {
  using net::SseSession;
  CHECK(SseSession::frame_type(R"({"seq":3,"type":"agent_message","data":{}})") == "agent_message");
  CHECK(SseSession::frame_type(R"({"type":"agent_message_streaming","data":{"content":"x"}})") ==
        "agent_message_streaming");
  CHECK(SseSession::frame_type(R"({"seq":1,"data":{"type":"x"}})") == "message");  // "type" only nested, too late
  CHECK(SseSession::frame_type(R"({"type":"a b"})") == "message");                 // not an identifier
  CHECK(SseSession::frame_type("not json") == "message");
  CHECK(SseSession::terminal(R"({"seq":9,"type":"final_result_message","data":{}})"));
  CHECK(SseSession::terminal(R"({"seq":9,"type":"error_message","data":{"status":"timeout"}})"));
  CHECK(SseSession::terminal(R"({"seq":2,"type":"plan_approval_response","data":{"approved":false}})"));
  CHECK_FALSE(SseSession::terminal(R"({"seq":2,"type":"plan_approval_response","data":{"approved":true}})"));
  CHECK_FALSE(SseSession::terminal(R"({"seq":2,"type":"agent_message","data":{}})"));
}

TEST_CASE("router: a 405 names the path's methods in Allow") {
  auto m = net::match_route(net::http::verb::post, "/api/v3/team_configs/t1");
  CHECK(m.id == net::RouteId::kMethodNotAllowed);
  CHECK(m.allow == "GET, HEAD, DELETE, OPTIONS");
  m = net::match_route(net::http::verb::put, "/healthz");
  CHECK(m.id == net::RouteId::kMethodNotAllowed);
  CHECK(m.allow == "GET, HEAD, OPTIONS");
  ServerFixture f;
  auto r = http_request(f.port, "PATCH", "/api/v4/plan/p1/events");
  CHECK(r.status == 405);
  CHECK(r.header("allow") == "GET, HEAD, OPTIONS");
}

TEST_CASE("sse: streams that disconnect and resume while messages commit get each seq once, in order") {
  ServerFixture f;
  PlanRecord p = make_plan("plan-sse", std::string(net::kZeroUser));
  f.append(p, "first", true);
  constexpr uint64_t kTotal = 300;
  std::thread writer([&] {
    for (uint64_t i = 2; i <= kTotal; ++i) f.append(p, "m" + std::to_string(i));
  });
  auto reader = [&](unsigned seed, std::vector<uint64_t>* seqs) {
    std::mt19937 rng(seed);
    uint64_t last = 0;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (last < kTotal && std::chrono::steady_clock::now() < until) {
      SseClient c;
      Headers h;
      if (last) h["Last-Event-ID"] = std::to_string(last);
      if (c.open(f.port, "/api/v3/plan/plan-sse/events", h) != 200) continue;
      int take = static_cast<int>(rng() % 40) + 1;
      Event e;
      while (take-- > 0 && last < kTotal && c.next(&e, 10000) == SseClient::Got::kEvent) {
        last = std::stoull(e.id);
        seqs->push_back(last);
      }
    }
  };
  std::vector<std::vector<uint64_t>> got(4);
  std::vector<std::thread> readers;
  for (unsigned i = 0; i < got.size(); ++i) readers.emplace_back(reader, i + 1, &got[i]);
  writer.join();
  for (auto& t : readers) t.join();
  for (const auto& seqs : got) {
    REQUIRE(seqs.size() == kTotal);
    for (size_t i = 0; i < seqs.size(); ++i) CHECK(seqs[i] == i + 1);
  }
}

TEST_CASE("sse: live-only frames come without an id; the stream ends after the terminal message") {
  ServerFixture f;
  PlanRecord p = make_plan("plan-live", std::string(net::kZeroUser));
  f.append(p, "first", true);
  SseClient c;
  REQUIRE(c.open(f.port, "/api/v3/plan/plan-live/events") == 200);
  Event e;
  REQUIRE(c.next(&e) == SseClient::Got::kEvent);
  CHECK(e.id == "1");
  f.server->hub().publish_live(
      "plan-live", std::make_shared<const std::string>(
                       R"({"type":"agent_message_streaming","data":{"content":"tok"},"plan_id":"plan-live"})"));
  REQUIRE(c.next(&e) == SseClient::Got::kEvent);
  CHECK_FALSE(e.has_id);
  CHECK(e.event == "agent_message_streaming");
  CHECK(e.data.find("\"tok\"") != std::string::npos);
  // The terminal message, then the end of the stream.
  MessageDraft d;
  d.type = "final_result_message";
  d.plan_id = p.plan_id;
  d.user_id = p.user_id;
  d.session_id = p.session_id;
  d.data = R"({"content":"done","status":"completed"})";
  AppendRequest a;
  a.message = prepare(std::move(d));
  REQUIRE(f.outbox->append_sync(std::move(a)).is_ok());
  REQUIRE(c.next(&e) == SseClient::Got::kEvent);
  CHECK(e.id == "2");
  CHECK(e.event == "final_result_message");
  CHECK(c.next(&e, 5000) == SseClient::Got::kClosed);
  // A later stream of the same (running) plan replays it and ends there too.
  SseClient again;
  REQUIRE(again.open(f.port, "/api/v3/plan/plan-live/events?after_seq=1") == 200);
  REQUIRE(again.next(&e) == SseClient::Got::kEvent);
  CHECK(e.event == "final_result_message");
  CHECK(again.next(&e, 5000) == SseClient::Got::kClosed);
}

TEST_CASE("sse: shutdown closes open streams") {
  ServerFixture f;
  PlanRecord p = make_plan("plan-stop", std::string(net::kZeroUser));
  f.append(p, "first", true);
  SseClient c;
  REQUIRE(c.open(f.port, "/api/v3/plan/plan-stop/events") == 200);
  Event e;
  REQUIRE(c.next(&e) == SseClient::Got::kEvent);
  f.server->stop(std::chrono::milliseconds(2000));
  CHECK(c.next(&e, 5000) == SseClient::Got::kClosed);
}
