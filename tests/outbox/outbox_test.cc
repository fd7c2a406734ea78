#include "outbox/outbox.h"

#include <doctest/doctest.h>
#include <lmdb.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/clock.h"
#include "outbox/format.h"
#include "outbox/outbox_testing.h"
#include "tests/outbox/outbox_test_util.h"
#include "tests/support/process.h"

using namespace agentd;
using agentd::test::make_plan;
using agentd::test::message_request;

namespace {

struct TempDir {
  std::string path = test::make_temp_dir("outbox-test");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::unique_ptr<Outbox> open_outbox(const OutboxOptions& o) {
  auto r = Outbox::open(o);
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  return std::move(*r);
}

std::unique_ptr<Outbox> open_outbox(const std::string& dir, bool track_pending = false,
                                    uint64_t max_bytes = 64ull << 20) {
  OutboxOptions o;
  o.dir = dir;
  o.track_pending = track_pending;
  o.max_bytes = max_bytes;
  return open_outbox(o);
}

// An outbox with MongoDB whose retention may prune a message as soon as
// MongoDB acknowledged it (see prune_acked()).
OutboxOptions pruning_options(const std::string& dir) {
  OutboxOptions o;
  o.dir = dir;
  o.track_pending = true;
  o.flushed_retention = std::chrono::seconds(0);
  return o;
}

// An outbox without MongoDB that removes plans finished over a minute ago.
OutboxOptions embedded_retention_options(const std::string& dir) {
  OutboxOptions o;
  o.dir = dir;
  o.finished_plan_retention = std::chrono::seconds(60);
  return o;
}

AppendResult append_ok(Outbox& ob, AppendRequest req) {
  auto r = ob.append_sync(std::move(req));
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  return std::move(*r);
}

// Appends messages m1 .. m<n> to `plan_id`.
void append_messages(Outbox& ob, const std::string& plan_id, int n) {
  for (int i = 1; i <= n; ++i) append_ok(ob, message_request(plan_id, "m" + std::to_string(i)));
}

// Acknowledges every pending entry, as the flusher does once MongoDB holds them.
void ack_all(Outbox& ob) {
  auto pending = ob.read_pending(1000000, 1u << 30);
  REQUIRE(pending.is_ok());
  std::vector<uint64_t> ids;
  for (const auto& e : *pending) ids.push_back(e.id);
  REQUIRE(ob.ack_sync(ids).is_ok());
}

// A retention pass that sees what was acknowledged before the call as older
// than pruning_options()' zero flushed_retention.
void prune_acked(Outbox& ob) {
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(ob.prune_sync().is_ok());
}

// Puts key = value into the LMDB database `db` of the closed outbox in `dir`
// with plain LMDB, as another program (a future agentd, a bad tool) would.
void put_raw(const std::string& dir, const char* db, std::string key, std::string value) {
  MDB_env* env;
  REQUIRE(mdb_env_create(&env) == 0);
  REQUIRE(mdb_env_set_maxdbs(env, 8) == 0);
  REQUIRE(mdb_env_open(env, dir.c_str(), 0, 0644) == 0);
  MDB_txn* txn;
  REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
  MDB_dbi dbi;
  REQUIRE(mdb_dbi_open(txn, db, 0, &dbi) == 0);
  MDB_val k{key.size(), key.data()}, val{value.size(), value.data()};
  REQUIRE(mdb_put(txn, dbi, &k, &val, 0) == 0);
  REQUIRE(mdb_txn_commit(txn) == 0);
  mdb_env_close(env);
}

}  // namespace

TEST_CASE("append assigns seq 1, 2, 3 per plan and stores the finalized bytes") {
  TempDir d;
  auto ob = open_outbox(d.path);
  auto r1 = append_ok(*ob, message_request("p1", "m1"));
  auto r2 = append_ok(*ob, message_request("p1", "m2"));
  auto q1 = append_ok(*ob, message_request("p2", "m1"));
  CHECK(r1.seq == 1);
  CHECK(r2.seq == 2);
  CHECK(q1.seq == 1);
  CHECK_FALSE(r1.duplicate);
  CHECK(*r1.bytes == finalize(1, test::make_message("p1", "m1").tail));

  auto msgs = ob->read_messages("p1", 0, 10);
  REQUIRE(msgs.is_ok());
  REQUIRE(msgs->size() == 2);
  CHECK((*msgs)[0].seq == 1);
  CHECK(*(*msgs)[0].bytes == *r1.bytes);
  CHECK(*(*msgs)[1].bytes == *r2.bytes);
  auto after = ob->read_messages("p1", 1, 10);
  REQUIRE(after.is_ok());
  REQUIRE(after->size() == 1);
  CHECK((*after)[0].seq == 2);
  auto limited = ob->read_messages("p1", 0, 1);
  REQUIRE(limited.is_ok());
  CHECK(limited->size() == 1);
  CHECK(ob->read_messages("nope", 0, 10)->empty());
  CHECK(*ob->last_seq("p1") == 2);
  CHECK(*ob->last_seq("p2") == 1);
  CHECK(*ob->last_seq("p") == 0);  // a prefix of another plan id is another plan
  CHECK(*ob->first_seq("p1") == 1);

  // Reopen: the next seq continues from what is on disk.
  ob.reset();
  ob = open_outbox(d.path);
  CHECK(append_ok(*ob, message_request("p1", "m3")).seq == 3);
  CHECK(append_ok(*ob, message_request("p2", "m2")).seq == 2);
}

TEST_CASE("a message_id already in the plan returns the stored seq and bytes") {
  TempDir d;
  auto ob = open_outbox(d.path, true);
  auto first = append_ok(*ob, message_request("p1", "m1", "original"));
  append_ok(*ob, message_request("p1", "m2"));
  auto again = append_ok(*ob, message_request("p1", "m1", "different content"));
  CHECK(again.duplicate);
  CHECK(again.seq == first.seq);
  CHECK(*again.bytes == *first.bytes);
  CHECK(*ob->last_seq("p1") == 2);
  // The same message_id in another plan is another message.
  CHECK_FALSE(append_ok(*ob, message_request("p2", "m1")).duplicate);
  // Still a duplicate after reopen.
  ob.reset();
  ob = open_outbox(d.path, true);
  auto reopened = append_ok(*ob, message_request("p1", "m1", "third"));
  CHECK(reopened.duplicate);
  CHECK(*reopened.bytes == *first.bytes);
  // Nothing pending for the duplicate.
  CHECK(ob->stats()->pending == 3);
  // Also within one group commit: many concurrent posts of one id.
  std::vector<std::thread> ts;
  std::atomic<int> fresh{0};
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] {
      auto r = ob->append_sync(message_request("p3", "same"));
      if (r.is_ok() && !r->duplicate) ++fresh;
    });
  }
  for (auto& t : ts) t.join();
  CHECK(fresh == 1);
  CHECK(*ob->last_seq("p3") == 1);
}

