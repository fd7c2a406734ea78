// The original bug and its neighbours, end to end against the real agentd
// binary: plans submitted over REST, approved, run by script agents, read
// back over REST and WebSocket — with and without a WebSocket ever open.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include <fstream>
#include <set>

#include <sys/wait.h>

#include "core/json.h"
#include "store/message_store.h"
#include "tests/e2e/net_agentd.h"
#include "tests/support/ferretdb.h"

using namespace agentd;
using namespace agentd::test;
using namespace std::chrono_literals;

namespace {

// A team of script agents: deterministic, no model needed.
std::string write_team(const std::string& dir, const std::string& script_b = "{\"messages\":3}") {
  std::filesystem::create_directories(dir + "/teams");
  std::ofstream(dir + "/teams/t.json") << R"({"team_id":"t","name":"T","description":"test","agents":[
      {"name":"A","type":"script","description":"first"},
      {"name":"B","type":"script","description":"second","script":)"
                                       << script_b << "}]}";
  return dir + "/teams";
}

std::string submit(int port, const std::string& task, bool auto_approve) {
  std::string body =
      JsonObject().str("description", task).str("session_id", "sid_1").boolean("auto_approve", auto_approve).done();
  HttpReply r = http_post(port, "/api/v3/process_request", body, {{"content-type", "application/json"}});
  REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
  auto d = json(r.body);
  CHECK(std::string(d["status"].GetString()) == "Request started successfully");
  CHECK(std::string(d["session_id"].GetString()) == "sid_1");
  return d["plan_id"].GetString();
}

// GET /plan until the plan's status is `want`; returns the response.
rapidjson::Document wait_plan(int port, const std::string& plan_id, const std::string& want,
                              std::chrono::seconds timeout = 20s) {
  auto until = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (std::chrono::steady_clock::now() < until) {
    HttpReply r = http_get(port, "/api/v3/plan?plan_id=" + plan_id);
    if (r.status == 200) {
      auto d = json(r.body);
      last = d["plan"]["status"].GetString();
      if (last == want) return d;
    }
    std::this_thread::sleep_for(20ms);
  }
  FAIL("plan " << plan_id << " never reached " << want << " (last: " << last << ")");
  return {};
}

// The persisted envelopes of a GET /plan response, as canonical bytes.
std::vector<std::string> messages_of(const rapidjson::Document& d) {
  std::vector<std::string> out;
  for (const auto& m : d["messages"].GetArray()) out.push_back(write_canonical(m));
  return out;
}

std::vector<std::string> types_of(const std::vector<std::string>& msgs) {
  std::vector<std::string> t;
  for (const auto& m : msgs) t.push_back(json(m)["type"].GetString());
  return t;
}

void check_contiguous(const std::vector<std::string>& msgs) {
  for (size_t i = 0; i < msgs.size(); ++i) CHECK(seq_of(msgs[i]) == i + 1);
}

// Reads frames until one of type final_result_message (or a timeout).
std::vector<std::string> read_until_final(WsClient& ws, std::chrono::seconds timeout = 20s) {
  std::vector<std::string> frames;
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto r = ws.read(static_cast<int>(left.count()));
    if (r.kind == WsClient::Read::kTimeout) break;
    REQUIRE_MESSAGE(r.kind == WsClient::Read::kFrame, "ws read ended: " << r.kind << " " << r.close_reason);
    if (seq_of(r.text) == 0) continue;  // control / live-only frames
    frames.push_back(r.text);
    if (r.text.find("\"type\":\"final_result_message\"") != std::string::npos) return frames;
  }
  FAIL("no final_result_message within the timeout");
  return frames;
}

}  // namespace

