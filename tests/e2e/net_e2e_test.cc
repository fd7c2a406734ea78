// End-to-end tests of the HTTP/WebSocket API against the real agentd binary.
#include <doctest/doctest.h>

#include <lmdb.h>
#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "core/json.h"
#include "tests/e2e/net_agentd.h"

using namespace agentd;
using namespace agentd::test;

namespace {

// The plan's complete log, as GET /plan/{id}/messages returns it (the stored
// envelopes, byte for byte), each element as raw text.
std::vector<std::string> log_messages(int port, const std::string& plan_id, uint64_t after_seq = 0,
                                      const Headers& h = {}) {
  auto r =
      http_get(port, "/api/v3/plan/" + plan_id + "/messages?limit=10000&after_seq=" + std::to_string(after_seq), h);
  REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
  auto d = json(r.body);
  CHECK_FALSE(d["has_more"].GetBool());
  std::vector<std::string> out;
  for (auto& m : d["messages"].GetArray()) {
    std::string bytes = write_canonical(m);
    CHECK(r.body.find(bytes) != std::string::npos);  // embedded verbatim
    out.push_back(std::move(bytes));
  }
  return out;
}

// GET /plan's "messages": MACAE's chat view, one AgentMessageData per shown
// message (raw_data: the stored envelope as a string).
rapidjson::Document chat_messages(int port, const std::string& plan_id, const Headers& h = {}) {
  auto r = http_get(port, "/api/v3/plan?plan_id=" + plan_id, h);
  REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
  auto d = json(r.body);
  REQUIRE(d["messages"].IsArray());
  rapidjson::Document out;
  out.CopyFrom(d["messages"], out.GetAllocator());
  return out;
}

HttpReply post_message(int port, const std::string& plan_id, const std::string& content, const Headers& h = {}) {
  std::string body = R"({"plan_id":")" + plan_id + R"(","agent":"Ext","agent_type":"AI_Agent","content":)";
  append_json_string(&body, content);
  body += '}';
  return http_post(port, "/api/v3/agent_message", body, h);
}

}  // namespace

TEST_CASE("REST-only client: messages posted over REST are all read back, no WebSocket ever opened") {
  Agentd a;
  a.start();
  // An open plan (a finished one takes no messages): the runtime's own
  // messages are 1..base, none of them a chat bubble.
  const auto [plan, base] = open_plan(a.port());
  for (int i = 1; i <= 20; ++i) {
    auto r = post_message(a.port(), plan, "message " + std::to_string(i));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(json(r.body)["seq"].GetUint64() == base + i);
  }
  // GET /plan shows them as chat bubbles, in seq order.
  auto chat = chat_messages(a.port(), plan);
  REQUIRE(chat.Size() == 20);
  auto msgs = log_messages(a.port(), plan, base);
  REQUIRE(msgs.size() == 20);
  for (rapidjson::SizeType i = 0; i < chat.Size(); ++i) {
    const auto& c = chat[i];
    CHECK(c["seq"].GetUint64() == base + i + 1);
    CHECK(std::string(c["agent"].GetString()) == "Ext");
    CHECK(std::string(c["agent_type"].GetString()) == "AI_Agent");
    CHECK(std::string(c["content"].GetString()) == "message " + std::to_string(i + 1));
    CHECK(std::string(c["raw_data"].GetString()) == msgs[i]);
    // The complete log holds the envelopes themselves.
    auto m = json(msgs[i]);
    CHECK(m["seq"].GetUint64() == base + i + 1);
    CHECK(std::string(m["type"].GetString()) == "agent_message");
    CHECK(std::string(m["data"]["content"].GetString()) == "message " + std::to_string(i + 1));
    CHECK(std::string(m["user_id"].GetString()) == kDevUser);
    CHECK(std::string(c["message_id"].GetString()) == m["message_id"].GetString());
  }
  auto plans = json(http_get(a.port(), "/api/v3/plans").body);
  REQUIRE(plans.GetArray().Size() == 1);
  CHECK(plans[0]["last_seq"].GetUint64() >= 0);
  auto page =
      json(http_get(a.port(), "/api/v3/plan/" + plan + "/messages?after_seq=" + std::to_string(base + 15)).body);
  CHECK(page["messages"].GetArray().Size() == 5);
}

