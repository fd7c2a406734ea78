// In-process tests of the HTTP/WebSocket server over a real Outbox.
#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "core/json.h"
#include "tests/net/fixture.h"
#include "tests/support/forwarding_log.h"

using namespace agentd;
using namespace agentd::test;

namespace {

rapidjson::Document json(const std::string& s) {
  auto d = parse_strict(s, JsonLimits{64 << 20, 64});
  REQUIRE_MESSAGE(d.is_ok(), s.substr(0, 300));
  return std::move(*d);
}

// The "messages" array of a GET /plan/{id}/messages body (the stored
// envelopes), element by element, as raw text.
std::vector<std::string> raw_messages(const std::string& body) {
  auto d = json(body);
  std::vector<std::string> out;
  for (auto& m : d["messages"].GetArray()) out.push_back(write_canonical(m));
  return out;
}

// One entry of GET /plan's "messages": MACAE's chat view (net/macae.h), an
// AgentMessageData whose raw_data is the stored envelope as a string.
struct ChatEntry {
  std::string agent, agent_type, content, timestamp, raw_data, message_id;
  uint64_t seq = 0;
  bool steps_empty = false;
};

std::vector<ChatEntry> chat_messages(const std::string& body) {
  auto d = json(body);
  std::vector<ChatEntry> out;
  for (auto& m : d["messages"].GetArray()) {
    ChatEntry e;
    e.agent = m["agent"].GetString();
    e.agent_type = m["agent_type"].GetString();
    e.content = m["content"].GetString();
    e.timestamp = m["timestamp"].GetString();
    e.raw_data = m["raw_data"].GetString();
    e.message_id = m["message_id"].GetString();
    e.seq = m["seq"].GetUint64();
    e.steps_empty = m["steps"].IsArray() && m["steps"].Empty() && m["next_steps"].IsArray() && m["next_steps"].Empty();
    out.push_back(std::move(e));
  }
  return out;
}

const Headers kAlice{{"x-ms-client-principal-id", "alice"}};
const Headers kBob{{"x-ms-client-principal-id", "bob"}};

}  // namespace

TEST_CASE(
    "REST only: process_request, agent_message, GET /plan shows every agent message in seq order, the paging "
    "endpoint returns the stored bytes") {
  ServerFixture f;
  auto r = http_post(f.port, "/api/v3/process_request", R"({"description":"hire someone","session_id":"s1"})", kAlice);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto d = json(r.body);
  std::string plan_id = d["plan_id"].GetString();
  CHECK(std::string(d["status"].GetString()) == "Request started successfully");
  CHECK(std::string(d["session_id"].GetString()) == "s1");

  for (int i = 0; i < 5; ++i) {
    auto m = http_post(f.port, "/api/v3/agent_message",
                       R"({"plan_id":")" + plan_id + R"(","agent":"HR","agent_type":"AI_Agent","content":"c)" +
                           std::to_string(i) + R"("})",
                       kAlice);
    REQUIRE_MESSAGE(m.status == 200, m.body);
    CHECK(json(m.body)["seq"].GetUint64() == static_cast<uint64_t>(i + 2));
  }
  auto p = http_get(f.port, "/api/v3/plan?plan_id=" + plan_id, kAlice);
  REQUIRE_MESSAGE(p.status == 200, p.body);
  auto pd = json(p.body);
  CHECK(std::string(pd["plan"]["id"].GetString()) == plan_id);
  CHECK(std::string(pd["plan"]["plan_id"].GetString()) == plan_id);
  CHECK(pd["team"].IsObject());
  CHECK(pd["truncated"].GetBool() == false);
  // GET /plan's messages are the chat view: one AgentMessageData per agent
  // message, carrying the stored envelope byte for byte in raw_data.
  auto chat = chat_messages(p.body);
  REQUIRE(chat.size() == 6);
  auto stored = f.outbox->read_messages(plan_id, 0, 100);
  REQUIRE(stored.is_ok());
  REQUIRE(stored->size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    const std::string& bytes = *(*stored)[i].bytes;
    auto env = json(bytes);
    CHECK(chat[i].raw_data == bytes);
    CHECK(chat[i].seq == i + 1);
    CHECK(chat[i].message_id == env["message_id"].GetString());
    CHECK(chat[i].timestamp == env["timestamp"].GetString());
    CHECK(chat[i].content == env["data"]["content"].GetString());
    CHECK(chat[i].agent_type == "AI_Agent");
    CHECK(chat[i].steps_empty);
  }
  CHECK(chat[0].agent == "Tester");
  CHECK(chat[0].content == "planning hire someone");
  CHECK(chat[1].agent == "HR");
  CHECK(chat[5].content == "c4");
  // The complete log, byte-equal to what the outbox stores: the paging endpoint.
  auto all = http_get(f.port, "/api/v3/plan/" + plan_id + "/messages?after_seq=0", kAlice);
  REQUIRE_MESSAGE(all.status == 200, all.body);
  auto msgs = raw_messages(all.body);
  REQUIRE(msgs.size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    CHECK(msgs[i] == *(*stored)[i].bytes);
    CHECK(all.body.find(*(*stored)[i].bytes) != std::string::npos);  // embedded verbatim
  }

  auto list = http_get(f.port, "/api/v3/plans", kAlice);
  REQUIRE(list.status == 200);
  auto ld = json(list.body);
  REQUIRE(ld.GetArray().Size() == 1);
  CHECK(std::string(ld[0]["id"].GetString()) == plan_id);
  CHECK(json(http_get(f.port, "/api/v3/plans?status=completed", kAlice).body).GetArray().Size() == 0);
  CHECK(json(http_get(f.port, "/api/v3/plans?status=awaiting_approval", kAlice).body).GetArray().Size() == 1);

  auto page = http_get(f.port, "/api/v3/plan/" + plan_id + "/messages?after_seq=2&limit=3", kAlice);
  REQUIRE(page.status == 200);
  auto pg = json(page.body);
  REQUIRE(pg["messages"].GetArray().Size() == 3);
  CHECK(pg["messages"][0]["seq"].GetUint64() == 3);
  CHECK(pg["next_after_seq"].GetUint64() == 5);
  CHECK(pg["has_more"].GetBool() == true);
  CHECK(http_get(f.port, "/api/v3/plan/" + plan_id + "/messages?after_seq=x", kAlice).status == 422);
}

