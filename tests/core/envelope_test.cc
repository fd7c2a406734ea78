#include <doctest/doctest.h>

#include "core/envelope.h"

using namespace agentd;

namespace {

MessageDraft sample() {
  MessageDraft d;
  d.type = std::string(msgtype::kAgentMessage);
  d.plan_id = "p-1";
  d.message_id = "m-1";
  d.timestamp = "2026-11-26T02:31:00.123Z";
  d.user_id = "00000000-0000-0000-0000-000000000000";
  d.session_id = "s-1";
  d.data = R"({"agent_name":"Invoice","agent_type":"AI_Agent","content":"Total: 42 \"EUR\"\n","status":"ok"})";
  d.metadata = R"({"step":1})";
  return d;
}

}  // namespace

TEST_CASE("finalize prefixes seq to the producer's tail") {
  PreparedMessage p = prepare(sample());
  CHECK(p.plan_id == "p-1");
  CHECK(p.message_id == "m-1");
  std::string bytes = finalize(7, p.tail);
  CHECK(
      bytes ==
      R"({"seq":7,"type":"agent_message","data":{"agent_name":"Invoice","agent_type":"AI_Agent","content":"Total: 42 \"EUR\"\n","status":"ok"},"plan_id":"p-1","message_id":"m-1","timestamp":"2026-11-26T02:31:00.123Z","user_id":"00000000-0000-0000-0000-000000000000","session_id":"s-1","metadata":{"step":1},"v":1})");
}

TEST_CASE("decode then encode is byte-identical") {
  for (uint64_t seq : {1ull, 42ull, 9223372036854775807ull}) {
    std::string bytes = finalize(seq, prepare(sample()).tail);
    auto e = decode_envelope(bytes);
    REQUIRE_MESSAGE(e.is_ok(), e.status().to_string());
    CHECK(e->seq == seq);
    CHECK(e->type == "agent_message");
    CHECK(e->metadata == R"({"step":1})");
    CHECK(encode_envelope(*e) == bytes);
  }
}

TEST_CASE("prepare fills message_id and timestamp when empty") {
  MessageDraft d = sample();
  d.message_id.clear();
  d.timestamp.clear();
  PreparedMessage p = prepare(d);
  CHECK(p.message_id.size() == 36);
  auto e = decode_envelope(finalize(1, p.tail));
  REQUIRE(e.is_ok());
  CHECK(e->message_id == p.message_id);
  CHECK(e->timestamp.size() == 24);
}

TEST_CASE("decoder names the missing or wrongly typed field") {
  std::string good = finalize(3, prepare(sample()).tail);
  auto without = [&](const std::string& field) {
    auto e = decode_envelope(good);
    REQUIRE(e.is_ok());
    std::string s = good;
    auto pos = s.find("\"" + field + "\":");
    REQUIRE(pos != std::string::npos);
    return s;
  };
  (void)without;
  struct Case {
    std::string from, to, field;
  };
  Case cases[] = {
      {R"("seq":3)", R"("seq":0)", "seq"},
      {R"("seq":3)", R"("seq":"3")", "seq"},
      {R"("type":"agent_message")", R"("type":5)", "type"},
      {R"("data":{"agent_name")", R"("data":[{"agent_name")", "data"},
      {R"("plan_id":"p-1")", R"("plan_id":null)", "plan_id"},
      {R"("message_id":"m-1")", R"("message_id":"")", "message_id"},
      {R"("timestamp":"2026-11-26T02:31:00.123Z")", R"("timestamp":"2026-11-26 02:31:00")", "timestamp"},
      {R"("user_id":"00000000-0000-0000-0000-000000000000")", R"("user_id":1)", "user_id"},
      {R"("session_id":"s-1")", R"("session_id":false)", "session_id"},
      {R"("metadata":{"step":1})", R"("metadata":"x")", "metadata"},
      {R"("v":1})", R"("v":"1"})", "v"},
  };
  for (const auto& c : cases) {
    std::string bad = good;
    auto pos = bad.find(c.from);
    REQUIRE_MESSAGE(pos != std::string::npos, c.from);
    if (c.field == "data") {
      bad.replace(pos, c.from.size(), c.to);
      auto end = bad.find("},\"plan_id\"");
      bad.insert(end + 1, "]");
    } else {
      bad.replace(pos, c.from.size(), c.to);
    }
    auto e = decode_envelope(bad);
    REQUIRE_FALSE_MESSAGE(e.is_ok(), bad);
    CHECK_MESSAGE(e.status().message().rfind(c.field + ":", 0) == 0, e.status().message());
  }
}

TEST_CASE("decoder rejects a missing field, an unknown field and a newer version") {
  std::string good = finalize(3, prepare(sample()).tail);
  std::string missing = good;
  missing.replace(missing.find(",\"session_id\":\"s-1\""), std::string(",\"session_id\":\"s-1\"").size(), "");
  auto e = decode_envelope(missing);
  REQUIRE_FALSE(e.is_ok());
  CHECK(e.status().message().rfind("session_id:", 0) == 0);

  std::string extra = good;
  extra.insert(extra.size() - 1, ",\"zz\":1");
  auto x = decode_envelope(extra);
  REQUIRE_FALSE(x.is_ok());
  CHECK(x.status().message().rfind("zz: unknown envelope field", 0) == 0);

  std::string v2 = good;
  v2.replace(v2.find("\"v\":1"), 5, "\"v\":2");
  auto v = decode_envelope(v2);
  REQUIRE_FALSE(v.is_ok());
  CHECK(v.status().code() == Code::kVersionMismatch);
}

TEST_CASE("decoder applies the strict parser's checks to data") {
  MessageDraft d = sample();
  d.data = R"({"x":{"$set":{"a":1}}})";
  auto e = decode_envelope(finalize(1, prepare(d).tail));
  REQUIRE_FALSE(e.is_ok());
  CHECK(e.status().message().rfind("data.x.$set:", 0) == 0);
}