// The outbox never writes a record it could not read back: a plan record
// over kMaxPlanRecordBytes (a 600 KB task once made a 3 MB record, then
// "corrupt plan record" on every read of the plan and of the user's list)
// or a message over kMaxStoredBytes is refused, and nothing is written.
TEST_CASE("a plan record or message too large to read back is refused with kTooLarge; nothing is written") {
  TempDir d;
  auto ob = open_outbox(d.path);
  AppendRequest big;
  big.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z");
  big.plan->initial_goal = std::string(kMaxPlanRecordBytes, 'g');
  big.message = test::make_message("p1", "m1");
  auto r = ob->append_sync(std::move(big));
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == Code::kTooLarge);
  CHECK(r.status().message().find("plan record of") != std::string::npos);
  CHECK_FALSE(ob->get_plan("p1")->has_value());
  CHECK(*ob->last_seq("p1") == 0);

  AppendRequest huge;
  huge.message = test::make_message("p1", "m2", std::string(kMaxStoredBytes, 'c'));
  auto m = ob->append_sync(std::move(huge));
  REQUIRE_FALSE(m.is_ok());
  CHECK(m.status().code() == Code::kTooLarge);
  CHECK(*ob->last_seq("p1") == 0);

  // Just under the limit: written, and read back whole.
  AppendRequest fits;
  fits.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z");
  fits.plan->initial_goal = std::string(kMaxPlanRecordBytes - 1024, 'g');
  append_ok(*ob, fits);
  auto p = ob->get_plan("p1");
  REQUIRE_MESSAGE(p.is_ok(), p.status().to_string());
  REQUIRE(p->has_value());
  CHECK((*p)->initial_goal.size() == kMaxPlanRecordBytes - 1024);
  auto listed = ob->list_plans("alice", 10);
  REQUIRE_MESSAGE(listed.is_ok(), listed.status().to_string());
  CHECK(listed->size() == 1);
}

TEST_CASE("plan record versions and last_seq, list_plans newest first") {
  TempDir d;
  auto ob = open_outbox(d.path);
  AppendRequest r;
  r.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z");
  r.message = test::make_message("p1", "m1");
  auto a = append_ok(*ob, r);
  CHECK(a.plan_version == 1);
  CHECK(a.seq == 1);
  AppendRequest only_plan;
  only_plan.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z", PlanStatus::kCompleted);
  auto b = append_ok(*ob, only_plan);
  CHECK(b.plan_version == 2);
  CHECK(b.seq == 0);
  CHECK(b.bytes == nullptr);
  auto p = ob->get_plan("p1");
  REQUIRE(p.is_ok());
  REQUIRE(p->has_value());
  CHECK((*p)->version == 2);
  CHECK((*p)->last_seq == 1);
  CHECK((*p)->status == PlanStatus::kCompleted);
  CHECK_FALSE(ob->get_plan("p9")->has_value());

  AppendRequest later;
  later.plan = make_plan("p2", "alice", "2026-11-26T03:00:00.000Z");
  append_ok(*ob, later);
  AppendRequest middle;
  middle.plan = make_plan("p3", "alice", "2026-11-26T02:00:00.000Z");
  append_ok(*ob, middle);
  AppendRequest bob;
  bob.plan = make_plan("p4", "bob", "2026-11-26T04:00:00.000Z");
  append_ok(*ob, bob);
  auto list = ob->list_plans("alice", 10);
  REQUIRE(list.is_ok());
  REQUIRE(list->size() == 3);
  CHECK((*list)[0].plan_id == "p2");
  CHECK((*list)[1].plan_id == "p3");
  CHECK((*list)[2].plan_id == "p1");
  CHECK(ob->list_plans("alice", 2)->size() == 2);
  CHECK(ob->list_plans("bob", 10)->size() == 1);
  CHECK(ob->list_plans("carol", 10)->empty());
  auto unfinished = ob->list_unfinished_plans(10);
  REQUIRE(unfinished.is_ok());
  CHECK(unfinished->size() == 3);  // p1 is completed

  // A mismatched plan id is refused and changes nothing.
  AppendRequest bad;
  bad.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z");
  bad.message = test::make_message("p2", "mx");
  auto br = ob->append_sync(bad);
  CHECK(br.status().code() == Code::kInvalidArgument);
  CHECK(*ob->last_seq("p2") == 0);
  CHECK(ob->append_sync(AppendRequest{}).status().code() == Code::kInvalidArgument);
}

