#include "core/message_log.h"

#include <future>

namespace agentd {

Result<AppendResult> MessageLog::append_sync(AppendRequest req) {
  std::promise<Result<AppendResult>> p;
  auto f = p.get_future();
  append(std::move(req), [&p](Result<AppendResult> r) { p.set_value(std::move(r)); });
  return f.get();
}

}  // namespace agentd
