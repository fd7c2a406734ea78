// Unit tests of net's pieces: request-target parsing, routing, bodies and
// 422 details, auth modes, the hub, and the merged outbox/MongoDB read.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "core/envelope.h"
#include "net/auth.h"
#include "net/body.h"
#include "net/history.h"
#include "net/hub.h"
#include "net/origin.h"
#include "net/query.h"
#include "net/router.h"

using namespace agentd;
using namespace agentd::net;
namespace http = boost::beast::http;

TEST_CASE("parse_target decodes the path and query parameters") {
  auto t = parse_target("/api/v3/plan?plan_id=a%20b&after_seq=12&x=1+2&flag");
  REQUIRE(t.is_ok());
  CHECK(t->path == "/api/v3/plan");
  CHECK(t->get("plan_id") == "a b");
  CHECK(t->get("flag") == "");
  CHECK(!t->get("nope"));
  CHECK(*t->get_u64("after_seq", 0) == 12);
  CHECK(*t->get_u64("missing", 7) == 7);
  auto bad = t->get_u64("plan_id", 0);
  CHECK(!bad.is_ok());
  CHECK(bad.status().message().find("plan_id") != std::string::npos);
  CHECK(!parse_target("http://example.com/x").is_ok());
}

TEST_CASE("redact_target hides every token value, whatever its spelling, and keeps the rest") {
  CHECK(redact_target("/api/v3/socket/p?token=s3cret&after_seq=4") == "/api/v3/socket/p?token=REDACTED&after_seq=4");
  CHECK(redact_target("/api/v3/socket/p?after_seq=4&token=s3cret") == "/api/v3/socket/p?after_seq=4&token=REDACTED");
  CHECK(redact_target("/x?token=a&token=b&y") == "/x?token=REDACTED&token=REDACTED&y");
  // parse_target decodes keys, so auth reads these as `token` too.
  CHECK(redact_target("/x?%74oken=s3cret") == "/x?%74oken=REDACTED");
  CHECK(redact_target("/x?tok%65N=s3cret") == "/x?tok%65N=REDACTED");
  CHECK(redact_target("/x?TOKEN=s3cret&a=%zz") == "/x?TOKEN=REDACTED&a=%zz");
  // Targets the parser would reject are redacted all the same.
  CHECK(redact_target("/x?token=s3cret#frag&%") == "/x?token=REDACTED&%");
  CHECK(redact_target("/x?a=1&&token=s3cret&") == "/x?a=1&&token=REDACTED&");
  // Other keys and values, and targets without a query, are untouched.
  CHECK(redact_target("/x?tokens=1&my_token=2&a=token%3Dx&token") == "/x?tokens=1&my_token=2&a=token%3Dx&token");
  CHECK(redact_target("/api/v3/plans") == "/api/v3/plans");
  CHECK(redact_target("/x?") == "/x?");
  CHECK(redact_target("/x?%7") == "/x?%7");
}