TEST_CASE("pending entries in append order, bounded reads, after_id, ack") {
  TempDir d;
  auto ob = open_outbox(d.path, true);
  AppendRequest r;
  r.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z");
  r.message = test::make_message("p1", "m1");
  append_ok(*ob, r);                                 // ids 1 (message), 2 (plan v1)
  append_ok(*ob, message_request("p2", "m1"));       // 3
  append_ok(*ob, message_request("p1", "m2", "x"));  // 4
  auto all = ob->read_pending(100, 1 << 20);
  REQUIRE(all.is_ok());
  REQUIRE(all->size() == 4);
  CHECK((*all)[0].id == 1);
  CHECK((*all)[0].kind == PendingKind::kMessage);
  CHECK((*all)[0].seq == 1);
  CHECK((*all)[1].kind == PendingKind::kPlan);
  CHECK((*all)[1].plan_version == 1);
  CHECK(*(*all)[1].bytes == encode_plan(ob->get_plan("p1")->value()));
  CHECK((*all)[2].plan_id == "p2");
  CHECK((*all)[3].seq == 2);
  CHECK(*(*all)[3].bytes == *(*ob->read_messages("p1", 1, 1))[0].bytes);
  CHECK((*all)[3].appended_at_ms >= (*all)[0].appended_at_ms);

  CHECK(ob->read_pending(2, 1 << 20)->size() == 2);
  auto one = ob->read_pending(100, 1);  // at least one entry even over max_bytes
  REQUIRE(one.is_ok());
  CHECK(one->size() == 1);
  auto after = ob->read_pending(100, 1 << 20, 2);
  REQUIRE(after.is_ok());
  REQUIRE(after->size() == 2);
  CHECK((*after)[0].id == 3);

  REQUIRE(ob->ack_sync({1, 3, 99}).is_ok());  // unknown ids are fine (replays)
  auto left = ob->read_pending(100, 1 << 20);
  REQUIRE(left->size() == 2);
  CHECK((*left)[0].id == 2);
  CHECK((*left)[1].id == 4);
  auto st = ob->stats();
  REQUIRE(st.is_ok());
  CHECK(st->pending == 2);
  CHECK(st->messages == 3);
  CHECK(st->plans == 1);
  CHECK(st->oldest_pending_ms > 0);
  CHECK(st->used_bytes > 0);

  std::promise<Status> p;
  ob->ack({2, 4}, [&](Status s) { p.set_value(s); });
  CHECK(p.get_future().get().is_ok());
  CHECK(ob->read_pending(100, 1 << 20)->empty());
  CHECK(ob->stats()->oldest_pending_ms == 0);

  // Ids are never reused, also across reopen.
  ob.reset();
  ob = open_outbox(d.path, true);
  append_ok(*ob, message_request("p1", "m3"));
  auto fresh = ob->read_pending(100, 1 << 20);
  REQUIRE(fresh->size() == 1);
  CHECK(fresh->front().id == 5);
}

TEST_CASE("embedded default: nothing is pending") {
  TempDir d;
  auto ob = open_outbox(d.path, false);
  AppendRequest r;
  r.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z");
  r.message = test::make_message("p1", "m1");
  append_ok(*ob, r);
  CHECK(ob->read_pending(100, 1 << 20)->empty());
  CHECK(ob->stats()->pending == 0);
}

TEST_CASE("dead letters: move, list, retry with a new id, drop") {
  TempDir d;
  auto ob = open_outbox(d.path, true);
  auto m1 = append_ok(*ob, message_request("p1", "m1"));  // id 1
  append_ok(*ob, message_request("p1", "m2"));            // id 2
  REQUIRE(ob->dead_letter_sync(1, "document too large").is_ok());
  CHECK(ob->dead_letter_sync(1, "again").code() == Code::kNotFound);
  auto dl = ob->list_dead_letters(10);
  REQUIRE(dl.is_ok());
  REQUIRE(dl->size() == 1);
  CHECK((*dl)[0].entry.id == 1);
  CHECK((*dl)[0].entry.seq == 1);
  CHECK(*(*dl)[0].entry.bytes == *m1.bytes);
  CHECK((*dl)[0].error == "document too large");
  CHECK((*dl)[0].dead_at_ms > 0);
  CHECK(ob->stats()->dead_letters == 1);
  auto pend = ob->read_pending(10, 1 << 20);
  REQUIRE(pend->size() == 1);
  CHECK(pend->front().id == 2);

  REQUIRE(ob->retry_dead_letter_sync(1).is_ok());
  CHECK(ob->retry_dead_letter_sync(1).code() == Code::kNotFound);
  pend = ob->read_pending(10, 1 << 20);
  REQUIRE(pend->size() == 2);
  CHECK(pend->back().id == 3);
  CHECK(pend->back().seq == 1);
  CHECK(*pend->back().bytes == *m1.bytes);
  CHECK(ob->list_dead_letters(10)->empty());

  REQUIRE(ob->dead_letter_sync(3, "still too large").is_ok());
  REQUIRE(ob->drop_dead_letter_sync(3).is_ok());
  CHECK(ob->drop_dead_letter_sync(3).code() == Code::kNotFound);
  CHECK(ob->list_dead_letters(10)->empty());
  CHECK(ob->read_pending(10, 1 << 20)->size() == 1);
  // The message itself stays readable.
  CHECK(ob->read_messages("p1", 0, 10)->size() == 2);
}

TEST_CASE("a second open of the same dir is refused with kLocked") {
  TempDir d;
  auto ob = open_outbox(d.path);
  OutboxOptions o;
  o.dir = d.path;
  auto second = Outbox::open(o);
  REQUIRE_FALSE(second.is_ok());
  CHECK(second.status().code() == Code::kLocked);
  CHECK(second.status().message().find(d.path) != std::string::npos);
  ob.reset();
  CHECK(Outbox::open(o).is_ok());  // released with the first owner
}

