// flusher_bench: the outbox → MongoDB flusher against its baselines, all in
// one run against the same server.
//
//   flusher_bench [--uri mongodb://host:port/] [--messages N] [--upserts N]
//                 [--producers P] [--backlog N] [--seconds S] [--dir DIR]
//                 [--batch N]   (FlusherOptions::max_batch_count)
//
// Without --uri it starts its own FerretDB (tests/support/ferretdb.h). With
// --uri, give the server only (no database): each phase uses a fresh
// database "flusher_bench_<pid>_<phase>".
//
// Phases (every message is a ~330-byte envelope, P plans, one per producer):
//  raw_bulk_upsert  (a) mongo-c-driver ordered bulk $setOnInsert upserts of
//                       pre-built documents, no outbox (--upserts docs, in
//                       bulks of MessageStoreOptions::upsert_chunk).
//  raw_bulk_insert  (a') the same documents as ordered bulk inserts of 1000:
//                       the floor of the flusher's insert fast path.
//  naive_insert_one (b) P producers, one insert_one per message (the
//                       original fix), --upserts messages in total.
//  flusher_e2e      P producers append --messages messages to the outbox
//                       (each waits for its append) while the flusher runs;
//                       time until MongoDB acknowledged the last one.
//  latency          one producer appends at a steady rate
//                       min(1000/s, raw_bulk_upsert/2) for --seconds; the
//                       flusher's on_persisted hook timestamps the MongoDB ack;
//                       latency = that − the append's acknowledgement.
//                       Repeated at min(1000/s, raw_bulk_insert/2).
//  backlog_drain    --backlog messages appended with no flusher (an outage),
//                       then a flusher starts: drain rate until none pending.
// JSON on stdout, a readable summary on stderr.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/envelope.h"
#include "core/metrics.h"
#include "outbox/outbox.h"
#include "store/bson_codec.h"
#include "store/flusher.h"
#include "store/message_store.h"
#include "tests/support/ferretdb.h"

using namespace agentd;
using Clock = std::chrono::steady_clock;

namespace {

std::string g_base_uri;
std::string g_dir;
std::ostringstream g_json;
bool g_first = true;
int g_phase = 0;
size_t g_batch = FlusherOptions{}.max_batch_count;

void field(const std::string& key, double v) {
  g_json << (g_first ? "" : ",\n") << "  \"" << key << "\": " << v;
  g_first = false;
}

double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "flusher_bench: %s\n", what.c_str());
  std::exit(1);
}

std::unique_ptr<MongoPool> fresh_pool(const std::string& phase) {
  std::string uri =
      g_base_uri + "flusher_bench_" + std::to_string(::getpid()) + "_" + std::to_string(++g_phase) + "_" + phase;
  auto p = MongoPool::open(uri);
  if (!p) die(p.status().to_string());
  return std::move(*p);
}

std::unique_ptr<Outbox> fresh_outbox(const std::string& name) {
  std::string d = g_dir + "/" + name;
  std::filesystem::remove_all(d);
  OutboxOptions o;
  o.dir = d;
  o.track_pending = true;
  o.max_bytes = 4ull << 30;
  auto r = Outbox::open(o);
  if (!r) die(r.status().to_string());
  return std::move(*r);
}

PreparedMessage message(const std::string& plan, uint64_t i) {
  MessageDraft d;
  d.type = "agent_message";
  d.plan_id = plan;
  d.message_id = plan + "-" + std::to_string(i);
  d.user_id = "00000000-0000-0000-0000-000000000000";
  d.session_id = "bench-session";
  d.data =
      R"({"agent_name":"Researcher","content":"Step )" + std::to_string(i) +
      R"(: gathered the quarterly figures and compared them with last year's; details follow.","streaming":false})";
  return prepare(std::move(d));
}

std::string plan_of(size_t i, size_t plans) { return "bench-plan-" + std::to_string(i % plans); }

