// MessageLog: how the runtime and the API append and read messages, without
// knowing that an LMDB outbox (outbox/) implements it.
//
// Contract:
//  - append() completes (calls `done` exactly once) only after the message and
//    the optional plan record are committed and synced together; the seq it
//    reports is the message's place in its plan: 1, 2, 3 … with no gap and no
//    reuse, across crashes. `done` runs on the log's writer thread: keep it
//    short (post to your own executor for real work).
//  - A message whose message_id the plan already has is not appended again:
//    the existing (seq, bytes) is returned with duplicate = true, also after
//    retention pruned the message (then bytes is null).
//  - A plan record passed with the append gets version = stored version + 1
//    (1 for a new plan) and last_seq = the message's seq (or the stored
//    last_seq when there is no message).
//  - Reads never block the writer and see only committed data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/envelope.h"
#include "core/plan_record.h"
#include "core/status.h"

namespace agentd {

struct AppendRequest {
  std::optional<PreparedMessage> message;  // at least one of message / plan
  std::optional<PlanRecord> plan;          // the plan record this message changes
  // External appends (POST agent_message): the message goes in only when the
  // log holds the plan's record and its status is not final, checked in the
  // same transaction; otherwise kFailedPrecondition and nothing is written.
  // A plan the log does not hold is refused rather than started at seq 1
  // (its seqs may live elsewhere: MongoDB, a restored backup). A message_id
  // the plan already has is still answered as a duplicate.
  bool open_plan_only = false;
};

struct AppendResult {
  uint64_t seq = 0;  // 0 when the request had no message
  // Final envelope bytes: null without message, and for a duplicate whose
  // message retention already pruned (MongoDB holds it; the seq still answers).
  std::shared_ptr<const std::string> bytes;
  bool duplicate = false;     // message_id was already in the plan
  uint64_t plan_version = 0;  // version assigned to the plan record, if any
};

using AppendCallback = std::function<void(Result<AppendResult>)>;

// One committed message, as a log reports it to its commit observer (the
// outbox: Outbox::set_observer) in seq order per plan, on the log's writer
// thread, right after the commit. Net's hub fans these out to the streams;
// the type lives here so that net needs the log's contract, not the outbox.
struct CommittedMessage {
  std::string plan_id;
  uint64_t seq = 0;
  std::shared_ptr<const std::string> bytes;
};
using CommitObserver = std::function<void(const std::vector<CommittedMessage>&)>;

struct StoredMessage {
  uint64_t seq = 0;
  std::shared_ptr<const std::string> bytes;
};

class MessageLog {
 public:
  virtual ~MessageLog() = default;

  virtual void append(AppendRequest req, AppendCallback done) = 0;
  // Blocking convenience for plain threads (never call it on the writer thread).
  Result<AppendResult> append_sync(AppendRequest req);

  // Messages of `plan_id` with seq > after_seq, ascending, at most `limit`.
  virtual Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq,
                                                           size_t limit) = 0;
  virtual Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id) = 0;
  // The user's plans, newest (created_at) first, at most `limit`.
  virtual Result<std::vector<PlanRecord>> list_plans(std::string_view user_id, size_t limit) = 0;
  // Highest seq appended to the plan (0 when none).
  virtual Result<uint64_t> last_seq(std::string_view plan_id) = 0;
  // The seq of the plan's message with this message_id, while the log holds
  // it (nullopt when it does not).
  virtual Result<std::optional<uint64_t>> find_message(std::string_view plan_id, std::string_view message_id) = 0;
  // Plans of every user whose status is not final (is_final() false), for
  // resuming them at start-up. At most `limit`. A record that does not
  // decode is left out (and logged): it cannot block a start.
  virtual Result<std::vector<PlanRecord>> list_unfinished_plans(size_t limit) = 0;
};

}  // namespace agentd
