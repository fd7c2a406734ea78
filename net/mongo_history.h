// StoreHistoryReader: the merged read's MongoDB side over store/'s
// MessageStore (its reads already return the outbox's bytes).
#pragma once

#include "net/history.h"
#include "store/message_store.h"

namespace agentd::net {

class StoreHistoryReader final : public HistoryReader {
 public:
  explicit StoreHistoryReader(MessageStore* store) : store_(store) {}
  Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq,
                                                   size_t limit) override {
    return store_->read_messages(plan_id, after_seq, limit);
  }
  Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id) override { return store_->get_plan(plan_id); }
  Result<std::vector<PlanRecord>> list_plans(std::string_view user_id, size_t limit) override {
    return store_->list_plans(user_id, limit);
  }

 private:
  MessageStore* store_;
};

}  // namespace agentd::net