TEST_CASE("GET /plan caps its messages: truncated + next_after_seq, and paging fetches the rest") {
  net::ServerConfig cfg;
  cfg.plan_messages_cap = 7;
  ServerFixture f(cfg);
  PlanRecord p = make_plan("big", "alice");
  f.append(p, "m", true);
  for (int i = 0; i < 11; ++i) f.append(p, "m" + std::to_string(i));  // seqs 1..12
  auto r = http_get(f.port, "/api/v3/plan?plan_id=big", {{"x-ms-client-principal-id", "alice"}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto d = json(r.body);
  CHECK(d["truncated"].GetBool());
  CHECK(d["next_after_seq"].GetUint64() == 7);
  auto first = chat_messages(r.body);
  REQUIRE(first.size() == 7);
  CHECK(first.front().seq == 1);
  CHECK(first.back().seq == 7);
  CHECK(seq_of(first.back().raw_data) == 7);
  auto rest =
      http_get(f.port, "/api/v3/plan/big/messages?after_seq=7&limit=100", {{"x-ms-client-principal-id", "alice"}});
  REQUIRE_MESSAGE(rest.status == 200, rest.body);
  auto more = json(rest.body);
  bool array_or_object = more.IsArray() || more.HasMember("messages");
  REQUIRE(array_or_object);
  const auto& arr = more.IsArray() ? more : more["messages"];
  REQUIRE(arr.Size() == 5);
  CHECK(arr[0]["seq"].GetUint64() == 8);
  CHECK(arr[4]["seq"].GetUint64() == 12);
}

// Issue 13: the client's metadata must make a document MongoDB takes; what
// the driver or MongoDB would refuse is a 422 naming why, never a dead
// letter. (What the codec accepts round-trips through the test database:
// store_message_store_test's "codec" case.)
TEST_CASE("agent_message: metadata MongoDB would refuse is a 422 naming the field; nothing is stored") {
  net::ServerConfig cfg;
  cfg.max_body_bytes = 4u << 20;  // room for a body whose BSON passes 16 MiB
  ServerFixture f(cfg);
  PlanRecord p = make_plan("pm", "alice");
  f.append(p, "first", true);
  auto post = [&](const std::string& metadata) {
    return http_request(f.port, "POST", "/api/v3/agent_message",
                        R"({"plan_id":"pm","agent":"X","content":"c","metadata":)" + metadata + "}", kAlice,
                        60000);  // the 3 MB body under sanitizers
  };
  std::string deep = "1";
  for (int i = 0; i < 64; ++i) deep = "{\"a\":" + deep + "}";
  // 1.5M small integers: 3 MB of JSON, 18 MB of BSON (an array's keys are
  // its indexes as strings).
  std::string wide = "[0";
  for (int i = 1; i < 1500000; ++i) wide += ",0";
  wide += "]";
  const std::pair<std::string, std::string> refused[] = {
      {R"({"$set":1})", "metadata.$set: key starts with '$'"},
      {R"({"a":{"b.c":1}})", "metadata.a.b.c: key contains '.'"},
      {R"({"a\u0000b":1})", "key contains a NUL character"},
      {R"({"ok":{"":1}})", "empty key (the MongoDB driver refuses"},
      {R"({"k":1,"k":2})", "metadata.k: key appears twice"},
      {deep, "nesting deeper than 64"},
      {R"({"n":9223372036854775808})", "metadata.n: integer out of range"},
      {R"({"s":"\udc00"})", "metadata.s: string holds a lone UTF-16 surrogate"},
      {"{\"wide\":" + wide + "}", "over MongoDB's limit of 16777216"},
  };
  for (const auto& [metadata, why] : refused) {
    CAPTURE(metadata.substr(0, 80));
    auto r = post(metadata);
    CHECK(r.status == 422);
    CHECK_MESSAGE(r.body.find(why) != std::string::npos, r.body.substr(0, 300));
  }
  CHECK(f.outbox->last_seq("pm").value() == 1);
  // Accepted metadata is stored as sent (canonical).
  auto ok = post(R"({"ünï":"ċ","a$b":[1,{"_id":2}],"big":9223372036854775807,"neg":-0.0,"m":[[1]]})");
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  auto stored = f.outbox->read_messages("pm", 1, 1);
  REQUIRE(stored.is_ok());
  REQUIRE(stored->size() == 1);
  CHECK((*(*stored)[0].bytes)
            .find(R"("metadata":{"ünï":"ċ","a$b":[1,{"_id":2}],"big":9223372036854775807,"neg":-0.0,"m":[[1]]})") !=
        std::string::npos);
}

// The envelope a post becomes carries the plan's user_id and session_id: the
// 16 MiB check counts them (it once ran before they were filled in, and a
// post that fitted without them became a dead letter).
TEST_CASE("agent_message: the MongoDB size check counts the plan's session_id") {
  net::ServerConfig cfg;
  cfg.max_body_bytes = 17u << 20;
  ServerFixture f(cfg);
  PlanRecord p = make_plan("ps", "alice");
  p.session_id = std::string(1u << 20, 's');
  f.append(p, "first", true);
  auto post = [&](size_t content_bytes) {
    return http_request(f.port, "POST", "/api/v3/agent_message",
                        R"({"plan_id":"ps","agent":"X","content":")" + std::string(content_bytes, 'c') + "\"}", kAlice,
                        60000);
  };
  // 15.5 MiB of content fits alone; with the 1 MiB session_id it does not.
  auto over = post((31u << 20) / 2);
  CHECK(over.status == 422);
  CHECK_MESSAGE(over.body.find("over MongoDB's limit of 16777216") != std::string::npos, over.body.substr(0, 300));
  CHECK(f.outbox->last_seq("ps").value() == 1);
  auto fits = post(14u << 20);
  CHECK_MESSAGE(fits.status == 200, fits.body.substr(0, 300));
  CHECK(f.outbox->last_seq("ps").value() == 2);
}

TEST_CASE("agent_message is idempotent on message_id and on echoed frames") {
  ServerFixture f;
  PlanRecord p = make_plan("p1", "alice");
  f.append(p, "first", true);
  std::string body = R"({"plan_id":"p1","agent":"X","content":"hi","message_id":"m-42"})";
  auto a = http_post(f.port, "/api/v3/agent_message", body, kAlice);
  auto b = http_post(f.port, "/api/v3/agent_message", body, kAlice);
  REQUIRE(a.status == 200);
  REQUIRE(b.status == 200);
  CHECK(json(a.body)["seq"].GetUint64() == 2);
  CHECK(json(b.body)["seq"].GetUint64() == 2);
  // The answer names the plan and the message (the plan_id was once read
  // from a moved-from draft: empty).
  CHECK(std::string(json(a.body)["plan_id"].GetString()) == "p1");
  CHECK(std::string(json(a.body)["message_id"].GetString()) == "m-42");
  CHECK_FALSE(json(a.body)["duplicate"].GetBool());
  CHECK(std::string(json(b.body)["plan_id"].GetString()) == "p1");
  CHECK(json(b.body)["duplicate"].GetBool());
  // The UP frontend echoes a received frame back with raw_data = the frame.
  auto stored = f.outbox->read_messages("p1", 0, 1);
  REQUIRE(stored.is_ok());
  std::string echo = R"({"plan_id":"p1","agent":"X","content":"first","raw_data":)";
  append_json_string(&echo, *(*stored)[0].bytes);
  echo += '}';
  auto e = http_post(f.port, "/api/v3/agent_message", echo, kAlice);
  REQUIRE_MESSAGE(e.status == 200, e.body);
  CHECK(json(e.body)["seq"].GetUint64() == 1);
  CHECK(json(e.body)["duplicate"].GetBool());
  CHECK(*f.outbox->last_seq("p1") == 2);
}

TEST_CASE("errors: 401 404 405 413 422 409 503, FastAPI-style details") {
  net::ServerConfig cfg;
  cfg.max_body_bytes = 4096;
  ServerFixture f(cfg);
  PlanRecord p = make_plan("pa", "alice");
  f.append(p, "x", true);

  CHECK(http_get(f.port, "/api/v3/nothing").status == 404);
  CHECK(http_request(f.port, "DELETE", "/api/v3/plans").status == 405);
  auto miss = http_get(f.port, "/api/v3/plan?plan_id=nope", kAlice);
  CHECK(miss.status == 404);
  CHECK(miss.body == R"({"detail":"Plan not found"})");
  CHECK(http_get(f.port, "/api/v3/plan", kAlice).status == 422);
  // Isolation: another user's plan is "not found", for reads and writes.
  CHECK(http_get(f.port, "/api/v3/plan?plan_id=pa", kBob).status == 404);
  CHECK(http_get(f.port, "/api/v3/plan/pa/messages", kBob).status == 404);
  CHECK(http_post(f.port, "/api/v3/agent_message", R"({"plan_id":"pa","content":"x"})", kBob).status == 404);
  CHECK(http_post(f.port, "/api/v3/plans/pa/cancel", "", kBob).status == 404);
  CHECK(http_post(f.port, "/api/v3/plans/pa/cancel", "", kAlice).status == 200);
  CHECK(json(http_get(f.port, "/api/v3/plans", kBob).body).GetArray().Size() == 0);

  auto big = http_post(f.port, "/api/v3/agent_message",
                       R"({"plan_id":"pa","content":")" + std::string(5000, 'x') + R"("})", kAlice);
  CHECK_MESSAGE(big.status == 413, big.error);
  auto bad = http_post(f.port, "/api/v3/agent_message", R"({"plan_id":"pa","content":7})", kAlice);
  CHECK(bad.status == 422);
  CHECK(bad.body == R"({"detail":[{"loc":["body","content"],"msg":"str type expected","type":"type_error.str"}]})");
  auto malformed = http_post(f.port, "/api/v3/process_request", "{", kAlice);
  CHECK(malformed.status == 422);
  CHECK(malformed.body.find("\"detail\":[{\"loc\":[\"body\"") != std::string::npos);
  auto approval = http_post(f.port, "/api/v3/plan_approval", R"({"m_plan_id":"pa"})", kAlice);
  CHECK(approval.status == 422);
  CHECK(approval.body.find(R"("loc":["body","approved"])") != std::string::npos);
  auto full = http_post(f.port, "/api/v3/process_request", R"({"description":"full"})", kAlice);
  CHECK(full.status == 503);
  CHECK(full.header("retry-after") == "2");
  CHECK(http_post(f.port, "/api/v3/user_clarification", R"({"request_id":"unknown"})", kAlice).status == 404);
  CHECK(http_post(f.port, "/api/v3/user_clarification", R"({"request_id":"r1","answer":"yes"})", kAlice).status == 200);
  auto ok = http_post(f.port, "/api/v3/plan_approval", R"({"m_plan_id":"pa","approved":true})", kAlice);
  CHECK(ok.body == R"({"status":"approval recorded"})");

  CHECK(http_get(f.port, "/api/v3/team_configs/nope").status == 404);
  CHECK(http_get(f.port, "/api/v3/team_configs/team-1").status == 200);
  auto sel = http_post(f.port, "/api/v3/select_team", R"({"team_id":"team-1"})");
  CHECK(json(sel.body)["agents_count"].GetInt() == 1);
  CHECK(json(http_get(f.port, "/api/v3/init_team").body)["team_id"].GetString() == std::string("team-1"));

  auto metrics = http_get(f.port, "/metrics");
  CHECK(metrics.body.find(R"(agentd_http_requests_total{route="/api/v3/agent_message",status="413"} 1)") !=
        std::string::npos);
  CHECK(http_get(f.port, "/readyz").status == 200);
}

TEST_CASE("token auth: 401 without a valid token; WebSocket token by query or subprotocol") {
  std::string dir = make_temp_dir("agentd-net-tokens");
  {
    std::ofstream out(dir + "/tokens");
    out << "secret-a alice\nsecret-b bob\n";
  }
  net::ServerConfig cfg;
  cfg.auth = net::AuthMode::kToken;
  cfg.auth_token_file = dir + "/tokens";
  ServerFixture f(cfg);
  f.append(make_plan("pt", "alice"), "x", true);
  auto none = http_get(f.port, "/api/v3/plans");
  CHECK(none.status == 401);
  CHECK(none.header("www-authenticate") == "Bearer");
  CHECK(http_get(f.port, "/api/v3/plans", {{"x-ms-client-principal-id", "alice"}}).status == 401);
  CHECK(http_get(f.port, "/api/v3/plan?plan_id=pt", {{"Authorization", "Bearer secret-a"}}).status == 200);
  CHECK(http_get(f.port, "/api/v3/plan?plan_id=pt", {{"Authorization", "Bearer secret-b"}}).status == 404);
  CHECK(http_get(f.port, "/healthz").status == 200);

  WsClient w0;
  CHECK(!w0.connect(f.port, "/api/v3/socket/pt"));
  CHECK(w0.upgrade_status() == 401);
  WsClient w1;
  REQUIRE_MESSAGE(w1.connect(f.port, "/api/v3/socket/pt?token=secret-a&after_seq=0"), w1.error());
  CHECK(seq_of(w1.read().text) == 1);
  WsClient w2;
  REQUIRE_MESSAGE(w2.connect(f.port, "/api/v3/socket/pt?after_seq=0", {{"Sec-WebSocket-Protocol", "bearer.secret-a"}}),
                  w2.error());
  CHECK(w2.selected_protocol() == "bearer.secret-a");
  CHECK(seq_of(w2.read().text) == 1);
  WsClient w3;
  CHECK(!w3.connect(f.port, "/api/v3/socket/pt?token=secret-b"));
  CHECK(w3.upgrade_status() == 404);
  std::filesystem::remove_all(dir);
}

TEST_CASE("the test client's reads time out: a quiet WebSocket is kTimeout after about the time asked") {
  // Every test that waits for a frame relies on this to fail instead of
  // hanging until ctest's limit.
  ServerFixture f;
  PlanRecord p = make_plan("quiet", "alice");
  f.append(p, "m", true);
  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(f.port, "/api/v3/socket/quiet?user_id=alice&after_seq=1"), ws.error());
  auto t0 = std::chrono::steady_clock::now();
  auto r = ws.read(300);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK_MESSAGE(r.kind == WsClient::Read::kTimeout, r.kind, " ", r.text, " ", r.close_code, " ", r.close_reason);
  CHECK(took >= std::chrono::milliseconds(250));
  CHECK(took < std::chrono::seconds(5));
}

