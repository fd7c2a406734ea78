// What the MACAE UIs read (issue 12): the pure translations of net/macae.h,
// multipart, resume cursors, the /api/v4 routes, and the server paths the
// UIs take — GET /config, the SPA fallback, a WebSocket opened without
// after_seq, echoes posted back through /agent_message, team upload/delete.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "core/json.h"
#include "net/macae.h"
#include "net/multipart.h"
#include "net/resume_cursors.h"
#include "net/router.h"
#include "tests/net/fixture.h"

using namespace agentd;
using namespace agentd::test;
using agentd::net::chat_view;
using agentd::net::current_m_plan;
using agentd::net::echoed_ids;
using agentd::net::read_echoed_frame;

namespace {

rapidjson::Document json(const std::string& s) {
  auto d = parse_strict(s, JsonLimits{64 << 20, 64});
  REQUIRE_MESSAGE(d.is_ok(), s.substr(0, 300));
  return std::move(*d);
}

std::string str(const rapidjson::Value& v, const char* k) {
  auto it = v.FindMember(k);
  return it != v.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString()) : std::string("<none>");
}

StoredMessage envelope(uint64_t seq, std::string_view type, const std::string& data, const std::string& mid = "") {
  MessageDraft d;
  d.type = std::string(type);
  d.plan_id = "p1";
  d.message_id = mid.empty() ? "m" + std::to_string(seq) : mid;
  d.user_id = "alice";
  d.session_id = "s";
  d.data = data;
  PreparedMessage pm = prepare(std::move(d));
  return StoredMessage{seq, std::make_shared<const std::string>(finalize(seq, pm.tail))};
}

const Headers kAlice{{"x-ms-client-principal-id", "alice"}};

}  // namespace

TEST_CASE("chat_view: the bubbles MACAE's chat shows, in seq order, each with its envelope as raw_data") {
  PlanRecord plan = make_plan("p1", "alice", PlanStatus::kCompleted);
  std::vector<StoredMessage> log = {
      envelope(1, msgtype::kPlanApprovalRequest, R"({"plan":{"id":"m"},"status":"PENDING_APPROVAL"})"),
      envelope(2, msgtype::kPlanApprovalResponse, R"({"approved":true,"feedback":"ok"})"),
      envelope(3, msgtype::kAgentMessage, R"({"agent_name":"Writer","agent_type":"AI_Agent","content":"draft"})"),
      envelope(4, msgtype::kUserClarificationRequest, R"({"question":"Which region?","request_id":"r-1"})"),
      envelope(5, msgtype::kUserClarificationResponse, R"({"request_id":"r-1","answer":"Europe"})"),
      envelope(6, msgtype::kAgentMessage, R"({"agent":"External","content":"posted"})"),
      envelope(7, msgtype::kFinalResultMessage, R"({"content":"All done","status":"completed"})"),
  };
  auto d = json(chat_view(log, plan));
  REQUIRE(d.IsArray());
  REQUIRE(d.Size() == 5);  // the approval request/response are the plan card, not bubbles
  const auto& a = d[0];
  CHECK(str(a, "agent") == "Writer");
  CHECK(str(a, "agent_type") == "AI_Agent");
  CHECK(str(a, "content") == "draft");
  CHECK(str(a, "raw_data") == *log[2].bytes);  // the envelope, byte for byte
  CHECK(a["seq"].GetUint64() == 3);
  CHECK(str(a, "message_id") == "m3");
  CHECK(a["steps"].IsArray());
  CHECK(a["next_steps"].IsArray());
  CHECK(str(a, "timestamp").size() == 24);
  CHECK(str(d[1], "agent") == "Group_Chat_Manager");
  CHECK(str(d[1], "content") == "Which region?");
  CHECK(str(d[2], "agent_type") == "Human_Agent");
  CHECK(str(d[2], "content") == "Europe");
  CHECK(str(d[3], "agent") == "External");
  CHECK(str(d[4], "content") == "\U0001F389\U0001F389 All done");
}

