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

// How complete a read of a foreign plan is (several instances,
// net/cluster.h): set when the owner could not be asked and MongoDB alone
// answered, which holds only what the owner has flushed.
struct ReadNote {
  bool owner_unreachable = false;
  std::string owner;  // the owner's instance id
};

// Plans this instance's outbox does not hold but another instance may own
// (net/cluster.h). Blocking.
class RemotePlans {
 public:
  virtual ~RemotePlans() = default;
  virtual Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id, ReadNote* note) = 0;
  virtual Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq, size_t limit,
                                                           ReadNote* note) = 0;
  // The user's plans that live instances hold in their outboxes (some may not
  // be in MongoDB yet); peers that do not answer are left out.
  virtual Result<std::vector<PlanRecord>> peer_plans(std::string_view user_id, size_t limit) = 0;
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

  // Several instances: plans the outbox does not hold are read through
  // `remote` (their owner, else MongoDB). Set once, before any read.
  void set_remote(RemotePlans* remote) { remote_ = remote; }

  // `note` (optional) says whether a foreign plan's answer may be short.
  Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq, size_t limit,
                                                   ReadNote* note = nullptr);
  // The outbox's record, else the owner's (several instances), else MongoDB's.
  Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id, ReadNote* note = nullptr);
  // Union by plan_id (highest version wins), newest first: the outbox,
  // MongoDB and (several instances) what the live peers hold.
  Result<std::vector<PlanRecord>> list_plans(std::string_view user_id, size_t limit);
  // Only what this instance holds: the outbox and, for plans it owns but
  // pruned, MongoDB (the internal endpoints' reads; never asks a peer).
  Result<std::vector<StoredMessage>> read_local(std::string_view plan_id, uint64_t after_seq, size_t limit);

 private:
  Result<std::vector<StoredMessage>> read_once(std::string_view plan_id, uint64_t after_seq, size_t limit, bool* retry);

  bool up() const { return !history_up_ || history_up_(); }

  MessageLog& log_;
  std::function<Result<uint64_t>(std::string_view)> first_seq_;
  HistoryReader* history_;
  std::function<bool()> history_up_;
  RemotePlans* remote_ = nullptr;
};

}  // namespace agentd::net
