// The original bug and its neighbours, end to end against the real agentd
// binary: plans submitted over REST, approved, run by script agents, read
// back over REST and WebSocket — with and without a WebSocket ever open.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include <algorithm>
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

// The plan's complete log (every persisted envelope, byte for byte), from
// GET /plan/{id}/messages.
std::vector<std::string> log_of(int port, const std::string& plan_id) {
  HttpReply r = http_get(port, "/api/v3/plan/" + plan_id + "/messages?after_seq=0&limit=10000");
  REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
  auto d = json(r.body);
  CHECK_FALSE(d["has_more"].GetBool());
  std::vector<std::string> out;
  for (const auto& m : d["messages"].GetArray()) {
    out.push_back(write_canonical(m));
    CHECK(r.body.find(out.back()) != std::string::npos);  // embedded verbatim
  }
  return out;
}

// One bubble of GET /plan's "messages" (MACAE's chat view, net/macae.h).
struct Bubble {
  std::string agent, agent_type, content, raw_data;
  uint64_t seq = 0;
  std::string type() const { return json(raw_data)["type"].GetString(); }
};

std::vector<Bubble> chat_of(const rapidjson::Document& d) {
  std::vector<Bubble> out;
  for (const auto& m : d["messages"].GetArray()) {
    Bubble b{m["agent"].GetString(), m["agent_type"].GetString(), m["content"].GetString(), m["raw_data"].GetString(),
             m["seq"].GetUint64()};
    CHECK(seq_of(b.raw_data) == b.seq);
    out.push_back(std::move(b));
  }
  return out;
}

// Every bubble's raw_data is the envelope the log holds at its seq.
void check_chat_matches_log(const std::vector<Bubble>& chat, const std::vector<std::string>& log) {
  for (const auto& b : chat) {
    REQUIRE(b.seq >= 1);
    REQUIRE(b.seq <= log.size());
    CHECK(b.raw_data == log[b.seq - 1]);
  }
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

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
  // The approval request is no chat bubble (m_plan is the card).
  CHECK(chat_of(waiting).empty());
  auto first = log_of(a.port(), plan_id);
  REQUIRE(first.size() == 1);
  auto req = json(first[0]);
  CHECK(std::string(req["type"].GetString()) == "plan_approval_request");
  std::string m_plan_id = req["data"]["m_plan_id"].GetString();
  // MACAE's PlanApprovalRequest: the full MPlan under data.plan.
  CHECK(req["data"]["plan"]["steps"].Size() == 2);
  CHECK(std::string(req["data"]["plan"]["id"].GetString()) == m_plan_id);
  CHECK(std::string(req["data"]["plan"]["plan_id"].GetString()) == plan_id);
  CHECK(std::string(req["data"]["status"].GetString()) == "PENDING_APPROVAL");
  CHECK(std::string(req["data"]["context"]["task"].GetString()) == "close the books");
  REQUIRE(waiting["m_plan"].IsObject());
  CHECK(std::string(waiting["m_plan"]["id"].GetString()) == m_plan_id);
  CHECK(std::string(waiting["m_plan"]["overall_status"].GetString()) == "in_progress");

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
  auto msgs = log_of(a.port(), plan_id);
  check_contiguous(msgs);
  std::vector<std::string> want = {"plan_approval_request", "plan_approval_response", "agent_message",
                                   "agent_message",         "agent_message",          "agent_message",
                                   "final_result_message"};
  CHECK(types_of(msgs) == want);
  CHECK(std::string(done["plan"]["overall_status"].GetString()) == "completed");
  CHECK(std::string(done["m_plan"]["overall_status"].GetString()) == "completed");
  CHECK(done["team"].IsObject());
  // The chat: the agents' messages, then the final result as the UIs show it.
  auto chat = chat_of(done);
  check_chat_matches_log(chat, msgs);
  REQUIRE(chat.size() == 5);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(chat[i].seq == i + 3);
    CHECK(chat[i].type() == "agent_message");
    CHECK(chat[i].agent_type == "AI_Agent");
    CHECK(chat[i].content == json(msgs[i + 2])["data"]["content"].GetString());
  }
  CHECK(chat[0].agent == "A");
  CHECK(chat[3].agent == "B");
  CHECK(chat[4].seq == 7);
  CHECK(chat[4].type() == "final_result_message");
  CHECK(chat[4].agent == "Group_Chat_Manager");
  CHECK(chat[4].content == "\U0001F389\U0001F389 " + std::string(json(msgs[6])["data"]["content"].GetString()));

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
  auto msgs = log_of(a.port(), plan_id);
  REQUIRE(frames.size() == msgs.size());
  for (size_t i = 0; i < msgs.size(); ++i) CHECK(frames[i] == msgs[i]);  // byte for byte
  auto chat = chat_of(done);
  CHECK(chat.size() == 5);  // four agent messages and the final result
  check_chat_matches_log(chat, frames);
}

