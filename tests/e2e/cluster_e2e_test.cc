// Several agentd instances on one MongoDB (issue 16, docs/scale-out.md):
// three real binaries and one FerretDB. A plan belongs to the instance that
// created it; any instance serves it (reads, live streams, writes forwarded
// to the owner), and killing the owner loses nothing that was acknowledged.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "core/json.h"
#include "tests/e2e/net_agentd.h"
#include "tests/net/sse_client.h"
#include "tests/support/ferretdb.h"

using namespace agentd;
using namespace agentd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kSecret = "a-cluster-secret-for-tests-0123456789";

// One instance of the cluster, restartable on its data folder.
struct Instance {
  Agentd a;
  std::string id;
  std::string uri;
  std::string secret_file;

  void start() {
    int port = free_port();
    a.start({"--mongo-uri", uri, "--cluster-secret-file", secret_file, "--instance-id", id, "--advertise-url",
             "http://127.0.0.1:" + std::to_string(port), "--cluster-heartbeat-ms", "200", "--cluster-stale-ms", "1500"},
            port);
  }
  int port() const { return a.port(); }
};

// Value of an unlabelled metric on /metrics (-1 when absent).
double metric(int port, const std::string& name) {
  auto r = http_get(port, "/metrics");
  size_t at = r.body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(r.body.substr(at + name.size() + 2));
}

struct Cluster3 {
  FerretDb db;
  Instance n[3];

  Cluster3() {
    db.start();
    std::string dir = n[0].a.dir();
    std::ofstream(dir + "/secret") << kSecret << "\n";
    const char* ids[] = {"A", "B", "C"};
    for (int i = 0; i < 3; ++i) {
      n[i].id = ids[i];
      n[i].uri = db.uri() + "agentd_cluster?serverSelectionTimeoutMS=500&connectTimeoutMS=500";
      n[i].secret_file = dir + "/secret";
      n[i].start();
    }
    for (auto& i : n) REQUIRE(wait_peers(i.port(), 2));
    auto r = json(http_get(n[1].port(), "/readyz").body);
    CHECK(std::string(r["cluster"]["instance_id"].GetString()) == "B");
    CHECK(r["cluster"]["live_peers"].Size() == 2);
  }

  static bool wait_peers(int port, int want) {
    auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until) {
      if (metric(port, "agentd_cluster_live_peers") == want) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
};

HttpReply post_message(int port, const std::string& plan_id, const std::string& content) {
  std::string body = JsonObject().str("plan_id", plan_id).str("agent", "Ext").str("content", content).done();
  return http_post(port, "/api/v3/agent_message", body, {{"content-type", "application/json"}});
}

// The plan's complete log from `port`'s paging endpoint (each envelope as sent).
std::vector<std::string> log_of(int port, const std::string& plan_id) {
  HttpReply r = http_get(port, "/api/v3/plan/" + plan_id + "/messages?after_seq=0&limit=10000");
  REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
  auto d = json(r.body);
  std::vector<std::string> out;
  for (const auto& m : d["messages"].GetArray()) out.push_back(write_canonical(m));
  return out;
}

// Persisted frames from `ws` until one has seq `last` (or the timeout).
void read_until(WsClient& ws, uint64_t last, std::vector<std::string>* frames,
                std::chrono::milliseconds timeout = 15s) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (frames->empty() || seq_of(frames->back()) < last) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    REQUIRE_MESSAGE(left.count() > 0, "no seq " << last << " (have " << frames->size() << ")");
    auto r = ws.read(static_cast<int>(left.count()));
    REQUIRE_MESSAGE(r.kind == WsClient::Read::kFrame, "ws read ended: " << r.kind << " " << r.close_reason);
    if (seq_of(r.text) == 0) continue;  // live-only / control frames
    frames->push_back(r.text);
  }
}

// seq 1..n, each once, in order.
void check_contiguous(const std::vector<std::string>& frames, uint64_t from = 1) {
  for (size_t i = 0; i < frames.size(); ++i) REQUIRE(seq_of(frames[i]) == from + i);
}

