// MessageStore against the real test database (FerretDB fixture, or
// $AGENTD_TEST_MONGO_URI): layout, idempotent upserts, the plan version
// guard, reads, and error classification.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/envelope.h"
#include "core/json.h"
#include "core/plan_record.h"
#include "store/message_store.h"
#include "tests/flusher/flusher_test_util.h"
#include "tests/support/ferretdb.h"
#include "tests/support/process.h"

using namespace agentd;
using agentd::test::make_envelope;
using agentd::test::make_plan;

namespace {

std::unique_ptr<MongoPool> open_pool(const std::string& uri) {
  auto pool = MongoPool::open(uri);
  REQUIRE_MESSAGE(pool.is_ok(), pool.status().to_string());
  return std::move(*pool);
}

}  // namespace

TEST_CASE("ensure_indexes is idempotent and the unique indexes hold") {
  auto pool = open_pool(test::test_mongo_uri());
  MessageStore store(pool.get());
  REQUIRE_MESSAGE(store.ensure_indexes().is_ok(), "first");
  Status again = store.ensure_indexes();
  REQUIRE_MESSAGE(again.is_ok(), again.to_string());

  // message_id is unique per plan, as in the outbox: the same id in another
  // plan lands; in the same plan under another seq it is a permanent
  // duplicate-key rejection, and no document appears.
  std::string a = make_envelope("plan-a", 1, R"({"x":1})", "same-id");
  std::string b = make_envelope("plan-b", 1, R"({"x":1})", "same-id");
  std::vector<MessageDoc> first{{"plan-a", 1, a}};
  REQUIRE(store.upsert_messages(first).is_ok());
  std::vector<MessageDoc> second{{"plan-b", 1, b}};
  WriteStatus other_plan = store.upsert_messages(second);
  CHECK_MESSAGE(other_plan.is_ok(), other_plan.to_status().to_string());
  std::string a2 = make_envelope("plan-a", 2, R"({"x":2})", "same-id");
  std::vector<MessageDoc> third{{"plan-a", 2, a2}};
  WriteStatus st = store.upsert_messages(third);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.failure().kind == FailureKind::kPermanent);
  CHECK(st.failure().reason == "duplicate_key");
  auto exists = store.message_exists("plan-a", 2);
  REQUIRE(exists.is_ok());
  CHECK_FALSE(*exists);
  CHECK(*store.count(kMessagesCollection) == 2);
}

TEST_CASE("ensure_indexes migrates the global unique message_id index of earlier versions to (plan_id, message_id)") {
  auto pool = open_pool(test::test_mongo_uri());
  {
    // What agentd before issue 13 created.
    auto lease = pool->lease();
    mongoc_database_t* db = mongoc_client_get_database(lease.get(), pool->database().c_str());
    bson_t* cmd = BCON_NEW("createIndexes", "messages", "indexes", "[", "{", "key", "{", "message_id", BCON_INT32(1),
                           "}", "name", "message_id", "unique", BCON_BOOL(true), "}", "]");
    bson_error_t err;
    REQUIRE_MESSAGE(mongoc_database_write_command_with_opts(db, cmd, nullptr, nullptr, &err), err.message);
    bson_destroy(cmd);
    mongoc_database_destroy(db);
  }
  MessageStore store(pool.get());
  Status st = store.ensure_indexes();
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  std::string a = make_envelope("plan-1", 1, R"({"x":1})", "client-id-7");
  std::string b = make_envelope("plan-2", 1, R"({"x":1})", "client-id-7");
  std::vector<MessageDoc> one{{"plan-1", 1, a}}, two{{"plan-2", 1, b}};
  REQUIRE(store.upsert_messages(one).is_ok());
  WriteStatus ws = store.upsert_messages(two);
  CHECK_MESSAGE(ws.is_ok(), ws.to_status().to_string());
  CHECK(*store.count(kMessagesCollection) == 2);
  REQUIRE(store.ensure_indexes().is_ok());  // idempotent once migrated
}