TEST_CASE("an interrupted backfill does not skip what a later run without MongoDB appended") {
  TempDir d;
  {
    auto ob = open_outbox(d.path);  // without MongoDB
    append_ok(*ob, message_request("a-plan", "a1"));
    append_ok(*ob, message_request("b-plan", "b1"));
  }
  // A run with MongoDB was stopped halfway: its backfill continues at b-plan.
  put_raw(d.path, outbox_format::kMetaDb, std::string(outbox_format::kBackfillFromKey),
          "m" + outbox_format::message_key("b-plan", 1));
  {  // Then again without MongoDB: a message lands before the resume position.
    auto ob = open_outbox(d.path);
    append_ok(*ob, message_request("a-plan", "a2"));
  }
  auto ob = open_outbox(pruning_options(d.path));
  auto pend = ob->read_pending(100, 1 << 20);
  REQUIRE(pend.is_ok());
  std::set<std::pair<std::string, uint64_t>> queued;
  for (const auto& e : *pend) {
    if (e.kind == PendingKind::kMessage) queued.emplace(e.plan_id, e.seq);
  }
  CHECK(queued.count({"a-plan", 1}) == 1);
  CHECK(queued.count({"a-plan", 2}) == 1);
  CHECK(queued.count({"b-plan", 1}) == 1);
  // Retention never takes an unqueued message for flushed.
  REQUIRE(ob->prune_sync().is_ok());
  CHECK(*ob->first_seq("a-plan") == 1);
}

TEST_CASE("a newer on-disk format version is refused with kVersionMismatch") {
  TempDir d;
  open_outbox(d.path).reset();
  // Rewrite the version, as a future agentd would have.
  std::string newer;
  outbox_format::put_be32(&newer, outbox_format::kFormatVersion + 1);
  put_raw(d.path, outbox_format::kMetaDb, std::string(outbox_format::kFormatVersionKey), newer);
  OutboxOptions o;
  o.dir = d.path;
  auto r = Outbox::open(o);
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == Code::kVersionMismatch);
  CHECK(r.status().message().find("version 2") != std::string::npos);
}

TEST_CASE("a plan record that does not decode is left out of the unfinished plans, not an error") {
  TempDir d;
  {
    auto ob = open_outbox(d.path);
    AppendRequest r;
    r.plan = make_plan("ok", "alice", "2026-11-26T01:00:00.000Z");
    r.plan->status = PlanStatus::kRunning;
    append_ok(*ob, r);
  }
  put_raw(d.path, outbox_format::kPlansDb, "bad", "{not a plan");  // a record no agentd wrote
  auto ob = open_outbox(d.path);
  auto unfinished = ob->list_unfinished_plans(10);
  REQUIRE_MESSAGE(unfinished.is_ok(), unfinished.status().to_string());
  REQUIRE(unfinished->size() == 1);
  CHECK((*unfinished)[0].plan_id == "ok");
}

TEST_CASE("format decoders name what is corrupt") {
  auto p = outbox_format::parse_pending_value(std::string("\x01\x00\x00", 3));
  REQUIRE_FALSE(p.is_ok());
  CHECK(p.status().code() == Code::kCorruption);
  CHECK(p.status().message() == "corrupt pending value: truncated at byte 2 of 3 (reading appended_at_ms)");
  CHECK(outbox_format::parse_pending_value(std::string("\x07", 1)).status().message() ==
        "corrupt pending value: unknown kind 7");
  std::string value = outbox_format::message_value(5, 9, "mid", "{}");
  auto m = outbox_format::parse_message_value(value);
  REQUIRE(m.is_ok());
  CHECK(m->appended_at_ms == 5);
  CHECK(m->pending_id == 9);
  CHECK(m->message_id == "mid");
  CHECK(m->envelope == "{}");
  uint64_t seq = 0;
  CHECK(outbox_format::parse_message_key(outbox_format::message_key("ab", 7), "ab", &seq));
  CHECK(seq == 7);
  CHECK_FALSE(outbox_format::parse_message_key(outbox_format::message_key("ab", 7), "a", &seq));
}

TEST_CASE("seq is contiguous per plan under many concurrent producers; the observer sees commit order") {
  TempDir d;
  auto ob = open_outbox(d.path, true);
  constexpr int kThreads = 24, kPlans = 12, kPerThread = 120;
  std::mutex mu;
  std::map<std::string, std::vector<uint64_t>> observed;  // plan -> seqs in observer order
  std::map<std::string, std::map<uint64_t, std::string>> returned;
  std::atomic<int> observer_calls{0};
  ob->set_observer([&](const std::vector<CommittedMessage>& batch) {
    ++observer_calls;
    std::lock_guard l(mu);
    for (const auto& m : batch) observed[m.plan_id].push_back(m.seq);
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string plan = "plan-" + std::to_string((t * 7 + i) % kPlans);
        auto r = ob->append_sync(message_request(plan, "t" + std::to_string(t) + "-" + std::to_string(i)));
        REQUIRE(r.is_ok());
        std::lock_guard l(mu);
        bool inserted = returned[plan].emplace(r->seq, *r->bytes).second;
        CHECK(inserted);  // no seq handed out twice
      }
    });
  }
  for (auto& t : ts) t.join();
  size_t total = 0;
  for (auto& [plan, seqs] : returned) {
    total += seqs.size();
    CHECK(seqs.begin()->first == 1);
    CHECK(seqs.rbegin()->first == seqs.size());  // 1..N without gap
    auto stored = ob->read_messages(plan, 0, 100000);
    REQUIRE(stored.is_ok());
    REQUIRE(stored->size() == seqs.size());
    for (const auto& m : *stored) CHECK(*m.bytes == seqs[m.seq]);
    // The observer saw each seq once, ascending.
    const auto& obs = observed[plan];
    REQUIRE(obs.size() == seqs.size());
    for (size_t i = 0; i < obs.size(); ++i) CHECK(obs[i] == i + 1);
  }
  CHECK(total == size_t{kThreads} * kPerThread);
  CHECK(ob->stats()->pending == total);
  // Group commit happened: fewer commits than appends.
  MESSAGE("observer calls (commits): " << observer_calls.load() << " for " << total << " appends");
  CHECK(observer_calls.load() < static_cast<int>(total));
  auto st = ob->stats();
  REQUIRE(st.is_ok());
  CHECK(st->committed_requests == total);
  CHECK(st->commits == static_cast<uint64_t>(observer_calls.load()));
}

