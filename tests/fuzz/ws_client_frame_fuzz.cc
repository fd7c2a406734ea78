// The WebSocket client-frame parser the session uses (net/client_frame.h),
// on arbitrary text. Properties: nothing crashes, and every reply the
// session would build from the outcome is a JSON document parse_strict
// accepts (strings from the client are re-encoded, never pasted).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/json.h"
#include "net/client_frame.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// What the session would send back: an error_notification's data for a
// rejected frame, else the fields it would act on, as JSON.
std::string handle(std::string_view text) {
  auto f = agentd::net::parse_client_frame(text);
  if (!f) return agentd::net::error_notification_data(f.status());
  return agentd::JsonObject()
      .num("type", static_cast<int64_t>(f->type))
      .num("after_seq", static_cast<int64_t>(f->after_seq & 0x7fffffffffffffffULL))
      .boolean("approved", f->approved)
      .str("m_plan_id", f->m_plan_id)
      .str("feedback", f->feedback)
      .str("request_id", f->request_id)
      .str("answer", f->answer)
      .done();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string reply = handle(std::string_view(reinterpret_cast<const char*>(data), size));
  auto d = agentd::parse_strict(reply, agentd::JsonLimits{8u << 20, 64});
  if (!d) {
    std::fprintf(stderr, "reply not accepted: %s\n%s\n", d.status().to_string().c_str(), reply.c_str());
  }
  FUZZ_CHECK(d.is_ok());
  return 0;
}