TEST_CASE("messages: byte-equal documents, seq order, and replays never overwrite") {
  auto pool = open_pool(test::test_mongo_uri());
  MessageStore store(pool.get());
  REQUIRE(store.ensure_indexes().is_ok());

  std::vector<std::string> bytes;
  std::vector<MessageDoc> batch;
  for (uint64_t seq = 1; seq <= 30; ++seq) {
    bytes.push_back(
        make_envelope("p1", seq, R"({"content":"héllo \"quoted\"","n":12345678901,"f":0.5,"a":[1,{"b":null}]})"));
    bytes.push_back(make_envelope("p2", seq));
  }
  for (size_t i = 0; i < bytes.size(); ++i) batch.push_back({i % 2 ? "p2" : "p1", i / 2 + 1, bytes[i]});
  REQUIRE(store.upsert_messages(batch).is_ok());
  CHECK(*store.count(kMessagesCollection) == 60);

  auto all = store.read_messages("p1", 0, 1000);
  REQUIRE_MESSAGE(all.is_ok(), all.status().to_string());
  REQUIRE(all->size() == 30);
  for (size_t i = 0; i < 30; ++i) {
    CHECK((*all)[i].seq == i + 1);
    CHECK(*(*all)[i].bytes == bytes[2 * i]);
  }
  auto page = store.read_messages("p2", 10, 5);
  REQUIRE(page.is_ok());
  REQUIRE(page->size() == 5);
  CHECK((*page)[0].seq == 11);
  CHECK(*(*page)[4].bytes == bytes[2 * 14 + 1]);
  CHECK(store.read_messages("p2", 30, 10)->empty());
  CHECK(store.read_messages("nope", 0, 10)->empty());

  // Replay of the whole batch: a no-op. A "replay" carrying different bytes
  // for an existing _id: a conflict, and nothing is overwritten.
  REQUIRE(store.upsert_messages(batch).is_ok());
  std::string other = make_envelope("p1", 3, R"({"content":"DIFFERENT"})");
  std::vector<MessageDoc> clash{{"p1", 3, other}};
  WriteStatus ws = store.upsert_messages(clash);
  REQUIRE_FALSE(ws.is_ok());
  CHECK(ws.failure().reason == "conflict");
  CHECK(*store.count(kMessagesCollection) == 60);
  auto again = store.read_messages("p1", 2, 1);
  REQUIRE(again.is_ok());
  REQUIRE(again->size() == 1);
  CHECK(*(*again)[0].bytes == bytes[4]);
}

TEST_CASE("a batch mixing existing and new documents writes the new ones and keeps the old") {
  // Both ways a replay is written: the default (find the _ids MongoDB holds,
  // insert the rest) and the `$setOnInsert` upserts alone, with more than
  // FerretDB's ~100 matched statements per update command, so the upserts
  // must chunk.
  for (bool fast : {true, false}) {
    CAPTURE(fast);
    auto pool = open_pool(test::test_mongo_uri());
    MessageStoreOptions o;
    o.insert_fast_path = fast;
    MessageStore store(pool.get(), o);
    REQUIRE(store.ensure_indexes().is_ok());
    std::vector<std::string> bytes;
    for (uint64_t seq = 1; seq <= 260; ++seq) bytes.push_back(make_envelope("mix", seq));
    std::vector<MessageDoc> first, all;
    for (uint64_t seq = 1; seq <= 260; ++seq) {
      if (seq <= 200) first.push_back({"mix", seq, bytes[seq - 1]});
      all.push_back({"mix", seq, bytes[seq - 1]});
    }
    REQUIRE(store.upsert_messages(first).is_ok());
    CHECK(store.replayed_documents() == 0);
    WriteStatus st = store.upsert_messages(all);
    REQUIRE_MESSAGE(st.is_ok(), st.to_status().to_string());
    CHECK(*store.count(kMessagesCollection) == 260);
    if (fast) {
      // At least the 200 of the first write (FerretDB ignores `ordered`, so
      // its failed insert may have written some of the new ones too).
      CHECK(store.replayed_documents() >= 200);
      CHECK(store.replayed_documents() <= 260);
    } else {
      CHECK(store.replayed_documents() == 0);
    }
    auto got = store.read_messages("mix", 0, 1000);
    REQUIRE(got.is_ok());
    REQUIRE(got->size() == 260);
    for (size_t i = 0; i < got->size(); ++i) CHECK(*(*got)[i].bytes == bytes[i]);
  }
}