std::string m_plan_id_of(int port, const std::string& plan_id) {
  auto first = log_of(port, plan_id);
  REQUIRE(!first.empty());
  auto req = json(first[0]);
  REQUIRE(std::string(req["type"].GetString()) == "plan_approval_request");
  return req["data"]["m_plan_id"].GetString();
}

std::string plan_status(int port, const std::string& plan_id) {
  auto r = http_get(port, "/api/v3/plan?plan_id=" + plan_id);
  if (r.status != 200) return "http " + std::to_string(r.status);
  return json(r.body)["plan"]["status"].GetString();
}

}  // namespace

TEST_CASE("a plan created on A: sockets on B and C get every frame once, in order, byte-equal; C's approval runs it") {
  Cluster3 c;
  auto [plan, base] = open_plan(c.n[0].port());
  WsClient ws[3];
  for (int i = 0; i < 3; ++i) {
    REQUIRE_MESSAGE(ws[i].connect(c.n[i].port(), "/api/v3/socket/" + plan + "?after_seq=0"), ws[i].error());
  }
  SseClient sse;  // the other stream: SSE on C
  REQUIRE(sse.open(c.n[2].port(), "/api/v3/plan/" + plan + "/events?after_seq=0") == 200);
  // Writes to any instance: A appends them all.
  for (int k = 0; k < 30; ++k) {
    auto r = post_message(c.n[k % 3].port(), plan, "m" + std::to_string(k));
    REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
    CHECK(json(r.body)["seq"].GetUint64() == base + 1 + k);
  }
  // The approval goes to C, which does not own the plan: forwarded to A.
  std::string approval = JsonObject()
                             .str("m_plan_id", m_plan_id_of(c.n[2].port(), plan))
                             .str("plan_id", plan)
                             .boolean("approved", true)
                             .done();
  auto ar = http_post(c.n[2].port(), "/api/v3/plan_approval", approval, {{"content-type", "application/json"}});
  REQUIRE_MESSAGE(ar.status == 200, ar.body);
  auto until = std::chrono::steady_clock::now() + 30s;
  while (plan_status(c.n[1].port(), plan) != "completed") {
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < until, plan_status(c.n[1].port(), plan));
    std::this_thread::sleep_for(50ms);
  }
  auto owner_log = log_of(c.n[0].port(), plan);
  uint64_t last = seq_of(owner_log.back());
  CHECK(owner_log.back().find("\"type\":\"final_result_message\"") != std::string::npos);
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> frames;
    read_until(ws[i], last, &frames);
    check_contiguous(frames);
    CHECK(frames == owner_log);  // the same bytes everywhere
    CHECK(log_of(c.n[i].port(), plan) == owner_log);
  }
  std::vector<std::string> events;
  Event e;
  while (sse.next(&e, 15000) == SseClient::Got::kEvent) events.push_back(e.data);  // ends after the final result
  CHECK(events == owner_log);
  // Listed everywhere; the chat view too.
  for (auto& i : c.n) {
    auto l = http_get(i.port(), "/api/v3/plans");
    REQUIRE(l.status == 200);
    CHECK(l.body.find(plan) != std::string::npos);
    auto p = http_get(i.port(), "/api/v3/plan?plan_id=" + plan);
    REQUIRE(p.status == 200);
    CHECK(json(p.body)["messages"].Size() > 0);
  }
  CHECK(metric(c.n[1].port(), "agentd_cluster_relays") >= 0);
}

