// agentd-outbox run as a process against outboxes built here with the Outbox
// API: inspect/dump output and filters, verify on clean and damaged outboxes,
// replay to the real test MongoDB (byte-equal, rerun is a no-op), dead
// letters, error exit codes, and read-only use beside a writer.
#include <doctest/doctest.h>
#include <lmdb.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "outbox/format.h"
#include "outbox/outbox.h"
#include "store/message_store.h"
#include "tests/outbox/outbox_test_util.h"
#include "tests/support/ferretdb.h"
#include "tests/support/process.h"

using namespace agentd;
namespace of = agentd::outbox_format;

namespace {

std::string tool_path() {
  const char* bin = std::getenv("AGENTD_BINARY_DIR");
  REQUIRE_MESSAGE(bin != nullptr, "AGENTD_BINARY_DIR is not set (run through ctest)");
  return std::string(bin) + "/tools/agentd-outbox";
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

// A temporary folder removed with everything in it at scope exit.
struct TempDir {
  explicit TempDir(const std::string& prefix) : path(test::make_temp_dir(prefix)) {}
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path;
};

struct Run {
  int code = -1;
  std::string out, err;
};

// Runs the tool with stdin from /dev/null; stdout and stderr kept apart.
Run run_tool(const std::vector<std::string>& args) {
  static int n = 0;
  static const TempDir dir("agentd-outbox-runs");
  std::string base = dir.path + "/run" + std::to_string(++n);
  std::string cmd = quote(tool_path());
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " </dev/null >" + quote(base + ".out") + " 2>" + quote(base + ".err");
  auto child = test::ChildProcess::spawn({"/bin/sh", "-c", cmd}, base + ".log");
  int status = child.wait(60000);
  REQUIRE_MESSAGE(status != -1, "agentd-outbox timed out: " << cmd);
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = test::read_file(base + ".out");
  r.err = test::read_file(base + ".err");
  MESSAGE(cmd << " -> " << r.code << "\n" << r.err);
  return r;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::unique_ptr<Outbox> open_outbox(const std::string& dir, bool track_pending = true) {
  OutboxOptions o;
  o.dir = dir;
  o.max_bytes = 64u << 20;
  o.track_pending = track_pending;
  o.sync = false;
  auto ob = Outbox::open(o);
  REQUIRE_MESSAGE(ob.is_ok(), ob.status().to_string());
  return std::move(*ob);
}

// Appends `n` messages to `plan` (the first and the last with a plan record:
// versions 1 and 2); returns their envelope bytes in seq order.
std::vector<std::string> fill(Outbox& ob, const std::string& plan, int n) {
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i) {
    AppendRequest r = test::message_request(plan, plan + "-m" + std::to_string(i), "content " + std::to_string(i));
    if (i == 1 || i == n) r.plan = test::make_plan(plan, "user-1", "2026-11-26T02:31:00.123Z");
    if (i == n && n > 1) r.plan->status = PlanStatus::kCompleted;
    auto res = ob.append_sync(std::move(r));
    REQUIRE_MESSAGE(res.is_ok(), res.status().to_string());
    REQUIRE(res->seq == static_cast<uint64_t>(i));
    out.push_back(*res->bytes);
  }
  return out;
}

// Opens the closed outbox's LMDB environment directly and runs `fn` in one
// write transaction on database `db`.
template <typename Fn>
void tamper(const std::string& dir, const char* db, Fn fn) {
  MDB_env* env = nullptr;
  REQUIRE(mdb_env_create(&env) == 0);
  REQUIRE(mdb_env_set_maxdbs(env, 8) == 0);
  REQUIRE(mdb_env_open(env, dir.c_str(), 0, 0644) == 0);
  MDB_txn* txn = nullptr;
  REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
  MDB_dbi dbi;
  REQUIRE(mdb_dbi_open(txn, db, 0, &dbi) == 0);
  fn(txn, dbi);
  REQUIRE(mdb_txn_commit(txn) == 0);
  mdb_env_close(env);
}

MDB_val mval(const std::string& s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

}  // namespace

TEST_CASE("inspect reports counts, pending, dead letters and the format version") {
  TempDir tmp_dir("tools-inspect");
  const std::string& dir = tmp_dir.path;
  {
    auto ob = open_outbox(dir);
    fill(*ob, "plan-a", 5);
    fill(*ob, "plan-b", 3);
    auto pending = ob->read_pending(100, 1 << 20);
    REQUIRE(pending.is_ok());
    REQUIRE(pending->size() == 12);  // 8 messages + 4 plan records
    // Flush the first 4, dead-letter the 5th.
    std::vector<uint64_t> acked;
    for (size_t i = 0; i < 4; ++i) acked.push_back((*pending)[i].id);
    REQUIRE(ob->ack_sync(acked).is_ok());
    REQUIRE(ob->dead_letter_sync((*pending)[4].id, "rejected: too large").is_ok());
  }
  Run text = run_tool({"inspect", dir});
  REQUIRE(text.code == 0);
  CHECK(text.out.find("format version  1") != std::string::npos);
  CHECK(text.out.find("plans           2") != std::string::npos);
  CHECK(text.out.find("messages        8") != std::string::npos);
  CHECK(text.out.find("pending         7 (4 messages, 3 plan records)") != std::string::npos);
  CHECK(text.out.find("dead letters    1") != std::string::npos);
  CHECK(text.out.find("oldest") != std::string::npos);

  Run json = run_tool({"inspect", "--json", dir});
  REQUIRE(json.code == 0);
  CHECK(json.out.find(R"("format_version":1)") != std::string::npos);
  CHECK(json.out.find(R"("plans":2,"messages":8,"pending":7,"pending_messages":4,"pending_plans":3)") !=
        std::string::npos);
  CHECK(json.out.find(R"("dead_letters":1)") != std::string::npos);
  CHECK(json.out.find(R"("oldest_pending_age_ms":)") != std::string::npos);
}

TEST_CASE("dump writes the stored envelopes verbatim and filters by plan, seq, pending and time") {
  TempDir tmp_dir("tools-dump");
  const std::string& dir = tmp_dir.path;
  std::vector<std::string> a, b;
  int64_t between = 0;
  {
    auto ob = open_outbox(dir);
    a = fill(*ob, "plan-a", 6);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    between = now_unix_ms();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    b = fill(*ob, "plan-b", 4);
    // Ack plan-a's first three messages: they are flushed, the rest pending.
    auto pending = ob->read_pending(100, 1 << 20);
    REQUIRE(pending.is_ok());
    std::vector<uint64_t> ids;
    for (const auto& e : *pending) {
      if (e.kind == PendingKind::kMessage && e.plan_id == "plan-a" && e.seq <= 3) ids.push_back(e.id);
    }
    REQUIRE(ids.size() == 3);
    REQUIRE(ob->ack_sync(ids).is_ok());
  }
  std::vector<std::string> all = a;
  all.insert(all.end(), b.begin(), b.end());

  Run r = run_tool({"dump", dir});
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == all);

  r = run_tool({"dump", dir, "--plan", "plan-b"});
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == b);