TEST_CASE("origins: normalized for comparison, same origin against Host, the --cors-origins policy") {
  CHECK(normalize_origin("HTTPS://App.Example") == "https://app.example");
  CHECK(normalize_origin("https://app.example:443") == "https://app.example");
  CHECK(normalize_origin("http://app.example:80") == "http://app.example");
  CHECK(normalize_origin("http://app.example:443") == "http://app.example:443");
  CHECK(normalize_origin("http://[::1]:8000") == "http://[::1]:8000");
  CHECK(normalize_origin("http://[::1]") == "http://[::1]");
  for (const char* bad : {"null", "", "app.example", "file://x", "https://", "https://a.b/path", "https://u@a.b",
                          "https://a.b:", "https://a.b:x", "https://:80"}) {
    CHECK_MESSAGE(normalize_origin(bad).empty(), bad);
  }
  CHECK(same_origin("http://127.0.0.1:8000", "127.0.0.1:8000"));
  CHECK(same_origin("http://LOCALHOST:8000", "localhost:8000"));
  CHECK(same_origin("https://agentd.example", "agentd.example:443"));
  CHECK(same_origin("http://agentd.example", "agentd.example"));
  CHECK(!same_origin("http://127.0.0.1:8001", "127.0.0.1:8000"));
  CHECK(!same_origin("http://evil.example:8000", "127.0.0.1:8000"));
  CHECK(!same_origin("http://127.0.0.1:8000", ""));
  CHECK(!same_origin("null", "127.0.0.1:8000"));

  OriginPolicy none({});
  CHECK(!none.any());
  CHECK(!none.has_list());
  CHECK(!none.listed("https://app.example"));
  CHECK(none.upgrade_allowed("", "127.0.0.1:8000"));
  CHECK(none.upgrade_allowed("http://127.0.0.1:8000", "127.0.0.1:8000"));
  CHECK(!none.upgrade_allowed("https://evil.example", "127.0.0.1:8000"));
  CHECK(!none.upgrade_allowed("null", "127.0.0.1:8000"));
  OriginPolicy list({"https://App.example", "http://localhost:3000"});
  CHECK(list.has_list());
  CHECK(list.listed("https://app.example:443"));
  CHECK(list.listed("http://localhost:3000"));
  CHECK(!list.listed("http://localhost:3001"));
  CHECK(list.upgrade_allowed("http://localhost:3000", "127.0.0.1:8000"));
  CHECK(!list.upgrade_allowed("https://evil.example", "127.0.0.1:8000"));
  OriginPolicy any({"*"});
  CHECK(any.any());
  CHECK(!any.has_list());
  CHECK(!any.listed("https://evil.example"));
  CHECK(any.upgrade_allowed("https://evil.example", "127.0.0.1:8000"));
  CHECK(any.upgrade_allowed("null", "127.0.0.1:8000"));

  CHECK(OriginPolicy::validate({}).is_ok());
  CHECK(OriginPolicy::validate({"*", "https://a.example", "http://localhost:3000"}).is_ok());
  auto bad = OriginPolicy::validate({"https://a.example", "a.example"});
  CHECK(bad.code() == Code::kInvalidArgument);
  CHECK(bad.message().find("'a.example'") != std::string::npos);
}

TEST_CASE("path_param extracts one segment") {
  CHECK(path_param("/api/v3/plan/abc/messages", "/api/v3/plan/", "/messages") == "abc");
  CHECK(!path_param("/api/v3/plan//messages", "/api/v3/plan/", "/messages"));
  CHECK(!path_param("/api/v3/plan/a/b/messages", "/api/v3/plan/", "/messages"));
  CHECK(path_param("/api/v3/socket/p1", "/api/v3/socket/", "") == "p1");
  CHECK(!path_param("/api/v3/socket/", "/api/v3/socket/", ""));
}

