// The flusher end to end: a real outbox (LMDB in a temp folder) drained into
// the real test database (FerretDB fixture, or $AGENTD_TEST_MONGO_URI; the
// outage test owns a FerretDB it can kill).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/envelope.h"
#include "core/metrics.h"
#include "outbox/outbox.h"
#include "store/flusher.h"
#include "store/message_store.h"
#include "tests/flusher/flusher_test_util.h"
#include "tests/support/ferretdb.h"
#include "tests/support/process.h"

using namespace agentd;
using namespace std::chrono_literals;

namespace {

struct TempDir {
  std::string path = test::make_temp_dir("agentd-flusher");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::unique_ptr<Outbox> open_outbox(const std::string& dir) {
  OutboxOptions o;
  o.dir = dir;
  o.track_pending = true;
  o.sync = false;  // a process crash (what these tests simulate) loses nothing either way
  o.max_bytes = 256u << 20;
  auto ob = Outbox::open(o);
  REQUIRE_MESSAGE(ob.is_ok(), ob.status().to_string());
  return std::move(*ob);
}

std::unique_ptr<MongoPool> open_pool(const std::string& uri) {
  auto pool = MongoPool::open(uri);
  REQUIRE_MESSAGE(pool.is_ok(), pool.status().to_string());
  return std::move(*pool);
}

FlusherOptions fast_options() {
  FlusherOptions o;
  o.max_batch_count = 200;
  o.backoff_base = 20ms;
  o.backoff_cap = 300ms;
  o.stats_interval = 20ms;
  return o;
}

PreparedMessage message(const std::string& plan_id, int n, std::string data = R"({"content":"x"})") {
  MessageDraft d;
  d.type = std::string(msgtype::kAgentMessage);
  d.plan_id = plan_id;
  d.message_id = plan_id + "-m" + std::to_string(n);
  d.user_id = "user";
  d.session_id = "session";
  d.data = std::move(data);
  return prepare(std::move(d));
}

// Appends and returns the final bytes (REQUIREs success).
std::string append(Outbox& ob, PreparedMessage m, std::optional<PlanRecord> plan = std::nullopt) {
  AppendRequest req;
  req.message = std::move(m);
  req.plan = std::move(plan);
  auto r = ob.append_sync(std::move(req));
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  return *r->bytes;
}

// A producer's append: on success its final bytes go to the end of its
// plan's list in `expected` (under `mu`; one producer per plan keeps them in
// seq order). False when the append failed.
bool append_recorded(Outbox& ob, AppendRequest req, std::mutex& mu,
                     std::map<std::string, std::vector<std::string>>& expected) {
  std::string plan = req.message->plan_id;
  auto r = ob.append_sync(std::move(req));
  if (!r.is_ok()) return false;
  std::lock_guard lock(mu);
  expected[plan].push_back(*r->bytes);
  return true;
}

template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

uint64_t pending(Outbox& ob) {
  auto s = ob.stats();
  REQUIRE(s.is_ok());
  return s->pending;
}

double metric(const MetricsRegistry& m, const std::string& series) {
  std::string text = m.render();
  auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(text.substr(pos + series.size() + 2));
}

// Sum of agentd_persist_failures_total over its reasons.
double failures_total(const std::string& text) {
  double sum = 0;
  const std::string prefix = "agentd_persist_failures_total{";
  for (size_t pos = text.find(prefix); pos != std::string::npos; pos = text.find(prefix, pos + 1)) {
    auto space = text.find(' ', pos);
    sum += std::stod(text.substr(space + 1));
  }
  return sum;
}

// Every plan in `expected` holds exactly these bytes at seq 1..n in MongoDB.
void check_landed(MessageStore& store, const std::map<std::string, std::vector<std::string>>& expected) {
  int64_t total = 0;
  for (const auto& [plan_id, bytes] : expected) {
    auto got = store.read_messages(plan_id, 0, bytes.size() + 10);
    REQUIRE_MESSAGE(got.is_ok(), got.status().to_string());
    REQUIRE_MESSAGE(got->size() == bytes.size(), plan_id);
    for (size_t i = 0; i < bytes.size(); ++i) {
      CHECK((*got)[i].seq == i + 1);
      CHECK(*(*got)[i].bytes == bytes[i]);
    }
    total += static_cast<int64_t>(bytes.size());
  }
  CHECK(*store.count(kMessagesCollection) == total);
}

// True when the server rejects nested arrays, as FerretDB does. A real
// MongoDB accepts them; then a rejection scenario has nothing to reject.
bool rejects_nested_arrays(MessageStore& store) {
  std::string probe = test::make_envelope("probe", 1, R"({"m":[[1]]})");
  std::vector<MessageDoc> pd{{"probe", 1, probe}};
  if (!store.upsert_messages(pd).is_ok()) return true;
  MESSAGE("server accepts nested arrays; skipping the rejection scenario");
  return false;
}

// Waits until the flusher emptied the outbox, then stops it within 5 s.
void drain_and_stop(Flusher& flusher, Outbox& ob, std::chrono::milliseconds timeout) {
  REQUIRE(wait_until([&] { return pending(ob) == 0; }, timeout));
  CHECK(flusher.stop(5s).is_ok());
}

// One test's outbox in a temp folder, and the registry that exports its
// gauges (the test's Flusher counts into it too).
struct OutboxFixture {
  OutboxFixture() { export_outbox_metrics(ob.get(), metrics); }
  TempDir dir;
  std::unique_ptr<Outbox> ob = open_outbox(dir.path);
  MetricsRegistry metrics;
};

// ... flushed into the test database.
struct TestDbFixture : OutboxFixture {
  std::unique_ptr<MongoPool> pool = open_pool(test::test_mongo_uri());
  MessageStore store{pool.get()};
};

}  // namespace

TEST_CASE_FIXTURE(TestDbFixture,
                  "every appended message lands exactly once, in seq order, byte-equal; replays change nothing") {
  Flusher flusher(ob.get(), &store, &metrics, fast_options());
  Counter& appended = appended_messages_counter(metrics);
  ob->set_observer([&](const std::vector<CommittedMessage>& batch) {
    appended.inc(batch.size());
    flusher.notify();
  });
  flusher.start();

  // Three producers, each its own plans, appending while the flusher runs.
  constexpr int kPerPlan = 60;
  std::atomic<int> failures{0};
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> expected;
  std::vector<std::thread> producers;
  for (int t = 0; t < 3; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 1; i <= kPerPlan; ++i) {
        for (int p = 0; p < 2; ++p) {
          std::string plan = "plan-" + std::to_string(t) + "-" + std::to_string(p);
          std::optional<PlanRecord> rec;
          if (i % 20 == 1) rec = test::make_plan(plan, "user", "2026-11-26T00:00:00.000Z", 0);
          AppendRequest req;
          req.message =
              message(plan, i, R"({"content":"msg )" + std::to_string(i) + R"(","n":)" + std::to_string(i) + "}");
          req.plan = rec;
          if (!append_recorded(*ob, std::move(req), mu, expected)) ++failures;
        }
      }
    });
  }
  for (auto& t : producers) t.join();
  REQUIRE(failures.load() == 0);
  REQUIRE(wait_until([&] { return pending(*ob) == 0; }, 30s));
  check_landed(store, expected);

  // The plan documents are the outbox's newest records.
  for (const auto& [plan_id, bytes] : expected) {
    auto mine = ob->get_plan(plan_id);
    auto theirs = store.get_plan(plan_id);
    REQUIRE(mine.is_ok());
    REQUIRE(theirs.is_ok());
    REQUIRE(theirs->has_value());
    CHECK(encode_plan(**theirs) == encode_plan(**mine));
    CHECK((*theirs)->version == 3);
  }
  CHECK(metrics.render().find("agentd_messages_persisted_total 360\n") != std::string::npos);
  CHECK(metrics.render().find("agentd_messages_appended_total 360\n") != std::string::npos);
  CHECK(metric(metrics, "agentd_outbox_pending_messages") == 0);
  CHECK(metric(metrics, "agentd_mongo_up") == 1);
  CHECK(metric(metrics, "agentd_persist_success_ratio") == 1);
  CHECK(flusher.stop(5s).is_ok());

  // Replaying everything already flushed changes nothing.
  std::vector<MessageDoc> replay;
  for (const auto& [plan_id, bytes] : expected) {
    for (size_t i = 0; i < bytes.size(); ++i) replay.push_back({plan_id, i + 1, bytes[i]});
  }
  REQUIRE(store.upsert_messages(replay).is_ok());
  check_landed(store, expected);
}

