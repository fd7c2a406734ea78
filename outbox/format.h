// The outbox's on-disk byte grammar: every LMDB key and value it writes.
//
// One LMDB environment in the data folder (data.mdb, lock.mdb) plus the
// process lock file LOCK. Integers are big-endian so that LMDB's bytewise key
// order is numeric order. `str16` is a length-prefixed string.
//
//   be16, be32, be64 := unsigned integer, big-endian
//   str16            := len:be16 bytes[len]
//
// Named databases (DBIs):
//
//   "meta"       key := "format_version"        value := be32 (kFormatVersion)
//                key := "next_pending_id"       value := be64 (next id to hand out)
//                key := "untracked"             value := empty; set with the first write of a
//                       run without MongoDB (its appends make no pending entries), cleared
//                       once a run with MongoDB queued them all (backfill_untracked)
//                key := "backfill_from"         value := "m" message key | "p" plan_id:
//                       where an interrupted backfill continues; deleted by the first
//                       write of a run without MongoDB (the backfill then starts over)
//   "messages"   key := plan_id:str16 seq:be64
//                value := appended_at_ms:be64 pending_id:be64 message_id:str16 envelope
//                (envelope = core/envelope.h bytes, never changed after commit;
//                pending_id = the id of its pending entry, 0 when none was made,
//                kNotInMongo once its entry was dead-lettered: MongoDB does not
//                hold it, so retention keeps it (and, pruning only a prefix,
//                every later message of its plan) until a retry put it on the
//                pending queue again, under the new id)
//   "msgids"     key := plan_id:str16 message_id:bytes   value := seq:be64
//   "pending"    key := id:be64 (global append counter, the flush order)
//                value := pending
//   "plans"      key := plan_id:bytes                   value := plan record (core/plan_record.h)
//   "user_plans" key := user_id:str16 inv_created_ms:be64 plan_id:bytes
//                value := empty; inv_created_ms = ~created_at_ms so that an
//                ascending scan lists a user's plans newest first
//   "dead"       key := id:be64 (the pending id it had)
//                value := dead_at_ms:be64 error:str32 pending   (always inline)
//
//   str32   := len:be32 bytes[len]
//   pending := kind:u8 flags:u8 appended_at_ms:be64 plan_id:str16 number:be64 payload
//     kind    = 1 (message; number = seq) | 2 (plan record; number = version)
//     flags   = bit 0 (kInline): payload holds the bytes (envelope or plan
//               record). Plan entries and dead letters are always inline; a
//               fresh message entry is not (its bytes live in "messages",
//               which retention never prunes while the entry is pending) and
//               its payload is empty. A retried dead letter is inline.
//
// Invariants kept by the writer (outbox/apply.cc, outbox/retention.cc):
//  - messages of a plan have seq 1..N without gap; retention only removes a
//    prefix and always keeps the plan's highest seq, so N survives pruning;
//  - retention never removes a message MongoDB does not hold: pending ones
//    (below) and dead-lettered ones (pending_id kNotInMongo, kept even after
//    the dead letter is dropped: reads serve it from the outbox);
//  - msgids holds exactly one entry per stored message, and keeps the entries
//    of messages retention with MongoDB pruned (a repost of such a message_id
//    answers its seq) until the whole plan is removed;
//  - pending ids are handed out in increasing order from next_pending_id and
//    never reused; so a message whose pending_id is below the smallest
//    pending id of a fresh (non-inline) message entry is not pending: this is
//    how retention knows what was flushed without scanning the pending table.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"
#include "outbox/outbox.h"

