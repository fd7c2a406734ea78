// Writes and reads a document in the real test database (FerretDB fixture,
// or $AGENTD_TEST_MONGO_URI) through mongo-c-driver.
#include <doctest/doctest.h>

#include "core/envelope.h"
#include "store/bson_codec.h"
#include "store/mongo.h"
#include "tests/support/ferretdb.h"

using namespace agentd;

TEST_CASE("an envelope written through mongo-c-driver reads back byte-equal") {
  auto pool = MongoPool::open(test::test_mongo_uri());
  REQUIRE_MESSAGE(pool.is_ok(), pool.status().to_string());
  REQUIRE_MESSAGE((*pool)->ping().is_ok(), (*pool)->ping().to_string());
  CHECK((*pool)->database().rfind("agentd_test_", 0) == 0);

  MessageDraft d;
  d.type = "agent_message";
  d.plan_id = "plan-smoke";
  d.user_id = "u";
  d.session_id = "s";
  d.data = R"({"agent_name":"A","content":"héllo","score":0.25,"n":12345678901})";
  std::string env = finalize(1, prepare(d).tail);
  auto doc = json_to_bson(env, "plan-smoke:1");
  REQUIRE(doc.is_ok());

  auto lease = (*pool)->lease();
  mongoc_collection_t* coll = mongoc_client_get_collection(lease.get(), (*pool)->database().c_str(), "messages");
  bson_error_t err;
  bool ok = mongoc_collection_insert_one(coll, doc->get(), nullptr, nullptr, &err);
  REQUIRE_MESSAGE(ok, describe(err));

  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, "_id", "plan-smoke:1");
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(coll, &filter, nullptr, nullptr);
  const bson_t* got = nullptr;
  REQUIRE(mongoc_cursor_next(cur, &got));
  auto json = bson_to_json(got, {"_id"});
  REQUIRE(json.is_ok());
  CHECK(*json == env);
  CHECK_FALSE(mongoc_cursor_next(cur, &got));
  CHECK_FALSE(mongoc_cursor_error(cur, &err));
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);

  // A second insert of the same _id is a duplicate-key error (unique _id).
  CHECK_FALSE(mongoc_collection_insert_one(coll, doc->get(), nullptr, nullptr, &err));
  CHECK(err.code == 11000);
  mongoc_collection_destroy(coll);
}