TEST_CASE("requests routed to random instances carry whole plans to their end") {
  Cluster3 c;
  std::mt19937 rng(16);
  auto any = [&] { return c.n[rng() % 3].port(); };
  std::vector<std::string> plans;
  for (int k = 0; k < 3; ++k) {
    auto r = http_post(any(), "/api/v3/process_request", R"({"description":"plan across instances"})",
                       {{"content-type", "application/json"}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    plans.push_back(json(r.body)["plan_id"].GetString());
  }
  for (const auto& plan : plans) {
    // Visible at once through any instance (the owner answers for what it
    // has not flushed yet).
    auto until = std::chrono::steady_clock::now() + 20s;
    while (plan_status(any(), plan) != "awaiting_approval") {
      REQUIRE(std::chrono::steady_clock::now() < until);
      std::this_thread::sleep_for(20ms);
    }
    // Approval by m_plan_id alone (the v3 UI's shape): the receiving
    // instance asks its peers.
    std::string approval = JsonObject().str("m_plan_id", m_plan_id_of(any(), plan)).boolean("approved", true).done();
    auto ar = http_post(any(), "/api/v3/plan_approval", approval, {{"content-type", "application/json"}});
    REQUIRE_MESSAGE(ar.status == 200, ar.body);
  }
  for (const auto& plan : plans) {
    auto until = std::chrono::steady_clock::now() + 40s;
    while (plan_status(any(), plan) != "completed") {
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < until, plan_status(any(), plan));
      std::this_thread::sleep_for(50ms);
    }
    auto log = log_of(any(), plan);
    check_contiguous(log);
    for (auto& i : c.n) CHECK(log_of(i.port(), plan) == log);
  }
}

TEST_CASE(
    "kill -9 the owner mid-stream: peers keep its flushed history and open sockets, which continue after it restarts") {
  Cluster3 c;
  auto [plan, base] = open_plan(c.n[0].port());
  WsClient wb, wc;
  REQUIRE(wb.connect(c.n[1].port(), "/api/v3/socket/" + plan + "?after_seq=0"));
  REQUIRE(wc.connect(c.n[2].port(), "/api/v3/socket/" + plan + "?after_seq=0"));
  for (int k = 0; k < 20; ++k) REQUIRE(post_message(c.n[0].port(), plan, "before " + std::to_string(k)).status == 200);
  std::vector<std::string> fb, fc;
  read_until(wb, base + 20, &fb);
  read_until(wc, base + 20, &fc);
  // Let the flusher reach MongoDB, then crash the owner.
  auto until = std::chrono::steady_clock::now() + 10s;
  while (metric(c.n[0].port(), "agentd_outbox_pending_messages") != 0) {
    REQUIRE(std::chrono::steady_clock::now() < until);
    std::this_thread::sleep_for(50ms);
  }
  c.n[0].a.proc().kill();
  c.n[0].a.proc().wait(5000);

  // B and C serve what A flushed, and say the owner is unreachable.
  auto p = http_get(c.n[1].port(), "/api/v3/plan?plan_id=" + plan);
  REQUIRE_MESSAGE(p.status == 200, p.body);
  auto pd = json(p.body);
  REQUIRE(pd.HasMember("cluster"));
  CHECK_FALSE(pd["cluster"]["owner_reachable"].GetBool());
  CHECK(std::string(pd["cluster"]["owner"].GetString()) == "A");
  CHECK(pd["cluster"]["persisted_through"].GetUint64() == base + 20);
  CHECK(log_of(c.n[2].port(), plan) == fb);
  // A write cannot go anywhere but the owner: 503 + Retry-After.
  auto w = post_message(c.n[1].port(), plan, "while A is down");
  CHECK(w.status == 503);
  CHECK_FALSE(w.header("retry-after").empty());

  // A restarts on its folder (a new port: the registry has its new address),
  // resumes the plan, and takes more messages.
  c.n[0].start();
  // Until B's registry view has A's new address, a write through B may still
  // meet the old one: 503 + Retry-After, as for any unreachable owner.
  std::string a_url = "http://127.0.0.1:" + std::to_string(c.n[0].port());
  until = std::chrono::steady_clock::now() + 10s;
  while (http_get(c.n[1].port(), "/readyz").body.find(a_url) == std::string::npos) {
    REQUIRE(std::chrono::steady_clock::now() < until);
    std::this_thread::sleep_for(50ms);
  }
  for (int k = 0; k < 20; ++k) {
    auto r = post_message(c.n[k % 2 ? 1 : 0].port(), plan, "after " + std::to_string(k));
    REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
  }
  auto owner_log = log_of(c.n[0].port(), plan);
  uint64_t last = seq_of(owner_log.back());
  REQUIRE(last >= base + 40);
  read_until(wb, last, &fb);
  read_until(wc, last, &fc);
  check_contiguous(fb);
  check_contiguous(fc);
  CHECK(fb == owner_log);
  CHECK(fc == owner_log);
}

TEST_CASE("a forwarded identity without the cluster secret is refused; internal routes need the secret") {
  Cluster3 c;
  auto [plan, base] = open_plan(c.n[0].port());
  (void)base;
  std::string body = JsonObject().str("plan_id", plan).str("agent", "X").str("content", "forged").done();
  for (const Headers& h : {Headers{{"x-agentd-forwarded-user", "someone-else"}},
                           Headers{{"x-agentd-forwarded-user", kDevUser}, {"x-agentd-cluster-secret", "wrong"}}}) {
    auto r = http_post(c.n[1].port(), "/api/v3/agent_message", body, h);
    CHECK(r.status == 401);
    CHECK(http_get(c.n[0].port(), "/api/v3/plan?plan_id=" + plan, h).status == 401);
  }
  CHECK(http_get(c.n[0].port(), "/internal/v1/plan?plan_id=" + plan).status == 401);
  CHECK(http_get(c.n[0].port(), "/internal/v1/plan?plan_id=" + plan, {{"x-agentd-cluster-secret", "nope"}}).status ==
        401);
  auto ok = http_get(c.n[0].port(), "/internal/v1/plan?plan_id=" + plan, {{"x-agentd-cluster-secret", kSecret}});
  CHECK(ok.status == 200);
  // With the secret, the forwarded user is who the request runs as: another
  // user's plan is not theirs.
  auto other = http_get(c.n[0].port(), "/api/v3/plan?plan_id=" + plan,
                        {{"x-agentd-forwarded-user", "someone-else"}, {"x-agentd-cluster-secret", kSecret}});
  CHECK(other.status == 404);
  // A single instance (no cluster secret) refuses every forwarded identity.
  Agentd single;
  single.start();
  CHECK(http_get(single.port(), "/api/v3/plans", {{"x-agentd-forwarded-user", kDevUser}}).status == 401);
}

TEST_CASE("a WebSocket approval frame on a non-owner reaches the owner's plan") {
  Cluster3 c;
  auto [plan, base] = open_plan(c.n[0].port());
  WsClient ws;
  REQUIRE(ws.connect(c.n[1].port(), "/api/v3/socket/" + plan + "?after_seq=" + std::to_string(base)));
  std::string frame = R"({"type":"plan_approval_response","data":{"approved":true,"m_plan_id":")" +
                      m_plan_id_of(c.n[1].port(), plan) + R"("}})";
  REQUIRE(ws.write(frame));
  bool answered = false;
  auto until = std::chrono::steady_clock::now() + 15s;
  while (!answered) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    REQUIRE(left.count() > 0);
    auto r = ws.read(static_cast<int>(left.count()));
    REQUIRE(r.kind == WsClient::Read::kFrame);
    if (r.text.find("\"type\":\"approval_processed\"") == std::string::npos) continue;
    auto d = json(r.text);
    CHECK_MESSAGE(d["data"]["ok"].GetBool(), r.text);
    answered = true;
  }
  until = std::chrono::steady_clock::now() + 30s;
  while (plan_status(c.n[2].port(), plan) != "completed") {
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < until, plan_status(c.n[2].port(), plan));
    std::this_thread::sleep_for(50ms);
  }
}

