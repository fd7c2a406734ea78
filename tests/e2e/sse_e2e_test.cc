// GET /api/v3/plan/{plan_id}/events (Server-Sent Events, issue 17) against the
// real agentd binary: replay then live with the WebSocket's bytes, the end
// after the terminal message, 50 random disconnects resumed with
// Last-Event-ID (each seq exactly once), isolation, the per-plan cap, a slow
// consumer, keep-alive comments. EventSource in Chromium is
// tests/web/sse_eventsource_test.cjs.
#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

#include "tests/e2e/net_agentd.h"
#include "tests/net/sse_client.h"

using namespace agentd;
using namespace agentd::test;

namespace {

HttpReply post_message(int port, const std::string& plan_id, const std::string& content, const Headers& h = {}) {
  std::string body = R"({"plan_id":")" + plan_id + R"(","agent":"Ext","agent_type":"AI_Agent","content":)";
  append_json_string(&body, content);
  body += '}';
  return http_post(port, "/api/v3/agent_message", body, h);
}

std::vector<std::string> stored(int port, const std::string& plan_id) {
  auto r = http_get(port, "/api/v3/plan/" + plan_id + "/messages?limit=10000");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto d = json(r.body);
  std::vector<std::string> out;
  for (auto& m : d["messages"].GetArray()) out.push_back(write_canonical(m));
  return out;
}

std::string write_team(const std::string& dir, int messages, int delay_ms) {
  std::filesystem::create_directories(dir + "/teams");
  std::ofstream(dir + "/teams/t.json") << R"({"team_id":"t","name":"T","description":"test","agents":[
    {"name":"A","type":"script","description":"a","script":{"messages":)"
                                       << messages << R"(,"delay_ms":)" << delay_ms << R"(}},
    {"name":"B","type":"script","description":"b","script":{"messages":)"
                                       << messages << R"(,"delay_ms":)" << delay_ms << R"(}}]})";
  return dir + "/teams";
}

std::string submit(int port, bool auto_approve) {
  auto r = http_post(port, "/api/v3/process_request",
                     std::string(R"({"description":"sse test","team_id":"t","auto_approve":)") +
                         (auto_approve ? "true" : "false") + "}");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return json(r.body)["plan_id"].GetString();
}

// A plan that takes external messages (a finished plan may refuse them):
// submitted to the runtime with the default team, it waits for an approval
// (300 s by default). Its id and how many messages it holds by then.
std::pair<std::string, uint64_t> waiting_plan(int port) {
  auto r = http_post(port, "/api/v3/process_request", R"({"description":"a plan for external agents"})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  std::string id = json(r.body)["plan_id"].GetString();
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < until) {
    auto d = json(http_get(port, "/api/v3/plan?plan_id=" + id).body);
    if (std::string(d["plan"]["status"].GetString()) == "awaiting_approval") {
      return {id, d["plan"]["last_seq"].GetUint64()};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("plan " << id << " never reached awaiting_approval");
  return {id, 0};
}

}  // namespace

TEST_CASE("SSE: replay then live, the same bytes as the paging endpoint, id = seq, event = type") {
  Agentd a;
  a.seed({e2e_plan("plan-done", kDevUser)});
  a.start();
  auto [plan, first] = waiting_plan(a.port());
  const size_t k = first;
  for (int i = 1; i <= 10; ++i) REQUIRE(post_message(a.port(), plan, "m" + std::to_string(i)).status == 200);
  SseClient c;
  REQUIRE(c.open(a.port(), "/api/v3/plan/" + plan + "/events") == 200);
  CHECK(c.head().find("Content-Type: text/event-stream") != std::string::npos);
  CHECK(c.head().find("Cache-Control: no-cache") != std::string::npos);
  std::vector<Event> got;
  Event e;
  while (got.size() < k + 10 && c.next(&e) == SseClient::Got::kEvent) got.push_back(e);
  CHECK(c.retry() > 0);
  std::thread producer([&, id = plan] {
    for (int i = 11; i <= 20; ++i) post_message(a.port(), id, "m" + std::to_string(i));
  });
  while (got.size() < k + 20 && c.next(&e) == SseClient::Got::kEvent) got.push_back(e);
  producer.join();
  auto msgs = stored(a.port(), plan);
  REQUIRE(got.size() == k + 20);
  REQUIRE(msgs.size() == k + 20);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].has_id);
    CHECK(got[i].id == std::to_string(i + 1));
    CHECK(got[i].event == json(msgs[i])["type"].GetString());
    CHECK(got[i].data == msgs[i]);
  }
  CHECK(got[k].event == "agent_message");
  // The plan is not finished: the stream stays open.
  CHECK(c.next(&e, 300) == SseClient::Got::kTimeout);
  // /api/v4 is the same stream; ?after_seq= starts later.
  SseClient v4;
  REQUIRE(v4.open(a.port(), "/api/v4/plan/" + plan + "/events?after_seq=" + std::to_string(k + 18)) == 200);
  REQUIRE(v4.next(&e) == SseClient::Got::kEvent);
  CHECK(e.id == std::to_string(k + 19));
  REQUIRE(v4.next(&e) == SseClient::Got::kEvent);
  CHECK(e.id == std::to_string(k + 20));
  // A finished plan without follow: the stream ends once everything stored is sent.
  SseClient done;
  REQUIRE(done.open(a.port(), "/api/v3/plan/plan-done/events") == 200);
  CHECK(done.next(&e, 5000) == SseClient::Got::kClosed);
  SseClient follow;
  REQUIRE(follow.open(a.port(), "/api/v3/plan/plan-done/events?follow=1") == 200);
  CHECK(follow.next(&e, 500) == SseClient::Got::kTimeout);
}

TEST_CASE("SSE: a plan's stream ends after its terminal message (final result, rejection); follow=1 stays") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir(), 3, 30)});
  std::string id = submit(a.port(), true);
  SseClient c, follow;
  REQUIRE(c.open(a.port(), "/api/v3/plan/" + id + "/events") == 200);
  REQUIRE(follow.open(a.port(), "/api/v3/plan/" + id + "/events?follow=1") == 200);
  std::vector<Event> got;
  Event e;
  SseClient::Got g;
  while ((g = c.next(&e, 20000)) == SseClient::Got::kEvent) got.push_back(e);
  CHECK(g == SseClient::Got::kClosed);
  REQUIRE(!got.empty());
  CHECK(got.back().event == "final_result_message");
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i].id == std::to_string(i + 1));
  CHECK(got.size() == stored(a.port(), id).size());
  // follow=1 got the same and is still open.
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(follow.next(&e) == SseClient::Got::kEvent);
    CHECK(e.data == got[i].data);
  }
  CHECK(follow.next(&e, 500) == SseClient::Got::kTimeout);

  // A rejection ends the stream with the plan_approval_response.
  std::string rejected = submit(a.port(), false);
  SseClient r;
  REQUIRE(r.open(a.port(), "/api/v3/plan/" + rejected + "/events") == 200);
  REQUIRE(r.next(&e, 20000) == SseClient::Got::kEvent);
  CHECK(e.event == "plan_approval_request");
  auto ap = http_post(a.port(), "/api/v3/plan_approval", R"({"m_plan_id":")" + rejected + R"(","approved":false})");
  REQUIRE_MESSAGE(ap.status == 200, ap.body);
  Event last;
  while ((g = r.next(&e, 20000)) == SseClient::Got::kEvent) last = e;
  CHECK(g == SseClient::Got::kClosed);
  CHECK(last.event == "plan_approval_response");
}