TEST_CASE("hybrid: a WebSocket joining halfway with after_seq=0 gets the history then the live tail") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir(), R"({"messages":40,"delay_ms":25})")});
  std::string plan_id = submit(a.port(), "slow plan", true);
  // Wait until part of the plan exists.
  for (int i = 0; i < 200; ++i) {
    if (log_of(a.port(), plan_id).size() >= 8) break;
    std::this_thread::sleep_for(20ms);
  }
  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(a.port(), "/api/v3/socket/" + plan_id + "?after_seq=0"), ws.error());
  auto frames = read_until_final(ws, 30s);
  wait_plan(a.port(), plan_id, "completed");
  auto msgs = log_of(a.port(), plan_id);
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
  CHECK(types_of(log_of(a.port(), plan_id)).back() == "plan_approval_response");
  // The chat shows the rejection as a system bubble.
  auto chat = chat_of(rejected);
  REQUIRE(chat.size() == 1);
  CHECK(chat[0].type() == "plan_approval_response");
  CHECK(chat[0].agent == "system");
  CHECK(starts_with(chat[0].content, "\u26a0\ufe0f Plan rejected"));

  std::string auto_id = submit(a.port(), "auto", true);
  wait_plan(a.port(), auto_id, "completed");
  CHECK(http_get(a.port(), "/api/v3/plan?plan_id=nope").status == 404);
  HttpReply unknown = http_post(a.port(), "/api/v3/plan_approval",
                                JsonObject().str("m_plan_id", "nope").boolean("approved", true).done(),
                                {{"content-type", "application/json"}});
  CHECK(unknown.status == 404);
}

// A 600 KB task once made a 3 MB plan record that every later read called
// corrupt: GET /plan and the user's whole GET /plans answered 500.
TEST_CASE(
    "a task over 64 KiB is a 422 naming the limit; one at the limit runs and reads back; the list stays readable") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir())});
  std::string big = JsonObject().str("description", std::string(600000, 'x')).boolean("auto_approve", true).done();
  HttpReply r = http_post(a.port(), "/api/v3/process_request", big, {{"content-type", "application/json"}});
  CHECK(r.status == 422);
  CHECK_MESSAGE(r.body.find("description: 600000 bytes, over the limit of 65536") != std::string::npos, r.body);
  std::string plan_id = submit(a.port(), std::string(64u << 10, 't'), true);
  auto done = wait_plan(a.port(), plan_id, "completed");
  CHECK(std::string(done["plan"]["initial_goal"].GetString()).size() == (64u << 10));
  HttpReply list = http_get(a.port(), "/api/v3/plans");
  REQUIRE_MESSAGE(list.status == 200, list.body.substr(0, 300));
  CHECK(json(list.body).Size() == 1);
}