TEST_CASE("a page loaded through one instance, its socket opened on another: the socket starts where the page ended") {
  // The MACAE UIs load GET /plan, then open the socket without after_seq
  // (net/resume_cursors.h); behind a load balancer the two land anywhere.
  Cluster3 c;
  auto [plan, base] = open_plan(c.n[0].port());
  for (int k = 0; k < 5; ++k) REQUIRE(post_message(c.n[0].port(), plan, "seen " + std::to_string(k)).status == 200);
  for (int page : {0, 2}) {  // the page through the owner, then through C
    auto p = http_get(c.n[page].port(), "/api/v3/plan?plan_id=" + plan);
    REQUIRE(p.status == 200);
    uint64_t shown = seq_of(log_of(c.n[0].port(), plan).back());
    // Committed after the page load, before the socket opens: must arrive once.
    REQUIRE(post_message(c.n[0].port(), plan, "between").status == 200);
    WsClient ws;
    REQUIRE(ws.connect(c.n[1].port(), "/api/v3/socket/" + plan));
    std::vector<std::string> frames;
    read_until(ws, shown + 1, &frames);
    REQUIRE(frames.size() == 2);
    CHECK(seq_of(frames[0]) == base);  // the open approval request comes first
    CHECK(seq_of(frames[1]) == shown + 1);
  }
}

