// Database faults between agentd and MongoDB (issue 9): agentd's --mongo-uri
// points at agentd-faultproxy (tools/faultproxy), in front of a FerretDB of
// the test's own. While REST posts keep coming, the proxy adds latency,
// resets connections, black-holes traffic and refuses connections. Then:
// 0 failed appends, every acknowledged message in MongoDB exactly once with
// its seq and message_id, seqs contiguous per plan, the backlog drained, and
// /metrics and /readyz agreeing with that.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/envelope.h"
#include "core/json.h"
#include "store/message_store.h"
#include "store/mongo.h"
#include "tests/e2e/net_agentd.h"
#include "tests/support/ferretdb.h"
#include "tools/faultproxy/faultproxy.h"

using namespace agentd;
using namespace agentd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kDb = "agentd_rel_fault";

// A metric's value from /metrics text (the first line starting with `name `).
double metric(const std::string& text, const std::string& name) {
  size_t pos = 0;
  while ((pos = text.find(name + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') return std::stod(text.substr(pos + name.size() + 1));
    pos += name.size();
  }
  return -1;
}

std::string mongo_state(int port) {
  auto r = http_get(port, "/readyz");
  auto d = parse_strict(r.body);
  if (!d || !d->IsObject() || !d->HasMember("mongodb")) return "?";
  return (*d)["mongodb"].GetString();
}

struct Acked {
  uint64_t seq;
  std::string message_id;
};

}  // namespace

TEST_CASE("faults between agentd and MongoDB: 0 failed appends, 0 lost, 0 duplicated, backlog drains, metrics tell") {
  FerretDb db;
  db.start();
  auto proxy_r = faultproxy::FaultProxy::start("127.0.0.1", 0, "127.0.0.1", static_cast<uint16_t>(db.port()));
  REQUIRE(proxy_r.is_ok());
  auto& proxy = *proxy_r;
  Agentd a;
  a.start({"--mongo-uri",
           "mongodb://127.0.0.1:" + std::to_string(proxy->port()) + "/" + kDb +
               "?serverSelectionTimeoutMS=500&connectTimeoutMS=500&socketTimeoutMS=1500",
           "--flush-backoff-max-ms", "500"});
  auto until = std::chrono::steady_clock::now() + 15s;
  while (mongo_state(a.port()) != "ok" && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(50ms);
  REQUIRE(mongo_state(a.port()) == "ok");
  // Open plans (a finished one takes no messages); each starts with the
  // runtime's own messages 1..base.
  std::vector<std::string> plans;
  std::map<std::string, uint64_t> base;
  for (int i = 0; i < 4; ++i) {
    auto p = open_plan(a.port());
    plans.push_back(p.id);
    base[p.id] = p.last_seq;
  }

  // Posters: two threads, round-robin over the plans, until told to stop.
  std::mutex mu;
  std::map<std::string, std::vector<Acked>> acked;  // GUARDED_BY(mu)
  std::atomic<int> failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::string> failures;  // GUARDED_BY(mu)
  auto poster = [&](int id) {
    for (int i = 0; !stop.load() && i < 100000; ++i) {
      const std::string& plan = plans[static_cast<size_t>(i + id) % plans.size()];
      std::string body = R"({"plan_id":")" + plan + R"(","agent":"Ext","content":"m )" + std::to_string(id) + "-" +
                         std::to_string(i) + "\"}";
      auto r = http_post(a.port(), "/api/v3/agent_message", body);
      if (r.status != 200) {
        failed.fetch_add(1);
        std::lock_guard<std::mutex> l(mu);
        if (failures.size() < 5) failures.push_back(std::to_string(r.status) + " " + r.body + " " + r.error);
        continue;
      }
      auto d = parse_strict(r.body);
      REQUIRE(d.is_ok());
      std::lock_guard<std::mutex> l(mu);
      acked[plan].push_back({(*d)["seq"].GetUint64(), (*d)["message_id"].GetString()});
      std::this_thread::sleep_for(2ms);
    }
  };
  std::thread p1(poster, 0), p2(poster, 1);

  double max_pending = 0;
  auto observe = [&](std::chrono::milliseconds d) {
    auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      max_pending =
          std::max(max_pending, metric(http_get(a.port(), "/metrics").body, "agentd_outbox_pending_messages"));
      std::this_thread::sleep_for(100ms);
    }
  };
  observe(500ms);
  proxy->set_latency(200ms);  // slow database
  observe(1500ms);
  proxy->clear();
  proxy->reset();  // connections reset mid-write
  observe(700ms);
  proxy->reset();
  observe(700ms);
  proxy->blackhole(2500ms);  // nothing moves; the driver times out
  observe(1500ms);
  std::string during_hole = mongo_state(a.port());
  observe(1500ms);
  proxy->refuse(true);  // the database refuses connections
  proxy->reset();
  observe(1500ms);
  bool unreachable_seen =
      during_hole.rfind("unreachable", 0) == 0 || mongo_state(a.port()).rfind("unreachable", 0) == 0;
  proxy->clear();
  observe(500ms);
  stop = true;
  p1.join();
  p2.join();
  {
    std::lock_guard<std::mutex> l(mu);
    for (const auto& f : failures) MESSAGE("failed append: " << f);
  }
  CHECK(failed.load() == 0);
  MESSAGE("max pending during faults: " << max_pending << "; /readyz mongodb during the black hole: " << during_hole);
  CHECK(max_pending > 0);  // the faults did hold messages back
  CHECK(unreachable_seen);

  // Recovery: the backlog drains and the metrics say so.
  std::string m;
  auto drained = [&](std::chrono::seconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      m = http_get(a.port(), "/metrics").body;
      if (metric(m, "agentd_outbox_pending_messages") == 0 && mongo_state(a.port()) == "ok") return true;
      std::this_thread::sleep_for(200ms);
    }
    return false;
  };
  if (!drained(60s)) {
    // Say whether the database itself answers (a read on the test's
    // database, not ping: ping needs no SQLite), and keep its log.
    auto direct = MongoPool::open(db.uri() + kDb + "?serverSelectionTimeoutMS=1000&socketTimeoutMS=2000");
    bool db_ok = false;
    if (direct.is_ok()) {
      MessageStore probe(direct->get());
      db_ok = probe.count("messages").is_ok();
    }
    db.keep_files();
    MESSAGE("not drained after 60 s; a direct read of FerretDB " << std::string(db_ok ? "works" : "fails")
                                                                 << "; its log: " << db.log_path());
  }
  auto ps = proxy->stats();
  MESSAGE("after recovery wait: pending=" << metric(m, "agentd_outbox_pending_messages")
                                          << " mongo=" << mongo_state(a.port()) << " proxy accepted=" << ps.accepted
                                          << " open=" << ps.open << " refused=" << ps.refused << " resets=" << ps.resets
                                          << " persisted=" << metric(m, "agentd_messages_persisted_total")
                                          << " retries=" << metric(m, "agentd_persist_retries_total"));
  CHECK(metric(m, "agentd_outbox_pending_messages") == 0);
  CHECK(metric(m, "agentd_mongo_up") == 1);
  CHECK(mongo_state(a.port()) == "ok");
  CHECK(http_get(a.port(), "/readyz").status == 200);

  // MongoDB itself (directly, not through the proxy): exactly the
  // acknowledged messages, once each, seqs 1..N per plan.
  auto pool = MongoPool::open(db.uri() + kDb);
  REQUIRE(pool.is_ok());
  MessageStore store(pool->get());
  size_t total = 0;
  for (const auto& plan : plans) {
    auto& mine = acked[plan];
    total += mine.size() + base[plan];
    auto stored = store.read_messages(plan, 0, 1000000);
    REQUIRE_MESSAGE(stored.is_ok(), stored.status().to_string());
    std::map<uint64_t, std::string> by_seq;
    for (const auto& s : *stored) {
      CHECK_MESSAGE(by_seq.count(s.seq) == 0, plan << " seq " << s.seq << " stored twice");
      auto e = decode_envelope(*s.bytes);
      REQUIRE(e.is_ok());
      by_seq[s.seq] = e->message_id;
    }
    CHECK_MESSAGE(by_seq.size() == mine.size() + base[plan],
                  plan << ": " << by_seq.size() << " stored, " << mine.size() << " acked");
    std::string missing;
    int n_missing = 0;
    for (const auto& ack : mine) {
      auto it = by_seq.find(ack.seq);
      if (it == by_seq.end()) {
        if (++n_missing <= 20) missing += " " + std::to_string(ack.seq);
        continue;
      }
      CHECK(it->second == ack.message_id);
    }
    CHECK_MESSAGE(n_missing == 0, plan << ": " << n_missing << " acknowledged messages missing from MongoDB, e.g."
                                       << missing << " (highest stored seq "
                                       << (by_seq.empty() ? 0 : by_seq.rbegin()->first) << ")");
    uint64_t expect = 1;
    for (const auto& [seq, id] : by_seq) {
      if (seq != expect) {
        CHECK_MESSAGE(seq == expect, plan << " gap: seq " << expect << " .. " << seq - 1 << " missing");
        expect = seq;
      }
      ++expect;
    }
  }
  auto dead = store.count("dead_letters");
  REQUIRE(dead.is_ok());
  CHECK(*dead == 0);
  auto count = store.count("messages");
  REQUIRE(count.is_ok());
  CHECK(static_cast<size_t>(*count) == total);
  MESSAGE(total << " messages acknowledged and found once each in MongoDB; proxy: accepted=" << proxy->stats().accepted
                << " resets=" << proxy->stats().resets);
  CHECK(metric(m, "agentd_dead_letters_total") == 0);
}