TEST_CASE("WebSocket frames are byte-equal to REST's messages") {
  Agentd a;
  a.start();
  const auto [plan, base] = open_plan(a.port());
  WsClient ws;
  REQUIRE_MESSAGE(ws.connect(a.port(), "/api/v3/socket/" + plan + "?after_seq=" + std::to_string(base) +
                                           "&user_id=" + std::string(kDevUser)),
                  ws.error());
  for (int i = 1; i <= 30; ++i) REQUIRE(post_message(a.port(), plan, "m" + std::to_string(i)).status == 200);
  std::vector<std::string> frames;
  while (frames.size() < 30) {
    auto r = ws.read(5000);
    REQUIRE_MESSAGE(r.kind == WsClient::Read::kFrame, r.text);
    frames.push_back(r.text);
  }
  auto msgs = log_messages(a.port(), plan, base);
  REQUIRE(msgs.size() == 30);
  for (size_t i = 0; i < 30; ++i) CHECK(frames[i] == msgs[i]);
  // GET /plan's chat entries carry the same bytes in raw_data.
  auto chat = chat_messages(a.port(), plan);
  REQUIRE(chat.Size() == 30);
  for (rapidjson::SizeType i = 0; i < 30; ++i) {
    CHECK(std::string(chat[i]["raw_data"].GetString()) == frames[i]);
    CHECK(chat[i]["seq"].GetUint64() == base + i + 1);
  }
  // A late joiner replays the same bytes.
  WsClient late;
  REQUIRE(late.connect(a.port(), "/api/v3/socket/" + plan + "?after_seq=" + std::to_string(base + 25)));
  for (size_t i = 25; i < 30; ++i) CHECK(late.read().text == msgs[i]);
}

TEST_CASE("resume: 50 random disconnects during a stream; the union of frames is exactly 1..N once") {
  Agentd a;
  a.start();
  const auto [plan, base] = open_plan(a.port());
  const uint64_t kN = base + 600;
  std::atomic<bool> producer_ok{true};
  std::thread producer([&] {
    for (uint64_t i = base + 1; i <= kN; ++i) {
      if (post_message(a.port(), plan, "m" + std::to_string(i)).status != 200) producer_ok = false;
    }
  });
  std::mt19937 rng(12345);
  std::vector<uint64_t> got;
  uint64_t last = 0;
  int disconnects = 0;
  while (last < kN) {
    WsClient ws;
    REQUIRE_MESSAGE(ws.connect(a.port(), "/api/v3/socket/" + plan + "?after_seq=" + std::to_string(last)), ws.error());
    int take = disconnects < 50 ? static_cast<int>(rng() % 20) + 1 : 1 << 30;
    for (int k = 0; k < take && last < kN; ++k) {
      auto r = ws.read(10000);
      REQUIRE_MESSAGE(r.kind == WsClient::Read::kFrame, "read failed after seq " << last);
      uint64_t s = seq_of(r.text);
      got.push_back(s);
      last = s;
    }
    ws.close();  // abrupt: no close handshake
    if (disconnects < 50) ++disconnects;
  }
  producer.join();
  CHECK(producer_ok);
  CHECK(disconnects == 50);
  REQUIRE(got.size() == kN);
  for (uint64_t i = 0; i < kN; ++i) REQUIRE(got[i] == i + 1);
}

TEST_CASE("isolation and error paths: 401 404 413 422") {
  Agentd a;
  {
    std::ofstream t(a.dir() + "/tokens");
    t << "tok-alice alice\ntok-bob bob\n";
  }
  a.start({"--auth", "token", "--auth-token-file", a.dir() + "/tokens", "--max-body-bytes", "4096"});
  const Headers alice{{"Authorization", "Bearer tok-alice"}};
  const Headers bob{{"Authorization", "Bearer tok-bob"}};
  const std::string plan_alice = open_plan(a.port(), alice).id;
  const std::string plan_bob = open_plan(a.port(), bob).id;
  CHECK(http_get(a.port(), "/api/v3/plans").status == 401);
  CHECK(http_get(a.port(), "/api/v3/plans", {{"Authorization", "Bearer wrong"}}).status == 401);
  CHECK(post_message(a.port(), plan_alice, "x").status == 401);
  REQUIRE(post_message(a.port(), plan_alice, "hello", alice).status == 200);
  // Bob cannot see or write Alice's plan, and her plan id does not leak.
  CHECK(http_get(a.port(), "/api/v3/plan?plan_id=" + plan_alice, bob).status == 404);
  CHECK(post_message(a.port(), plan_alice, "x", bob).status == 404);
  auto bob_plans = json(http_get(a.port(), "/api/v3/plans", bob).body);
  REQUIRE(bob_plans.GetArray().Size() == 1);
  CHECK(std::string(bob_plans[0]["id"].GetString()) == plan_bob);
  WsClient spy;
  CHECK(!spy.connect(a.port(), "/api/v3/socket/" + plan_alice + "?token=tok-bob"));
  CHECK(spy.upgrade_status() == 404);
  WsClient anon;
  CHECK(!anon.connect(a.port(), "/api/v3/socket/" + plan_alice + "?user_id=alice"));
  CHECK(anon.upgrade_status() == 401);

  CHECK(http_get(a.port(), "/api/v3/plan?plan_id=nope", alice).status == 404);
  auto big = post_message(a.port(), plan_alice, std::string(8000, 'x'), alice);
  CHECK_MESSAGE(big.status == 413, big.error);
  auto bad = http_post(a.port(), "/api/v3/agent_message", R"({"plan_id":")" + plan_alice + R"("})", alice);
  CHECK(bad.status == 422);
  CHECK(bad.body == R"({"detail":[{"loc":["body","content"],"msg":"field required","type":"value_error.missing"}]})");
  // The runtime is not wired in this binary, or it is: either answer is defined.
  auto pr = http_post(a.port(), "/api/v3/process_request", R"({"description":"x"})", alice);
  CHECK((pr.status == 200 || pr.status == 503));
  auto metrics = http_get(a.port(), "/metrics").body;
  CHECK(metrics.find("agentd_http_requests_total{route=\"/api/v3/plans\",status=\"401\"}") != std::string::npos);
}