TEST_CASE("through a non-owner: an approval named only by m_plan_id finds its plan; a cancel reaches the owner") {
  Cluster3 c;
  auto [approved, b1] = open_plan(c.n[0].port());
  auto [canceled, b2] = open_plan(c.n[0].port());
  (void)b1;
  (void)b2;
  // No plan_id (the v3 UI's approval): C's runtime does not know the
  // m_plan_id, so C asks its peers; A answers.
  std::string approval =
      JsonObject().str("m_plan_id", m_plan_id_of(c.n[2].port(), approved)).boolean("approved", true).done();
  auto ar = http_post(c.n[2].port(), "/api/v3/plan_approval", approval, {{"content-type", "application/json"}});
  REQUIRE_MESSAGE(ar.status == 200, ar.body);
  auto cr = http_post(c.n[1].port(), "/api/v3/plans/" + canceled + "/cancel", "");
  REQUIRE_MESSAGE(cr.status == 200, cr.body);
  auto until = std::chrono::steady_clock::now() + 30s;
  while (plan_status(c.n[1].port(), approved) != "completed" || plan_status(c.n[2].port(), canceled) != "canceled") {
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < until, plan_status(c.n[1].port(), approved)
                                                                  << " " << plan_status(c.n[2].port(), canceled));
    std::this_thread::sleep_for(50ms);
  }
  // An unknown m_plan_id is still 404 after asking everyone.
  auto nf = http_post(c.n[1].port(), "/api/v3/plan_approval", R"({"m_plan_id":"no-such-plan","approved":true})",
                      {{"content-type", "application/json"}});
  CHECK(nf.status == 404);
  CHECK(metric(c.n[1].port(), "agentd_cluster_forwards_total{result=\"ok\"}") >= 1);
}

TEST_CASE("a team selected on A is the user's team on B and C: init_team and a task submitted there use it") {
  Cluster3 c;
  const Headers kJson{{"content-type", "application/json"}};
  auto team_on = [&](int i) {
    auto r = http_get(c.n[i].port(), "/api/v3/init_team");
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return std::string(json(r.body)["team_id"].GetString());
  };
  // A team other than the default one.
  std::string def = team_on(1);
  std::string pick = def == "research" ? "finance-close" : "research";
  auto s = http_post(c.n[0].port(), "/api/v3/select_team", JsonObject().str("team_id", pick).done(), kJson);
  REQUIRE_MESSAGE(s.status == 200, s.body);
  for (int i = 0; i < 3; ++i) CHECK_MESSAGE(team_on(i) == pick, "instance " << i);
  auto r =
      http_post(c.n[2].port(), "/api/v3/process_request", R"({"description":"a task for the picked team"})", kJson);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  std::string plan = json(r.body)["plan_id"].GetString();
  auto g = http_get(c.n[1].port(), "/api/v3/plan?plan_id=" + plan);
  REQUIRE_MESSAGE(g.status == 200, g.body);
  CHECK(std::string(json(g.body)["plan"]["team_id"].GetString()) == pick);
  // Selected again on C: the newest choice wins everywhere.
  s = http_post(c.n[2].port(), "/api/v3/select_team", JsonObject().str("team_id", def).done(), kJson);
  REQUIRE_MESSAGE(s.status == 200, s.body);
  for (int i = 0; i < 3; ++i) CHECK_MESSAGE(team_on(i) == def, "instance " << i);
}