TEST_CASE("REST only: submit, approve, poll until the final result; every message in order") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir())});
  std::string plan_id = submit(a.port(), "close the books", false);
  auto waiting = wait_plan(a.port(), plan_id, "awaiting_approval");
  CHECK(std::string(waiting["plan"]["overall_status"].GetString()) == "in_progress");
  auto first = messages_of(waiting);
  REQUIRE(first.size() == 1);
  auto req = json(first[0]);
  CHECK(std::string(req["type"].GetString()) == "plan_approval_request");
  std::string m_plan_id = req["data"]["m_plan_id"].GetString();
  CHECK(req["data"]["m_plan"]["steps"].Size() == 2);
  CHECK(waiting["m_plan"].IsObject());

  std::string approval = JsonObject()
                             .str("m_plan_id", m_plan_id)
                             .str("plan_id", plan_id)
                             .boolean("approved", true)
                             .str("feedback", "Plan approved by user")
                             .done();
  HttpReply r = http_post(a.port(), "/api/v3/plan_approval", approval, {{"content-type", "application/json"}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(r.body.find("approval recorded") != std::string::npos);

  auto done = wait_plan(a.port(), plan_id, "completed");
  auto msgs = messages_of(done);
  check_contiguous(msgs);
  std::vector<std::string> want = {"plan_approval_request", "plan_approval_response", "agent_message",
                                   "agent_message",         "agent_message",          "agent_message",
                                   "final_result_message"};
  CHECK(types_of(msgs) == want);
  CHECK(std::string(done["plan"]["overall_status"].GetString()) == "completed");
  CHECK(done["team"].IsObject());

  // The plan is listed, newest first, with its status.
  HttpReply list = http_get(a.port(), "/api/v3/plans");
  REQUIRE(list.status == 200);
  auto l = json(list.body);
  REQUIRE(l.IsArray());
  CHECK(std::string(l[0]["id"].GetString()) == plan_id);
  CHECK(std::string(l[0]["overall_status"].GetString()) == "completed");

  // Approving again is a conflict, not a silent success.
  HttpReply again = http_post(a.port(), "/api/v3/plan_approval", approval, {{"content-type", "application/json"}});
  CHECK(again.status == 409);
}

TEST_CASE("a WebSocket open from the start sees the same bytes REST returns") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir())});
  std::string plan_id = submit(a.port(), "watch me", true);
  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(a.port(), "/api/v3/socket/" + plan_id + "?after_seq=0"), ws.error());
  auto frames = read_until_final(ws);
  auto done = wait_plan(a.port(), plan_id, "completed");
  auto msgs = messages_of(done);
  REQUIRE(frames.size() == msgs.size());
  for (size_t i = 0; i < msgs.size(); ++i) CHECK(frames[i] == msgs[i]);  // byte for byte
}

TEST_CASE("hybrid: a WebSocket joining halfway with after_seq=0 gets the history then the live tail") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir(), R"({"messages":40,"delay_ms":25})")});
  std::string plan_id = submit(a.port(), "slow plan", true);
  // Wait until part of the plan exists.
  for (int i = 0; i < 200; ++i) {
    auto d = json(http_get(a.port(), "/api/v3/plan?plan_id=" + plan_id).body);
    if (d["messages"].Size() >= 8) break;
    std::this_thread::sleep_for(20ms);
  }
  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(a.port(), "/api/v3/socket/" + plan_id + "?after_seq=0"), ws.error());
  auto frames = read_until_final(ws, 30s);
  auto msgs = messages_of(wait_plan(a.port(), plan_id, "completed"));
  REQUIRE(msgs.size() == 2 + 1 + 40 + 1);
  CHECK(frames == msgs);  // no gap, no duplicate at the switch from replay to live
}

TEST_CASE("rejection keeps the plan; auto-approve; unknown plan 404") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir())});
  std::string plan_id = submit(a.port(), "reject me", false);
  wait_plan(a.port(), plan_id, "awaiting_approval");
  std::string body = JsonObject().str("m_plan_id", plan_id).boolean("approved", false).done();
  HttpReply r = http_post(a.port(), "/api/v3/plan_approval", body, {{"content-type", "application/json"}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto rejected = wait_plan(a.port(), plan_id, "rejected");
  CHECK(std::string(rejected["plan"]["overall_status"].GetString()) == "canceled");
  CHECK(types_of(messages_of(rejected)).back() == "plan_approval_response");

  std::string auto_id = submit(a.port(), "auto", true);
  wait_plan(a.port(), auto_id, "completed");
  CHECK(http_get(a.port(), "/api/v3/plan?plan_id=nope").status == 404);
  HttpReply unknown = http_post(a.port(), "/api/v3/plan_approval",
                                JsonObject().str("m_plan_id", "nope").boolean("approved", true).done(),
                                {{"content-type", "application/json"}});
  CHECK(unknown.status == 404);
}

TEST_CASE("clarification over REST; clarification timeout cancels") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir(), R"({"clarify":"Which month?"})"), "--clarification-timeout-s", "1"});
  std::string plan_id = submit(a.port(), "ask me", true);
  auto waiting = wait_plan(a.port(), plan_id, "awaiting_clarification");
  auto last = json(messages_of(waiting).back());
  std::string rid = last["data"]["request_id"].GetString();
  std::string answer = JsonObject().str("request_id", rid).str("answer", "March").str("plan_id", plan_id).done();
  HttpReply r = http_post(a.port(), "/api/v3/user_clarification", answer, {{"content-type", "application/json"}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto done = wait_plan(a.port(), plan_id, "completed");
  auto types = types_of(messages_of(done));
  CHECK(std::find(types.begin(), types.end(), "user_clarification_response") != types.end());

  std::string unanswered = submit(a.port(), "nobody answers", true);
  auto canceled = wait_plan(a.port(), unanswered, "canceled");
  CHECK(types_of(messages_of(canceled)).back() == "timeout_notification");
}

TEST_CASE("50 concurrent plans with script agents all complete, each contiguous") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir(), R"({"messages":5})"), "--max-concurrent-plans", "8"});
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(submit(a.port(), "plan " + std::to_string(i), true));
  for (const auto& id : ids) {
    auto msgs = messages_of(wait_plan(a.port(), id, "completed", 60s));
    CHECK(msgs.size() == 9);
    check_contiguous(msgs);
  }
}