TEST_CASE("match_route maps every endpoint, method errors and preflights") {
  CHECK(match_route(http::verb::get, "/api/v3/plans").id == RouteId::kPlans);
  CHECK(match_route(http::verb::get, "/api/v3/plan").id == RouteId::kPlan);
  CHECK(match_route(http::verb::post, "/api/v3/process_request").id == RouteId::kProcessRequest);
  CHECK(match_route(http::verb::post, "/api/v3/plan_approval").id == RouteId::kPlanApproval);
  CHECK(match_route(http::verb::post, "/api/v3/user_clarification").id == RouteId::kUserClarification);
  CHECK(match_route(http::verb::post, "/api/v3/agent_message").id == RouteId::kAgentMessage);
  CHECK(match_route(http::verb::get, "/api/v3/init_team").id == RouteId::kInitTeam);
  CHECK(match_route(http::verb::get, "/api/v3/team_configs").id == RouteId::kTeamConfigs);
  CHECK(match_route(http::verb::post, "/api/v3/select_team").id == RouteId::kSelectTeam);
  auto m = match_route(http::verb::get, "/api/v3/plan/p-1/messages");
  CHECK(m.id == RouteId::kPlanMessages);
  CHECK(m.param == "p-1");
  CHECK(m.name == "/api/v3/plan/{plan_id}/messages");
  m = match_route(http::verb::post, "/api/v3/plans/p-2/cancel");
  CHECK(m.id == RouteId::kCancel);
  CHECK(m.param == "p-2");
  m = match_route(http::verb::get, "/api/v3/team_configs/t1");
  CHECK(m.id == RouteId::kTeamConfig);
  CHECK(m.param == "t1");
  CHECK(match_route(http::verb::get, "/api/v3/socket/p3").id == RouteId::kSocket);
  CHECK(match_route(http::verb::post, "/api/v3/plans").id == RouteId::kMethodNotAllowed);
  CHECK(match_route(http::verb::get, "/api/v3/agent_message").id == RouteId::kMethodNotAllowed);
  CHECK(match_route(http::verb::options, "/api/v3/agent_message").id == RouteId::kPreflight);
  // Every /api/v3 route also exists under /api/v4 (contract decision 1),
  // named by its own version for metrics; other versions stay unknown.
  m = match_route(http::verb::get, "/api/v4/plans");
  CHECK(m.id == RouteId::kPlans);
  CHECK(m.name == "/api/v4/plans");
  CHECK(m.version == 4);
  CHECK(match_route(http::verb::get, "/api/v3/plans").version == 3);
  m = match_route(http::verb::get, "/api/v4/plan/p-4/messages");
  CHECK(m.id == RouteId::kPlanMessages);
  CHECK(m.param == "p-4");
  CHECK(m.name == "/api/v4/plan/{plan_id}/messages");
  CHECK(match_route(http::verb::get, "/api/v4/socket/p5").id == RouteId::kSocket);
  CHECK(match_route(http::verb::post, "/api/v4/plans").id == RouteId::kMethodNotAllowed);
  CHECK(match_route(http::verb::get, "/api/v5/plans").id == RouteId::kNotFound);
  CHECK(match_route(http::verb::get, "/api/v3/nope").id == RouteId::kNotFound);
  // The routes the MACAE UIs call beside the plan API.
  CHECK(match_route(http::verb::get, "/config").id == RouteId::kConfig);
  CHECK(match_route(http::verb::post, "/api/user_browser_language").id == RouteId::kBrowserLanguage);
  CHECK(match_route(http::verb::post, "/api/v3/upload_team_config").id == RouteId::kUploadTeam);
  CHECK(match_route(http::verb::post, "/api/v4/upload_team_config").id == RouteId::kUploadTeam);
  m = match_route(http::verb::delete_, "/api/v3/team_configs/t2");
  CHECK(m.id == RouteId::kDeleteTeam);
  CHECK(m.param == "t2");
  CHECK(match_route(http::verb::put, "/api/v3/team_configs/t2").id == RouteId::kMethodNotAllowed);
  CHECK(match_route(http::verb::get, "/healthz").id == RouteId::kHealth);
  CHECK(match_route(http::verb::get, "/metrics").id == RouteId::kMetrics);
}

TEST_CASE("Body reports FastAPI-style field errors") {
  Body b(R"({"description":5,"flag":"x","extra":[1]})", 1 << 20);
  CHECK(!b.string("description", true));
  CHECK(!b.boolean("flag", false));
  CHECK(!b.string("session_id", true));
  CHECK(!b.ok());
  std::string d = b.detail();
  CHECK(d == R"({"detail":[{"loc":["body","description"],"msg":"str type expected","type":"type_error.str"},)"
             R"({"loc":["body","flag"],"msg":"value could not be parsed to a boolean","type":"type_error.bool"},)"
             R"({"loc":["body","session_id"],"msg":"field required","type":"value_error.missing"}]})");

  Body ok(R"({"description":"hi","auto_approve":true,"session_id":null})", 1 << 20);
  CHECK(ok.string("description", true) == "hi");
  CHECK(ok.boolean("auto_approve", false) == true);
  CHECK(!ok.string("session_id", false));  // null counts as absent
  CHECK(ok.ok());

  Body objects(R"({"metadata":[1],"data":{"a":1}})", 1 << 20);
  CHECK(objects.object("data", true) == R"({"a":1})");
  CHECK(!objects.object("metadata", false));
  CHECK(!objects.object("missing", false));
  CHECK(objects.detail() ==
        R"({"detail":[{"loc":["body","metadata"],"msg":"value is not a valid dict","type":"type_error.dict"}]})");

  Body broken("{not json", 1 << 20);
  CHECK(!broken.ok());
  CHECK(broken.detail().find("\"loc\":[\"body\"") != std::string::npos);
  Body dollar(R"({"data":{"$where":1}})", 1 << 20);
  CHECK(!dollar.ok());
  CHECK(dollar.detail().find("$where") != std::string::npos);
  Body array("[1,2]", 1 << 20);
  CHECK(!array.ok());
}

