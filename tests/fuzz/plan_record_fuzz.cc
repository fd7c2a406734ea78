// decode_plan (core/plan_record.h) on arbitrary bytes. Properties: it never
// crashes; an accepted record re-encodes to bytes that decode to the same
// record (encode is a fixed point).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/plan_record.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto p = agentd::decode_plan(in);
  if (!p) return 0;
  FUZZ_CHECK(agentd::parse_plan_status(agentd::plan_status_name(p->status)) == p->status);
  std::string bytes = agentd::encode_plan(*p);
  auto again = agentd::decode_plan(bytes);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(agentd::encode_plan(*again) == bytes);
  FUZZ_CHECK(again->plan_id == p->plan_id && again->version == p->version && again->last_seq == p->last_seq);
  return 0;
}