TEST_CASE("a document FerretDB rejects is a permanent failure; bytes that are not JSON never reach the server") {
  auto pool = open_pool(test::test_mongo_uri());
  MessageStore store(pool.get());
  REQUIRE(store.ensure_indexes().is_ok());
  std::string bad = make_envelope("p", 1, R"({"matrix":[[1,2],[3,4]]})");
  std::vector<MessageDoc> one{{"p", 1, bad}};
  WriteStatus st = store.upsert_messages(one);
  if (st.is_ok()) {
    MESSAGE("this server accepts nested arrays (a real MongoDB); nothing to reject");
  } else {
    CHECK(st.failure().kind == FailureKind::kPermanent);
    CHECK(st.to_status().code() == Code::kInvalidArgument);
  }
  std::vector<MessageDoc> garbage{{"p", 2, "{not json"}};
  WriteStatus g = store.upsert_messages(garbage);
  REQUIRE_FALSE(g.is_ok());
  CHECK(g.failure().kind == FailureKind::kPermanent);
  CHECK(g.failure().reason == "invalid");
}

TEST_CASE("plans: the version guard keeps the newest, and reads decode the record") {
  auto pool = open_pool(test::test_mongo_uri());
  MessageStore store(pool.get());
  REQUIRE(store.ensure_indexes().is_ok());

  PlanRecord v2 = make_plan("plan-1", "alice", "2026-11-26T01:00:00.000Z", 2, PlanStatus::kRunning);
  PlanRecord v1 = make_plan("plan-1", "alice", "2026-11-26T01:00:00.000Z", 1, PlanStatus::kCreated);
  PlanRecord v3 = make_plan("plan-1", "alice", "2026-11-26T01:00:00.000Z", 3, PlanStatus::kCompleted);
  REQUIRE(store.upsert_plan("plan-1", 2, encode_plan(v2)).is_ok());
  WriteStatus older = store.upsert_plan("plan-1", 1, encode_plan(v1));
  REQUIRE_MESSAGE(older.is_ok(), older.to_status().to_string());
  REQUIRE(store.upsert_plan("plan-1", 2, encode_plan(v2)).is_ok());
  auto got = store.get_plan("plan-1");
  REQUIRE_MESSAGE(got.is_ok(), got.status().to_string());
  REQUIRE(got->has_value());
  CHECK(encode_plan(**got) == encode_plan(v2));

  REQUIRE(store.upsert_plan("plan-1", 3, encode_plan(v3)).is_ok());
  CHECK(encode_plan(**store.get_plan("plan-1")) == encode_plan(v3));
  REQUIRE(store.upsert_plan("plan-1", 1, encode_plan(v1)).is_ok());
  CHECK(encode_plan(**store.get_plan("plan-1")) == encode_plan(v3));
  CHECK(*store.count(kPlansCollection) == 1);
  CHECK_FALSE(store.get_plan("missing")->has_value());

  // list_plans: the user's plans, newest created_at first.
  REQUIRE(
      store.upsert_plan("plan-0", 1, encode_plan(make_plan("plan-0", "alice", "2026-11-26T00:00:00.000Z", 1))).is_ok());
  REQUIRE(
      store.upsert_plan("plan-2", 1, encode_plan(make_plan("plan-2", "alice", "2026-11-26T02:00:00.000Z", 1))).is_ok());
  REQUIRE(
      store.upsert_plan("plan-b", 1, encode_plan(make_plan("plan-b", "bob", "2026-11-26T03:00:00.000Z", 1))).is_ok());
  auto list = store.list_plans("alice", 10);
  REQUIRE_MESSAGE(list.is_ok(), list.status().to_string());
  REQUIRE(list->size() == 3);
  CHECK((*list)[0].plan_id == "plan-2");
  CHECK((*list)[1].plan_id == "plan-1");
  CHECK((*list)[2].plan_id == "plan-0");
  CHECK(store.list_plans("alice", 2)->size() == 2);
  CHECK(store.list_plans("carol", 10)->empty());
}