TEST_CASE("error_response maps codes to HTTP statuses") {
  CHECK(error_response(not_found("Plan not found"), 2).result() == http::status::not_found);
  CHECK(error_response(invalid_argument("x"), 2).result() == http::status::unprocessable_entity);
  CHECK(error_response(failed_precondition("x"), 2).result() == http::status::conflict);
  CHECK(error_response(Status(Code::kUnauthenticated, "x"), 2).result() == http::status::unauthorized);
  auto full = error_response(Status(Code::kOutboxFull, "full"), 3);
  CHECK(full.result() == http::status::service_unavailable);
  CHECK(full[http::field::retry_after] == "3");
  CHECK(error_response(Status(Code::kTooLarge, "x"), 2).result() == http::status::payload_too_large);
  CHECK(error_response(internal_error("x"), 2).result() == http::status::internal_server_error);
}

TEST_CASE("plan_json adds id and timestamp to the plan record") {
  PlanRecord p;
  p.plan_id = "p1";
  p.user_id = "u";
  p.created_at = "2026-01-01T00:00:00.000Z";
  std::string j = plan_json(p);
  CHECK(j.rfind(R"({"id":"p1","timestamp":"2026-01-01T00:00:00.000Z","plan_id":"p1",)", 0) == 0);
  CHECK(parse_strict(j).is_ok());
}

TEST_CASE("auth: dev mode uses the header, then ?user_id on sockets, then the zero user") {
  auto a = Auth::create(AuthMode::kDev, "");
  REQUIRE(a.is_ok());
  http::fields h;
  CHECK(a->identify(h, false)->user_id == kZeroUser);
  CHECK(a->identify(h, true, "alice")->user_id == "alice");
  CHECK(a->identify(h, false, "alice")->user_id == kZeroUser);  // query only for sockets
  h.set(kPrincipalHeader, "bob");
  CHECK(a->identify(h, true, "alice")->user_id == "bob");
}

TEST_CASE("auth: header mode requires the principal header") {
  auto a = Auth::create(AuthMode::kHeader, "");
  REQUIRE(a.is_ok());
  http::fields h;
  auto none = a->identify(h, true, "alice");
  CHECK(!none.is_ok());
  CHECK(none.status().code() == Code::kUnauthenticated);
  h.set(kPrincipalHeader, "  ");
  CHECK(!a->identify(h, false).is_ok());
  h.set(kPrincipalHeader, "carol");
  CHECK(a->identify(h, false)->user_id == "carol");
}

