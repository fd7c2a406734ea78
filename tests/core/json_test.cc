#include <doctest/doctest.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <random>
#include <string>

#include "core/json.h"

using namespace agentd;

TEST_CASE("parse_strict accepts JSON and writes it back canonically") {
  auto r = parse_strict(R"( { "a" : [1, -2, 3.5, true, null, "x\u00e9"], "b": {"c": 9007199254740993} } )");
  REQUIRE(r.is_ok());
  std::string canon = write_canonical(*r);
  CHECK(canon == R"({"a":[1,-2,3.5,true,null,"xé"],"b":{"c":9007199254740993}})");
  auto again = parse_strict(canon);
  REQUIRE(again.is_ok());
  CHECK(write_canonical(*again) == canon);  // fixed point
}

TEST_CASE("doubles survive a round trip exactly") {
  for (const char* s : {"0.1", "1e300", "-2.5e-300", "3.141592653589793", "1.0", "123456.789"}) {
    std::string text = std::string("[") + s + "]";
    auto a = parse_strict(text);
    REQUIRE(a.is_ok());
    std::string c1 = write_canonical(*a);
    auto b = parse_strict(c1);
    REQUIRE(b.is_ok());
    CHECK(write_canonical(*b) == c1);
    CHECK((*a)[0].GetDouble() == (*b)[0].GetDouble());
  }
}

TEST_CASE("invalid JSON is rejected with an offset") {
  auto r = parse_strict(R"({"a": })");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == Code::kInvalidArgument);
  CHECK(r.status().message().find("offset 6") != std::string::npos);
  CHECK_FALSE(parse_strict("{} x").is_ok());  // trailing data
  CHECK_FALSE(parse_strict("").is_ok());
  CHECK_FALSE(parse_strict("NaN").is_ok());
}

TEST_CASE("invalid UTF-8 is rejected") {
  std::string bad = "{\"a\":\"\xff\xfe\"}";
  auto r = parse_strict(bad);
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().message().find("encoding") != std::string::npos);
  std::string overlong = "{\"a\":\"\xc0\xaf\"}";
  CHECK_FALSE(parse_strict(overlong).is_ok());
}

TEST_CASE("nesting deeper than the limit is rejected, at the limit accepted") {
  auto nest = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK(parse_strict(nest(64)).is_ok());
  auto r = parse_strict(nest(65));
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().message().find("nesting deeper than 64") != std::string::npos);
  // A huge nesting must fail fast, not overflow the stack.
  CHECK_FALSE(parse_strict(nest(200000), JsonLimits{1 << 20, 64}).is_ok());
  CHECK(parse_strict(nest(10), JsonLimits{1 << 20, 10}).is_ok());
  CHECK_FALSE(parse_strict(nest(11), JsonLimits{1 << 20, 10}).is_ok());
}

TEST_CASE("a body over the size limit is TooLarge") {
  std::string big = "\"" + std::string(2000, 'x') + "\"";
  auto r = parse_strict(big, JsonLimits{1000, 64});
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == Code::kTooLarge);
  CHECK(parse_strict(big, JsonLimits{2002, 64}).is_ok());
}

TEST_CASE("operator and path keys are rejected with the field path") {
  auto r = parse_strict(R"({"data":{"items":[{"ok":1},{"$where":"1"}]}})");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().message().find("data.items[1].$where") == 0);
  CHECK(r.status().message().find("'$'") != std::string::npos);

  auto dotted = parse_strict(R"({"a":{"b.c":1}})");
  REQUIRE_FALSE(dotted.is_ok());
  CHECK(dotted.status().message().find("a.b.c: key contains '.'") == 0);

  std::string nul = std::string("{\"a\\u0000b\":1}");
  auto n = parse_strict(nul);
  REQUIRE_FALSE(n.is_ok());
  CHECK(n.status().message().find("NUL") != std::string::npos);

  CHECK(parse_strict(R"({"a$":1,"b":"$x.y"})").is_ok());  // only keys, only a leading '$'
}

// Issue 13: a request body (client_input) is also refused what the MongoDB
// driver or server would refuse: an empty key, a key twice in one object.
// Bytes read back from storage keep the old rules (they stay readable).
TEST_CASE("client input: empty and repeated keys are rejected with the field path; stored bytes still parse") {
  JsonLimits client;
  client.client_input = true;
  auto empty = parse_strict(R"({"metadata":{"a":{"":1}}})", client);
  REQUIRE_FALSE(empty.is_ok());
  CHECK(empty.status().message().find("metadata.a") == 0);
  CHECK(empty.status().message().find("empty key") != std::string::npos);
  auto twice = parse_strict(R"({"metadata":{"k":1,"x":[{"a":1,"b":2,"a":3}]}})", client);
  REQUIRE_FALSE(twice.is_ok());
  CHECK(twice.status().message().find("metadata.x[0].a: key appears twice") == 0);
  // The same key in sibling objects, or once per nesting level, is fine.
  CHECK(parse_strict(R"({"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]})", client).is_ok());
  CHECK(parse_strict(R"({"a":{"":1}})").is_ok());
  CHECK(parse_strict(R"({"a":1,"a":2})").is_ok());
}

TEST_CASE("integers beyond int64 are rejected") {
  auto r = parse_strict(R"({"n":18446744073709551615})");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().message().find("n: integer out of range") == 0);
  CHECK(parse_strict(R"({"n":9223372036854775807})").is_ok());
  CHECK(parse_strict(R"({"n":-9223372036854775808})").is_ok());
}

TEST_CASE("append_json_string escapes exactly as write_canonical does, appending to what is there") {
  auto canonical = [](std::string_view v) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    return std::string(buf.GetString(), buf.GetSize());
  };
  for (int b = 0; b < 256; ++b) {
    std::string v = "a" + std::string(1, static_cast<char>(b)) + "z";
    std::string out = "x";
    append_json_string(&out, v);
    CHECK_MESSAGE(out == "x" + canonical(v), "byte " << b);
  }
  CHECK([] {
    std::string out;
    append_json_string(&out, "");
    return out;
  }() == "\"\"");
  // A default view (null data, size 0: what an empty std::string_view
  // parameter often is) — UBSan refused the memcpy from it.
  CHECK([] {
    std::string out;
    append_json_string(&out, std::string_view());
    return out;
  }() == "\"\"");
  std::mt19937 rng(14);
  for (int i = 0; i < 2000; ++i) {
    std::string v(rng() % 40, '\0');
    // Mostly the bytes that need an escape, and runs of plain ones.
    static constexpr char kSome[] = {'"', '\\', '\n', '\x01', 'a', '\x7f', '\xc3', '\xa9'};
    for (char& c : v) c = rng() % 3 == 0 ? static_cast<char>(rng() % 256) : kSome[rng() % sizeof kSome];
    std::string out;
    append_json_string(&out, v);
    REQUIRE(out == canonical(v));
  }
}