TEST_CASE(
    "WebSocket keep-alive: a client that answers pings stays; one that stops reading is closed after the idle "
    "timeout") {
  net::ServerConfig cfg;
  cfg.ws_idle_timeout = std::chrono::milliseconds(1000);  // pings every 500 ms
  ServerFixture f(cfg);
  PlanRecord p = make_plan("idle", "alice");
  f.append(p, "m", true);
  WsClient live, silent;
  REQUIRE_MESSAGE(live.connect(f.port, "/api/v3/socket/idle?user_id=alice&after_seq=1"), live.error());
  REQUIRE_MESSAGE(silent.connect(f.port, "/api/v3/socket/idle?user_id=alice&after_seq=1"), silent.error());
  // `live` reads (and so answers pings) for 3 idle timeouts: still open.
  CHECK(live.read(2500).kind == WsClient::Read::kTimeout);
  // `silent` read nothing for as long: the server has dropped it.
  auto gone = silent.read(1500);
  CHECK(gone.kind != WsClient::Read::kTimeout);
  CHECK(gone.kind != WsClient::Read::kFrame);
  // `live` still gets what is appended (a fresh client: the timed-out one's
  // stream is not reused after a cancelled read).
  WsClient again;
  REQUIRE(again.connect(f.port, "/api/v3/socket/idle?user_id=alice&after_seq=1"));
  f.append(p, "m2");
  auto r = again.read(2000);
  REQUIRE(r.kind == WsClient::Read::kFrame);
  CHECK(seq_of(r.text) == 2);
}

