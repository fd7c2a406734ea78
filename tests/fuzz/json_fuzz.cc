// parse_strict (core/json.h) on arbitrary bytes. Properties: it never
// crashes, an accepted document's canonical form is accepted again and is a
// fixed point, no accepted object key starts with '$' or holds '.'/NUL, and a
// bare number's value is the correctly rounded one.
#include <rapidjson/document.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/json.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

void check_keys(const rapidjson::Value& v, int depth) {
  FUZZ_CHECK(depth <= 64 + 1);
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      std::string_view k(it->name.GetString(), it->name.GetStringLength());
      FUZZ_CHECK(k.empty() || k[0] != '$');
      FUZZ_CHECK(k.find('.') == std::string_view::npos);
      FUZZ_CHECK(k.find('\0') == std::string_view::npos);
      check_keys(it->value, depth + 1);
    }
  } else if (v.IsArray()) {
    for (const auto& e : v.GetArray()) check_keys(e, depth + 1);
  } else if (v.IsNumber() && !v.IsDouble()) {
    FUZZ_CHECK(v.IsInt64());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  agentd::JsonLimits small;
  small.max_bytes = 512;
  small.max_depth = 4;
  auto s = agentd::parse_strict(in, small);
  if (s) FUZZ_CHECK(in.size() <= 512);
  auto d = agentd::parse_strict(in);
  if (!d) return 0;
  check_keys(*d, 0);
  if (d->IsDouble()) {
    // A bare number: its value is what glibc's correctly rounded strtod reads.
    std::string copy(in);
    char* end = nullptr;
    double want = std::strtod(copy.c_str(), &end);
    FUZZ_CHECK(std::isfinite(d->GetDouble()));
    if (end != copy.c_str()) FUZZ_CHECK(d->GetDouble() == want);
  }
  std::string canon = agentd::write_canonical(*d);
  agentd::JsonLimits big;
  big.max_bytes = canon.size() + 1;
  auto again = agentd::parse_strict(canon, big);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(agentd::write_canonical(*again) == canon);
  return 0;
}