TEST_CASE("SSE: 50 random disconnects resumed with Last-Event-ID deliver each seq exactly once, in order") {
  Agentd a;
  a.start();
  auto [plan, first] = waiting_plan(a.port());
  constexpr int kPosts = 400;
  const uint64_t kTotal = first + kPosts;
  std::atomic<bool> stop{false};
  std::thread producer([&, plan = plan] {
    for (int i = 1; i <= kPosts && !stop; ++i) {
      post_message(a.port(), plan, "m" + std::to_string(i));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::mt19937 rng(17);
  std::vector<uint64_t> seqs;
  uint64_t last = 0;
  int disconnects = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (last < kTotal && std::chrono::steady_clock::now() < deadline) {
    SseClient c;
    Headers h;
    // Half the reconnects send the header (EventSource), half the query.
    std::string target = "/api/v3/plan/" + plan + "/events";
    if (last > 0 && disconnects % 2 == 0) h["Last-Event-ID"] = std::to_string(last);
    if (last > 0 && disconnects % 2 == 1) target += "?after_seq=" + std::to_string(last);
    REQUIRE(c.open(a.port(), target, h) == 200);
    int take = disconnects < 50 ? static_cast<int>(rng() % 12) + 1 : static_cast<int>(kTotal);
    Event e;
    for (int i = 0; i < take && last < kTotal; ++i) {
      if (c.next(&e, 10000) != SseClient::Got::kEvent) break;
      REQUIRE(e.has_id);
      uint64_t s = std::stoull(e.id);
      CHECK(s == seq_of(e.data));
      seqs.push_back(s);
      last = s;
    }
    c.close();  // abruptly, possibly mid-event
    ++disconnects;
  }
  stop = true;
  producer.join();
  CHECK(disconnects > 50);
  REQUIRE(seqs.size() == kTotal);
  for (size_t i = 0; i < seqs.size(); ++i) CHECK(seqs[i] == i + 1);
  // The server let every one of those streams go.
  auto m = http_get(a.port(), "/metrics").body;
  CHECK(m.find("agentd_sse_open_streams 0") != std::string::npos);
}

TEST_CASE("SSE: another user's plan is 404, bad cursors 422, the per-plan cap 429") {
  Agentd a;
  a.seed({e2e_plan("plan-mine", kDevUser), e2e_plan("plan-theirs", "someone-else")});
  a.start({"--ws-max-per-plan", "2"});
  SseClient c;
  CHECK(c.open(a.port(), "/api/v3/plan/plan-theirs/events") == 404);
  CHECK(c.rest().find("Plan not found") != std::string::npos);
  CHECK(c.open(a.port(), "/api/v3/plan/nope/events") == 404);
  CHECK(c.open(a.port(), "/api/v3/plan/plan-mine/events", {{"x-ms-client-principal-id", "intruder"}}) == 404);
  CHECK(c.open(a.port(), "/api/v3/plan/plan-mine/events?user_id=intruder") == 404);
  CHECK(c.open(a.port(), "/api/v3/plan/plan-theirs/events?user_id=someone-else&follow=1") == 200);
  CHECK(c.open(a.port(), "/api/v3/plan/plan-mine/events", {{"Last-Event-ID", "x"}}) == 422);
  CHECK(c.open(a.port(), "/api/v3/plan/plan-mine/events?after_seq=-1") == 422);
  CHECK(c.open(a.port(), "/api/v3/plan/plan-mine/events?follow=maybe") == 422);
  SseClient one, two, three;
  REQUIRE(one.open(a.port(), "/api/v3/plan/plan-mine/events?follow=1") == 200);
  REQUIRE(two.open(a.port(), "/api/v3/plan/plan-mine/events?follow=1") == 200);
  // The cap counts the subscription, made once the headers are out: wait for it.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(three.open(a.port(), "/api/v3/plan/plan-mine/events?follow=1") == 429);
  // A WebSocket shares the cap.
  WsClient ws;
  CHECK_FALSE(ws.connect(a.port(), "/api/v3/socket/plan-mine?after_seq=0"));
  one.close();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(three.open(a.port(), "/api/v3/plan/plan-mine/events?follow=1") == 200);
}

TEST_CASE("SSE: a slow consumer is closed and resumes with Last-Event-ID; keep-alive comments on an idle stream") {
  Agentd a;
  a.start({"--ws-queue-frames", "8", "--sse-keepalive-ms", "200"});
  auto [plan, first] = waiting_plan(a.port());
  const uint64_t total = first + 200;
  SseClient idle;
  REQUIRE(idle.open(a.port(), "/api/v3/plan/" + plan + "/events?after_seq=" + std::to_string(first)) == 200);
  Event e;
  CHECK(idle.next(&e, 1000) == SseClient::Got::kTimeout);
  CHECK(!idle.comments().empty());
  if (!idle.comments().empty()) CHECK(idle.comments()[0] == ": keep-alive");
  idle.close();  // or it becomes a slow consumer below too

  SseClient slow, fast;
  REQUIRE(slow.open(a.port(), "/api/v3/plan/" + plan + "/events", {}, 4096) == 200);
  REQUIRE(fast.open(a.port(), "/api/v3/plan/" + plan + "/events") == 200);
  std::string big(32 * 1024, 'q');
  std::thread producer([&, plan = plan] {
    for (int i = 0; i < 200; ++i) post_message(a.port(), plan, big);
  });
  uint64_t got = 0;
  while (got < total && fast.next(&e) == SseClient::Got::kEvent) ++got;
  producer.join();
  CHECK(got == total);
  uint64_t last = 0;
  SseClient::Got g;
  while ((g = slow.next(&e)) == SseClient::Got::kEvent) last = std::stoull(e.id);
  CHECK(g == SseClient::Got::kClosed);
  CHECK(last < total);
  CHECK(http_get(a.port(), "/metrics").body.find("agentd_sse_slow_consumers_closed_total 1") != std::string::npos);
  SseClient again;
  REQUIRE(again.open(a.port(), "/api/v3/plan/" + plan + "/events", {{"Last-Event-ID", std::to_string(last)}}) == 200);
  uint64_t next = last;
  while (next < total && again.next(&e) == SseClient::Got::kEvent) {
    CHECK(std::stoull(e.id) == next + 1);
    next = std::stoull(e.id);
  }
  CHECK(next == total);
}
