// StoreHistoryReader: the merged read's MongoDB side (net's HistoryReader)
// over store/'s MessageStore, whose reads already return the outbox's bytes.
// Lives with the wiring: net/ knows only the interface, store/ only MongoDB.
#pragma once

#include "net/history.h"
#include "store/message_store.h"

namespace agentd {

class StoreHistoryReader final : public net::HistoryReader {
 public:
  // `store` must outlive the reader.
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

}  // namespace agentd
