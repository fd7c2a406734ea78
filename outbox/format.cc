#include "outbox/format.h"

#include <string>

namespace agentd::outbox_format {

void put_be16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

void put_be32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

void put_be64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

uint64_t get_be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

uint32_t get_be32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

namespace {

void put_str16(std::string* out, std::string_view s) {
  // Invariant: callers validated lengths against the kMax*Len limits.
  assert(s.size() <= 0xffff);
  put_be16(out, static_cast<uint16_t>(s.size()));
  out->append(s);
}

}  // namespace

bool Reader::take(size_t n, const char** p) {
  if (in_.size() - pos_ < n) return false;
  *p = in_.data() + pos_;
  pos_ += n;
  return true;
}

bool Reader::u8(uint8_t* v) {
  const char* p;
  if (!take(1, &p)) return false;
  *v = static_cast<uint8_t>(*p);
  return true;
}

bool Reader::be16(uint16_t* v) {
  const char* p;
  if (!take(2, &p)) return false;
  *v = static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
  return true;
}

bool Reader::be32(uint32_t* v) {
  const char* p;
  if (!take(4, &p)) return false;
  *v = get_be32(p);
  return true;
}

bool Reader::be64(uint64_t* v) {
  const char* p;
  if (!take(8, &p)) return false;
  *v = get_be64(p);
  return true;
}

bool Reader::str16(std::string_view* v) {
  uint16_t n;
  const char* p;
  size_t start = pos_;
  if (!be16(&n)) return false;
  if (!take(n, &p)) {
    pos_ = start;
    return false;
  }
  *v = std::string_view(p, n);
  return true;
}

bool Reader::str32(std::string_view* v) {
  uint32_t n;
  const char* p;
  size_t start = pos_;
  if (!be32(&n)) return false;
  if (!take(n, &p)) {
    pos_ = start;
    return false;
  }
  *v = std::string_view(p, n);
  return true;
}

Status Reader::error(std::string_view field) const {
  return corruption("corrupt " + std::string(what_) + ": truncated at byte " + std::to_string(pos_) + " of " +
                    std::to_string(in_.size()) + " (reading " + std::string(field) + ")");
}

std::string message_prefix(std::string_view plan_id) {
  std::string k;
  k.reserve(2 + plan_id.size() + 8);
  put_str16(&k, plan_id);
  return k;
}

std::string message_key(std::string_view plan_id, uint64_t seq) {
  std::string k = message_prefix(plan_id);
  put_be64(&k, seq);
  return k;
}

bool parse_message_key(std::string_view key, std::string_view plan_id, uint64_t* seq) {
  if (key.size() != 2 + plan_id.size() + 8) return false;
  Reader r(key, "message key");
  std::string_view p;
  if (!r.str16(&p) || p != plan_id) return false;
  return r.be64(seq);
}

std::string message_value_head(int64_t appended_at_ms, uint64_t pending_id, std::string_view message_id) {
  std::string v;
  v.reserve(8 + 8 + 2 + message_id.size());
  put_be64(&v, static_cast<uint64_t>(appended_at_ms));
  put_be64(&v, pending_id);
  put_str16(&v, message_id);
  return v;
}

std::string message_value(int64_t appended_at_ms, uint64_t pending_id, std::string_view message_id,
                          std::string_view envelope) {
  std::string v = message_value_head(appended_at_ms, pending_id, message_id);
  v.append(envelope);
  return v;
}

Result<MessageValue> parse_message_value(std::string_view value) {
  Reader r(value, "message value");
  MessageValue m;
  uint64_t at;
  if (!r.be64(&at)) return r.error("appended_at_ms");
  m.appended_at_ms = static_cast<int64_t>(at);
  if (!r.be64(&m.pending_id)) return r.error("pending_id");
  if (!r.str16(&m.message_id)) return r.error("message_id");
  m.envelope = r.rest();
  if (m.envelope.empty()) return r.error("envelope");
  return m;
}

std::string msgid_key(std::string_view plan_id, std::string_view message_id) {
  std::string k;
  k.reserve(2 + plan_id.size() + message_id.size());
  put_str16(&k, plan_id);
  k.append(message_id);
  return k;
}

std::string pending_key(uint64_t id) {
  std::string k;
  put_be64(&k, id);
  return k;
}

std::string pending_value(PendingKind kind, uint8_t flags, int64_t appended_at_ms, std::string_view plan_id,
                          uint64_t number, std::string_view payload) {
  std::string v;
  v.reserve(2 + 8 + 2 + plan_id.size() + 8 + payload.size());
  v.push_back(static_cast<char>(kind));
  v.push_back(static_cast<char>(flags));
  put_be64(&v, static_cast<uint64_t>(appended_at_ms));
  put_str16(&v, plan_id);
  put_be64(&v, number);
  v.append(payload);
  return v;
}

Result<PendingValue> parse_pending_value(std::string_view value) {
  Reader r(value, "pending value");
  PendingValue p;
  uint8_t kind;
  uint64_t at;
  if (!r.u8(&kind)) return r.error("kind");
  if (kind != static_cast<uint8_t>(PendingKind::kMessage) && kind != static_cast<uint8_t>(PendingKind::kPlan)) {
    return corruption("corrupt pending value: unknown kind " + std::to_string(kind));
  }
  p.kind = static_cast<PendingKind>(kind);
  if (!r.u8(&p.flags)) return r.error("flags");
  if (!r.be64(&at)) return r.error("appended_at_ms");
  p.appended_at_ms = static_cast<int64_t>(at);
  if (!r.str16(&p.plan_id)) return r.error("plan_id");
  if (!r.be64(&p.number)) return r.error("number");
  p.payload = r.rest();
  bool is_inline = (p.flags & kInline) != 0;
  if (is_inline && p.payload.empty()) return corruption("corrupt pending value: inline entry without bytes");
  if (!is_inline && !p.payload.empty()) return corruption("corrupt pending value: bytes on a non-inline entry");
  if (p.kind == PendingKind::kPlan && !is_inline) return corruption("corrupt pending value: plan entry not inline");
  return p;
}

std::string dead_value(int64_t dead_at_ms, std::string_view error, std::string_view pending_inline) {
  std::string v;
  put_be64(&v, static_cast<uint64_t>(dead_at_ms));
  put_be32(&v, static_cast<uint32_t>(error.size()));
  v.append(error);
  v.append(pending_inline);
  return v;
}

Result<DeadValue> parse_dead_value(std::string_view value) {
  Reader r(value, "dead letter value");
  DeadValue d;
  uint64_t at;
  if (!r.be64(&at)) return r.error("dead_at_ms");
  d.dead_at_ms = static_cast<int64_t>(at);
  if (!r.str32(&d.error)) return r.error("error");
  d.pending = r.rest();
  return d;
}

Result<uint64_t> parse_id_key(std::string_view key, std::string_view what) {
  if (key.size() != 8) {
    return corruption("corrupt " + std::string(what) + " key: " + std::to_string(key.size()) + " bytes, expected 8");
  }
  return get_be64(key.data());
}

std::string user_plans_prefix(std::string_view user_id) {
  std::string k;
  put_str16(&k, user_id);
  return k;
}

std::string user_plans_key(std::string_view user_id, int64_t created_ms, std::string_view plan_id) {
  std::string k = user_plans_prefix(user_id);
  put_be64(&k, ~static_cast<uint64_t>(created_ms));
  k.append(plan_id);
  return k;
}

Result<std::string_view> parse_user_plans_key(std::string_view key, size_t prefix_len) {
  if (key.size() <= prefix_len + 8) {
    return corruption("corrupt user_plans key: " + std::to_string(key.size()) + " bytes, too short");
  }
  return key.substr(prefix_len + 8);
}

}  // namespace agentd::outbox_format
