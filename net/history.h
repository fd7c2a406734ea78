// Reads that merge MongoDB (older, pruned from the outbox) with the outbox
// (recent and pending), architecture.md "Retention with MongoDB".
//
// MergedReader::read_messages returns seq after_seq+1, after_seq+2, … with no
// hole and no duplicate, or an error:
//   - kUnavailable "messages A..B of plan P were pruned from the outbox and
//     MongoDB is unreachable: …" when pruned history is needed and the
//     HistoryReader fails (REST: 503 + Retry-After; WebSocket: close).
// Without a HistoryReader (embedded default) the outbox alone serves
// everything. History reads block (mongo-c-driver): callers on network
// threads offload them (Server does, through its read pool).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/message_log.h"
#include "core/status.h"

namespace agentd::net {

// MongoDB's side of a read; implemented in main over store/'s reader.
class HistoryReader {
 public:
  virtual ~HistoryReader() = default;
  // Messages with seq > after_seq, ascending, at most `limit`; kUnavailable
  // when MongoDB cannot be reached.
  virtual Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq,
                                                           size_t limit) = 0;
  virtual Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id) = 0;
  virtual Result<std::vector<PlanRecord>> list_plans(std::string_view user_id, size_t limit) = 0;
};

class MergedReader {
 public:
  // first_seq: the lowest seq of a plan the outbox still holds (0 = none);
  // null means nothing is ever pruned. `history` may be null.
  // `history_up` (optional) says whether MongoDB answered its last ping:
  // when it did not, lookups that only might need MongoDB (a plan missing
  // from the outbox, the plan list) skip it, and reads that need it fail
  // at once with kUnavailable instead of waiting for the driver's timeout.
  MergedReader(MessageLog& log, std::function<Result<uint64_t>(std::string_view)> first_seq, HistoryReader* history,
               std::function<bool()> history_up = nullptr)
      : log_(log), first_seq_(std::move(first_seq)), history_(history), history_up_(std::move(history_up)) {}

  bool has_history() const { return history_ != nullptr; }

  Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq, size_t limit);
  // The outbox's record, else MongoDB's.
  Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id);
  // Union by plan_id (highest version wins), newest first.
  Result<std::vector<PlanRecord>> list_plans(std::string_view user_id, size_t limit);

 private:
  Result<std::vector<StoredMessage>> read_once(std::string_view plan_id, uint64_t after_seq, size_t limit, bool* retry);

  bool up() const { return !history_up_ || history_up_(); }

  MessageLog& log_;
  std::function<Result<uint64_t>(std::string_view)> first_seq_;
  HistoryReader* history_;
  std::function<bool()> history_up_;
};

}  // namespace agentd::net