TEST_CASE("async_append completes through a strand") {
  TempDir d;
  auto ob = open_outbox(d.path);
  boost::asio::io_context io;
  auto strand = boost::asio::make_strand(io);
  auto guard = boost::asio::make_work_guard(io);
  std::thread t1([&] { io.run(); }), t2([&] { io.run(); });
  std::atomic<int> done{0}, on_strand{0};
  uint64_t max_seq = 0;  // touched only on the strand
  for (int i = 0; i < 50; ++i) {
    ob->async_append(message_request("p1", "m" + std::to_string(i)),
                     boost::asio::bind_executor(strand, [&](Result<AppendResult> r) {
                       REQUIRE(r.is_ok());
                       if (strand.running_in_this_thread()) ++on_strand;
                       max_seq = std::max(max_seq, r->seq);
                       ++done;
                     }));
  }
  while (done < 50) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  guard.reset();
  t1.join();
  t2.join();
  CHECK(on_strand == 50);
  CHECK(max_seq == 50);
}

TEST_CASE(
    "open_plan_only: a finished plan, or one the outbox does not hold, takes no message; a duplicate still answers") {
  TempDir d;
  auto ob = open_outbox(d.path);
  auto ext = [](const std::string& plan, const std::string& mid) {
    AppendRequest r = message_request(plan, mid);
    r.open_plan_only = true;
    return r;
  };
  // Unknown plan: refused, not started at seq 1.
  auto unknown = ob->append_sync(ext("p-none", "x1"));
  REQUIRE_FALSE(unknown.is_ok());
  CHECK(unknown.status().code() == Code::kFailedPrecondition);
  CHECK(*ob->last_seq("p-none") == 0);
  // Open plan: accepted.
  AppendRequest open;
  open.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z", PlanStatus::kRunning);
  append_ok(*ob, std::move(open));
  CHECK(append_ok(*ob, ext("p1", "m1")).seq == 1);
  // Finished (each final status): refused; the stored message's id is still a duplicate.
  for (PlanStatus st : {PlanStatus::kCompleted, PlanStatus::kFailed, PlanStatus::kCanceled, PlanStatus::kRejected,
                        PlanStatus::kInterrupted}) {
    CAPTURE(plan_status_name(st));
    AppendRequest end;
    end.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z", st);
    append_ok(*ob, std::move(end));
    auto late = ob->append_sync(ext("p1", "m2"));
    REQUIRE_FALSE(late.is_ok());
    CHECK(late.status().code() == Code::kFailedPrecondition);
    CHECK(late.status().message().find(std::string(plan_status_name(st))) != std::string::npos);
    auto again = ob->append_sync(ext("p1", "m1"));
    REQUIRE(again.is_ok());
    CHECK(again->duplicate);
    CHECK(again->seq == 1);
  }
  CHECK(*ob->last_seq("p1") == 1);
  // The runtime's own appends (without the flag) are not affected.
  CHECK(append_ok(*ob, message_request("p1", "final-note")).seq == 2);
}

TEST_CASE("retention with track_pending prunes flushed messages only, keeping each plan's last") {
  TempDir d;
  const OutboxOptions o = pruning_options(d.path);
  auto ob = open_outbox(o);
  append_messages(*ob, "p1", 10);
  // Pending ids 1..10 are seqs 1..10.
  REQUIRE(ob->ack_sync({1, 2, 3, 4, 5, 7}).is_ok());
  prune_acked(*ob);
  CHECK(*ob->first_seq("p1") == 6);  // 6 is pending: it and everything after stays
  CHECK(ob->read_messages("p1", 0, 100)->size() == 5);
  CHECK(ob->read_pending(100, 1 << 20)->size() == 4);  // pending entries still resolve their bytes
  REQUIRE(ob->ack_sync({6, 8, 9, 10}).is_ok());
  REQUIRE(ob->prune_sync().is_ok());
  CHECK(*ob->first_seq("p1") == 10);
  CHECK(*ob->last_seq("p1") == 10);
  // Seq continues after pruning and after reopen.
  CHECK(append_ok(*ob, message_request("p1", "m11")).seq == 11);
  ob.reset();
  ob = open_outbox(o);
  CHECK(append_ok(*ob, message_request("p1", "m12")).seq == 12);
}

TEST_CASE("retention never prunes a dead-lettered message: not while dead, not after a retry, not after a drop") {
  TempDir d;
  const OutboxOptions o = pruning_options(d.path);
  auto ob = open_outbox(o);
  append_messages(*ob, "p1", 6);
  // MongoDB acknowledged all but seq 3, which it rejected.
  REQUIRE(ob->ack_sync({1, 2, 4, 5, 6}).is_ok());
  REQUIRE(ob->dead_letter_sync(3, "rejected").is_ok());
  prune_acked(*ob);
  CHECK(*ob->first_seq("p1") == 3);  // 1 and 2 went; 3 (not in MongoDB) and what follows stay
  // A retry puts it back as a fresh pending entry (id 7): still kept while pending.
  REQUIRE(ob->retry_dead_letter_sync(3).is_ok());
  auto pend = ob->read_pending(10, 1 << 20);
  REQUIRE(pend->size() == 1);
  CHECK(pend->front().id == 7);
  CHECK(pend->front().seq == 3);
  REQUIRE(ob->prune_sync().is_ok());
  CHECK(*ob->first_seq("p1") == 3);
  // Rejected again, then dropped: no more retries, still readable.
  REQUIRE(ob->dead_letter_sync(7, "rejected again").is_ok());
  REQUIRE(ob->drop_dead_letter_sync(7).is_ok());
  REQUIRE(ob->prune_sync().is_ok());
  ob.reset();
  ob = open_outbox(o);
  REQUIRE(ob->prune_sync().is_ok());
  CHECK(*ob->first_seq("p1") == 3);
  CHECK(ob->read_messages("p1", 2, 1)->front().seq == 3);
  // A retried message MongoDB then acknowledged is flushed like any other.
  append_ok(*ob, message_request("p2", "x1"));
  append_ok(*ob, message_request("p2", "x2"));
  REQUIRE(ob->dead_letter_sync(8, "rejected").is_ok());
  REQUIRE(ob->ack_sync({9}).is_ok());
  REQUIRE(ob->retry_dead_letter_sync(8).is_ok());
  REQUIRE(ob->ack_sync({10}).is_ok());
  prune_acked(*ob);
  CHECK(*ob->first_seq("p2") == 2);
}