TEST_CASE("dead letters are recorded once") {
  auto pool = open_pool(test::test_mongo_uri());
  MessageStore store(pool.get());
  DeadLetterDoc d;
  d.plan_id = "p";
  d.seq_or_version = 7;
  d.pending_id = 42;
  d.error = "nested arrays are not supported";
  d.dead_at_ms = 1;
  d.bytes = "{\"seq\":7}";
  REQUIRE(store.insert_dead_letter(d).is_ok());
  REQUIRE(store.insert_dead_letter(d).is_ok());
  d.is_plan = true;
  REQUIRE(store.insert_dead_letter(d).is_ok());
  CHECK(*store.count(kDeadLettersCollection) == 2);
}

TEST_CASE("an unreachable server is a transient failure, quickly") {
  int port = test::free_port();
  auto pool =
      open_pool("mongodb://127.0.0.1:" + std::to_string(port) + "/x?serverSelectionTimeoutMS=200&connectTimeoutMS=200");
  MessageStore store(pool.get());
  std::string e = make_envelope("p", 1);
  std::vector<MessageDoc> one{{"p", 1, e}};
  WriteStatus st = store.upsert_messages(one);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.failure().transient());
  CHECK(st.to_status().code() == Code::kUnavailable);
  WriteStatus p = store.upsert_plan("p", 1, encode_plan(make_plan("p", "u", "2026-11-26T00:00:00.000Z", 1)));
  REQUIRE_FALSE(p.is_ok());
  CHECK(p.failure().transient());
  CHECK(store.ensure_indexes().code() == Code::kUnavailable);
  CHECK(store.read_messages("p", 0, 10).status().code() == Code::kUnavailable);
  CHECK(store.get_plan("p").status().code() == Code::kUnavailable);
}

TEST_CASE("classify: driver and server errors") {
  auto err = [](uint32_t domain, uint32_t code) {
    bson_error_t e{};
    e.domain = domain;
    e.code = code;
    return e;
  };
  CHECK(classify(err(MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_SOCKET), nullptr).reason == "network");
  CHECK(classify(err(MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_CONNECT), nullptr).transient());
  CHECK(classify(err(MONGOC_ERROR_SERVER_SELECTION, MONGOC_ERROR_SERVER_SELECTION_FAILURE), nullptr).reason ==
        "server_selection");
  CHECK(classify(err(MONGOC_ERROR_SERVER, 10107), nullptr).reason == "not_primary");
  CHECK(classify(err(MONGOC_ERROR_SERVER, 91), nullptr).reason == "shutdown");
  CHECK(classify(err(MONGOC_ERROR_SERVER, 89), nullptr).reason == "timeout");
  CHECK(classify(err(MONGOC_ERROR_WRITE_CONCERN, 64), nullptr).reason == "write_concern");
  CHECK(classify(err(MONGOC_ERROR_BSON, MONGOC_ERROR_BSON_INVALID), nullptr).kind == FailureKind::kPermanent);

  // The reply wins over the error's domain: a write-concern error is
  // transient even when the write itself went through; writeErrors carry the
  // per-document code.
  bson_t* wce = BCON_NEW("writeConcernErrors", "[", "{", "code", BCON_INT32(64), "errmsg", "waiting", "}", "]");
  CHECK(classify(err(MONGOC_ERROR_SERVER, 64), wce).reason == "write_concern");
  bson_destroy(wce);
  bson_t* we = BCON_NEW("writeErrors", "[", "{", "index", BCON_INT32(0), "code", BCON_INT32(2), "errmsg",
                        "nested arrays are not supported", "}", "]");
  MongoFailure f = classify(err(MONGOC_ERROR_SERVER, 2), we);
  CHECK(f.kind == FailureKind::kPermanent);
  CHECK(f.message.find("nested arrays") != std::string::npos);
  bson_destroy(we);
  bson_t* labeled = BCON_NEW("errorLabels", "[", "RetryableWriteError", "]");
  CHECK(classify(err(MONGOC_ERROR_SERVER, 2), labeled).transient());
  bson_destroy(labeled);
}