TEST_CASE("crash between the MongoDB write and the outbox ack: reopen, no duplicates, nothing missing") {
  TempDir dir;
  auto pool = open_pool(test::test_mongo_uri());
  MessageStore store(pool.get());
  std::map<std::string, std::vector<std::string>> expected;
  {
    auto ob = open_outbox(dir.path);
    for (int i = 1; i <= 50; ++i) expected["plan-c"].push_back(append(*ob, message("plan-c", i)));
    MetricsRegistry metrics;
    export_outbox_metrics(ob.get(), metrics);
    FlusherOptions o = fast_options();
    o.max_batch_count = 20;
    std::atomic<int> batches{0};
    o.crash_after_write = [&] { return ++batches == 2; };  // the 2nd batch is written, never acked
    Flusher flusher(ob.get(), &store, &metrics, o);
    flusher.start();
    REQUIRE(wait_until([&] { return flusher.crashed(); }, 20s));
    CHECK_FALSE(flusher.stop(1s).is_ok());
    CHECK(pending(*ob) == 30);  // batch 1 acked; batch 2 in MongoDB but still pending
    CHECK(*store.count(kMessagesCollection) == 40);
  }  // flusher and outbox thrown away, as in a crash
  auto ob = open_outbox(dir.path);
  CHECK(pending(*ob) == 30);
  for (int i = 51; i <= 60; ++i) expected["plan-c"].push_back(append(*ob, message("plan-c", i)));
  MetricsRegistry metrics;
  export_outbox_metrics(ob.get(), metrics);
  Flusher flusher(ob.get(), &store, &metrics, fast_options());
  flusher.start();
  drain_and_stop(flusher, *ob, 20s);
  check_landed(store, expected);
  // The 20 of batch 2 were replayed (FerretDB ignores `ordered`, so its failed
  // insert may have written some of the 10 new ones too) and say so.
  double replayed = metric(metrics, "agentd_persist_replayed_total");
  CHECK(replayed >= 20);
  CHECK(replayed <= 30);
}

