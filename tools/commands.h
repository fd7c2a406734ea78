// agentd-outbox's commands. Each returns the process exit code (common.h)
// and writes its report to stdout, errors to stderr.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace agentd::tool {

struct InspectOptions {
  std::string dir;
  bool json = false;
};
// Read-only.
int run_inspect(const InspectOptions& o);

struct DumpOptions {
  std::string dir;
  std::string plan;  // empty: every plan
  uint64_t from_seq = 0;
  uint64_t to_seq = UINT64_MAX;
  bool pending_only = false;
  bool flushed_only = false;
  std::optional<int64_t> since_ms;  // appended_at_ms >= since
  std::optional<int64_t> until_ms;  // appended_at_ms < until
};
// Read-only. One envelope per line, verbatim, in (plan, seq) key order.
int run_dump(const DumpOptions& o);

struct VerifyOptions {
  std::string dir;
  size_t max_problems = 1000;  // printed; all are counted
};
// Read-only, one snapshot.
int run_verify(const VerifyOptions& o);

struct ReplayOptions {
  std::string dir;
  std::string mongo_uri;
  bool all = false;
  std::string plan;  // non-empty: that plan's messages and record
  bool dry_run = false;
  bool ack = false;     // pending mode only: ack what MongoDB acknowledged
  size_t batch = 1000;  // the flusher's max_batch_count
  int progress = -1;    // -1: bar when stderr is a terminal; 0: lines; 1: bar
};
int run_replay(const ReplayOptions& o);

struct DeadLetterOptions {
  std::string dir;
  std::vector<uint64_t> ids;
  bool all = false;
  bool yes = false;
  bool json = false;
};
int run_dead_letters_list(const DeadLetterOptions& o);
int run_dead_letters_retry(const DeadLetterOptions& o);
int run_dead_letters_drop(const DeadLetterOptions& o);

}  // namespace agentd::tool