  r = run_tool({"dump", dir, "--plan", "plan-a", "--from-seq", "2", "--to-seq", "4"});
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == std::vector<std::string>(a.begin() + 1, a.begin() + 4));

  r = run_tool({"dump", dir, "--from-seq", "4"});  // per plan
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == std::vector<std::string>{a[3], a[4], a[5], b[3]});

  r = run_tool({"dump", dir, "--flushed"});
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == std::vector<std::string>(a.begin(), a.begin() + 3));

  r = run_tool({"dump", dir, "--pending", "--plan", "plan-a"});
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == std::vector<std::string>(a.begin() + 3, a.end()));

  r = run_tool({"dump", dir, "--since", format_rfc3339_ms(between)});
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == b);

  r = run_tool({"dump", dir, "--until", format_rfc3339_ms(between)});
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == a);

  r = run_tool({"dump", dir, "--plan", "no-such-plan"});
  REQUIRE(r.code == 0);
  CHECK(r.out.empty());

  CHECK(run_tool({"dump", dir, "--since", "yesterday"}).code == 2);
  CHECK(run_tool({"dump", dir, "--pending", "--flushed"}).code == 2);
}

TEST_CASE("verify: a clean outbox passes, a deleted message and a garbage envelope are reported precisely") {
  TempDir tmp_dir("tools-verify");
  const std::string& dir = tmp_dir.path;
  {
    auto ob = open_outbox(dir);
    fill(*ob, "plan-a", 6);
    fill(*ob, "plan-b", 3);
    auto pending = ob->read_pending(1, 1 << 20);
    REQUIRE(pending.is_ok());
    REQUIRE(ob->dead_letter_sync(pending->at(0).id, "boom").is_ok());
  }
  Run clean = run_tool({"verify", dir});
  CHECK(clean.code == 0);
  CHECK(clean.out.find("verify: OK") != std::string::npos);
  CHECK(clean.out.find("PROBLEM") == std::string::npos);

  SUBCASE("a message deleted from the middle of a plan") {
    tamper(dir, of::kMessagesDb, [](MDB_txn* txn, MDB_dbi dbi) {
      std::string key = of::message_key("plan-a", 4);
      MDB_val k = mval(key);
      REQUIRE(mdb_del(txn, dbi, &k, nullptr) == 0);
    });
    Run r = run_tool({"verify", dir});
    CHECK(r.code == 1);
    CHECK(r.out.find("PROBLEM messages plan=plan-a seq=5") != std::string::npos);
    CHECK(r.out.find("seq gap: seq 4 missing") != std::string::npos);
    // The index entry and the pending entry of seq 4 now point at nothing.
    CHECK(r.out.find("PROBLEM msgids plan=plan-a seq=4") != std::string::npos);
    CHECK(r.out.find("PROBLEM pending plan=plan-a seq=4") != std::string::npos);
    CHECK(r.out.find("points at a missing message") != std::string::npos);
    CHECK(r.out.find("verify: FAILED") != std::string::npos);
    CHECK(r.out.find("plan=plan-b") == std::string::npos);
  }
  SUBCASE("an envelope overwritten with garbage") {
    tamper(dir, of::kMessagesDb, [](MDB_txn* txn, MDB_dbi dbi) {
      std::string key = of::message_key("plan-b", 2);
      MDB_val k = mval(key), old;
      REQUIRE(mdb_get(txn, dbi, &k, &old) == 0);
      auto was = of::parse_message_value({static_cast<const char*>(old.mv_data), old.mv_size});
      REQUIRE(was.is_ok());
      std::string value = of::message_value(now_unix_ms(), was->pending_id, "plan-b-m2", "{\"seq\":2,garbage");
      MDB_val v = mval(value);
      REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    });
    Run r = run_tool({"verify", dir});
    CHECK(r.code == 1);
    CHECK(r.out.find("PROBLEM messages plan=plan-b seq=2 key=") != std::string::npos);
    CHECK(r.out.find("envelope does not decode") != std::string::npos);
    CHECK(r.out.find("1 problem in") != std::string::npos);
  }
  SUBCASE("an envelope whose seq differs from its key") {
    tamper(dir, of::kMessagesDb, [](MDB_txn* txn, MDB_dbi dbi) {
      std::string key = of::message_key("plan-b", 3);
      MDB_val k = mval(key), v;
      REQUIRE(mdb_get(txn, dbi, &k, &v) == 0);
      std::string value(static_cast<const char*>(v.mv_data), v.mv_size);
      size_t at = value.find("{\"seq\":3,");
      REQUIRE(at != std::string::npos);
      value[at + 7] = '7';
      MDB_val nv = mval(value);
      REQUIRE(mdb_put(txn, dbi, &k, &nv, 0) == 0);
    });
    Run r = run_tool({"verify", dir});
    CHECK(r.code == 1);
    CHECK(r.out.find("PROBLEM messages plan=plan-b seq=3") != std::string::npos);
    CHECK(r.out.find("envelope seq is 7") != std::string::npos);
  }
  SUBCASE("a message never queued for MongoDB (an interrupted backfill's hole)") {
    tamper(dir, of::kMessagesDb, [](MDB_txn* txn, MDB_dbi dbi) {
      std::string key = of::message_key("plan-a", 6);
      MDB_val k = mval(key), old;
      REQUIRE(mdb_get(txn, dbi, &k, &old) == 0);
      auto was = of::parse_message_value({static_cast<const char*>(old.mv_data), old.mv_size});
      REQUIRE(was.is_ok());
      std::string value = of::message_value(was->appended_at_ms, 0, was->message_id, was->envelope);
      MDB_val v = mval(value);
      REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    });
    tamper(dir, of::kPendingDb, [](MDB_txn* txn, MDB_dbi dbi) {  // its entry, as if acked
      MDB_cursor* c;
      REQUIRE(mdb_cursor_open(txn, dbi, &c) == 0);
      MDB_val k, v;
      for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        auto p = of::parse_pending_value({static_cast<const char*>(v.mv_data), v.mv_size});
        if (p.is_ok() && p->plan_id == "plan-a" && p->number == 6) REQUIRE(mdb_cursor_del(c, 0) == 0);
      }
      mdb_cursor_close(c);
    });
    Run r = run_tool({"verify", dir});
    CHECK(r.code == 1);
    CHECK(r.out.find("PROBLEM messages plan=plan-a seq=6") != std::string::npos);
    CHECK(r.out.find("never queued for MongoDB") != std::string::npos);
    CHECK(r.out.find("1 problem in") != std::string::npos);
  }
  SUBCASE("a plan record whose last_seq is beyond its messages") {
    tamper(dir, of::kPlansDb, [](MDB_txn* txn, MDB_dbi dbi) {
      PlanRecord p = test::make_plan("plan-b", "user-1", "2026-11-26T02:31:00.123Z");
      p.version = 2;
      p.last_seq = 99;
      std::string key = "plan-b", value = encode_plan(p);
      MDB_val k = mval(key), v = mval(value);
      REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    });
    Run r = run_tool({"verify", dir});
    CHECK(r.code == 1);
    CHECK(r.out.find("PROBLEM plans plan=plan-b") != std::string::npos);
    CHECK(r.out.find("last_seq 99 is above the highest stored seq 3") != std::string::npos);
  }
}