TEST_CASE(
    "classify: only a per-document code saying the document is bad is permanent; command-level and unknown codes "
    "retry") {
  auto err = [](uint32_t domain, uint32_t code) {
    bson_error_t e{};
    e.domain = domain;
    e.code = code;
    return e;
  };
  auto write_error = [&](int32_t code) {
    bson_t* we =
        BCON_NEW("writeErrors", "[", "{", "index", BCON_INT32(0), "code", BCON_INT32(code), "errmsg", "x", "}", "]");
    MongoFailure f = classify(err(MONGOC_ERROR_COMMAND, MONGOC_ERROR_COMMAND_INVALID_ARG + 100), we);
    bson_destroy(we);
    return f;
  };
  // An outage or a quota answers every document the same way: those retry.
  for (int32_t code :
       {14031 /* OutOfDiskSpace */, 24 /* LockTimeout */, 216 /* ElectionInProgress */, 8000 /* AtlasError */,
        16500 /* Cosmos DB RequestRateTooLarge */, 12345 /* unknown */, 2 /* BadValue */, 121, 10334}) {
    CAPTURE(code);
    CHECK(classify(err(MONGOC_ERROR_SERVER, code), nullptr).transient());
    CHECK(classify(err(MONGOC_ERROR_QUERY, code), nullptr).transient());
  }
  for (int32_t code : {14031, 24, 216, 8000, 16500, 12345, 1, 112}) {
    CAPTURE(code);
    CHECK(write_error(code).transient());
  }
  CHECK(write_error(12345).reason == "unknown");
  // The document itself is bad: permanent.
  CHECK(write_error(2).reason == "rejected");
  CHECK(write_error(14).reason == "rejected");
  CHECK(write_error(52).reason == "rejected");
  CHECK(write_error(121).reason == "invalid");
  CHECK(write_error(10334).reason == "too_large");
  CHECK(write_error(11000).reason == "duplicate_key");
  CHECK_FALSE(write_error(11000).transient());
  CHECK_FALSE(classify(err(MONGOC_ERROR_SERVER, 11000), nullptr).transient());  // createIndexes over bad data
}

TEST_CASE("a seq handed out again with other bytes is a conflict, never a replay (insert and upsert paths)") {
  auto pool = open_pool(test::test_mongo_uri());
  for (bool fast : {true, false}) {
    CAPTURE(fast);
    MessageStoreOptions o;
    o.insert_fast_path = fast;
    MessageStore store(pool.get(), o);
    const std::string plan = fast ? "p-conflict-fast" : "p-conflict-upsert";
    std::string old1 = make_envelope(plan, 1, R"({"content":"old one"})");
    std::string old2 = make_envelope(plan, 2, R"({"content":"old two"})");
    std::vector<MessageDoc> first{{plan, 1, old1}, {plan, 2, old2}};
    REQUIRE(store.upsert_messages(first).is_ok());
    uint64_t replayed = store.replayed_documents();
    // The same bytes again: a replay, fine.
    REQUIRE(store.upsert_messages(first).is_ok());
    // Seq 2 again, other bytes (an outbox restored from a backup): refused.
    std::string new2 = make_envelope(plan, 2, R"({"content":"new two"})");
    std::string new3 = make_envelope(plan, 3, R"({"content":"new three"})");
    std::vector<MessageDoc> again{{plan, 2, new2}, {plan, 3, new3}};
    WriteStatus ws = store.upsert_messages(again);
    REQUIRE_FALSE(ws.is_ok());
    CHECK_FALSE(ws.failure().transient());
    CHECK(ws.failure().reason == "conflict");
    CHECK(ws.failure().message.find(plan + ":2") != std::string::npos);
    auto stored = store.read_messages(plan, 0, 10);
    REQUIRE(stored.is_ok());
    REQUIRE(stored->size() >= 2);
    CHECK(*(*stored)[1].bytes == old2);                           // never overwritten
    if (fast) CHECK(store.replayed_documents() == replayed + 2);  // only the true replay counted
  }
}