namespace agentd::outbox_format {

inline constexpr uint32_t kFormatVersion = 1;

inline constexpr const char* kMetaDb = "meta";
inline constexpr const char* kMessagesDb = "messages";
inline constexpr const char* kMsgIdsDb = "msgids";
inline constexpr const char* kPendingDb = "pending";
inline constexpr const char* kPlansDb = "plans";
inline constexpr const char* kUserPlansDb = "user_plans";
inline constexpr const char* kDeadDb = "dead";
inline constexpr std::string_view kFormatVersionKey = "format_version";
inline constexpr std::string_view kNextPendingIdKey = "next_pending_id";
inline constexpr std::string_view kUntrackedKey = "untracked";
inline constexpr std::string_view kBackfillFromKey = "backfill_from";

// LMDB's default maximum key size is 511 bytes; these keep every key below it.
inline constexpr size_t kMaxPlanIdLen = 200;
inline constexpr size_t kMaxMessageIdLen = 200;
inline constexpr size_t kMaxUserIdLen = 200;
static_assert(2 + kMaxPlanIdLen + kMaxMessageIdLen <= 511, "msgids key must fit LMDB's key limit");
static_assert(2 + kMaxUserIdLen + 8 + kMaxPlanIdLen <= 511, "user_plans key must fit LMDB's key limit");

inline constexpr uint8_t kInline = 1;
// A message value's pending_id after its entry was dead-lettered.
inline constexpr uint64_t kNotInMongo = ~uint64_t{0};

void put_be16(std::string* out, uint16_t v);
void put_be32(std::string* out, uint32_t v);
void put_be64(std::string* out, uint64_t v);
uint64_t get_be64(const char* p);
uint32_t get_be32(const char* p);

// A reader over one value that reports precisely what was wrong.
class Reader {
 public:
  Reader(std::string_view bytes, std::string_view what) : in_(bytes), what_(what) {}
  [[nodiscard]] bool u8(uint8_t* v);
  [[nodiscard]] bool be16(uint16_t* v);
  [[nodiscard]] bool be32(uint32_t* v);
  [[nodiscard]] bool be64(uint64_t* v);
  [[nodiscard]] bool str16(std::string_view* v);
  [[nodiscard]] bool str32(std::string_view* v);
  std::string_view rest() const { return in_.substr(pos_); }
  size_t pos() const { return pos_; }
  // "corrupt pending value: truncated at byte 10 of 12 (reading seq)"
  Status error(std::string_view field) const;

 private:
  [[nodiscard]] bool take(size_t n, const char** p);
  std::string_view in_;
  std::string_view what_;
  size_t pos_ = 0;
};

// messages
std::string message_key(std::string_view plan_id, uint64_t seq);
std::string message_prefix(std::string_view plan_id);  // plan_id:str16
// Returns false when `key` is not a message key of `plan_id`.
bool parse_message_key(std::string_view key, std::string_view plan_id, uint64_t* seq);
std::string message_value(int64_t appended_at_ms, uint64_t pending_id, std::string_view message_id,
                          std::string_view envelope);
// The value without its envelope (the writer copies the envelope in place).
std::string message_value_head(int64_t appended_at_ms, uint64_t pending_id, std::string_view message_id);
struct MessageValue {
  int64_t appended_at_ms = 0;
  uint64_t pending_id = 0;
  std::string_view message_id;
  std::string_view envelope;
};
Result<MessageValue> parse_message_value(std::string_view value);

// msgids
std::string msgid_key(std::string_view plan_id, std::string_view message_id);

// pending and dead letters
std::string pending_key(uint64_t id);
std::string pending_value(PendingKind kind, uint8_t flags, int64_t appended_at_ms, std::string_view plan_id,
                          uint64_t number, std::string_view payload);
struct PendingValue {
  PendingKind kind = PendingKind::kMessage;
  uint8_t flags = 0;
  int64_t appended_at_ms = 0;
  std::string_view plan_id;
  uint64_t number = 0;
  std::string_view payload;
};
Result<PendingValue> parse_pending_value(std::string_view value);
std::string dead_value(int64_t dead_at_ms, std::string_view error, std::string_view pending_inline);
struct DeadValue {
  int64_t dead_at_ms = 0;
  std::string_view error;
  std::string_view pending;  // a pending value with kInline
};
Result<DeadValue> parse_dead_value(std::string_view value);
Result<uint64_t> parse_id_key(std::string_view key, std::string_view what);

// user_plans
std::string user_plans_prefix(std::string_view user_id);
std::string user_plans_key(std::string_view user_id, int64_t created_ms, std::string_view plan_id);
// The plan_id of a user_plans key with the given prefix.
Result<std::string_view> parse_user_plans_key(std::string_view key, size_t prefix_len);

}  // namespace agentd::outbox_format