TEST_CASE("outbox full: 503 with Retry-After, reads still work") {
  Agentd a;
  a.start({"--outbox-max-bytes", std::to_string(1 << 20)});
  const auto [plan, base] = open_plan(a.port());
  std::string chunk(100 * 1024, 'z');
  HttpReply r;
  int ok = 0;
  for (int i = 0; i < 40; ++i) {
    r = post_message(a.port(), plan, chunk);
    if (r.status != 200) break;
    ++ok;
  }
  REQUIRE_MESSAGE(r.status == 503, r.status << " " << r.body);
  CHECK(!r.header("retry-after").empty());
  CHECK(ok > 0);
  CHECK(log_messages(a.port(), plan, base).size() == static_cast<size_t>(ok));
  CHECK(chat_messages(a.port(), plan).Size() == static_cast<rapidjson::SizeType>(ok));
}

TEST_CASE("a slow WebSocket consumer is cut off with a resume hint; others keep receiving") {
  Agentd a;
  a.start({"--ws-queue-frames", "8"});
  const auto [plan, base] = open_plan(a.port());
  const std::string socket = "/api/v3/socket/" + plan + "?after_seq=" + std::to_string(base);
  WsClient slow;
  slow.set_receive_buffer(4096);
  REQUIRE(slow.connect(a.port(), socket));
  WsClient fast;
  REQUIRE(fast.connect(a.port(), socket));
  std::string big(32 * 1024, 'q');
  std::thread producer([&] {
    for (int i = 0; i < 200; ++i) post_message(a.port(), plan, big);
  });
  int got = 0;
  while (got < 200) {
    auto r = fast.read(10000);
    if (r.kind != WsClient::Read::kFrame) break;
    ++got;
  }
  producer.join();
  CHECK(got == 200);
  WsClient::Read r;
  uint64_t last = 0;
  for (;;) {
    r = slow.read(10000);
    if (r.kind != WsClient::Read::kFrame) break;
    last = seq_of(r.text);
  }
  REQUIRE(r.kind == WsClient::Read::kClosed);
  CHECK(r.close_code == 1013);
  CHECK(r.close_reason.find("after_seq=") != std::string::npos);
  CHECK(last < base + 200);
  // Resuming from what it got delivers the rest.
  WsClient again;
  REQUIRE(again.connect(a.port(), "/api/v3/socket/" + plan + "?after_seq=" + std::to_string(last)));
  CHECK(seq_of(again.read().text) == last + 1);
}