TEST_CASE_FIXTURE(OutboxFixture,
                  "outage: FerretDB killed mid-run, appends keep succeeding, the backlog drains after restart") {
  test::FerretDb db;
  db.start();
  auto pool = open_pool(db.uri() + "agentd_outage?serverSelectionTimeoutMS=300&connectTimeoutMS=300");
  MessageStore store(pool.get());
  Flusher flusher(ob.get(), &store, &metrics, fast_options());
  ob->set_observer([&](const std::vector<CommittedMessage>&) { flusher.notify(); });
  flusher.start();

  std::atomic<bool> run{true};
  std::atomic<int> failures{0};
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> expected;
  std::vector<std::thread> producers;
  for (int t = 0; t < 2; ++t) {
    producers.emplace_back([&, t] {
      std::string plan = "plan-o" + std::to_string(t);
      for (int i = 1; run.load(); ++i) {
        AppendRequest req;
        req.message = message(plan, i);
        if (!append_recorded(*ob, std::move(req), mu, expected)) {
          ++failures;
          continue;
        }
        std::this_thread::sleep_for(2ms);
      }
    });
  }
  REQUIRE(wait_until([&] { return flusher.mongo_up(); }, 10s));
  std::this_thread::sleep_for(300ms);
  db.kill();
  REQUIRE(wait_until([&] { return !flusher.mongo_up(); }, 10s));
  std::this_thread::sleep_for(1500ms);  // producers keep appending into the outbox
  CHECK(pending(*ob) > 0);
  db.start();  // same port, same data
  std::this_thread::sleep_for(300ms);
  run = false;
  for (auto& t : producers) t.join();
  CHECK(failures.load() == 0);
  drain_and_stop(flusher, *ob, 30s);
  check_landed(store, expected);

  std::string text = metrics.render();
  CHECK(metric(metrics, "agentd_persist_retries_total") > 0);
  CHECK(failures_total(text) > 0);
  CHECK(metric(metrics, "agentd_mongo_up") == 1);
  CHECK(metric(metrics, "agentd_outbox_pending_messages") == 0);
  CHECK(metric(metrics, "agentd_dead_letters_total") == 0);
}