TEST_CASE("errors: missing path, not an outbox, newer format version, corrupt file") {
  TempDir tmp_base("tools-errors");
  const std::string& base = tmp_base.path;
  Run missing = run_tool({"inspect", base + "/nope"});
  CHECK(missing.code == 3);
  CHECK(missing.err.find("does not exist") != std::string::npos);

  Run empty = run_tool({"verify", base});
  CHECK(empty.code == 4);
  CHECK(empty.err.find("not an outbox") != std::string::npos);

  std::string dir = base + "/ob";
  {
    auto ob = open_outbox(dir);
    fill(*ob, "plan-a", 2);
  }
  tamper(dir, of::kMetaDb, [](MDB_txn* txn, MDB_dbi dbi) {
    std::string key(of::kFormatVersionKey), value;
    of::put_be32(&value, of::kFormatVersion + 1);
    MDB_val k = mval(key), v = mval(value);
    REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
  });
  for (const char* cmd : {"inspect", "dump", "verify"}) {
    Run r = run_tool({cmd, dir});
    CHECK(r.code == 7);
    CHECK(r.err.find("format version 2") != std::string::npos);
  }
  CHECK(run_tool({"dead-letters", "list", dir}).code == 7);

  std::string junk = base + "/junk";
  std::filesystem::create_directories(junk);
  {
    std::FILE* f = std::fopen((junk + "/data.mdb").c_str(), "wb");
    REQUIRE(f != nullptr);
    std::string garbage(64 << 10, 'x');
    std::fwrite(garbage.data(), 1, garbage.size(), f);
    std::fclose(f);
  }
  Run corrupt = run_tool({"inspect", junk});
  CHECK(corrupt.code == 6);

  CHECK(run_tool({"frobnicate"}).code == 2);
  Run help = run_tool({"--help"});
  CHECK(help.code == 0);
  CHECK(help.out.find("Exit codes:") != std::string::npos);
}