// Pre-built envelopes: message i is seq i / plans + 1 of plan i % plans.
struct Docs {
  std::vector<std::string> plan_ids;
  std::vector<std::string> bytes;
  std::vector<MessageDoc> docs;
};
Docs build_docs(size_t n, size_t plans) {
  Docs d;
  d.plan_ids.reserve(n);
  d.bytes.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    d.plan_ids.push_back(plan_of(i, plans));
    uint64_t seq = i / plans + 1;
    d.bytes.push_back(finalize(seq, message(d.plan_ids.back(), seq).tail));
  }
  for (size_t i = 0; i < n; ++i) d.docs.push_back({d.plan_ids[i], i / plans + 1, d.bytes[i]});
  return d;
}

// (a) and (a'): raw bulks through MessageStore's writer with the fast path
// on or off (MessageStore adds nothing but the BSON mapping).
double raw_bulk_rate(size_t n, size_t plans, bool insert, size_t bulk) {
  auto pool = fresh_pool(insert ? "raw_insert" : "raw_upsert");
  MessageStoreOptions o;
  o.insert_fast_path = insert;
  MessageStore store(pool.get(), o);
  if (!store.ensure_indexes().is_ok()) die("ensure_indexes");
  Docs d = build_docs(n, plans);
  auto t0 = Clock::now();
  for (size_t i = 0; i < n; i += bulk) {
    std::span<const MessageDoc> part(d.docs.data() + i, std::min(bulk, n - i));
    WriteStatus ws = store.upsert_messages(part);
    if (!ws.is_ok()) die("raw bulk: " + ws.failure().message);
  }
  return static_cast<double>(n) / secs(t0);
}

// (b) P producers, one insert_one per message.
double naive_rate(size_t n, size_t producers) {
  auto pool = fresh_pool("naive");
  MessageStore store(pool.get());
  if (!store.ensure_indexes().is_ok()) die("ensure_indexes");
  Docs d = build_docs(n, producers);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (size_t p = 0; p < producers; ++p) {
    ts.emplace_back([&] {
      auto lease = pool->lease();
      mongoc_collection_t* c = mongoc_client_get_collection(lease.get(), pool->database().c_str(), "messages");
      for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        auto doc = json_to_bson(d.bytes[i], message_doc_id(d.plan_ids[i], d.docs[i].seq));
        bson_error_t err;
        if (!doc || !mongoc_collection_insert_one(c, doc->get(), nullptr, nullptr, &err)) failed = true;
      }
      mongoc_collection_destroy(c);
    });
  }
  for (auto& t : ts) t.join();
  if (failed) die("naive insert_one failed");
  return static_cast<double>(n) / secs(t0);
}

uint64_t pending(Outbox& ob) {
  auto s = ob.stats();
  if (!s) die(s.status().to_string());
  return s->pending;
}