TEST_CASE("auth: token mode checks bearer, ?token and Sec-WebSocket-Protocol") {
  auto tokens = Auth::parse_token_file("# comment\n tok-a  alice \n\ntok-b bob # trailing\n");
  REQUIRE(tokens.is_ok());
  CHECK(tokens->size() == 2);
  CHECK(tokens->at("tok-b") == "bob");
  CHECK(!Auth::parse_token_file("lonely\n").is_ok());
  CHECK(!Auth::create(AuthMode::kToken, "").is_ok());
  CHECK(!Auth::create(AuthMode::kToken, "/nonexistent/tokens").is_ok());

  Auth a = Auth::with_tokens(*tokens);
  http::fields h;
  CHECK(a.identify(h, false).status().code() == Code::kUnauthenticated);
  h.set(kPrincipalHeader, "mallory");  // ignored in token mode
  CHECK(!a.identify(h, false).is_ok());
  h.set(http::field::authorization, "Bearer tok-a");
  CHECK(a.identify(h, false)->user_id == "alice");
  h.set(http::field::authorization, "Bearer nope");
  CHECK(!a.identify(h, false).is_ok());

  http::fields ws;
  CHECK(!a.identify(ws, false, "", "tok-b").is_ok());  // ?token only on sockets
  CHECK(a.identify(ws, true, "", "tok-b")->user_id == "bob");
  CHECK(!a.identify(ws, true, "", "bad").is_ok());
  ws.set(http::field::sec_websocket_protocol, "json, bearer.tok-b");
  auto id = a.identify(ws, true);
  REQUIRE(id.is_ok());
  CHECK(id->user_id == "bob");
  CHECK(id->ws_protocol == "bearer.tok-b");
  ws.set(http::field::sec_websocket_protocol, "json");
  CHECK(!a.identify(ws, true).is_ok());
}

namespace {

struct Collector : Subscriber {
  std::mutex mu;
  std::vector<Frame> frames;
  void deliver(const Frame& f) override {
    std::lock_guard lock(mu);
    frames.push_back(f);
  }
};

CommittedMessage msg(const std::string& plan, uint64_t seq) {
  return {plan, seq, std::make_shared<const std::string>(plan + ":" + std::to_string(seq))};
}

}  // namespace

TEST_CASE("hub delivers each plan's messages to its subscribers only, sharing the bytes") {
  Hub hub(10);
  auto a1 = std::make_shared<Collector>(), a2 = std::make_shared<Collector>(), b = std::make_shared<Collector>();
  REQUIRE(hub.subscribe("A", a1).is_ok());
  REQUIRE(hub.subscribe("A", a2).is_ok());
  REQUIRE(hub.subscribe("B", b).is_ok());
  CHECK(hub.subscribers("A") == 2);
  CHECK(hub.total_subscribers() == 3);
  hub.publish({msg("A", 1), msg("B", 1), msg("A", 2)});
  REQUIRE(a1->frames.size() == 2);
  CHECK(a1->frames[0].seq == 1);
  CHECK(a1->frames[1].seq == 2);
  CHECK(a1->frames[0].bytes.get() == a2->frames[0].bytes.get());  // encoded once
  REQUIRE(b->frames.size() == 1);
  CHECK(*b->frames[0].bytes == "B:1");

  hub.publish_live("A", std::make_shared<const std::string>("chunk"));
  CHECK(a1->frames.back().seq == 0);

  hub.unsubscribe("A", a1.get());
  hub.publish({msg("A", 3)});
  CHECK(a1->frames.size() == 3);
  CHECK(a2->frames.size() == 4);
  CHECK(hub.subscribers("A") == 1);
}

TEST_CASE("hub enforces the per-plan cap and forgets destroyed subscribers") {
  Hub hub(2);
  auto s1 = std::make_shared<Collector>(), s2 = std::make_shared<Collector>(), s3 = std::make_shared<Collector>();
  REQUIRE(hub.subscribe("P", s1).is_ok());
  REQUIRE(hub.subscribe("P", s2).is_ok());
  auto over = hub.subscribe("P", s3);
  CHECK(over.code() == Code::kUnavailable);
  s1.reset();  // died without unsubscribing
  CHECK(hub.subscribe("P", s3).is_ok());
  hub.publish({msg("P", 1)});
  CHECK(s2->frames.size() == 1);
  CHECK(s3->frames.size() == 1);
}

