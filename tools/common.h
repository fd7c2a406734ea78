// agentd-outbox: exit codes and helpers shared by its commands.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"
#include "outbox/outbox.h"
#include "outbox/reader.h"

namespace agentd::tool {

// Exit codes (listed in --help by main.cc; keep the two in step).
enum Exit : int {
  kExitOk = 0,
  kExitFailed = 1,            // verify found a violation; replay had rejected documents
  kExitUsage = 2,             // bad command line
  kExitMissingPath = 3,       // the outbox folder does not exist
  kExitNotOutbox = 4,         // the folder is not an outbox
  kExitLocked = 5,            // a live agentd holds the outbox (write commands)
  kExitCorrupt = 6,           // LMDB or outbox bytes are damaged
  kExitFormatVersion = 7,     // on-disk format version this tool does not read
  kExitMongoUnavailable = 8,  // MongoDB unreachable / transient failure (rerun)
  kExitNotConfirmed = 9,      // a destructive action was not confirmed
  kExitNotFound = 10,         // no such dead letter / plan
  kExitIo = 11,               // other OS / LMDB error
};

// The exit code for a failed Status from opening the outbox read-only.
int open_exit_code(const Status& s);
// The exit code for a failed Status from any later step.
int exit_code(const Status& s);
// Prints "agentd-outbox: <what>: <message>" to stderr; returns `code`.
int report_error(std::string_view what, const Status& s, int code);

// Opens `dir` read-only; on failure prints the error and sets *exit.
std::unique_ptr<OutboxReader> open_read_only(const std::string& dir, int* exit);

// Opens `dir` for writing (takes agentd's LOCK). `map_size` is the map size
// the environment already has. Nothing is pruned and nothing is tracked for
// a flusher beyond what the calls do. On failure prints and sets *exit
// (kExitLocked when a live agentd holds it).
std::unique_ptr<Outbox> open_for_write(const std::string& dir, uint64_t map_size, int* exit);

// A key for humans: printable ASCII as is, other bytes as \xNN.
std::string printable(std::string_view bytes);
// "1.5 MiB"
std::string human_bytes(uint64_t n);
// "3 min 12 s"
std::string human_age(int64_t ms);

// Asks "prompt [y/N]" on the terminal. Ok when answered yes or when `yes`;
// kFailedPrecondition when stdin is not a terminal (and not `yes`) or the
// answer is not yes.
Status confirm(const std::string& prompt, bool yes);

// Decodes a message key "plan_id:str16 seq:be64"; false when malformed.
bool split_message_key(std::string_view key, std::string_view* plan_id, uint64_t* seq);

}  // namespace agentd::tool