TEST_CASE("chat_view: endings are system bubbles; the open clarification request is left to the WebSocket") {
  PlanRecord waiting = make_plan("p1", "alice", PlanStatus::kAwaitingClarification);
  waiting.last_seq = 2;  // the request that moved the plan to awaiting_clarification
  std::vector<StoredMessage> log = {
      envelope(1, msgtype::kAgentMessage, R"({"agent_name":"A","content":"one"})"),
      envelope(2, msgtype::kUserClarificationRequest, R"({"question":"Q?","request_id":"r-2"})"),
  };
  auto open = json(chat_view(log, waiting));
  REQUIRE(open.Size() == 1);
  CHECK(str(open[0], "content") == "one");
  // Answered or not, once the plan moved on the question is history.
  PlanRecord ended = make_plan("p1", "alice", PlanStatus::kCanceled);
  ended.last_seq = 3;
  log.push_back(envelope(3, msgtype::kErrorMessage, R"({"content":"Plan canceled: no answer","status":"timeout"})"));
  log.push_back(envelope(4, msgtype::kPlanApprovalResponse, R"({"approved":false,"feedback":"not now"})"));
  log.push_back(envelope(5, msgtype::kTimeoutNotification, R"({"message":"old style timeout"})"));
  auto d = json(chat_view(log, ended));
  REQUIRE(d.Size() == 5);
  CHECK(str(d[1], "content") == "Q?");
  CHECK(str(d[2], "agent") == "system");
  CHECK(str(d[2], "agent_type") == "SYSTEM_AGENT");
  CHECK(str(d[2], "content") == "\u26a0\ufe0f Plan canceled: no answer");
  CHECK(str(d[3], "content") == "\u26a0\ufe0f Plan rejected: not now");
  CHECK(str(d[4], "content") == "\u26a0\ufe0f old style timeout");
}

TEST_CASE("current_m_plan: the stored MPlan with the plan's current overall_status") {
  PlanRecord p = make_plan("p1", "alice", PlanStatus::kRunning);
  p.m_plan = R"({"id":"m","plan_id":"p1","overall_status":"in_progress","steps":[]})";
  auto d = json(current_m_plan(p));
  CHECK(str(d, "overall_status") == "approved");
  CHECK(str(d, "id") == "m");
  p.m_plan = R"({"id":"m"})";  // written before the field existed
  p.status = PlanStatus::kCompleted;
  CHECK(str(json(current_m_plan(p)), "overall_status") == "completed");
  p.m_plan = "null";
  CHECK(current_m_plan(p) == "null");
}

TEST_CASE("echoed_ids: message_id and request_id at any depth, JSON inside strings included") {
  // v3's final-result echo: the frame two levels down, as an object.
  auto a = echoed_ids(R"({"type":"final_result_message","data":{"content":"x","raw_data":{"message_id":"m-9"}}})");
  CHECK(a == std::vector<std::string>{"m-9"});
  // A clarification echo: only the request_id.
  CHECK(echoed_ids(R"({"type":"user_clarification_request","question":"q","request_id":"r-1"})") ==
        std::vector<std::string>{"r-1"});
  // A frame stringified inside a string value.
  auto b = echoed_ids(R"({"raw_data":"{\"seq\":3,\"message_id\":\"m-3\",\"data\":{\"request_id\":\"r-3\"}}"})");
  CHECK(b == std::vector<std::string>{"m-3", "r-3"});
  CHECK(echoed_ids("not json").empty());
  CHECK(echoed_ids(R"({"message_id":""})").empty());
  std::string many = "[";
  for (int i = 0; i < 100; ++i) many += std::string(i ? "," : "") + R"({"message_id":"m)" + std::to_string(i) + "\"}";
  CHECK(echoed_ids(many + "]", 8).size() == 8);
}

TEST_CASE("multipart: the named field's content; clear errors for malformed bodies") {
  auto b = net::multipart_boundary("multipart/form-data; boundary=----WebKitFormBoundaryX1");
  REQUIRE(b.is_ok());
  CHECK(*b == "----WebKitFormBoundaryX1");
  CHECK(*net::multipart_boundary(R"(multipart/form-data; charset=utf-8; boundary="q b")") == "q b");
  CHECK(!net::multipart_boundary("application/json").is_ok());
  CHECK(!net::multipart_boundary("multipart/form-data").is_ok());
  std::string body =
      "------WebKitFormBoundaryX1\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nzzz\r\n"
      "------WebKitFormBoundaryX1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.json\"\r\n"
      "Content-Type: application/json\r\n\r\n{\"a\":\r\n1}\r\n------WebKitFormBoundaryX1--\r\n";
  auto f = net::multipart_field(body, *b, "file");
  REQUIRE_MESSAGE(f.is_ok(), f.status().to_string());
  CHECK(*f == "{\"a\":\r\n1}");
  CHECK(net::multipart_field(body, *b, "missing").status().message().find("no part named 'missing'") !=
        std::string::npos);
  CHECK(!net::multipart_field("garbage", *b, "file").is_ok());
  CHECK(!net::multipart_field(body.substr(0, 120), *b, "file").is_ok());  // cut before the part ends
}

