// decode_envelope (core/envelope.h) on arbitrary bytes. Properties: it never
// crashes; whatever it accepts re-encodes to bytes it accepts again, and
// encoding is a fixed point (encode(decode(encode(e))) == encode(e)).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/envelope.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  agentd::JsonLimits small;
  small.max_bytes = 4096;
  small.max_depth = 8;
  (void)agentd::decode_envelope(in, small);
  auto e = agentd::decode_envelope(in);
  if (!e) {
    FUZZ_CHECK(!e.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(e->seq >= 1);
  std::string bytes = agentd::encode_envelope(*e);
  agentd::JsonLimits big;
  big.max_bytes = bytes.size() + 1;
  auto again = agentd::decode_envelope(bytes, big);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(agentd::encode_envelope(*again) == bytes);
  // The tail the writer stores is the envelope minus its seq prefix.
  FUZZ_CHECK(agentd::finalize(e->seq, std::string_view(bytes).substr(bytes.find(',') + 1)) == bytes);
  return 0;
}