TEST_CASE("the default write concern is majority with journal") {
  MessageStoreOptions o;
  CHECK(o.write_concern.majority);
  CHECK(o.write_concern.journal);
}

// Issue 13, item 6. FerretDB accepts every write concern (it ignores the
// field), so a refusal cannot be produced by the test server: these are
// MongoDB's answers as the driver hands them over (error domain and code,
// the bulk reply), from validateWriteConcern() and the replica set's checks.
TEST_CASE("a refused write concern is a retried write_concern failure, never a dead letter; timeouts are no refusal") {
  auto err = [](uint32_t domain, uint32_t code, const char* msg) {
    bson_error_t e{};
    e.domain = domain;
    e.code = code;
    bson_strncpy(e.message, msg, sizeof e.message);
    return e;
  };
  // The bulk reply the driver builds for a command-level error: counts, no
  // per-document error.
  bson_t* empty = BCON_NEW("nInserted", BCON_INT32(0), "nMatched", BCON_INT32(0), "nModified", BCON_INT32(0),
                           "nRemoved", BCON_INT32(0), "nUpserted", BCON_INT32(0), "writeErrors", "[", "]");
  for (const char* refusal :
       {"cannot use 'j' option when a host does not have journaling enabled",
        "cannot use 'w' > 1 when a host is not replicated", "cannot use 'w' > 1 with a standalone",
        "cannot use non-majority 'w' mode \"nosuchtag\" when a host is not a member of a replica "
        "set"}) {
    CAPTURE(refusal);
    MongoFailure f = classify(err(MONGOC_ERROR_SERVER, 2, refusal), empty);
    CHECK(f.transient());
    CHECK(f.reason == "write_concern");
    CHECK(write_concern_refused(f));
    // MongoDB 2.6 put it in writeErrors: still not the document's fault.
    bson_t* per_doc =
        BCON_NEW("writeErrors", "[", "{", "index", BCON_INT32(0), "code", BCON_INT32(2), "errmsg", refusal, "}", "]");
    MongoFailure d = classify(err(MONGOC_ERROR_SERVER, 65, "batch item errors occurred"), per_doc);
    CHECK(d.transient());
    CHECK(d.reason == "write_concern");
    CHECK(write_concern_refused(d));
    bson_destroy(per_doc);
  }
  // A replica set: applied, then the wait refused (writeConcernErrors).
  for (auto [code, msg] : {std::pair<int32_t, const char*>{79,
                                                           "No write concern mode named 'nosuchtag' found in replica "
                                                           "set configuration"},
                           {100, "Not enough data-bearing nodes"}}) {
    CAPTURE(msg);
    bson_t* wce = BCON_NEW("nInserted", BCON_INT32(1), "writeErrors", "[", "]", "writeConcernErrors", "[", "{", "code",
                           BCON_INT32(code), "errmsg", msg, "}", "]");
    MongoFailure f = classify(err(MONGOC_ERROR_WRITE_CONCERN, static_cast<uint32_t>(code), msg), wce);
    CHECK(f.transient());
    CHECK(write_concern_refused(f));
    bson_destroy(wce);
  }
  // A wait that timed out or was interrupted is retried like any outage,
  // and is no reason to stop agentd at start.
  bson_t* timeout =
      BCON_NEW("writeConcernErrors", "[", "{", "code", BCON_INT32(64), "errmsg", "waiting for replication timed out",
               "errInfo", "{", "wtimeout", BCON_BOOL(true), "}", "}", "]");
  MongoFailure t = classify(err(MONGOC_ERROR_WRITE_CONCERN, 64, "waiting for replication timed out"), timeout);
  CHECK(t.reason == "write_concern");
  CHECK(t.transient());
  CHECK_FALSE(write_concern_refused(t));
  bson_destroy(timeout);
  // A BadValue about something else is neither (command level: retried as
  // unknown; per document: the document's fault, as before).
  MongoFailure other = classify(err(MONGOC_ERROR_SERVER, 2, "unknown option to insert command"), empty);
  CHECK(other.reason == "unknown");
  CHECK_FALSE(write_concern_refused(other));
  bson_t* nested = BCON_NEW("writeErrors", "[", "{", "index", BCON_INT32(0), "code", BCON_INT32(2), "errmsg",
                            "invalid value: { \"m\": [ [ 1 ] ] } (nested arrays are not supported)", "}", "]");
  CHECK(classify(err(MONGOC_ERROR_SERVER, 2, ""), nested).kind == FailureKind::kPermanent);
  bson_destroy(nested);
  bson_destroy(empty);
  CHECK(describe(WriteConcernOptions{}) == "{w: majority, j: true}");
  WriteConcernOptions two;
  two.majority = false;
  two.w = 2;
  two.journal = false;
  CHECK(describe(two) == "{w: 2, j: false}");
}

