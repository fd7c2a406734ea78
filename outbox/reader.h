// OutboxReader: a read-only view of an outbox folder for offline tools
// (tools/agentd-outbox), safe to use beside a live agentd.
//
// It opens the LMDB environment with MDB_RDONLY, never creates, writes or
// locks anything: it does not take the data folder's LOCK (so a running
// agentd does not make it fail, and it never blocks agentd), and its read
// transactions are ordinary LMDB readers (MVCC: agentd's writer goes on).
// The keys and values it hands out are the raw bytes of outbox/format.h;
// decode them with that header's helpers.
//
// Open errors, distinct so that a tool can map them to exit codes:
//   kNotFound         the folder does not exist
//   kInvalidArgument  the folder exists but is not an outbox (no data.mdb,
//                     or an LMDB environment without the outbox's meta)
//   kCorruption       data.mdb is not a valid LMDB file, or LMDB reports
//                     corrupted pages, or the format_version value is bad
//   kVersionMismatch  the format version is not outbox_format::kFormatVersion
//                     (see format_version() in the message)
//   kIoError          anything else from the OS / LMDB
//
// LMDB forbids opening one environment twice in one process: do not keep an
// OutboxReader open while this process also has an Outbox open on the same
// folder.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace agentd {

// The outbox's named databases (outbox/format.h).
enum class OutboxTable { kMeta, kMessages, kMsgIds, kPending, kPlans, kUserPlans, kDead };
inline constexpr int kOutboxTableCount = 7;
std::string_view outbox_table_name(OutboxTable t);

struct OutboxTableStat {
  uint64_t entries = 0;
  uint64_t pages = 0;  // branch + leaf + overflow
};

struct OutboxEnvInfo {
  uint32_t format_version = 0;
  uint64_t map_size = 0;    // the environment's configured maximum
  uint64_t file_bytes = 0;  // size of data.mdb on disk
  uint64_t page_size = 0;
  uint64_t last_page = 0;  // highest page number in use (file high-water mark)
  uint64_t last_txn_id = 0;
};

class OutboxReader;

// One consistent snapshot (one LMDB read transaction). Views handed to a
// callback or returned by get() point into the map and stay valid until the
// snapshot is destroyed. Keep snapshots short beside a live agentd: an open
// reader pins old pages, so agentd's file cannot reuse them meanwhile.
class OutboxSnapshot {
 public:
  ~OutboxSnapshot();
  OutboxSnapshot(const OutboxSnapshot&) = delete;
  OutboxSnapshot& operator=(const OutboxSnapshot&) = delete;

  // Visits the entries of `t` in key order, starting at the first key >=
  // `from` (every entry when `from` is empty), until `fn` returns false.
  Status scan(OutboxTable t, std::string_view from,
              const std::function<bool(std::string_view key, std::string_view value)>& fn) const;
  // The value of `key`, or nullopt.
  Result<std::optional<std::string_view>> get(OutboxTable t, std::string_view key) const;
  Result<OutboxTableStat> stat(OutboxTable t) const;
  // Bytes of the pages in use: every table plus LMDB's own (free list, main
  // database, the two meta pages).
  Result<uint64_t> used_bytes() const;

 private:
  friend class OutboxReader;
  struct Impl;
  explicit OutboxSnapshot(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class OutboxReader {
 public:
  // See the header comment for the errors.
  static Result<std::unique_ptr<OutboxReader>> open(const std::string& dir);
  ~OutboxReader();
  OutboxReader(const OutboxReader&) = delete;
  OutboxReader& operator=(const OutboxReader&) = delete;

  const std::string& dir() const { return dir_; }
  // Environment facts read at open (file size and pages refreshed per call).
  Result<OutboxEnvInfo> info() const;
  Result<std::unique_ptr<OutboxSnapshot>> snapshot() const;

 private:
  struct Impl;
  OutboxReader(std::string dir, std::unique_ptr<Impl> impl);
  std::string dir_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentd
