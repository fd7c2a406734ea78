// ForwardingLog: a MessageLog that passes every call to `inner` unchanged.
// A test that hooks one call (fails it, holds it, watches its commit)
// derives from it and overrides only that call.
//
// `inner` is set before the first call and outlives this log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "core/message_log.h"

namespace agentd::test {

struct ForwardingLog : MessageLog {
  void append(AppendRequest req, AppendCallback done) override { inner->append(std::move(req), std::move(done)); }
  Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq,
                                                   size_t limit) override {
    return inner->read_messages(plan_id, after_seq, limit);
  }
  Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id) override { return inner->get_plan(plan_id); }
  Result<std::vector<PlanRecord>> list_plans(std::string_view user_id, size_t limit) override {
    return inner->list_plans(user_id, limit);
  }
  Result<uint64_t> last_seq(std::string_view plan_id) override { return inner->last_seq(plan_id); }
  Result<std::optional<uint64_t>> find_message(std::string_view plan_id, std::string_view message_id) override {
    return inner->find_message(plan_id, message_id);
  }
  Result<std::vector<PlanRecord>> list_unfinished_plans(size_t limit) override {
    return inner->list_unfinished_plans(limit);
  }

  MessageLog* inner = nullptr;
};

}  // namespace agentd::test