TEST_CASE("read-only commands work while another process holds the outbox for writing; writes are refused") {
  TempDir tmp_dir("tools-live");
  const std::string& dir = tmp_dir.path;
  auto ob = open_outbox(dir);
  fill(*ob, "plan-a", 3);
  auto pending = ob->read_pending(1, 1 << 20);
  REQUIRE(pending.is_ok());
  REQUIRE(ob->dead_letter_sync(pending->at(0).id, "boom").is_ok());

  Run inspect = run_tool({"inspect", "--json", dir});
  REQUIRE(inspect.code == 0);
  CHECK(inspect.out.find(R"("messages":3)") != std::string::npos);
  // A commit made now is seen by the next run: no stale view, no lock taken.
  fill(*ob, "plan-b", 2);
  inspect = run_tool({"inspect", "--json", dir});
  REQUIRE(inspect.code == 0);
  CHECK(inspect.out.find(R"("messages":5)") != std::string::npos);
  CHECK(run_tool({"verify", dir}).code == 0);
  CHECK(lines(run_tool({"dump", dir}).out).size() == 5);
  CHECK(run_tool({"replay", dir, "--dry-run"}).code == 0);
  Run list = run_tool({"dead-letters", "list", dir});
  CHECK(list.code == 0);
  CHECK(list.out.find("1 dead letter") != std::string::npos);

  Run retry = run_tool({"dead-letters", "retry", dir, "--all"});
  CHECK(retry.code == 5);
  CHECK(retry.err.find("stop agentd first") != std::string::npos);
  CHECK(run_tool({"dead-letters", "drop", dir, "--all", "--yes"}).code == 5);
  CHECK(run_tool({"replay", dir, "--mongo-uri", test::test_mongo_uri(), "--ack"}).code == 5);
  // The writer is unaffected.
  auto more = ob->append_sync(test::message_request("plan-a", "after-tool"));
  REQUIRE(more.is_ok());
  CHECK(more->seq == 4);
}