TEST_CASE("clarification over REST; clarification timeout cancels") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir(), R"({"clarify":"Which month?"})"), "--clarification-timeout-s", "1"});
  std::string plan_id = submit(a.port(), "ask me", true);
  auto waiting = wait_plan(a.port(), plan_id, "awaiting_clarification");
  auto last = json(log_of(a.port(), plan_id).back());
  REQUIRE(std::string(last["type"].GetString()) == "user_clarification_request");
  std::string rid = last["data"]["request_id"].GetString();
  CHECK(std::string(last["message_id"].GetString()) == rid);
  CHECK(std::string(last["data"]["repr"].GetString()) ==
        "UserClarificationRequest(question='Which month?', request_id='" + rid + "')");
  // While open, the question is no bubble: the WebSocket sends it.
  for (const auto& b : chat_of(waiting)) CHECK(b.type() != "user_clarification_request");
  std::string answer = JsonObject().str("request_id", rid).str("answer", "March").str("plan_id", plan_id).done();
  HttpReply r = http_post(a.port(), "/api/v3/user_clarification", answer, {{"content-type", "application/json"}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto done = wait_plan(a.port(), plan_id, "completed");
  auto types = types_of(log_of(a.port(), plan_id));
  CHECK(std::find(types.begin(), types.end(), "user_clarification_response") != types.end());
  // Answered, question and answer are both in the chat, in that order.
  auto chat = chat_of(done);
  check_chat_matches_log(chat, log_of(a.port(), plan_id));
  size_t q = chat.size(), ans = chat.size();
  for (size_t i = 0; i < chat.size(); ++i) {
    if (chat[i].type() == "user_clarification_request") q = i;
    if (chat[i].type() == "user_clarification_response") ans = i;
  }
  REQUIRE(q < chat.size());
  REQUIRE(ans < chat.size());
  CHECK(q < ans);
  CHECK(chat[q].content == "Which month?");
  CHECK(chat[ans].content == "March");
  CHECK(chat[ans].agent == "Human_Agent");
  CHECK(chat[ans].agent_type == "Human_Agent");

  std::string unanswered = submit(a.port(), "nobody answers", true);
  auto canceled = wait_plan(a.port(), unanswered, "canceled");
  auto end = json(log_of(a.port(), unanswered).back());
  CHECK(std::string(end["type"].GetString()) == "error_message");
  CHECK(std::string(end["data"]["status"].GetString()) == "timeout");
  CHECK(std::string(end["data"]["timeout_type"].GetString()) == "clarification");
  auto canceled_chat = chat_of(canceled);
  REQUIRE(!canceled_chat.empty());
  CHECK(canceled_chat.back().agent == "system");
  CHECK(canceled_chat.back().content == "\u26a0\ufe0f " + std::string(end["data"]["content"].GetString()));
}

TEST_CASE("50 concurrent plans with script agents all complete, each contiguous") {
  Agentd a;
  a.start({"--teams-dir", write_team(a.dir(), R"({"messages":5})"), "--max-concurrent-plans", "8"});
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(submit(a.port(), "plan " + std::to_string(i), true));
  for (const auto& id : ids) {
    wait_plan(a.port(), id, "completed", 60s);
    auto msgs = log_of(a.port(), id);
    CHECK(msgs.size() == 9);
    check_contiguous(msgs);
  }
}

TEST_CASE("restart with --on-restart interrupt: a plan running when agentd was killed is listed as interrupted") {
  Agentd a;
  std::string teams = write_team(a.dir(), R"({"messages":1000,"delay_ms":20})");
  a.start({"--teams-dir", teams});
  std::string plan_id = submit(a.port(), "long", true);
  wait_plan(a.port(), plan_id, "running");
  a.proc().kill();  // SIGKILL
  a.start({"--teams-dir", teams, "--on-restart", "interrupt"});
  auto d = wait_plan(a.port(), plan_id, "interrupted", 10s);
  auto msgs = log_of(a.port(), plan_id);
  check_contiguous(msgs);
  auto last = json(msgs.back());
  CHECK(std::string(last["type"].GetString()) == "error_message");
  CHECK(std::string(last["data"]["status"].GetString()) == "interrupted");
  // The chat ends with it, as a system bubble.
  auto chat = chat_of(d);
  REQUIRE(!chat.empty());
  CHECK(chat.back().seq == msgs.size());
  CHECK(chat.back().agent == "system");
  CHECK(starts_with(chat.back().content, "\u26a0\ufe0f Plan interrupted"));
}

// Issue 13, item 10: agentd answers no request before the plans a crash left
// unfinished are recovered. Many plans wait for approval when agentd is
// killed; after the restart the very first requests (the moment /healthz
// answers) approve all of them, the last recovered first: each must find
// its plan waiting (200), none a 409 "not awaiting approval".
TEST_CASE("after a restart the first requests find every interrupted plan recovered") {
  Agentd a;
  std::string teams = write_team(a.dir());
  a.start({"--teams-dir", teams});
  constexpr int kPlans = 80;
  std::vector<std::string> ids;
  for (int i = 0; i < kPlans; ++i) ids.push_back(submit(a.port(), "wait " + std::to_string(i), false));
  for (const auto& id : ids) wait_plan(a.port(), id, "awaiting_approval");
  a.proc().kill();                  // SIGKILL
  a.start({"--teams-dir", teams});  // returns at the first /healthz answer
  std::sort(ids.rbegin(), ids.rend());
  for (const auto& id : ids) {
    std::string body = JsonObject().str("m_plan_id", id).boolean("approved", true).done();
    HttpReply r = http_post(a.port(), "/api/v3/plan_approval", body, {{"content-type", "application/json"}});
    CHECK_MESSAGE(r.status == 200, id << ": " << r.status << " " << r.body);
  }
  for (const auto& id : ids) wait_plan(a.port(), id, "completed", 30s);
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
  wait_plan(a.port(), plan_id, "completed");
  auto rest = log_of(a.port(), plan_id);
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
  // The flusher's start-up createIndexes must be done first: FerretDB
  // (SQLite) killed in the middle of one keeps the SQLite index but not its
  // own metadata, and answers every later createIndexes with InternalError
  // ("index ... already exists"), so nothing would ever be flushed again.
  wait_mongo(uri, plan_id, 1);
  db.kill();
  wait_plan(a.port(), plan_id, "completed", 30s);
  auto rest = log_of(a.port(), plan_id);
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