void wait_drained(Outbox& ob, double timeout_s) {
  auto t0 = Clock::now();
  while (pending(ob) > 0) {
    if (secs(t0) > timeout_s) die("not drained within " + std::to_string(timeout_s) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// P producers append n messages while the flusher runs: messages/s until
// the last one is in MongoDB.
double flusher_e2e_rate(size_t n, size_t producers) {
  auto pool = fresh_pool("e2e");
  MessageStore store(pool.get());
  auto ob = fresh_outbox("e2e");
  MetricsRegistry metrics;
  FlusherOptions fo;
  fo.max_batch_count = g_batch;
  Flusher flusher(ob.get(), &store, &metrics, fo);
  ob->set_observer([&](const std::vector<CommittedMessage>&) { flusher.notify(); });
  flusher.start();
  while (!flusher.mongo_up()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::atomic<size_t> next{0};
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (size_t p = 0; p < producers; ++p) {
    ts.emplace_back([&, p] {
      std::string plan = "bench-plan-" + std::to_string(p);
      for (uint64_t k = 1; next.fetch_add(1) < n; ++k) {
        AppendRequest req;
        req.message = message(plan, k);
        if (!ob->append_sync(std::move(req))) die("append failed");
      }
    });
  }
  for (auto& t : ts) t.join();
  double append_s = secs(t0);
  wait_drained(*ob, 600);
  double rate = static_cast<double>(n) / secs(t0);
  std::fprintf(stderr, "  (appends alone took %.2f s)\n", append_s);
  if (!flusher.stop(std::chrono::seconds(5)).is_ok()) die("stop");
  return rate;
}

struct Latency {
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  size_t n = 0;
};

// One producer at `rate` messages/s for `seconds`.
Latency steady_latency(double rate, double seconds) {
  auto pool = fresh_pool("latency");
  MessageStore store(pool.get());
  auto ob = fresh_outbox("latency");
  size_t n = static_cast<size_t>(rate * seconds);
  std::vector<std::atomic<int64_t>> acked(n + 2);  // steady-clock ns of each append's ack, by seq
  std::mutex mu;
  std::vector<double> lat;
  lat.reserve(n);
  FlusherOptions fo;
  fo.on_persisted = [&](std::span<const PendingEntry> entries) {
    int64_t now = Clock::now().time_since_epoch().count();
    std::lock_guard lock(mu);
    for (const PendingEntry& e : entries) {
      if (e.kind != PendingKind::kMessage || e.seq >= acked.size()) continue;
      int64_t a = acked[e.seq].load();
      lat.push_back(a == 0 ? 0.0 : static_cast<double>(now - a) / 1e6);  // persisted before the ack returned
    }
  };
  MetricsRegistry metrics;
  Flusher flusher(ob.get(), &store, &metrics, fo);
  ob->set_observer([&](const std::vector<CommittedMessage>&) { flusher.notify(); });
  flusher.start();
  while (!flusher.mongo_up()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto period = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / rate));
  auto next = Clock::now();
  std::atomic<size_t> outstanding{0};
  for (size_t i = 1; i <= n; ++i) {
    std::this_thread::sleep_until(next);
    next += period;
    AppendRequest req;
    req.message = message("lat", i);
    ++outstanding;
    ob->append(std::move(req), [&](Result<AppendResult> r) {
      if (!r) die("append failed");
      acked[r->seq].store(Clock::now().time_since_epoch().count());
      --outstanding;
    });
  }
  while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  wait_drained(*ob, 120);
  if (!flusher.stop(std::chrono::seconds(5)).is_ok()) die("stop");
  Latency l;
  std::lock_guard lock(mu);
  l.n = lat.size();
  l.p50_ms = pct(lat, 0.5);
  l.p99_ms = pct(lat, 0.99);
  l.max_ms = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  return l;
}

// n messages appended with no flusher, then drained.
double backlog_drain_rate(size_t n, size_t plans, double* fill_s) {
  auto pool = fresh_pool("backlog");
  MessageStore store(pool.get());
  if (!store.ensure_indexes().is_ok()) die("ensure_indexes");
  auto ob = fresh_outbox("backlog");
  auto t0 = Clock::now();
  std::atomic<size_t> outstanding{0};
  for (size_t i = 0; i < n; ++i) {
    while (outstanding.load() > 4096) std::this_thread::sleep_for(std::chrono::microseconds(200));
    AppendRequest req;
    req.message = message(plan_of(i, plans), i / plans + 1);
    ++outstanding;
    ob->append(std::move(req), [&](Result<AppendResult> r) {
      if (!r) die("append failed: " + r.status().to_string());
      --outstanding;
    });
  }
  while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  *fill_s = secs(t0);
  if (pending(*ob) != n) die("backlog not pending");
  MetricsRegistry metrics;
  FlusherOptions fo;
  fo.max_batch_count = g_batch;
  fo.ensure_indexes = false;  // done above, outside the timing
  Flusher flusher(ob.get(), &store, &metrics, fo);
  t0 = Clock::now();
  flusher.start();
  wait_drained(*ob, 1800);
  double rate = static_cast<double>(n) / secs(t0);
  if (!flusher.stop(std::chrono::seconds(5)).is_ok()) die("stop");
  auto count = store.count(kMessagesCollection);
  if (!count) die("backlog: counting MongoDB's documents: " + count.status().to_string());
  if (*count != static_cast<int64_t>(n)) {
    // Say which: dead letters (the flusher gave messages up) or documents
    // the database lost or added.
    auto s = ob->stats();
    die("backlog: " + std::to_string(*count) + " documents in MongoDB for " + std::to_string(n) +
        " messages; outbox dead letters " + (s ? std::to_string(s->dead_letters) : s.status().to_string()) +
        ", pending " + (s ? std::to_string(s->pending) : std::string("?")) + "; flusher metrics:\n" + metrics.render());
  }
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  size_t messages = 20000, upserts = 2000, producers = 8, backlog = 100000;
  double seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--uri") g_base_uri = argv[i + 1];
    if (a == "--messages") messages = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--upserts") upserts = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--producers") producers = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--backlog") backlog = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    if (a == "--dir") g_dir = argv[i + 1];
    if (a == "--batch") g_batch = std::strtoull(argv[i + 1], nullptr, 10);
  }
  spdlog::set_level(spdlog::level::warn);
  mongo_global_init();
  mongoc_log_set_handler(nullptr, nullptr);  // the driver's warnings (endSessions on FerretDB) are noise here
  std::unique_ptr<test::FerretDb> own;
  if (g_base_uri.empty()) {
    own = std::make_unique<test::FerretDb>();
    own->start();
    g_base_uri = own->uri();
    std::fprintf(stderr, "started FerretDB %s at %s\n", test::ferretdb_binary().c_str(), g_base_uri.c_str());
  }
  bool own_dir = g_dir.empty();
  if (own_dir)
    g_dir = (std::filesystem::temp_directory_path() / ("flusher-bench-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(g_dir);
  field("producers", static_cast<double>(producers));
  field("flusher_max_batch_count", static_cast<double>(g_batch));

  double raw_upsert = raw_bulk_rate(upserts, producers, false, MessageStoreOptions{}.upsert_chunk);
  field("raw_bulk_upsert_msg_s", raw_upsert);
  std::fprintf(stderr, "(a)  raw ordered bulk $setOnInsert upserts (%zu docs, bulks of %zu): %8.0f msg/s\n", upserts,
               MessageStoreOptions{}.upsert_chunk, raw_upsert);
  double raw_insert = raw_bulk_rate(messages, producers, true, 1000);
  field("raw_bulk_insert_msg_s", raw_insert);
  std::fprintf(stderr, "(a') raw ordered bulk inserts (%zu docs, bulks of 1000):         %8.0f msg/s\n", messages,
               raw_insert);
  double naive = naive_rate(upserts, producers);
  field("naive_insert_one_msg_s", naive);
  std::fprintf(stderr, "(b)  naive insert_one, %zu producers (%zu docs):                 %8.0f msg/s\n", producers,
               upserts, naive);

  double e2e = flusher_e2e_rate(messages, producers);
  field("flusher_e2e_msg_s", e2e);
  field("flusher_over_raw_upsert", e2e / raw_upsert);
  field("flusher_over_raw_insert", e2e / raw_insert);
  field("flusher_over_naive", e2e / naive);
  std::fprintf(stderr,
               "flusher, %zu producers appending %zu msgs:           %8.0f msg/s  = %.2fx (a), %.2fx (a'), %.1fx (b)\n",
               producers, messages, e2e, e2e / raw_upsert, e2e / raw_insert, e2e / naive);

  for (double base : {raw_upsert, raw_insert}) {
    double rate = std::min(1000.0, base / 2);
    Latency l = steady_latency(rate, seconds);
    std::string k = "latency_at_" + std::to_string(static_cast<int>(rate)) + "_msg_s_";
    field(k + "p50_ms", l.p50_ms);
    field(k + "p99_ms", l.p99_ms);
    field(k + "max_ms", l.max_ms);
    std::fprintf(stderr, "append-ack -> MongoDB-ack at %5.0f msg/s (%zu msgs): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                 rate, l.n, l.p50_ms, l.p99_ms, l.max_ms);
  }

  double fill_s = 0;
  double drain = backlog_drain_rate(backlog, producers, &fill_s);
  field("backlog_messages", static_cast<double>(backlog));
  field("backlog_fill_s", fill_s);
  field("backlog_drain_msg_s", drain);
  std::fprintf(stderr, "backlog of %zu (filled in %.1f s): drained at %8.0f msg/s (%.1f s)\n", backlog, fill_s, drain,
               static_cast<double>(backlog) / drain);

  std::printf("{\n%s\n}\n", g_json.str().c_str());
  if (own_dir) std::filesystem::remove_all(g_dir);
  return 0;
}