TEST_CASE("WebSocket: replay then live with no gap and no duplicate, frames equal REST bytes") {
  ServerFixture f;
  PlanRecord p = make_plan("pw", "alice");
  f.append(p, "m", true);
  for (int i = 0; i < 200; ++i) f.append(p, "m" + std::to_string(i));
  constexpr uint64_t kTotal = 1001;
  std::thread producer([&] {
    for (uint64_t i = 202; i <= kTotal; ++i) f.append(p, "live" + std::to_string(i));
  });
  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(f.port, "/api/v3/socket/pw?user_id=alice&after_seq=10"), ws.error());
  std::vector<std::string> frames;
  while (frames.size() < kTotal - 10) {
    auto r = ws.read(5000);
    if (r.kind != WsClient::Read::kFrame) break;
    frames.push_back(r.text);
  }
  producer.join();
  REQUIRE(frames.size() == kTotal - 10);
  for (size_t i = 0; i < frames.size(); ++i) CHECK(seq_of(frames[i]) == 11 + i);
  // GET /plan's chat entries carry the stored envelopes in raw_data.
  auto rest = http_get(f.port, "/api/v3/plan?plan_id=pw", {{"x-ms-client-principal-id", "alice"}});
  auto msgs = chat_messages(rest.body);
  REQUIRE(msgs.size() == kTotal);
  for (size_t i = 0; i < frames.size(); ++i) {
    CHECK(frames[i] == msgs[i + 10].raw_data);
    CHECK(msgs[i + 10].seq == 11 + i);
  }

  // Live-only frames (streaming chunks) are sent, never replayed.
  f.plans->live("pw", std::make_shared<const std::string>(R"({"type":"agent_message_streaming","data":{}})"));
  auto chunk = ws.read();
  CHECK(chunk.text.find("agent_message_streaming") != std::string::npos);
  // ping -> pong; resume re-sends from the given seq.
  REQUIRE(ws.write(R"({"type":"ping"})"));
  CHECK(ws.read().text.find("\"type\":\"pong\"") != std::string::npos);
  REQUIRE(ws.write(R"({"type":"resume","after_seq":998})"));
  CHECK(seq_of(ws.read().text) == 999);
  CHECK(seq_of(ws.read().text) == 1000);
  CHECK(seq_of(ws.read().text) == 1001);
  // Client approval frames reach the PlanService like the REST twin.
  REQUIRE(ws.write(R"({"type":"plan_approval_response","data":{"approved":true,"feedback":"ok"}})"));
  auto ack = ws.read();
  CHECK(ack.text.find("approval_processed") != std::string::npos);
  CHECK(ack.text.find("approval recorded") != std::string::npos);
  {
    std::lock_guard lock(f.plans->mu);
    REQUIRE(f.plans->approvals.size() == 1);
    CHECK(f.plans->approvals[0].m_plan_id == "pw");
    CHECK(f.plans->approvals[0].user_id == "alice");
  }
  REQUIRE(ws.write(R"({"type":"bogus"})"));
  CHECK(ws.read().text.find("unknown_message_type") != std::string::npos);
}

