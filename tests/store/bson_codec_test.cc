#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "core/envelope.h"
#include "store/bson_codec.h"
#include "store/message_store.h"

using namespace agentd;

TEST_CASE("JSON -> BSON -> JSON is byte-identical for canonical input") {
  const char* cases[] = {
      R"({"a":1,"b":-2147483649,"c":1.5,"d":true,"e":null,"f":"x\"y","g":{"h":[1,"2",[],{}]},"i":1.0})",
      R"({})",
      R"({"big":9223372036854775807,"neg":-9223372036854775808,"tiny":5e-324})",
  };
  for (const char* c : cases) {
    auto b = json_to_bson(c);
    REQUIRE_MESSAGE(b.is_ok(), b.status().to_string());
    auto back = bson_to_json(b->get());
    REQUIRE(back.is_ok());
    CHECK(*back == c);
  }
}

TEST_CASE("an envelope becomes a document with _id first and converts back") {
  MessageDraft d;
  d.type = "agent_message";
  d.plan_id = "p";
  d.message_id = "m";
  d.user_id = "u";
  d.session_id = "s";
  d.data = R"({"content":"hi","n":3})";
  std::string env = finalize(5, prepare(d).tail);
  auto b = json_to_bson(env, "p:5");
  REQUIRE(b.is_ok());
  bson_iter_t it;
  REQUIRE(bson_iter_init(&it, b->get()));
  REQUIRE(bson_iter_next(&it));
  CHECK(std::string(bson_iter_key(&it)) == "_id");
  CHECK(std::string(bson_iter_utf8(&it, nullptr)) == "p:5");
  auto back = bson_to_json(b->get(), {"_id"});
  REQUIRE(back.is_ok());
  CHECK(*back == env);
}

TEST_CASE("bson_to_json refuses types outside the JSON mapping") {
  bson_t* b = bson_new();
  bson_oid_t oid;
  bson_oid_init(&oid, nullptr);
  BSON_APPEND_OID(b, "_id", &oid);
  auto r = bson_to_json(b);
  CHECK_FALSE(r.is_ok());
  CHECK(r.status().message().rfind("_id: BSON type", 0) == 0);
  auto skipped = bson_to_json(b, {"_id"});
  CHECK(skipped.is_ok());
  CHECK(*skipped == "{}");
  bson_destroy(b);
}

TEST_CASE("kEnvelopeSurelyFits: the envelopes BSON grows most, at that length, still make documents MongoDB takes") {
  // Each shape repeats one array element: a one-digit integer (the worst:
  // 2 JSON bytes, 13 BSON bytes with a 7-digit index), an empty array, an
  // empty object, an empty string, a boolean, a double.
  const std::string plan_id(200, 'p');  // the longest plan id
  constexpr uint64_t kLongestSeq = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (std::string element : {"0", "[]", "{}", "\"\"", "true", "0.5"}) {
    std::string env = R"({"seq":1,"data":[)";
    while (env.size() + element.size() + 3 <= kEnvelopeSurelyFits) env += element + ",";
    env.back() = ']';
    env += "}";
    REQUIRE(env.size() <= kEnvelopeSurelyFits);
    CAPTURE(element);
    Status fits = check_message_document(plan_id, kLongestSeq, env);
    CHECK_MESSAGE(fits.is_ok(), fits.to_string());
    // The bound's premise: at most 6.5 BSON bytes per JSON byte.
    auto b = json_to_bson(env);
    REQUIRE(b.is_ok());
    CHECK(b->get()->len <= env.size() * 13 / 2 + 64);
  }
}