TEST_CASE("ResumeCursors: set by a page load, advanced by its sockets, per user and plan, expiry and capacity") {
  net::ResumeCursors c(3, std::chrono::milliseconds(200));
  CHECK(!c.get("alice", "p"));
  // A socket with no cursor starts live and becomes the cursor.
  auto t0 = c.open("alice", "p", 7);
  CHECK(t0.start_seq == 7);
  c.advance("alice", "p", 9, t0);
  CHECK(*c.get("alice", "p") == 9);
  c.advance("alice", "p", 8, t0);  // never back
  CHECK(*c.get("alice", "p") == 9);
  // A reload: GET /plan showed up to 10; the old page's socket still writes
  // 11 and must not move the new page's cursor (it would skip 11 there).
  c.set("alice", "p", 10);
  c.advance("alice", "p", 11, t0);
  CHECK(*c.get("alice", "p") == 10);
  auto t1 = c.open("alice", "p", 99);
  CHECK(t1.start_seq == 10);
  c.advance("alice", "p", 12, t1);
  CHECK(*c.get("alice", "p") == 12);
  auto t2 = c.open("alice", "p", 99);  // a second tab of the same page load: same cursor
  CHECK(t2.start_seq == 12);
  CHECK(t2.generation == t1.generation);
  CHECK(!c.get("bob", "p"));
  c.set("a", "b:c", 1);
  CHECK(!c.get("a:b", "c"));
  c.set("x", "1", 1);
  c.set("x", "2", 2);  // over capacity: the least recently used (alice/p, then a) go
  CHECK(c.size() == 3);
  CHECK(!c.get("alice", "p"));
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  CHECK(!c.get("x", "2"));
  CHECK(c.open("x", "2", 5).start_seq == 5);  // expired: live again
}

TEST_CASE("routes: every /api/v3 route under /api/v4 too; /config; the team routes; user_browser_language") {
  using net::match_route;
  using net::RouteId;
  namespace http = boost::beast::http;
  for (std::string v : {"/api/v3", "/api/v4"}) {
    CHECK(match_route(http::verb::get, v + "/plans").id == RouteId::kPlans);
    CHECK(match_route(http::verb::get, v + "/plan").id == RouteId::kPlan);
    CHECK(match_route(http::verb::post, v + "/process_request").id == RouteId::kProcessRequest);
    CHECK(match_route(http::verb::post, v + "/agent_message").id == RouteId::kAgentMessage);
    CHECK(match_route(http::verb::post, v + "/upload_team_config").id == RouteId::kUploadTeam);
    auto del = match_route(http::verb::delete_, v + "/team_configs/t1");
    CHECK(del.id == RouteId::kDeleteTeam);
    CHECK(del.param == "t1");
    CHECK(match_route(http::verb::get, v + "/team_configs/t1").id == RouteId::kTeamConfig);
    CHECK(match_route(http::verb::put, v + "/team_configs/t1").id == RouteId::kMethodNotAllowed);
    auto ws = match_route(http::verb::get, v + "/socket/p9");
    CHECK(ws.id == RouteId::kSocket);
    CHECK(ws.name == v + "/socket/{plan_id}");
    CHECK(match_route(http::verb::get, v + "/plan/p1/messages").name == v + "/plan/{plan_id}/messages");
  }
  CHECK(match_route(http::verb::get, "/api/v5/plans").id == RouteId::kNotFound);
  CHECK(match_route(http::verb::get, "/api/v33/plans").id == RouteId::kNotFound);
  CHECK(match_route(http::verb::get, "/config").id == RouteId::kConfig);
  CHECK(match_route(http::verb::post, "/api/user_browser_language").id == RouteId::kBrowserLanguage);
  CHECK(match_route(http::verb::options, "/api/v4/plans").id == RouteId::kPreflight);
}