TEST_CASE("SIGTERM with clients connected: sockets close with 1001 and agentd exits 0") {
  Agentd a;
  a.start();
  const auto [plan, base] = open_plan(a.port());
  REQUIRE(post_message(a.port(), plan, "one").status == 200);
  WsClient w1, w2;
  REQUIRE(w1.connect(a.port(), "/api/v3/socket/" + plan + "?after_seq=" + std::to_string(base)));
  REQUIRE(w2.connect(a.port(), "/api/v3/socket/" + plan + "?after_seq=" + std::to_string(base + 1)));
  CHECK(seq_of(w1.read().text) == base + 1);
  a.proc().signal(SIGTERM);
  WsClient::Read c1;
  do c1 = w1.read(5000);
  while (c1.kind == WsClient::Read::kFrame);
  CHECK(c1.kind == WsClient::Read::kClosed);
  CHECK(c1.close_code == 1001);
  WsClient::Read c2;
  do c2 = w2.read(5000);
  while (c2.kind == WsClient::Read::kFrame);
  CHECK(c2.close_code == 1001);
  int status = a.proc().wait(15000);
  REQUIRE(status != -1);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a finished plan takes no more messages (409), but an echo or a repost of a held message is still 200") {
  Agentd a;
  a.start();
  const auto [plan, base] = open_plan(a.port());
  auto first = post_message(a.port(), plan, "while open");
  REQUIRE_MESSAGE(first.status == 200, first.body);
  const std::string mid = json(first.body)["message_id"].GetString();
  CHECK(json(first.body)["seq"].GetUint64() == base + 1);
  REQUIRE(http_post(a.port(), "/api/v3/plans/" + plan + "/cancel", "{}").status == 200);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string status;
  while (status != "canceled" && std::chrono::steady_clock::now() < until) {
    status = json(http_get(a.port(), "/api/v3/plan?plan_id=" + plan).body)["plan"]["status"].GetString();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(status == "canceled");
  const uint64_t ended_at =
      json(http_get(a.port(), "/api/v3/plan?plan_id=" + plan).body)["plan"]["last_seq"].GetUint64();

  auto late = post_message(a.port(), plan, "after the end");
  CHECK(late.status == 409);
  CHECK(late.body.find("canceled") != std::string::npos);
  // The MACAE UIs echo every frame they show: still recognised, not stored.
  std::string echo = R"({"plan_id":")" + plan +
                     R"(","agent":"UI","content":"echo","raw_data":{"data":{"message_id":")" + mid + R"("}}})";
  auto e = http_post(a.port(), "/api/v3/agent_message", echo);
  REQUIRE_MESSAGE(e.status == 200, e.body);
  CHECK(json(e.body)["duplicate"].GetBool());
  CHECK(json(e.body)["seq"].GetUint64() == base + 1);
  // A client retrying the post it made while the plan was open: its answer again.
  std::string repost =
      R"({"plan_id":")" + plan + R"(","agent":"Ext","content":"while open","message_id":")" + mid + R"("})";
  auto r = http_post(a.port(), "/api/v3/agent_message", repost);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(json(r.body)["duplicate"].GetBool());
  // Nothing was appended after the end.
  CHECK(json(http_get(a.port(), "/api/v3/plan?plan_id=" + plan).body)["plan"]["last_seq"].GetUint64() == ended_at);
  CHECK(log_messages(a.port(), plan).size() == ended_at);
}

TEST_CASE("stale LMDB readers: `agentd-outbox dump | head` and a reader killed mid-read do not grow the live outbox") {
  Agentd a;
  a.start({"--outbox-prune-interval-s", "1"});
  const std::string plan = open_plan(a.port()).id;
  const std::string filler(1000, 'f');
  for (int i = 0; i < 300; ++i) REQUIRE(post_message(a.port(), plan, filler).status == 200);
  // 1. The tool under a closed pipe: it must exit by itself (not die of
  //    SIGPIPE inside its read transaction).
  const std::string cmd = "set -o pipefail; '" + agentd_outbox_binary() + "' dump '" + a.data_dir() +
                          "' 2>/dev/null | head -c 100 >/dev/null";
  ChildProcess sh = ChildProcess::spawn({"/bin/bash", "-c", cmd}, a.dir() + "/dump.log");
  int st = sh.wait(20000);
  REQUIRE(st != -1);
  CHECK_MESSAGE(WIFEXITED(st), "signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0));
  CHECK_MESSAGE(WEXITSTATUS(st) == 0, "dump | head exited " << WEXITSTATUS(st) << " (141: killed by SIGPIPE)");
  // 2. A reader killed inside its read transaction (SIGKILL: no cleanup).
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    MDB_env* env = nullptr;
    MDB_txn* txn = nullptr;
    if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
        mdb_env_open(env, a.data_dir().c_str(), MDB_RDONLY | MDB_NOTLS, 0644) != 0 ||
        mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) != 0) {
      _exit(1);
    }
    raise(SIGKILL);
  }
  int cst = 0;
  REQUIRE(waitpid(pid, &cst, 0) == pid);
  REQUIRE(WIFSIGNALED(cst));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // two reader checks
  // 3. Many small commits: with a pinned snapshot each one takes fresh pages.
  const auto data_mdb = a.data_dir() + "/data.mdb";
  const auto before = std::filesystem::file_size(data_mdb);
  for (int i = 0; i < 2000; ++i) REQUIRE(post_message(a.port(), plan, "small " + std::to_string(i)).status == 200);
  const auto after = std::filesystem::file_size(data_mdb);
  MESSAGE("data.mdb " << before << " -> " << after << " bytes over 2000 appends");
  CHECK(after - before < (8u << 20));
}