TEST_CASE("dedup outlives retention: a repost of a pruned message answers its seq, not a new one") {
  TempDir d;
  auto ob = open_outbox(pruning_options(d.path));
  append_messages(*ob, "p1", 4);
  REQUIRE(ob->ack_sync({1, 2, 3, 4}).is_ok());
  prune_acked(*ob);
  REQUIRE(*ob->first_seq("p1") == 4);  // 1..3 pruned: MongoDB holds them
  auto again = append_ok(*ob, message_request("p1", "m2"));
  CHECK(again.duplicate);
  CHECK(again.seq == 2);
  CHECK_FALSE(again.bytes);  // the bytes live in MongoDB now
  CHECK(*ob->find_message("p1", "m1") == std::optional<uint64_t>(1));
  CHECK(*ob->last_seq("p1") == 4);
  CHECK(append_ok(*ob, message_request("p1", "m5")).seq == 5);
}

TEST_CASE("retention with MongoDB removes a finished plan whole once MongoDB holds it, in time-bounded passes") {
  TempDir d;
  OutboxOptions o = pruning_options(d.path);
  o.prune_time_budget = std::chrono::milliseconds(0);  // one plan per pass
  auto ob = open_outbox(o);
  auto plan_with = [&](const std::string& id, PlanStatus status, int messages) {
    AppendRequest rec;
    rec.plan = make_plan(id, "alice", "2026-11-26T01:00:00.000Z", status);
    append_ok(*ob, std::move(rec));
    for (int i = 1; i <= messages; ++i) append_ok(*ob, message_request(id, id + "-m" + std::to_string(i)));
  };
  plan_with("done", PlanStatus::kCompleted, 3);
  plan_with("live", PlanStatus::kRunning, 3);
  plan_with("done-dead", PlanStatus::kFailed, 2);
  plan_with("done-unacked-record", PlanStatus::kCanceled, 1);
  // MongoDB acknowledged everything except done-dead's seq 2 (rejected) and
  // the record of done-unacked-record (its last version: the highest id).
  auto pend = ob->read_pending(1000, 64 << 20);
  REQUIRE(pend.is_ok());
  std::vector<uint64_t> acks;
  uint64_t dead_id = 0, record_id = 0;
  for (const auto& e : *pend) {
    if (e.kind == PendingKind::kMessage && e.plan_id == "done-dead" && e.seq == 2) {
      dead_id = e.id;
    } else if (e.kind == PendingKind::kPlan && e.plan_id == "done-unacked-record") {
      record_id = e.id;
    } else {
      acks.push_back(e.id);
    }
  }
  REQUIRE(ob->ack_sync(acks).is_ok());
  REQUIRE(ob->dead_letter_sync(dead_id, "rejected").is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  uint64_t commits = ob->stats()->commits;
  REQUIRE(ob->prune_sync().is_ok());
  CHECK(ob->stats()->commits - commits >= 4);  // one pass per plan
  // The finished plan MongoDB holds: gone from the outbox (reads go to MongoDB).
  CHECK_FALSE(ob->get_plan("done")->has_value());
  CHECK(ob->read_messages("done", 0, 10)->empty());
  CHECK_FALSE(ob->find_message("done", "done-m1")->has_value());
  CHECK(ob->list_plans("alice", 10)->size() == 3);
  // A live plan keeps its last message (its seq anchor) and its record.
  CHECK(*ob->first_seq("live") == 3);
  CHECK(ob->get_plan("live")->has_value());
  // MongoDB lacks a message or the record: the plan stays.
  CHECK(*ob->first_seq("done-dead") == 2);
  CHECK(ob->get_plan("done-dead")->has_value());
  CHECK(ob->get_plan("done-unacked-record")->has_value());
  REQUIRE(ob->ack_sync({record_id}).is_ok());
  REQUIRE(ob->prune_sync().is_ok());
  CHECK_FALSE(ob->get_plan("done-unacked-record")->has_value());
}

TEST_CASE("the writer applies retention periodically") {
  TempDir d;
  OutboxOptions o = pruning_options(d.path);
  o.prune_interval = std::chrono::milliseconds(20);
  auto ob = open_outbox(o);
  append_messages(*ob, "p1", 5);
  REQUIRE(ob->ack_sync({1, 2, 3, 4, 5}).is_ok());
  for (int i = 0; i < 200 && *ob->first_seq("p1") != 5; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(*ob->first_seq("p1") == 5);
}

TEST_CASE("embedded retention removes only finished plans older than the cutoff") {
  TempDir d;
  auto ob = open_outbox(embedded_retention_options(d.path));
  std::string old_time = format_rfc3339_ms(now_unix_ms() - 3600 * 1000);
  std::string now_time = now_rfc3339();
  auto add = [&](const std::string& id, PlanStatus s, const std::string& at) {
    AppendRequest a;
    a.plan = make_plan(id, "alice", at, s);
    a.message = test::make_message(id, "m1");
    append_ok(*ob, a);
    append_ok(*ob, message_request(id, "m2"));
  };
  add("old-done", PlanStatus::kCompleted, old_time);
  add("old-running", PlanStatus::kRunning, old_time);
  add("new-done", PlanStatus::kFailed, now_time);
  REQUIRE(ob->prune_sync().is_ok());
  CHECK_FALSE(ob->get_plan("old-done")->has_value());
  CHECK(ob->read_messages("old-done", 0, 10)->empty());
  CHECK(ob->get_plan("old-running")->has_value());
  CHECK(ob->read_messages("old-running", 0, 10)->size() == 2);
  CHECK(ob->read_messages("new-done", 0, 10)->size() == 2);
  auto list = ob->list_plans("alice", 10);
  REQUIRE(list.is_ok());
  CHECK(list->size() == 2);
  CHECK(ob->stats()->messages == 4);
}

TEST_CASE("embedded retention keeps everything while entries of a MongoDB run are still pending") {
  TempDir d;
  std::string old_time = format_rfc3339_ms(now_unix_ms() - 3600 * 1000);
  {
    auto ob = open_outbox(d.path, true);  // a run with MongoDB that did not flush
    AppendRequest a;
    a.plan = make_plan("old-done", "alice", old_time, PlanStatus::kCompleted);
    a.message = test::make_message("old-done", "m1");
    append_ok(*ob, a);
  }
  auto ob = open_outbox(embedded_retention_options(d.path));
  REQUIRE(ob->prune_sync().is_ok());
  CHECK(ob->get_plan("old-done")->has_value());
  auto pending = ob->read_pending(10, 1 << 20);
  REQUIRE(pending.is_ok());  // the entries still resolve their bytes
  CHECK(pending->size() == 2);
}

TEST_CASE("a full outbox fails appends with kOutboxFull, keeps what it has, and recovers after ack and prune") {
  TempDir d;
  OutboxOptions o = pruning_options(d.path);
  o.max_bytes = 1 << 20;
  auto ob = open_outbox(o);
  CHECK(ob->writable().is_ok());
  std::string big(900, 'x');
  std::vector<std::string> stored;
  Status full;
  for (int i = 0; i < 5000; ++i) {
    auto a = ob->append_sync(message_request("p1", "m" + std::to_string(i), big));
    if (!a.is_ok()) {
      full = a.status();
      break;
    }
    stored.push_back(*a->bytes);
  }
  REQUIRE(full.code() == Code::kOutboxFull);
  CHECK(full.message().find("outbox full") != std::string::npos);
  MESSAGE("full after " << stored.size() << " messages of ~1 KiB in a 1 MiB map");
  CHECK(stored.size() > 100);
  // Full is not sticky, and nothing acknowledged was lost.
  CHECK(ob->append_sync(message_request("p1", "again", big)).status().code() == Code::kOutboxFull);
  CHECK(ob->writable().code() == Code::kOutboxFull);  // what /readyz reports
  auto msgs = ob->read_messages("p1", 0, 100000);
  REQUIRE(msgs.is_ok());
  REQUIRE(msgs->size() == stored.size());
  for (size_t i = 0; i < stored.size(); ++i) CHECK(*(*msgs)[i].bytes == stored[i]);
  // The flusher acks, retention prunes: appends work again, seq continues.
  ack_all(*ob);
  prune_acked(*ob);
  // Writable again before any append: /readyz must not wait for traffic that
  // a load balancer withholds from an instance it thinks is not ready.
  CHECK(ob->writable().is_ok());
  auto after = ob->append_sync(message_request("p1", "after", big));
  REQUIRE_MESSAGE(after.is_ok(), after.status().to_string());
  CHECK(after->seq == stored.size() + 1);
  CHECK(ob->writable().is_ok());
}

TEST_CASE("a full outbox fails only the appends that need space: rejections and duplicates keep their answers") {
  TempDir d;
  auto ob = open_outbox(d.path, /*track_pending=*/true, /*max_bytes=*/1 << 20);
  std::string big(900, 'x');
  auto first = append_ok(*ob, message_request("p1", "m0", big));
  for (int i = 1; i < 5000; ++i) {
    auto a = ob->append_sync(message_request("p1", "m" + std::to_string(i), big));
    if (!a.is_ok()) {
      REQUIRE(a.status().code() == Code::kOutboxFull);
      break;
    }
  }
  REQUIRE(ob->writable().code() == Code::kOutboxFull);
  // Hold the writer in a completion so that the appends below are queued
  // together and committed as one batch.
  std::promise<void> holding, release;
  auto released = release.get_future().share();
  ob->ack({}, [&holding, released](Status) {
    holding.set_value();
    released.wait();
  });
  holding.get_future().wait();
  std::vector<std::promise<Result<AppendResult>>> results(4);
  auto submit = [&](size_t i, AppendRequest req) {
    ob->append(std::move(req), [&results, i](Result<AppendResult> a) { results[i].set_value(std::move(a)); });
  };
  AppendRequest invalid = message_request("p1", "bad");
  invalid.plan = make_plan("p2", "u-1", "2026-11-26T02:31:00.123Z");  // another plan's record
  submit(0, std::move(invalid));
  submit(1, message_request("p1", "m0", big));  // already stored: writes nothing
  AppendRequest closed = message_request("p-unknown", "x1");
  closed.open_plan_only = true;  // a plan the outbox does not hold: refused
  submit(2, std::move(closed));
  submit(3, message_request("p1", "new", big));  // needs space
  release.set_value();
  auto a_invalid = results[0].get_future().get();
  auto a_dup = results[1].get_future().get();
  auto a_closed = results[2].get_future().get();
  auto a_new = results[3].get_future().get();
  CHECK(a_invalid.status().code() == Code::kInvalidArgument);
  CHECK(a_invalid.status().message() == "message plan_id p1 differs from plan record's p2");
  REQUIRE_MESSAGE(a_dup.is_ok(), a_dup.status().to_string());
  CHECK(a_dup->duplicate);
  CHECK(a_dup->seq == first.seq);
  REQUIRE(a_dup->bytes);
  CHECK(*a_dup->bytes == *first.bytes);
  CHECK(a_closed.status().code() == Code::kFailedPrecondition);
  CHECK(a_new.status().code() == Code::kOutboxFull);
  CHECK(ob->writable().code() == Code::kOutboxFull);
  CHECK_FALSE(ob->find_message("p1", "new")->has_value());
}

TEST_CASE("the append queue is bounded") {
  TempDir d;
  OutboxOptions o;
  o.dir = d.path;
  o.max_queue = 4;
  auto ob = open_outbox(o);
  std::atomic<int> ok{0}, unavailable{0}, done{0};
  for (int i = 0; i < 200; ++i) {
    ob->append(message_request("p1", "m" + std::to_string(i)), [&](Result<AppendResult> a) {
      if (a.is_ok()) ++ok;
      if (a.status().code() == Code::kUnavailable) ++unavailable;
      ++done;
    });
  }
  while (done < 200) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(ok + unavailable == 200);
  CHECK(unavailable > 0);
  CHECK(*ob->last_seq("p1") == static_cast<uint64_t>(ok.load()));
}

TEST_CASE("a failed commit is sticky: every later write fails, reads still work, reopen recovers") {
  TempDir d;
  auto ob = open_outbox(d.path, true);
  append_ok(*ob, message_request("p1", "m1"));
  std::vector<CommittedMessage> seen;
  ob->set_observer([&](const std::vector<CommittedMessage>& b) { seen.insert(seen.end(), b.begin(), b.end()); });
  OutboxTestAccess::fail_next_commit(*ob);
  auto failed = ob->append_sync(message_request("p1", "m2"));
  REQUIRE_FALSE(failed.is_ok());
  CHECK(failed.status().code() == Code::kIoError);
  auto later = ob->append_sync(message_request("p1", "m3"));
  CHECK(later.status().code() == Code::kIoError);
  CHECK(later.status().message() == failed.status().message());
  CHECK(ob->ack_sync({1}).code() == Code::kIoError);
  CHECK(ob->writable().code() == Code::kIoError);
  CHECK(seen.empty());  // nothing announced that was not committed
  CHECK(*ob->last_seq("p1") == 1);
  CHECK(ob->read_messages("p1", 0, 10)->size() == 1);
  ob.reset();
  ob = open_outbox(d.path, true);
  CHECK(append_ok(*ob, message_request("p1", "m2")).seq == 2);
  CHECK(ob->stats()->pending == 2);
}

TEST_CASE("a run with MongoDB after runs without it queues what they appended, once, in (plan, seq) order") {
  TempDir d;
  // 25,000 messages: more than one backfill transaction (10,000 entries).
  const int kPlans = 5, kPerPlan = 5000;
  {
    OutboxOptions without;
    without.dir = d.path;
    without.sync = false;  // test speed; the backfill does not depend on it
    auto ob = open_outbox(without);
    for (int p = 0; p < kPlans; ++p) {
      AppendRequest pr;
      pr.plan = make_plan("p" + std::to_string(p), "alice", "2026-11-26T01:00:00.000Z");
      append_ok(*ob, std::move(pr));
    }
    std::atomic<int> left{kPlans * kPerPlan};
    std::atomic<int> failed{0};
    for (int i = 0; i < kPerPlan; ++i) {
      for (int p = 0; p < kPlans; ++p) {
        ob->append(message_request("p" + std::to_string(p), "m" + std::to_string(i)), [&](Result<AppendResult> a) {
          if (!a.is_ok()) failed.fetch_add(1);
          left.fetch_sub(1);
        });
      }
      while (left.load() > kPlans * kPerPlan - (i + 1) * kPlans + 4096) std::this_thread::yield();
    }
    while (left.load() > 0) std::this_thread::yield();
    REQUIRE(failed.load() == 0);
    auto none = ob->read_pending(10, 1 << 20);
    REQUIRE(none.is_ok());
    CHECK(none->empty());  // embedded: nothing pending
  }
  const OutboxOptions o = pruning_options(d.path);
  {
    auto ob = open_outbox(o);
    // Retention must not take the backfilled messages for flushed.
    REQUIRE(ob->prune_sync().is_ok());
    auto all = ob->read_pending(1000000, 1u << 30);
    REQUIRE(all.is_ok());
    REQUIRE(all->size() == static_cast<size_t>(kPlans * kPerPlan + kPlans));
    std::map<std::string, uint64_t> last_seq;
    size_t plans_seen = 0;
    uint64_t prev_id = 0;
    for (const auto& e : *all) {
      CHECK(e.id > prev_id);
      prev_id = e.id;
      if (e.kind == PendingKind::kPlan) {
        ++plans_seen;
        CHECK(e.plan_version == 1);
        continue;
      }
      CHECK(e.seq == last_seq[e.plan_id] + 1);  // per plan in seq order, no gap
      last_seq[e.plan_id] = e.seq;
      REQUIRE(e.bytes);
      CHECK(e.bytes->rfind("{\"seq\":" + std::to_string(e.seq) + ",", 0) == 0);
    }
    CHECK(plans_seen == static_cast<size_t>(kPlans));
    for (const auto& [plan, seq] : last_seq) CHECK(seq == static_cast<uint64_t>(kPerPlan));
    // Acked, they are flushed: retention may take them (all but each last).
    ack_all(*ob);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (int i = 0; i < 100; ++i) REQUIRE(ob->prune_sync().is_ok());
    auto left = ob->read_messages("p0", 0, 100000);
    REQUIRE(left.is_ok());
    CHECK(left->size() == 1);
  }
  // Once queued, never again.
  auto ob = open_outbox(o);
  auto again = ob->read_pending(10, 1 << 20);
  REQUIRE(again.is_ok());
  CHECK(again->empty());
}

TEST_CASE("opening without MongoDB and writing nothing (the outbox tool does) queues nothing again later") {
  TempDir d;
  OutboxOptions with;
  with.dir = d.path;
  with.track_pending = true;
  {
    auto ob = open_outbox(with);
    AppendRequest pr;
    pr.plan = make_plan("p1", "alice", "2026-11-26T01:00:00.000Z");
    append_ok(*ob, std::move(pr));
    append_ok(*ob, message_request("p1", "m1"));
    ack_all(*ob);
  }
  {
    OutboxOptions without;
    without.dir = d.path;
    open_outbox(without);  // e.g. agentd-outbox inspect / dead-letters
  }
  auto ob = open_outbox(with);
  auto again = ob->read_pending(100, 1 << 20);
  REQUIRE(again.is_ok());
  CHECK(again->empty());
}