TEST_CASE_FIXTURE(TestDbFixture,
                  "a permanently rejected message goes to dead letters and the messages after it still land") {
  if (!rejects_nested_arrays(store)) return;
  std::map<std::string, std::vector<std::string>> landed;
  for (int i = 1; i <= 30; ++i) {
    std::string bytes = append(*ob, message("plan-d", i, i == 17 ? R"({"matrix":[[1,2],[3,4]]})" : R"({"ok":1})"));
    if (i != 17) landed["plan-d"].push_back(bytes);
  }
  Flusher flusher(ob.get(), &store, &metrics, fast_options());
  flusher.start();
  drain_and_stop(flusher, *ob, 20s);

  auto got = store.read_messages("plan-d", 0, 100);
  REQUIRE(got.is_ok());
  REQUIRE(got->size() == 29);
  std::set<uint64_t> seqs;
  for (const auto& m : *got) seqs.insert(m.seq);
  CHECK(seqs.count(17) == 0);
  CHECK(seqs.count(18) == 1);
  CHECK(*seqs.rbegin() == 30);
  auto dead = ob->list_dead_letters(10);
  REQUIRE(dead.is_ok());
  REQUIRE(dead->size() == 1);
  CHECK((*dead)[0].entry.seq == 17);
  CHECK((*dead)[0].error.find("nested arrays") != std::string::npos);
  CHECK(*store.count(kDeadLettersCollection) == 1);
  CHECK(metric(metrics, "agentd_dead_letters_total") == 1);
  CHECK(metric(metrics, "agentd_messages_persisted_total") == 29);
  CHECK(metric(metrics, "agentd_persist_success_ratio") == doctest::Approx(29.0 / 30.0));
  CHECK(metrics.render().find("agentd_persist_failures_total{reason=\"rejected\"} 1") != std::string::npos);
}

TEST_CASE_FIXTURE(
    TestDbFixture,
    "a run of dead letters beyond the limit stops the flusher into retrying instead of dead-lettering on") {
  if (!rejects_nested_arrays(store)) return;
  // 15 rejected documents in a row (as an outage answering every document
  // with a "permanent" code would look), then good ones.
  for (int i = 1; i <= 20; ++i) {
    append(*ob, message("plan-run", i, i <= 15 ? R"({"matrix":[[1,2],[3,4]]})" : R"({"ok":1})"));
  }
  FlusherOptions o = fast_options();
  o.dead_letter_run_limit = 3;
  o.backoff_base = 10s;  // long enough that the test sees the retrying state
  o.backoff_cap = 10s;
  Flusher flusher(ob.get(), &store, &metrics, o);
  flusher.start();
  const std::string run = "agentd_persist_failures_total{reason=\"dead_letter_run\"}";
  REQUIRE(wait_until([&] { return metric(metrics, run) >= 1; }, 20s));
  std::this_thread::sleep_for(500ms);
  auto dead = ob->list_dead_letters(100);
  REQUIRE(dead.is_ok());
  CHECK(dead->size() >= 3);
  CHECK(dead->size() <= 5);  // 3, plus at most a probe or two after short jittered backoffs
  CHECK(pending(*ob) >= 15);
  CHECK_FALSE(flusher.mongo_up());
  CHECK_FALSE(flusher.stop(1s).is_ok());  // entries stay pending
}