TEST_CASE("hub: concurrent publish, subscribe and unsubscribe") {
  Hub hub(1000);
  std::atomic<bool> stop{false};
  auto keeper = std::make_shared<Collector>();
  REQUIRE(hub.subscribe("P", keeper).is_ok());
  std::thread pub([&] {
    for (uint64_t s = 1; s <= 2000; ++s) hub.publish({msg("P", s)});
    stop = true;
  });
  std::thread churn([&] {
    while (!stop) {
      auto c = std::make_shared<Collector>();
      if (hub.subscribe("P", c).is_ok()) hub.unsubscribe("P", c.get());
    }
  });
  pub.join();
  churn.join();
  REQUIRE(keeper->frames.size() == 2000);
  for (uint64_t i = 0; i < 2000; ++i) CHECK(keeper->frames[i].seq == i + 1);
}

namespace {

// An in-memory MessageLog whose first messages can be "pruned".
struct MemLog : MessageLog {
  std::map<uint64_t, std::string> msgs;
  std::optional<PlanRecord> plan;
  void append(AppendRequest, AppendCallback done) override { done(internal_error("unused")); }
  Result<std::vector<StoredMessage>> read_messages(std::string_view, uint64_t after, size_t limit) override {
    std::vector<StoredMessage> out;
    for (auto it = msgs.upper_bound(after); it != msgs.end() && out.size() < limit; ++it) {
      out.push_back({it->first, std::make_shared<const std::string>(it->second)});
    }
    return out;
  }
  Result<std::optional<PlanRecord>> get_plan(std::string_view) override { return plan; }
  Result<std::vector<PlanRecord>> list_plans(std::string_view, size_t) override {
    std::vector<PlanRecord> v;
    if (plan) v.push_back(*plan);
    return v;
  }
  Result<uint64_t> last_seq(std::string_view) override { return msgs.empty() ? 0 : msgs.rbegin()->first; }
  Result<std::optional<uint64_t>> find_message(std::string_view, std::string_view) override {
    return std::optional<uint64_t>();
  }
  Result<std::vector<PlanRecord>> list_unfinished_plans(size_t) override { return std::vector<PlanRecord>{}; }
  uint64_t first() const { return msgs.empty() ? 0 : msgs.begin()->first; }
};

struct MemHistory : HistoryReader {
  std::map<uint64_t, std::string> msgs;
  bool down = false;
  int reads = 0;
  Result<std::vector<StoredMessage>> read_messages(std::string_view, uint64_t after, size_t limit) override {
    ++reads;
    if (down) return unavailable("connection refused");
    std::vector<StoredMessage> out;
    for (auto it = msgs.upper_bound(after); it != msgs.end() && out.size() < limit; ++it) {
      out.push_back({it->first, std::make_shared<const std::string>(it->second)});
    }
    return out;
  }
  Result<std::optional<PlanRecord>> get_plan(std::string_view) override {
    if (down) return unavailable("down");
    return std::optional<PlanRecord>{};
  }
  Result<std::vector<PlanRecord>> list_plans(std::string_view, size_t) override { return std::vector<PlanRecord>{}; }
};

std::vector<uint64_t> seqs(const std::vector<StoredMessage>& v) {
  std::vector<uint64_t> out;
  for (auto& m : v) out.push_back(m.seq);
  return out;
}

}  // namespace

TEST_CASE("merged read: MongoDB for pruned seqs, the outbox for the rest, no hole, no duplicate") {
  MemLog log;
  MemHistory hist;
  for (uint64_t s = 1; s <= 10; ++s) hist.msgs[s] = "m" + std::to_string(s);  // flushed: 1..10
  for (uint64_t s = 6; s <= 15; ++s) log.msgs[s] = "m" + std::to_string(s);   // outbox still holds 6..15
  MergedReader r(
      log, [&](std::string_view) -> Result<uint64_t> { return log.first(); }, &hist);

  auto all = r.read_messages("p", 0, 100);
  REQUIRE(all.is_ok());
  std::vector<uint64_t> want;
  for (uint64_t s = 1; s <= 15; ++s) want.push_back(s);
  CHECK(seqs(*all) == want);
  CHECK(*(*all)[0].bytes == "m1");

  auto page = r.read_messages("p", 3, 4);  // 4..7 crosses the boundary
  REQUIRE(page.is_ok());
  CHECK(seqs(*page) == std::vector<uint64_t>{4, 5, 6, 7});

  hist.reads = 0;
  auto recent = r.read_messages("p", 8, 100);  // only the outbox
  REQUIRE(recent.is_ok());
  CHECK(seqs(*recent).front() == 9);
  CHECK(hist.reads == 0);

  hist.down = true;
  auto still = r.read_messages("p", 5, 100);  // everything is in the outbox: MongoDB not needed
  REQUIRE(still.is_ok());
  CHECK(seqs(*still).size() == 10);
  auto missing = r.read_messages("p", 0, 100);
  REQUIRE(!missing.is_ok());
  CHECK(missing.status().code() == Code::kUnavailable);
  CHECK(missing.status().message().find("messages 1..5 of plan p") != std::string::npos);
}