TEST_CASE("GET /config names this origin's API; the SPA fallback serves index.html for app routes only") {
  std::string web = make_temp_dir("agentd-web");
  std::filesystem::create_directories(web + "/assets");
  std::ofstream(web + "/index.html") << "<html>macae</html>";
  std::ofstream(web + "/assets/app.js") << "console.log(1)";
  net::ServerConfig cfg;
  cfg.web_dir = web;
  ServerFixture f(cfg);
  auto c = http_get(f.port, "/config", {{"Host", "ui.example:8080"}});
  REQUIRE(c.status == 200);
  CHECK(c.header("content-type") == "application/json");
  auto d = json(c.body);
  CHECK(str(d, "API_URL") == "http://ui.example:8080/api");
  CHECK(str(d, "ENABLE_AUTH") == "false");
  CHECK(str(json(http_get(f.port, "/config", {{"Host", "h"}, {"X-Forwarded-Proto", "https"}}).body), "API_URL") ==
        "https://h/api");
  // A reload of /plan/{id}: the app's page; a real file: itself.
  auto page = http_get(f.port, "/plan/4f1c-aa");
  CHECK(page.status == 200);
  CHECK(page.body == "<html>macae</html>");
  CHECK(page.header("content-type").starts_with("text/html"));
  CHECK(http_get(f.port, "/assets/app.js").body == "console.log(1)");
  // A missing asset stays a 404 (no HTML served as JavaScript); so do the API
  // and the App Service auth probe.
  CHECK(http_get(f.port, "/assets/missing.js").status == 404);
  CHECK(http_get(f.port, "/api/v3/nope").status == 404);
  CHECK(http_get(f.port, "/.auth/me").status == 404);
  auto lang = http_post(f.port, "/api/user_browser_language", R"({"language":"en-US"})", kAlice);
  CHECK(lang.status == 200);
  std::error_code ec;
  std::filesystem::remove_all(web, ec);
}

TEST_CASE("a WebSocket without after_seq: the open request, then live — or from the user's GET /plan cursor") {
  ServerFixture f;
  PlanRecord p = make_plan("pa", "alice", PlanStatus::kRunning);
  f.append(p, "one", true);
  f.append(p, "two");
  // The runtime records awaiting_approval with the request: last_seq = 3.
  p.status = PlanStatus::kAwaitingApproval;
  auto req = f.append(p, "approve me?", true);
  REQUIRE(req.seq == 3);
  f.append(p, "four");  // e.g. a REST agent_message meanwhile

  // No cursor yet: the open request, then only what comes next.
  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(f.port, "/api/v4/socket/pa?user_id=alice"), ws.error());
  auto first = ws.read();
  REQUIRE(first.kind == WsClient::Read::kFrame);
  CHECK(first.text == *req.bytes);
  f.append(p, "five");
  CHECK(seq_of(ws.read().text) == 5);
  ws.close();

  // GET /plan shows 1..5; two messages commit before the socket opens; the
  // socket sends exactly those (no gap, no duplicate of what the page shows).
  REQUIRE(http_get(f.port, "/api/v3/plan?plan_id=pa", kAlice).status == 200);
  f.append(p, "six");
  f.append(p, "seven");
  WsClient again;
  REQUIRE_MESSAGE(again.connect(f.port, "/api/v3/socket/pa?user_id=alice"), again.error());
  CHECK(seq_of(again.read().text) == 3);  // the request is still open
  CHECK(seq_of(again.read().text) == 6);
  CHECK(seq_of(again.read().text) == 7);
  f.append(p, "eight");
  CHECK(seq_of(again.read().text) == 8);
  // A frame can reach the client before the server has run its write's
  // completion, which moves the cursor: a ping's pong is queued behind it,
  // so once the pong is here the cursor has moved.
  REQUIRE(again.write(R"({"type":"ping"})"));
  CHECK(again.read().text.find("\"type\":\"pong\"") != std::string::npos);
  again.close();

  // The cursor moved with what the socket wrote (v4 reconnects this way).
  f.append(p, "nine");
  WsClient third;
  REQUIRE_MESSAGE(third.connect(f.port, "/api/v3/socket/pa?user_id=alice"), third.error());
  CHECK(seq_of(third.read().text) == 3);
  CHECK(seq_of(third.read().text) == 9);
  CHECK(third.read(300).kind == WsClient::Read::kTimeout);

  // after_seq given: exactly as before (replay, no open-request frame first).
  WsClient explicit_;
  REQUIRE_MESSAGE(explicit_.connect(f.port, "/api/v3/socket/pa?user_id=alice&after_seq=7"), explicit_.error());
  CHECK(seq_of(explicit_.read().text) == 8);
  CHECK(seq_of(explicit_.read().text) == 9);
}