TEST_CASE("WebSocket: user_clarification_response reaches the PlanService like POST /user_clarification") {
  ServerFixture f;
  f.append(make_plan("pq", "alice"), "x", true);
  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(f.port, "/api/v3/socket/pq?user_id=alice&after_seq=0"), ws.error());
  REQUIRE(seq_of(ws.read().text) == 1);
  // Recorded with the socket's user and plan; answered clarification_processed.
  REQUIRE(ws.write(R"({"type":"user_clarification_response","data":{"request_id":"r1","answer":"yes"}})"));
  auto ack = json(ws.read().text);
  CHECK(std::string(ack["type"].GetString()) == "clarification_processed");
  CHECK(std::string(ack["plan_id"].GetString()) == "pq");
  CHECK(std::string(ack["data"]["status"].GetString()) == "clarification recorded");
  CHECK(ack["data"]["ok"].GetBool());
  {
    std::lock_guard lock(f.plans->mu);
    REQUIRE(f.plans->clarifications.size() == 1);
    CHECK(f.plans->clarifications[0].request_id == "r1");
    CHECK(f.plans->clarifications[0].answer == "yes");
    CHECK(f.plans->clarifications[0].user_id == "alice");
    CHECK(f.plans->clarifications[0].plan_id == "pq");
  }
  // The PlanService's refusal comes back in the same frame type, ok=false
  // (REST answers it 404).
  REQUIRE(ws.write(R"({"type":"user_clarification_response","data":{"request_id":"unknown","answer":"a"}})"));
  auto refused = json(ws.read().text);
  CHECK(std::string(refused["type"].GetString()) == "clarification_processed");
  CHECK_FALSE(refused["data"]["ok"].GetBool());
  CHECK(std::string(refused["data"]["status"].GetString()).find("No active plan found") != std::string::npos);
  // Malformed (no request_id, no data, data not an object): error_notification
  // naming the field, and the PlanService is not called.
  for (const char* bad :
       {R"({"type":"user_clarification_response","data":{"answer":"yes"}})",
        R"({"type":"user_clarification_response"})", R"({"type":"user_clarification_response","data":"r1"})",
        R"({"type":"user_clarification_response","data":{"request_id":7}})"}) {
    REQUIRE(ws.write(bad));
    auto err = json(ws.read().text);
    CHECK_MESSAGE(std::string(err["type"].GetString()) == "error_notification", bad);
    CHECK_MESSAGE(std::string(err["data"]["error_type"].GetString()) == "invalid_message", bad);
    CHECK_MESSAGE(std::string(err["data"]["error_message"].GetString()) == "data.request_id: missing", bad);
  }
  {
    std::lock_guard lock(f.plans->mu);
    CHECK(f.plans->clarifications.size() == 2);
  }
  // The session is still usable.
  REQUIRE(ws.write(R"({"type":"ping"})"));
  CHECK(ws.read().text.find("\"type\":\"pong\"") != std::string::npos);
}