TEST_CASE("merged read without MongoDB serves the outbox alone; a hole in MongoDB is an error") {
  MemLog log;
  for (uint64_t s = 1; s <= 5; ++s) log.msgs[s] = "x";
  MergedReader alone(log, nullptr, nullptr);
  auto r = alone.read_messages("p", 2, 2);
  REQUIRE(r.is_ok());
  CHECK(seqs(*r) == std::vector<uint64_t>{3, 4});

  MemLog pruned;
  for (uint64_t s = 8; s <= 9; ++s) pruned.msgs[s] = "x";
  MemHistory hist;
  hist.msgs = {{1, "a"}, {2, "b"}, {4, "d"}};  // 3 missing
  MergedReader r2(
      pruned, [&](std::string_view) -> Result<uint64_t> { return pruned.first(); }, &hist);
  auto bad = r2.read_messages("p", 0, 100);
  REQUIRE(!bad.is_ok());
  CHECK(bad.status().message().find("missing message 3") != std::string::npos);
}

TEST_CASE("merged read: the 503 names the missing range even when the outbox holds nothing of the plan") {
  MemLog empty;  // everything pruned; the record says there were 12
  PlanRecord p;
  p.plan_id = "p";
  p.last_seq = 12;
  empty.plan = p;
  MemHistory hist;
  hist.down = true;
  MergedReader r(
      empty, [&](std::string_view) -> Result<uint64_t> { return empty.first(); }, &hist);
  auto got = r.read_messages("p", 4, 100);
  REQUIRE(!got.is_ok());
  CHECK(got.status().code() == Code::kUnavailable);
  CHECK_MESSAGE(got.status().message().find("messages 5..12 of plan p") != std::string::npos, got.status().message());
  empty.plan->last_seq = 0;  // a record that does not know: the range is open
  got = r.read_messages("p", 4, 100);
  REQUIRE(!got.is_ok());
  CHECK_MESSAGE(got.status().message().find("messages from 5 on of plan p") != std::string::npos,
                got.status().message());
}

TEST_CASE("merged read: when MongoDB's last ping failed, needed history fails fast and optional lookups skip it") {
  MemLog log;
  for (uint64_t s = 4; s <= 6; ++s) log.msgs[s] = "x";
  MemHistory hist;
  hist.msgs = {{1, "a"}, {2, "b"}, {3, "c"}};
  bool up = false;
  MergedReader r(
      log, [&](std::string_view) -> Result<uint64_t> { return log.first(); }, &hist, [&] { return up; });
  auto fast = r.read_messages("p", 0, 10);
  REQUIRE(!fast.is_ok());
  CHECK(fast.status().code() == Code::kUnavailable);
  CHECK(fast.status().message().find("messages 1..3 of plan p") != std::string::npos);
  CHECK(hist.reads == 0);
  auto recent = r.read_messages("p", 3, 10);  // the outbox has all of it
  REQUIRE(recent.is_ok());
  CHECK(recent->size() == 3);
  CHECK(r.get_plan("other").is_ok());  // a miss in the outbox does not ask MongoDB
  up = true;
  auto all = r.read_messages("p", 0, 10);
  REQUIRE(all.is_ok());
  CHECK(all->size() == 6);
  CHECK(hist.reads == 1);
}