TEST_CASE("the start-up write-concern probe writes meta.write_concern_probe with the configured write concern") {
  auto pool = open_pool(test::test_mongo_uri());
  MessageStore store(pool.get());
  WriteStatus ok = store.probe_write_concern(1234);
  REQUIRE_MESSAGE(ok.is_ok(), ok.to_status().to_string());
  CHECK(*store.count(kMetaCollection) == 1);
  // FerretDB ignores write concern: w:5 (refused by any real standalone or
  // replica set of fewer members) is accepted here; see the test above.
  MessageStoreOptions five;
  five.write_concern.majority = false;
  five.write_concern.w = 5;
  MessageStore other(pool.get(), five);
  WriteStatus ignored = other.probe_write_concern(5678);
  CHECK_MESSAGE(ignored.is_ok(), ignored.to_status().to_string());
  CHECK(*store.count(kMetaCollection) == 1);  // one probe document, rewritten
  // Unreachable: transient, not a refusal (agentd starts; the flusher retries).
  int port = test::free_port();
  auto down =
      open_pool("mongodb://127.0.0.1:" + std::to_string(port) + "/x?serverSelectionTimeoutMS=200&connectTimeoutMS=200");
  MessageStore nowhere(down.get());
  WriteStatus st = nowhere.probe_write_concern(1);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.failure().transient());
  CHECK_FALSE(write_concern_refused(st.failure()));
}

namespace {

// Client-shaped objects the strict codec accepts (parse_strict with
// client_input, as a request body is read), each the `data` of one message:
// every one round-trips through MongoDB byte for byte.
std::vector<std::string> accepted_objects() {
  std::string deep = "\"bottom\"";
  for (int i = 0; i < 62; ++i) deep = "{\"a\":" + deep + "}";
  return {
      R"({"k":"nul\u0000inside","esc":"\"\\\n\t\u0001"})",
      R"({"ünï":"ċödé","😀":"emoji","a$b":1,"b-c":2," sp ":3})",
      R"({"min":-9223372036854775808,"max":9223372036854775807,"i32":2147483647,"i33":2147483648,"neg":-2147483649})",
      R"({"d":1.7976931348623157e308,"tiny":5e-324,"half":0.5,"one":1.0,"big":1e21,"zero":0.0})",
      deep,
      R"({"arr":[{"x":[1,2]},{"y":{}}],"e":[],"o":{},"mixed":[1,"two",true,null,{"k":[]}]})",
      R"({"t":true,"f":false,"n":null})",
      R"({"z":1,"a":{"z":2,"b":3,"a":4}})",
      R"({"s":")" + std::string(100000, 'x') + R"("})",
  };
}