TEST_CASE("WebSocket: isolation, per-plan cap, shutdown closes with 1001") {
  net::ServerConfig cfg;
  cfg.ws_max_per_plan = 2;
  auto f = std::make_unique<ServerFixture>(cfg);
  f->append(make_plan("pc", "alice"), "x", true);
  WsClient other;
  CHECK(!other.connect(f->port, "/api/v3/socket/pc?user_id=bob"));
  CHECK(other.upgrade_status() == 404);
  WsClient missing;
  CHECK(!missing.connect(f->port, "/api/v3/socket/nope?user_id=alice"));
  CHECK(missing.upgrade_status() == 404);

  WsClient a, b, c;
  REQUIRE(a.connect(f->port, "/api/v3/socket/pc?user_id=alice&after_seq=0"));
  REQUIRE(b.connect(f->port, "/api/v3/socket/pc?user_id=alice&after_seq=0"));
  CHECK(seq_of(a.read().text) == 1);
  CHECK(seq_of(b.read().text) == 1);
  // Over the cap: refused before the handshake (the v4 UI gives up on a
  // refused handshake, but reconnects after any close of an open socket).
  CHECK(!c.connect(f->port, "/api/v3/socket/pc?user_id=alice&after_seq=0"));
  CHECK(c.upgrade_status() == 429);
  CHECK(f->server->hub().subscribers("pc") == 2);
  auto refused = http_get(f->port, "/api/v3/socket/pc?user_id=alice&after_seq=0",
                          {{"Connection", "Upgrade"},
                           {"Upgrade", "websocket"},
                           {"Sec-WebSocket-Version", "13"},
                           {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}});
  CHECK(refused.status == 429);
  CHECK(refused.header("retry-after") == "2");
  CHECK(refused.body.find("too many WebSockets for this plan") != std::string::npos);

  std::thread stopper([&] { f->server->stop(std::chrono::milliseconds(3000)); });
  auto bye = a.read();
  CHECK(bye.kind == WsClient::Read::kClosed);
  CHECK(bye.close_code == 1001);
  CHECK(bye.close_reason.find("after_seq=1") != std::string::npos);
  auto bye2 = b.read();
  CHECK(bye2.close_code == 1001);
  stopper.join();
}