TEST_CASE("restart: a plan running when agentd was killed is listed as interrupted") {
  Agentd a;
  std::string teams = write_team(a.dir(), R"({"messages":1000,"delay_ms":20})");
  a.start({"--teams-dir", teams});
  std::string plan_id = submit(a.port(), "long", true);
  wait_plan(a.port(), plan_id, "running");
  a.proc().kill();  // SIGKILL
  a.start({"--teams-dir", teams});
  auto d = wait_plan(a.port(), plan_id, "interrupted", 10s);
  auto msgs = messages_of(d);
  check_contiguous(msgs);
  auto last = json(msgs.back());
  CHECK(std::string(last["type"].GetString()) == "system_message");
  CHECK(std::string(last["data"]["status"].GetString()) == "interrupted");
}

// --- with MongoDB (FerretDB fixture, or $AGENTD_TEST_MONGO_URI) ----------------

namespace {

// The plan's messages as MongoDB holds them (envelope bytes, _id left out).
std::vector<std::string> mongo_messages(const std::string& uri, const std::string& plan_id) {
  auto pool = MongoPool::open(uri);
  REQUIRE(pool.is_ok());
  MessageStore store(pool->get());
  auto msgs = store.read_messages(plan_id, 0, 100000);
  REQUIRE_MESSAGE(msgs.is_ok(), msgs.status().to_string());
  std::vector<std::string> out;
  for (const auto& m : *msgs) out.push_back(*m.bytes);
  return out;
}

std::vector<std::string> wait_mongo(const std::string& uri, const std::string& plan_id, size_t n,
                                    std::chrono::seconds timeout = 30s) {
  auto until = std::chrono::steady_clock::now() + timeout;
  std::vector<std::string> got;
  while (std::chrono::steady_clock::now() < until) {
    got = mongo_messages(uri, plan_id);
    if (got.size() >= n) return got;
    std::this_thread::sleep_for(50ms);
  }
  FAIL("MongoDB holds " << got.size() << " of " << n << " messages of plan " << plan_id);
  return got;
}

}  // namespace

TEST_CASE("REST only with MongoDB: every message lands in MongoDB with the bytes REST returns") {
  std::string uri = test_mongo_uri();
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir()), "--mongo-uri", uri});
  std::string plan_id = submit(a.port(), "persist me", true);
  auto rest = messages_of(wait_plan(a.port(), plan_id, "completed"));
  REQUIRE(rest.size() == 7);
  auto mongo = wait_mongo(uri, plan_id, rest.size());
  CHECK(mongo == rest);
}

TEST_CASE("FerretDB killed during a run: the plan completes, REST serves it all, MongoDB catches up") {
  FerretDb db;
  db.start();
  std::string uri = db.uri() + "agentd_e2e";
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir(), R"({"messages":30,"delay_ms":20})"), "--mongo-uri", uri,
           "--flush-backoff-max-ms", "500"});
  std::string plan_id = submit(a.port(), "survive the outage", true);
  wait_plan(a.port(), plan_id, "running");
  db.kill();
  auto rest = messages_of(wait_plan(a.port(), plan_id, "completed", 30s));
  REQUIRE(rest.size() == 2 + 1 + 30 + 1);
  check_contiguous(rest);
  // While the database is down, /readyz still says ready and reports MongoDB.
  HttpReply ready = http_get(a.port(), "/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.body.find("\"mongodb\":\"ok\"") == std::string::npos);
  db.start();
  auto mongo = wait_mongo(uri, plan_id, rest.size());
  CHECK(mongo == rest);
  // Nothing left pending, nothing failed permanently.
  for (int i = 0; i < 100; ++i) {
    HttpReply m = http_get(a.port(), "/metrics");
    if (m.body.find("agentd_outbox_pending_messages 0\n") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);
  }
  std::string metrics = http_get(a.port(), "/metrics").body;
  CHECK(metrics.find("agentd_outbox_pending_messages 0\n") != std::string::npos);
  CHECK(metrics.find("agentd_dead_letters_total 0\n") != std::string::npos);
}

TEST_CASE("a team file with a mistyped agent type stops agentd at start, naming the file and the field") {
  Agentd a;
  std::string teams = write_team(a.dir());
  std::ofstream(teams + "/t.json") << R"({"team_id":"t","name":"T","agents":[
      {"name":"A","type":"script"},{"name":"B","type":"scirpt"}]})";
  std::string log = a.dir() + "/typo.log";
  ChildProcess p = ChildProcess::spawn({agentd_binary(), "--listen", "127.0.0.1:" + std::to_string(free_port()),
                                        "--data-dir", a.data_dir(), "--teams-dir", teams},
                                       log);
  int st = p.wait(20000);
  REQUIRE(st != -1);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) != 0);
  CHECK_MESSAGE(read_file(log).find("t.json: agents[1].type: unknown agent type 'scirpt'") != std::string::npos,
                read_file(log));
}
