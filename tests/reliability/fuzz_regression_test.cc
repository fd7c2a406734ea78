// Inputs the fuzz targets (tests/fuzz) found, pinned down by value: the
// corpus replay (fuzz_replay_*) proves the properties still hold for them;
// these cases say what the right answer is.
#include <doctest/doctest.h>

#include "core/envelope.h"
#include "core/json.h"

using namespace agentd;

TEST_CASE("json_fuzz: a zero significand with an exponent is zero (RapidJSON 1.1.0 full precision read 3.17e29)") {
  for (const char* s : {"0e48", "0E40", "-0e5", "0.000e+10", "0.0e-400"}) {
    auto d = parse_strict(std::string("[") + s + "]");
    REQUIRE_MESSAGE(d.is_ok(), s);
    CHECK_MESSAGE((*d)[0].GetDouble() == 0.0, s);
  }
  auto d = parse_strict("[0.1, 1e300, 2.5e-300, 1e-400]");
  REQUIRE(d.is_ok());
  CHECK((*d)[0].GetDouble() == 0.1);
  CHECK((*d)[1].GetDouble() == 1e300);
  CHECK((*d)[2].GetDouble() == 2.5e-300);
  CHECK((*d)[3].GetDouble() == 0.0);
}

TEST_CASE("json_fuzz: a lone surrogate escape is rejected, a pair is decoded") {
  auto bad = parse_strict(R"({"a":"x\ude00"})");
  REQUIRE_FALSE(bad.is_ok());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(bad.status().message().find("a: string holds a lone UTF-16 surrogate") == 0);
  auto key = parse_strict(R"({"k\udc00":1})");
  REQUIRE_FALSE(key.is_ok());
  // The error names the path without echoing the key (it is not UTF-8).
  CHECK(key.status().message().find('\xED') == std::string::npos);
  CHECK_FALSE(parse_strict(R"(["\ud83d"])").is_ok());
  auto pair = parse_strict(R"(["\ud83d\ude00"])");
  REQUIRE(pair.is_ok());
  CHECK(write_canonical(*pair) == "[\"\xF0\x9F\x98\x80\"]");
}

TEST_CASE("json_fuzz: integers beyond int64 are rejected on both sides, not turned into doubles") {
  for (const char* s :
       {"-9223372036854775809", "-9223372054863775808", "9223372036854775808", "123456789012345678901234567890"}) {
    auto d = parse_strict(std::string("{\"n\":") + s + "}");
    REQUIRE_FALSE_MESSAGE(d.is_ok(), s);
    CHECK(d.status().message().find("n: integer out of range") == 0);
  }
  auto edge = parse_strict("[-9223372036854775808,9223372036854775807,-0]");
  REQUIRE(edge.is_ok());
  CHECK(write_canonical(*edge) == "[-9223372036854775808,9223372036854775807,0]");
}

TEST_CASE("envelope_fuzz: an envelope whose data holds 0e48 keeps the value zero") {
  std::string bytes = R"({"seq":1,"type":"agent_message","data":{"n":0e48},"plan_id":"p","message_id":"m",)"
                      R"("timestamp":"2026-01-02T03:04:05.678Z","user_id":"u","session_id":"s","metadata":{},"v":1})";
  auto e = decode_envelope(bytes);
  REQUIRE_MESSAGE(e.is_ok(), e.status().to_string());
  CHECK(e->data == R"({"n":0.0})");
}