TEST_CASE("WebSocket: a slow consumer is closed with a resume hint and its memory freed") {
  net::ServerConfig cfg;
  // The fast reader must keep up: a queue of 64 frames and a producer paced
  // at 2 ms give it ~128 ms of slack (ctest runs tests in parallel on a busy
  // machine); the slow reader never reads, so it overflows regardless.
  cfg.ws_queue_frames = 64;
  ServerFixture f(cfg);
  PlanRecord p = make_plan("ps", "alice");
  f.append(p, "x", true);
  WsClient slow;
  slow.set_receive_buffer(4096);
  REQUIRE(slow.connect(f.port, "/api/v3/socket/ps?user_id=alice&after_seq=1"));
  WsClient fast;
  REQUIRE(fast.connect(f.port, "/api/v3/socket/ps?user_id=alice&after_seq=1"));
  std::string big(32 * 1024, 'y');
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (int i = 0; i < 300 && !done; ++i) {
      f.append(p, big);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  // The fast reader keeps up; the slow one reads nothing meanwhile.
  size_t got = 0;
  while (got < 300) {
    auto r = fast.read(10000);
    if (r.kind != WsClient::Read::kFrame) break;
    ++got;
  }
  done = true;
  producer.join();
  CHECK(got == 300);
  // Now drain the slow one: some frames, then the close with the hint.
  WsClient::Read r;
  uint64_t last = 1;
  for (;;) {
    r = slow.read(10000);
    if (r.kind != WsClient::Read::kFrame) break;
    CHECK(seq_of(r.text) == last + 1);
    last = seq_of(r.text);
  }
  REQUIRE(r.kind == WsClient::Read::kClosed);
  CHECK(r.close_code == 1013);
  CHECK(r.close_reason.find("slow consumer") != std::string::npos);
  CHECK(r.close_reason.find("after_seq=") != std::string::npos);
  CHECK(last < 301);
  CHECK(f.server->hub().subscribers("ps") == 1);  // only the fast one remains
  CHECK(http_get(f.port, "/metrics").body.find("agentd_ws_slow_consumers_closed_total 1") != std::string::npos);
}

TEST_CASE("WebSocket: a client that sends pings and never reads is a slow consumer too (replies are bounded)") {
  // Before: replies bypassed the queue bound; 1,000,000 pings from a client
  // that never read took agentd from 14 MB to 407 MB and the socket stayed.
  net::ServerConfig cfg;
  cfg.ws_queue_frames = 16;
  ServerFixture f(cfg);
  f.append(make_plan("pp", "alice"), "x", true);
  WsClient ws;
  ws.set_receive_buffer(4096);
  REQUIRE(ws.connect(f.port, "/api/v3/socket/pp?user_id=alice&after_seq=1"));
  auto closed = [&] { return f.server->hub().subscribers("pp") == 0; };
  // The server subscribes just after the handshake the client has seen.
  for (int i = 0; i < 500 && closed(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(!closed());
  for (int i = 0; i < 200000 && !closed(); ++i) {
    if (!ws.write(R"({"type":"ping"})")) break;  // the server may close meanwhile
  }
  for (int i = 0; i < 500 && !closed(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(closed());
  std::string m = http_get(f.port, "/metrics").body;
  size_t at = m.find("agentd_ws_slow_consumers_closed_total ");
  CHECK_MESSAGE(m.find("agentd_ws_slow_consumers_closed_total 1") != std::string::npos,
                (at == std::string::npos ? m : m.substr(at, 60)));
}

TEST_CASE("CORS: '*' answers Allow-Origin * without credentials; a listed origin is reflected with credentials") {
  const Headers evil{{"Origin", "https://evil.example"}};
  const Headers app{{"Origin", "https://app.example"}};
  const Headers preflight_app{{"Origin", "https://app.example"}, {"Access-Control-Request-Method", "POST"}};
  SUBCASE("default (no --cors-origins): no CORS headers for anyone") {
    ServerFixture f;
    for (const auto& h : {evil, app}) {
      auto r = http_get(f.port, "/api/v3/plans", h);
      CHECK(r.status == 200);
      CHECK(r.header("access-control-allow-origin") == "");
      CHECK(r.header("access-control-allow-credentials") == "");
      CHECK(r.header("vary") == "");
    }
  }
  SUBCASE("'*': any origin, never credentials") {
    net::ServerConfig cfg;
    cfg.cors_origins = {"*"};
    ServerFixture f(cfg);
    auto r = http_get(f.port, "/api/v3/plans", evil);
    CHECK(r.status == 200);
    CHECK(r.header("access-control-allow-origin") == "*");
    CHECK(r.header("access-control-allow-credentials") == "");
    auto pre = http_request(f.port, "OPTIONS", "/api/v3/process_request", "", preflight_app);
    CHECK(pre.status == 204);
    CHECK(pre.header("access-control-allow-origin") == "*");
    CHECK(pre.header("access-control-allow-credentials") == "");
    CHECK(pre.header("access-control-allow-methods").find("POST") != std::string::npos);
    CHECK(pre.header("access-control-allow-headers").find("Authorization") != std::string::npos);
    // No Origin, no CORS headers.
    CHECK(http_get(f.port, "/api/v3/plans").header("access-control-allow-origin") == "");
  }
  SUBCASE("a list: listed origins reflected with credentials and Vary: Origin, others get nothing") {
    net::ServerConfig cfg;
    cfg.cors_origins = {"https://app.example", "http://localhost:3000"};
    ServerFixture f(cfg);
    auto r = http_get(f.port, "/api/v3/plans", app);
    CHECK(r.header("access-control-allow-origin") == "https://app.example");
    CHECK(r.header("access-control-allow-credentials") == "true");
    CHECK(r.header("vary") == "Origin");
    auto pre = http_request(f.port, "OPTIONS", "/api/v3/process_request", "", preflight_app);
    CHECK(pre.status == 204);
    CHECK(pre.header("access-control-allow-origin") == "https://app.example");
    CHECK(pre.header("access-control-allow-credentials") == "true");
    auto other = http_get(f.port, "/api/v3/plans", evil);
    CHECK(other.status == 200);
    CHECK(other.header("access-control-allow-origin") == "");
    CHECK(other.header("access-control-allow-credentials") == "");
    CHECK(other.header("vary") == "Origin");
    // Caches learn that the answer depends on Origin even from a request without one.
    CHECK(http_get(f.port, "/api/v3/plans").header("vary") == "Origin");
  }
  SUBCASE("'*' and a list: listed ones with credentials, the rest '*' without") {
    net::ServerConfig cfg;
    cfg.cors_origins = {"*", "https://app.example"};
    ServerFixture f(cfg);
    auto listed = http_get(f.port, "/api/v3/plans", app);
    CHECK(listed.header("access-control-allow-origin") == "https://app.example");
    CHECK(listed.header("access-control-allow-credentials") == "true");
    auto other = http_get(f.port, "/api/v3/plans", evil);
    CHECK(other.header("access-control-allow-origin") == "*");
    CHECK(other.header("access-control-allow-credentials") == "");
  }
  SUBCASE("an entry that is not an origin is refused at start") {
    ServerFixture f;
    net::ServerConfig cfg;
    cfg.cors_origins = {"https://app.example", "app.example"};
    cfg.listen = {boost::asio::ip::make_address("127.0.0.1"), 0};
    net::ServerDeps deps;
    deps.log = f.outbox.get();
    deps.metrics = &f.metrics;
    auto s = net::Server::create(cfg, std::move(deps));
    REQUIRE(!s.is_ok());
    CHECK(s.status().code() == Code::kInvalidArgument);
    CHECK(s.status().message().find("'app.example'") != std::string::npos);
  }
}

TEST_CASE("WebSocket upgrade: a foreign Origin is refused 403; none, the server's own, listed or under '*' pass") {
  const std::string target = "/api/v3/socket/po?user_id=alice";
  // The upgrade request as a browser sends it, through the plain HTTP client
  // (to read the refusal's body).
  auto upgrade = [&](int port, const std::string& origin) {
    Headers h{{"Connection", "Upgrade"},
              {"Upgrade", "websocket"},
              {"Sec-WebSocket-Version", "13"},
              {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
              {"Host", "127.0.0.1:" + std::to_string(port)}};
    if (!origin.empty()) h["Origin"] = origin;
    return http_get(port, target, h);
  };
  auto opens = [&](int port, const Headers& h) {
    WsClient ws;
    bool ok = ws.connect(port, target, h);
    CHECK_MESSAGE(ok, ws.error());
    return ok && ws.upgrade_status() == 101;
  };
  SUBCASE("default: only no Origin and the server's own origin") {
    ServerFixture f;
    f.append(make_plan("po", "alice"), "x", true);
    const std::string self = "http://127.0.0.1:" + std::to_string(f.port);
    for (const std::string& foreign :
         std::vector<std::string>{"https://evil.example", "http://127.0.0.1:1", "null", "http://localhost:3000",
                                  "http://127.0.0.1:" + std::to_string(f.port) + ".evil.example"}) {
      auto r = upgrade(f.port, foreign);
      CHECK_MESSAGE(r.status == 403, foreign);
      CHECK(r.header("content-type") == "application/json");
      auto d = json(r.body);
      CHECK(std::string(d["detail"].GetString()).find("origin '" + foreign + "' is not allowed") != std::string::npos);
      WsClient ws;
      CHECK(!ws.connect(f.port, target, {{"Origin", foreign}}));
      CHECK(ws.upgrade_status() == 403);
    }
    // A cross-site page cannot even probe which plans exist.
    CHECK(upgrade(f.port, "https://evil.example").body.find("po") == std::string::npos);
    CHECK(opens(f.port, {}));
    CHECK(opens(f.port, {{"Origin", self}}));
    CHECK(opens(f.port, {{"Origin", "HTTP://127.0.0.1:" + std::to_string(f.port)}}));
    CHECK(f.metrics.render().find(R"(agentd_http_requests_total{route="/api/v3/socket/{plan_id}",status="403"})") !=
          std::string::npos);
  }
  SUBCASE("a list: listed origins pass, others are refused") {
    net::ServerConfig cfg;
    cfg.cors_origins = {"http://localhost:3000"};
    ServerFixture f(cfg);
    f.append(make_plan("po", "alice"), "x", true);
    CHECK(opens(f.port, {{"Origin", "http://localhost:3000"}}));
    CHECK(opens(f.port, {{"Origin", "http://127.0.0.1:" + std::to_string(f.port)}}));
    CHECK(upgrade(f.port, "https://evil.example").status == 403);
  }
  SUBCASE("'*': any origin") {
    net::ServerConfig cfg;
    cfg.cors_origins = {"*"};
    ServerFixture f(cfg);
    f.append(make_plan("po", "alice"), "x", true);
    CHECK(opens(f.port, {{"Origin", "https://evil.example"}}));
    CHECK(opens(f.port, {{"Origin", "null"}}));
  }
}

TEST_CASE("connection cap: connections over --max-connections are closed at accept; oversized client frames close") {
  net::ServerConfig cfg;
  cfg.max_connections = 2;
  cfg.ws_max_frame_bytes = 1024;
  ServerFixture f(cfg);
  f.append(make_plan("pk", "alice"), "x", true);
  auto a = std::make_unique<WsClient>();
  WsClient b;
  REQUIRE(a->connect(f.port, "/api/v3/socket/pk?user_id=alice&after_seq=0"));
  REQUIRE(b.connect(f.port, "/api/v3/socket/pk?user_id=alice&after_seq=0"));
  CHECK(http_get(f.port, "/healthz").status == 0);  // third connection: closed
  a.reset();
  HttpReply r;
  for (int i = 0; i < 100 && r.status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    r = http_get(f.port, "/healthz");
  }
  CHECK(r.status == 200);
  // At least the third connection was refused; polls made before a's close
  // reached the server were refused too.
  HttpReply m;  // the cap is 2 and b holds one: retry until the last poll's socket is gone
  for (int i = 0; i < 100 && m.status != 200; ++i) {
    m = http_get(f.port, "/metrics");
    if (m.status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string metrics = m.body;
  const std::string series = "\nagentd_http_rejected_connections_total ";
  auto at = metrics.find(series);
  REQUIRE(at != std::string::npos);
  CHECK(std::stoul(metrics.substr(at + series.size())) >= 1);
  CHECK(seq_of(b.read().text) == 1);
  REQUIRE(b.write(std::string(2048, ' ') + "{}"));
  WsClient::Read c;
  do c = b.read(5000);
  while (c.kind == WsClient::Read::kFrame);
  // Beast fails the read (message_too_big) and tears the connection down.
  CHECK(c.kind != WsClient::Read::kTimeout);
  CHECK((c.kind == WsClient::Read::kError || c.close_code == 1009));
}

namespace {

// MongoDB's side of reads, holding nothing (the outbox holds every message).
struct EmptyHistory final : net::HistoryReader {
  Result<std::vector<StoredMessage>> read_messages(std::string_view, uint64_t, size_t) override {
    return std::vector<StoredMessage>();
  }
  Result<std::optional<PlanRecord>> get_plan(std::string_view) override { return std::optional<PlanRecord>(); }
  Result<std::vector<PlanRecord>> list_plans(std::string_view, size_t) override { return std::vector<PlanRecord>(); }
};

// The outbox, with one read held: the first read_messages(`plan`, `after`)
// tells entered() and waits for release() before it reads.
struct HeldRead final : test::ForwardingLog {
  Result<std::vector<StoredMessage>> read_messages(std::string_view id, uint64_t after, size_t limit) override {
    if (id == plan && after == held_after && !held.exchange(true)) {
      entered.set_value();
      released.get_future().wait();
    }
    return inner->read_messages(id, after, limit);
  }
  std::string plan;
  uint64_t held_after = 0;
  std::atomic<bool> held{false};
  std::promise<void> entered, released;
};

}  // namespace

// Issue 13, item 11: a `resume` that arrives while a replay read is in
// flight, and that read comes back empty, must still send the resumed range.
// The read is held (HeldRead) until the resume frame was handled (a ping
// sent after it was answered), so the interleaving is forced.
TEST_CASE("WebSocket: a resume during an in-flight replay read that returns empty sends the resumed range") {
  EmptyHistory history;
  HeldRead held;
  held.plan = "pr";
  held.held_after = 5;  // the read of a client already at seq 5: empty
  FixtureHooks hooks;
  hooks.history = &history;
  hooks.log = [&held](Outbox* ob) {
    held.inner = ob;
    return static_cast<MessageLog*>(&held);
  };
  ServerFixture f({}, 64ull << 20, std::move(hooks));
  PlanRecord p = make_plan("pr", "alice");
  f.append(p, "m1", /*with_plan=*/true);
  for (int i = 2; i <= 5; ++i) f.append(p, "m" + std::to_string(i));

  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(f.port, "/api/v3/socket/pr?user_id=alice&after_seq=5"), ws.error());
  REQUIRE(held.entered.get_future().wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  // The replay read after seq 5 is in flight. Ask for everything after 2;
  // the pong to the ping that follows proves the resume was handled.
  REQUIRE(ws.write(R"({"type":"resume","after_seq":2})"));
  REQUIRE(ws.write(R"({"type":"ping"})"));
  auto pong = ws.read();
  REQUIRE(pong.kind == WsClient::Read::kFrame);
  CHECK(pong.text.find("\"type\":\"pong\"") != std::string::npos);
  held.released.set_value();  // the held read returns: nothing after seq 5
  // 3, 4, 5 once each, in order; then live 6 once (no duplicate).
  for (uint64_t want = 3; want <= 5; ++want) {
    auto r = ws.read();
    REQUIRE_MESSAGE(r.kind == WsClient::Read::kFrame, "seq " << want << " of the resumed range never came");
    CHECK(seq_of(r.text) == want);
  }
  f.append(p, "m6");
  auto live = ws.read();
  REQUIRE(live.kind == WsClient::Read::kFrame);
  CHECK(seq_of(live.text) == 6);
  REQUIRE(ws.write(R"({"type":"ping"})"));
  auto last = ws.read();
  CHECK(last.text.find("\"type\":\"pong\"") != std::string::npos);
}