TEST_CASE_FIXTURE(TestDbFixture, "plan versions: the newest wins, whatever order they arrive in") {
  for (int i = 1; i <= 5; ++i) {
    PlanRecord p = test::make_plan("plan-v", "user", "2026-11-26T00:00:00.000Z", 0,
                                   i == 5 ? PlanStatus::kCompleted : PlanStatus::kRunning);
    append(*ob, message("plan-v", i), p);
  }
  FlusherOptions o = fast_options();
  o.max_batch_count = 3;  // versions spread over several batches, some within one
  Flusher flusher(ob.get(), &store, &metrics, o);
  flusher.start();
  drain_and_stop(flusher, *ob, 20s);
  auto newest = ob->get_plan("plan-v");
  REQUIRE(newest.is_ok());
  REQUIRE((*newest)->version == 5);
  auto got = store.get_plan("plan-v");
  REQUIRE(got.is_ok());
  REQUIRE(got->has_value());
  CHECK(encode_plan(**got) == encode_plan(**newest));
  // An older version arriving late (a replay) never replaces it.
  PlanRecord old = test::make_plan("plan-v", "user", "2026-11-26T00:00:00.000Z", 2);
  REQUIRE(store.upsert_plan("plan-v", 2, encode_plan(old)).is_ok());
  CHECK(encode_plan(**store.get_plan("plan-v")) == encode_plan(**newest));
}

TEST_CASE_FIXTURE(OutboxFixture, "graceful stop with MongoDB unreachable keeps the deadline and the pending entries") {
  for (int i = 1; i <= 5; ++i) append(*ob, message("plan-s", i));
  auto pool = open_pool("mongodb://127.0.0.1:" + std::to_string(test::free_port()) +
                        "/x?serverSelectionTimeoutMS=100&connectTimeoutMS=100");
  MessageStore store(pool.get());
  Flusher flusher(ob.get(), &store, &metrics, fast_options());
  flusher.start();
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  Status st = flusher.stop(200ms);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(st.code() == Code::kUnavailable);
  CHECK(took < 2s);
  CHECK(pending(*ob) == 5);
  CHECK(metric(metrics, "agentd_mongo_up") == 0);
  CHECK(metric(metrics, "agentd_outbox_pending_messages") == 5);
}

TEST_CASE_FIXTURE(OutboxFixture, "while idle, mongo_up follows the server: down when killed, up after restart") {
  test::FerretDb db;
  db.start();
  auto pool = open_pool(db.uri() + "agentd_idle?serverSelectionTimeoutMS=200&connectTimeoutMS=200");
  MessageStore store(pool.get());
  FlusherOptions o = fast_options();
  o.health_interval = 100ms;
  Flusher flusher(ob.get(), &store, &metrics, o);
  flusher.start();
  REQUIRE(wait_until([&] { return flusher.mongo_up(); }, 10s));
  db.kill();
  REQUIRE(wait_until([&] { return !flusher.mongo_up(); }, 10s));
  CHECK(metric(metrics, "agentd_mongo_up") == 0);
  CHECK(failures_total(metrics.render()) == 0);  // probes are not failed writes
  db.start();
  REQUIRE(wait_until([&] { return flusher.mongo_up(); }, 10s));
  CHECK(metric(metrics, "agentd_mongo_up") == 1);
  CHECK(flusher.stop(5s).is_ok());
}
