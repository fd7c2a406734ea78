// Test-only entry points of the Outbox, kept out of its public header.
// Only tests include this file.
#pragma once

#include "outbox/outbox.h"

namespace agentd {

class OutboxTestAccess {
 public:
  // The next write transaction fails as a failed commit would (aborted,
  // kIoError), which makes the failure sticky.
  static void fail_next_commit(Outbox& ob);
};

}  // namespace agentd