TEST_CASE("POST /agent_message: an echo of a held message (message_id or request_id at any depth) is not stored") {
  ServerFixture f;
  PlanRecord p = make_plan("pe", "alice", PlanStatus::kRunning);
  auto held = f.append(p, "the agent spoke", true);
  // The clarification request's message_id is its request_id (the runtime's rule).
  auto ask = f.outbox->append_sync(message_append(p, "Which region?", "3f9a2c1e-8b7d-4e21-9c3a-0f1e2d3c4b5a"));
  REQUIRE(ask.is_ok());
  auto post = [&](const std::string& raw) {
    std::string body = R"({"plan_id":"pe","agent":"Group_Chat_Manager","content":"x","agent_type":"AI_Agent",)"
                       R"("is_final":false,"streaming_message":"","raw_data":)";
    append_json_string(&body, raw);
    body += '}';
    auto r = http_post(f.port, "/api/v4/agent_message", body, kAlice);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return json(r.body);
  };
  // v3/v4 agent_message echo: the whole frame.
  auto a = post(*held.bytes);
  CHECK(a["duplicate"].GetBool());
  CHECK(a["seq"].GetUint64() == 1);
  // The final-result echo: the frame at depth 2, as an object.
  auto b = post(R"({"type":"final_result_message","data":{"content":"c","status":"completed","raw_data":)" +
                *held.bytes + "}}");
  CHECK(b["duplicate"].GetBool());
  // The clarification echo: only the request_id.
  auto c = post(R"({"type":"user_clarification_request","question":"Which region?",)"
                R"("request_id":"3f9a2c1e-8b7d-4e21-9c3a-0f1e2d3c4b5a"})");
  CHECK(c["duplicate"].GetBool());
  CHECK(c["seq"].GetUint64() == 2);
  auto last = f.outbox->last_seq("pe");
  CHECK(*last == 2);  // nothing stored
  // A new message that merely mentions unknown ids is stored.
  auto d = post(R"({"note":"from a script","message_id":"not-in-this-plan"})");
  CHECK(!d["duplicate"].GetBool());
  CHECK(d["seq"].GetUint64() == 3);
}

TEST_CASE("team upload (multipart field file, or JSON) and delete map the PlanService's answers") {
  ServerFixture f;
  std::string team = R"({"team_id":"mine","name":"Mine","agents":[{"name":"A","type":""}]})";
  std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"mine.json\"\r\n"
      "Content-Type: application/json\r\n\r\n" +
      team + "\r\n--XyZ--\r\n";
  Headers h = kAlice;
  h["Content-Type"] = "multipart/form-data; boundary=XyZ";
  auto r = http_post(f.port, "/api/v3/upload_team_config", body, h);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto d = json(r.body);
  CHECK(str(d, "status") == "success");
  CHECK(str(d, "team_id") == "mine");
  CHECK(str(d, "name") == "Mine");
  CHECK(str(d["team"], "team_id") == "mine");
  {
    std::lock_guard l(f.plans->mu);
    REQUIRE(f.plans->uploads.size() == 1);
    CHECK(f.plans->uploads[0] == team);
  }
  Headers j = kAlice;
  j["Content-Type"] = "application/json";
  CHECK(http_post(f.port, "/api/v4/upload_team_config", R"({"team_id":"team-1"})", j).status == 409);
  Headers bad = kAlice;
  bad["Content-Type"] = "multipart/form-data; boundary=XyZ";
  auto nofile = http_post(f.port, "/api/v3/upload_team_config", "--XyZ--\r\n", bad);
  CHECK(nofile.status == 422);
  CHECK(http_post(f.port, "/api/v3/upload_team_config", team,
                  {{"x-ms-client-principal-id", "alice"}, {"Content-Type", "text/plain"}})
            .status == 422);
  CHECK(http_request(f.port, "DELETE", "/api/v3/team_configs/mine", "", kAlice).status == 200);
  CHECK(http_request(f.port, "DELETE", "/api/v4/team_configs/team-1", "", kAlice).status == 409);
  CHECK(http_request(f.port, "DELETE", "/api/v4/team_configs/nope", "", kAlice).status == 404);
}

TEST_CASE("read_echoed_frame: the ids and the frame's own message_id, when the frame is of this plan") {
  auto a = read_echoed_frame(R"({"message_id":"m-1","plan_id":"p","data":{"request_id":"r-2"}})", "p");
  CHECK(a.message_id == "m-1");
  CHECK(a.ids == std::vector<std::string>{"m-1", "r-2"});
  auto b = read_echoed_frame(R"({"message_id":"m-1","plan_id":"other"})", "p");
  CHECK_FALSE(b.message_id.has_value());
  CHECK(b.ids == std::vector<std::string>{"m-1"});
  auto c = read_echoed_frame(R"({"message_id":"m-3"})", "p");  // no plan_id: taken
  CHECK(c.message_id == "m-3");
  auto d = read_echoed_frame(R"(["x",{"message_id":"m-4"}])", "p");  // not an object: ids only
  CHECK_FALSE(d.message_id.has_value());
  CHECK(d.ids == std::vector<std::string>{"m-4"});
  CHECK_FALSE(read_echoed_frame("not json", "p").message_id.has_value());
}