TEST_CASE("dead-letters list, retry and drop") {
  TempDir tmp_dir("tools-dead");
  const std::string& dir = tmp_dir.path;
  std::vector<uint64_t> dead_ids;
  {
    auto ob = open_outbox(dir);
    fill(*ob, "plan-a", 4);
    auto pending = ob->read_pending(100, 1 << 20);
    REQUIRE(pending.is_ok());
    for (const auto& e : *pending) {
      if (e.kind == PendingKind::kMessage && e.seq >= 2) {
        REQUIRE(ob->dead_letter_sync(e.id, "rejected seq " + std::to_string(e.seq)).is_ok());
        dead_ids.push_back(e.id);
      }
    }
  }
  REQUIRE(dead_ids.size() == 3);
  Run list = run_tool({"dead-letters", "list", dir});
  REQUIRE(list.code == 0);
  CHECK(list.out.find("id " + std::to_string(dead_ids[0]) + "  message  plan plan-a  seq 2") != std::string::npos);
  CHECK(list.out.find("error: rejected seq 4") != std::string::npos);
  CHECK(list.out.find("3 dead letters") != std::string::npos);
  Run json = run_tool({"dead-letters", "list", "--json", dir});
  REQUIRE(json.code == 0);
  CHECK(lines(json.out).size() == 3);
  CHECK(json.out.find(R"("kind":"message","plan_id":"plan-a","seq":3)") != std::string::npos);

  // retry one: back on the pending queue.
  Run retry = run_tool({"dead-letters", "retry", dir, "--id", std::to_string(dead_ids[0])});
  REQUIRE(retry.code == 0);
  CHECK(retry.out.find("retried 1 dead letter") != std::string::npos);
  Run after = run_tool({"inspect", "--json", dir});
  CHECK(after.out.find(R"("pending":4,)") != std::string::npos);  // seq 1, 2 plan records, retried seq 2
  CHECK(after.out.find(R"("dead_letters":2)") != std::string::npos);

  // Unknown id, no choice, no confirmation.
  CHECK(run_tool({"dead-letters", "retry", dir, "--id", "999999"}).code == 10);
  CHECK(run_tool({"dead-letters", "drop", dir}).code == 2);
  Run refused = run_tool({"dead-letters", "drop", dir, "--all"});
  CHECK(refused.code == 9);
  CHECK(refused.err.find("pass --yes") != std::string::npos);
  CHECK(run_tool({"inspect", "--json", dir}).out.find(R"("dead_letters":2)") != std::string::npos);

  Run drop = run_tool({"dead-letters", "drop", dir, "--id", std::to_string(dead_ids[1]), "--yes"});
  REQUIRE(drop.code == 0);
  CHECK(run_tool({"inspect", "--json", dir}).out.find(R"("dead_letters":1)") != std::string::npos);
  drop = run_tool({"dead-letters", "drop", dir, "--all", "--yes"});
  REQUIRE(drop.code == 0);
  CHECK(run_tool({"inspect", "--json", dir}).out.find(R"("dead_letters":0)") != std::string::npos);
  CHECK(run_tool({"verify", dir}).code == 0);
}