// Accepted by the codec and by MongoDB, but not kept as sent by FerretDB v1
// (the test database): documented in docs/store.md. `ferret` is what
// FerretDB does: "refused" (a permanent failure: a dead letter, kept
// readable in the outbox) or the bytes of `data` it reads back.
struct FerretOnly {
  std::string data;
  std::string ferret;
};
std::vector<FerretOnly> ferretdb_only() {
  return {
      {R"({"matrix":[[1,2],[3,4]]})", "refused"},                        // nested arrays
      {R"({"negzero":-0.0})", R"({"negzero":0.0})"},                     // -0.0 stored as 0.0
      {R"({"inner":{"a":1,"_id":2}})", R"({"inner":{"_id":2,"a":1}})"},  // a nested _id moved first
  };
}

}  // namespace

// The envelope's data and metadata come from clients. Issue 13: what the
// strict codec accepts is what MongoDB accepts (this test, against the test
// database); what it refuses is a 422 at the API (net_server_test).
TEST_CASE("codec: what parse_strict accepts round-trips through the test database byte for byte") {
  auto pool = open_pool(test::test_mongo_uri());
  MessageStore store(pool.get());
  REQUIRE(store.ensure_indexes().is_ok());
  JsonLimits client;
  client.client_input = true;
  uint64_t seq = 0;
  auto write_read = [&](const std::string& data, std::string* back) -> WriteStatus {
    std::string bytes = make_envelope("codec", ++seq, data);
    std::vector<MessageDoc> one{{"codec", seq, bytes}};
    WriteStatus st = store.upsert_messages(one);
    if (!st.is_ok()) return st;
    auto msgs = store.read_messages("codec", seq - 1, 1);
    REQUIRE_MESSAGE(msgs.is_ok(), msgs.status().to_string());
    REQUIRE(msgs->size() == 1);
    auto e = decode_envelope(*(*msgs)[0].bytes);
    REQUIRE_MESSAGE(e.is_ok(), e.status().to_string());
    // Only data may differ: the bytes are the sent ones with data replaced.
    std::string want = bytes;
    want.replace(want.find("\"data\":") + 7, data.size(), e->data);
    CHECK(*(*msgs)[0].bytes == want);
    *back = e->data;
    return st;
  };
  for (const std::string& obj : accepted_objects()) {
    CAPTURE(obj.substr(0, 120));
    auto parsed = parse_strict(obj, client);
    REQUIRE_MESSAGE(parsed.is_ok(), parsed.status().to_string());
    const std::string data = write_canonical(*parsed);
    std::string back;
    WriteStatus st = write_read(data, &back);
    REQUIRE_MESSAGE(st.is_ok(), st.to_status().to_string());
    CHECK(back == data);
  }
  for (const FerretOnly& f : ferretdb_only()) {
    CAPTURE(f.data);
    REQUIRE(parse_strict(f.data, client).is_ok());
    std::string back;
    WriteStatus st = write_read(f.data, &back);
    if (!st.is_ok()) {
      CHECK(f.ferret == "refused");
      CHECK(st.failure().kind == FailureKind::kPermanent);
    } else {
      CHECK_MESSAGE((back == f.data || back == f.ferret), back);  // MongoDB: as sent; FerretDB: as documented
    }
  }
  // An empty key: the driver refuses the document before it is sent (any
  // server), so the codec refuses it in request bodies.
  CHECK_FALSE(parse_strict(R"({"":1})", client).is_ok());
  std::string back;
  WriteStatus empty = write_read(R"({"":1})", &back);
  REQUIRE_FALSE(empty.is_ok());
  CHECK(empty.failure().kind == FailureKind::kPermanent);
}
