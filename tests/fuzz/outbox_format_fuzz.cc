// The outbox's key/value decoders (outbox/format.h) on arbitrary bytes.
// Byte 0 picks the decoder; the rest is the key or value. Properties: nothing
// crashes or reads out of bounds, and every value a decoder accepts encodes
// back to exactly the input bytes (the grammar has one spelling per value).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "outbox/format.h"
#include "tests/fuzz/fuzz_check.h"

namespace fmt = agentd::outbox_format;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 7) {
    case 0: {
      auto m = fmt::parse_message_value(in);
      if (m) {
        FUZZ_CHECK(!m->envelope.empty());
        FUZZ_CHECK(fmt::message_value(m->appended_at_ms, m->pending_id, m->message_id, m->envelope) == in);
      }
      break;
    }
    case 1: {
      auto p = fmt::parse_pending_value(in);
      if (p) {
        FUZZ_CHECK(fmt::pending_value(p->kind, p->flags, p->appended_at_ms, p->plan_id, p->number, p->payload) == in);
      }
      break;
    }
    case 2: {
      auto d = fmt::parse_dead_value(in);
      if (d) {
        FUZZ_CHECK(fmt::dead_value(d->dead_at_ms, d->error, d->pending) == in);
        (void)fmt::parse_pending_value(d->pending);
      }
      break;
    }
    case 3: {
      auto id = fmt::parse_id_key(in, "pending");
      if (id) FUZZ_CHECK(fmt::pending_key(*id) == in);
      break;
    }
    case 4: {
      // user_plans key: the prefix is the user id's str16.
      if (in.size() < 2) break;
      size_t len = (static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]);
      if (2 + len > in.size()) break;
      std::string_view user = in.substr(2, len);
      std::string prefix = fmt::user_plans_prefix(user);
      auto plan = fmt::parse_user_plans_key(in, prefix.size());
      if (plan) {
        FUZZ_CHECK(!plan->empty());
        FUZZ_CHECK(in.size() == prefix.size() + 8 + plan->size());
      }
      break;
    }
    case 5: {
      // message key, checked against the plan id it names (and a wrong one).
      uint64_t seq = 0;
      if (in.size() >= 2) {
        size_t len = (static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]);
        if (2 + len <= in.size()) {
          std::string_view plan = in.substr(2, len);
          if (fmt::parse_message_key(in, plan, &seq)) FUZZ_CHECK(fmt::message_key(plan, seq) == in);
        }
      }
      FUZZ_CHECK(!fmt::parse_message_key(in, "\x01no-such-plan", &seq) ||
                 fmt::message_key("\x01no-such-plan", seq) == in);
      break;
    }
    default: {
      fmt::Reader r(in, "fuzz value");
      uint8_t a;
      uint16_t b;
      uint32_t c;
      uint64_t d;
      std::string_view s;
      while (r.u8(&a) && r.be16(&b) && r.str16(&s) && r.be32(&c) && r.str32(&s) && r.be64(&d)) {
      }
      FUZZ_CHECK(r.pos() <= in.size());
      (void)r.error("field");
      break;
    }
  }
  return 0;
}