TEST_CASE("replay pushes byte-equal documents to MongoDB; a rerun changes nothing") {
  std::string uri = test::test_mongo_uri();
  TempDir tmp_dir("tools-replay");
  const std::string& dir = tmp_dir.path;
  std::vector<std::string> a, b;
  {
    auto ob = open_outbox(dir);
    a = fill(*ob, "plan-a", 7);
    b = fill(*ob, "plan-b", 3);
  }
  Run dry = run_tool({"replay", dir, "--dry-run"});
  REQUIRE(dry.code == 0);
  CHECK(dry.out.find("would push 14 items: 10 messages, 4 plan records") != std::string::npos);
  CHECK(run_tool({"replay", dir}).code == 2);  // no --mongo-uri

  // One plan first, then the pending queue: what is there already is skipped.
  Run pa = run_tool({"replay", dir, "--mongo-uri", uri, "--plan", "plan-a"});
  REQUIRE(pa.code == 0);
  CHECK(pa.out.find("8 items, 7 messages upserted, 0 already in MongoDB (skipped), 1 plan records") !=
        std::string::npos);
  Run first = run_tool({"replay", dir, "--mongo-uri", uri, "--batch", "4"});
  REQUIRE(first.code == 0);
  CHECK(first.out.find("14 items, 3 messages upserted, 7 already in MongoDB (skipped), 4 plan records") !=
        std::string::npos);
  CHECK(first.err.find("replay: 14/14 items") != std::string::npos);  // plain progress lines off a TTY

  auto pool = MongoPool::open(uri);
  REQUIRE(pool.is_ok());
  MessageStore store(pool->get());
  auto check_docs = [&] {
    for (const auto& [plan, want] : {std::pair{std::string("plan-a"), a}, std::pair{std::string("plan-b"), b}}) {
      auto got = store.read_messages(plan, 0, 100);
      REQUIRE_MESSAGE(got.is_ok(), got.status().to_string());
      REQUIRE(got->size() == want.size());
      for (size_t i = 0; i < want.size(); ++i) CHECK(*(*got)[i].bytes == want[i]);
    }
    CHECK(*store.count(kMessagesCollection) == 10);
    auto plan = store.get_plan("plan-b");
    REQUIRE(plan.is_ok());
    REQUIRE(plan->has_value());
    CHECK((*plan)->version == 2);
    CHECK((*plan)->status == PlanStatus::kCompleted);
  };
  check_docs();

  // Nothing was acked: the rerun finds every message already there.
  Run again = run_tool({"replay", dir, "--mongo-uri", uri, "--progress", "1"});  // the terminal's bar
  REQUIRE(again.code == 0);
  CHECK(again.err.find("\r[##############################] 14/14 100%") != std::string::npos);
  CHECK(again.err.find("items/s") != std::string::npos);
  CHECK(again.out.find("14 items, 0 messages upserted, 10 already in MongoDB (skipped)") != std::string::npos);
  check_docs();

  // --all and --plan push the same documents; --ack drains the pending queue.
  Run one = run_tool({"replay", dir, "--mongo-uri", uri, "--plan", "plan-b"});
  REQUIRE(one.code == 0);
  CHECK(one.out.find("4 items, 0 messages upserted, 3 already in MongoDB (skipped), 1 plan records") !=
        std::string::npos);
  Run ack = run_tool({"replay", dir, "--mongo-uri", uri, "--ack"});
  REQUIRE(ack.code == 0);
  CHECK(ack.out.find("14 pending entries acked") != std::string::npos);
  CHECK(run_tool({"inspect", "--json", dir}).out.find(R"("pending":0,)") != std::string::npos);
  Run all = run_tool({"replay", dir, "--mongo-uri", uri, "--all"});
  REQUIRE(all.code == 0);
  CHECK(all.out.find("12 items, 0 messages upserted, 10 already in MongoDB (skipped)") != std::string::npos);
  check_docs();
  CHECK(run_tool({"replay", dir, "--mongo-uri", uri, "--plan", "nope"}).code == 10);
  CHECK(run_tool({"replay", dir, "--mongo-uri", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"}).code == 8);
}
