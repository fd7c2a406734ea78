// MessageStore: agentd's three MongoDB collections and the only code that
// writes or reads them.
//
// Document layout (database = MongoPool::database()):
//
//   messages     := { _id: "<plan_id>:<seq>", <the envelope's members>, _hash: message_content_hash(envelope) }
//                   indexes: plan_seq (plan_id 1, seq 1) unique; plan_message_id (plan_id 1, message_id 1)
//                   unique — per plan, as the outbox dedups (ensure_indexes() drops the global
//                   unique message_id index of earlier versions)
//   plans        := { _id: "<plan_id>", <plan record members in record order>[, _owner: "<instance id>"] }
//                   index:   user_created (user_id 1, created_at -1)
//                   _owner: the instance whose outbox sequences the plan (MessageStoreOptions::owner;
//                   docs/scale-out.md); absent when written by a single instance
//   instances    := { _id: "<instance id>", url: "<advertise url>", started_ms, heartbeat_ms }
//                   one per running instance of a cluster, refreshed every heartbeat
//   user_teams   := { _id: "<user_id>", team_id: "<team id>" }
//                   a cluster's users' selected teams (POST select_team on any instance)
//   dead_letters := { _id: "<kind>:<plan_id>:<seq|version>", kind: "message"|"plan", plan_id,
//                     seq | version, pending_id, error, dead_at_ms, bytes: <the outbox bytes as text> }
//   meta         := { _id: "write_concern_probe", write_concern: "<as configured>", checked_at_ms }
//                   (probe_write_concern(): written at every start with the flusher's write concern)
//
// The members are core/envelope.h's bytes mapped by store/bson_codec.h. An
// upsert stores top-level fields in lexicographic order (MongoDB >= 5 and
// FerretDB alike; nested values keep theirs), so read_messages() writes them
// back in the envelope's order: its bytes == the outbox's bytes.
//
// Write rules:
//  - Messages are inserted, and where some already exist (a replay), written
//    with `$setOnInsert` upserts filtered by _id: a replay is a no-op and
//    never overwrites (invariant 3). See upsert_messages().
//  - A replay is recognised by content, not by _id alone: a document that
//    holds other bytes under the same "<plan_id>:<seq>" (a seq handed out
//    again: a data folder restored from a backup, a lost tail on storage that
//    ignored fsync) is a permanent "conflict", never acknowledged as written.
//    Documents written before `_hash` existed are compared byte for byte.
//  - A plan is replaced only by a newer version: the filter is
//    {_id, version: {$lt: v}} with upsert; when the stored version is >= v the
//    filter misses, the upsert's insert hits the unique _id, and that
//    duplicate-key error means "already newer" → success.
//
// Errors are classified (classify()) into permanent — a per-document write
// error whose code says the document itself is bad (too large, validation,
// BadValue/TypeMismatch/field-name codes: FerretDB's rejections such as
// nested arrays), or a duplicate key, or a document the driver cannot encode —
// and transient: everything else, command-level errors and unknown codes
// included (network, timeouts, server selection, not primary, write concern,
// shutdown, authentication, OutOfDiskSpace, quotas, throttling, ...): retry
// the same write later.
//
// FerretDB v1 (the test and embedded-dev server) differs from MongoDB:
//  - it ignores write concern and `ordered` (documents after a failing one
//    may or may not be written; replays are no-ops, so either is fine);
//  - it reports a bulk's write error at index 0 whatever document caused it,
//    so callers isolate an offender by splitting the batch (store/flusher.h);
//  - createIndexes with several indexes that already exist crashes its
//    connection handler, so ensure_indexes() creates one index per command;
//  - no transactions; updates are read-modify-write (two writers upserting
//    one _id race into a duplicate key, handled as described above);
//  - each update statement is its own SQLite transaction (~100–300 upserts/s
//    on the dev machine versus ~10k inserts/s), and an update command with
//    more than ~100 statements matching existing documents never answers:
//    hence the insert fast path and MessageStoreOptions::upsert_chunk.
//
// Threads: every call blocks on the network (mongo-c-driver). Use it from the
// flusher's thread or a worker, never from an io_context thread serving
// clients. The store itself is thread-safe (each call leases its own client).
#pragma once

#include <bson/bson.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/json.h"
#include "core/message_log.h"
#include "core/plan_record.h"
#include "core/status.h"
#include "store/mongo.h"

namespace agentd {

inline constexpr std::string_view kMessagesCollection = "messages";
inline constexpr std::string_view kPlansCollection = "plans";
inline constexpr std::string_view kDeadLettersCollection = "dead_letters";
inline constexpr std::string_view kInstancesCollection = "instances";
inline constexpr std::string_view kUserTeamsCollection = "user_teams";
inline constexpr std::string_view kMetaCollection = "meta";

// "<plan_id>:<seq>", the _id of a message document.
std::string message_doc_id(std::string_view plan_id, uint64_t seq);

// "fnv1a64:<16 hex digits>": FNV-1a 64 of the envelope bytes, stored as a
// message document's `_hash` (what it was written with; not a security hash).
std::string message_content_hash(std::string_view envelope);

// MongoDB's largest document (BSONObjMaxUserSize, 16 MiB).
inline constexpr size_t kMaxMongoDocumentBytes = kMaxStoredBytes;  // core/json.h: the one definition

// Ok when `envelope` (an envelope of plan `plan_id` with `seq`) maps to a
// message document MongoDB takes: the BSON document upsert_messages() writes
// for it is at most kMaxMongoDocumentBytes. kTooLarge naming the size, or
// kInvalidArgument when the bytes do not map (not a strict JSON object).
// The API calls this before it appends a client's message (a 422 rather
// than a dead letter).
Status check_message_document(std::string_view plan_id, uint64_t seq, std::string_view envelope);

// The longest envelope whose message document stays under
// kMaxMongoDocumentBytes whatever it holds, so that the size half of
// check_message_document need not build it. Compact JSON costs BSON at most
// 6.5 bytes per byte: worst is a one-digit integer in an array ("0," is two
// bytes; its element is a type byte, an index key of at most 7 digits and
// its NUL, and an int32: 13 bytes); a member of an object, a string, an
// empty array or object, a double cost less per byte. 4 KiB covers the
// document's own header, _id (plan ids are short) and _hash.
inline constexpr size_t kEnvelopeSurelyFits = (kMaxMongoDocumentBytes - 4096) / 7;

// Write concern of every write. The default is {w: "majority", j: true}: the
// flusher acks (and retention may then prune) only what a failover cannot
// roll back — w:1 would override the majority default of MongoDB 5.0+
// replica sets. A standalone treats majority as itself. A server that
// refuses the write concern (j:true without journaling, w > 1 on a
// standalone, w above a replica set's data-bearing members) is found at
// start by probe_write_concern() (agentd exits naming --write-concern); at
// run time the same refusal is a transient "write_concern" failure (retried,
// counted), never a dead letter. FerretDB ignores write concern entirely
// (every value is accepted), so refusals are tested on MongoDB's replies.
struct WriteConcernOptions {
  int w = 1;             // >= 1 (unacknowledged writes would break invariant 4)
  bool majority = true;  // true: w = "majority" (w is then ignored)
  bool journal = true;
  int32_t wtimeout_ms = 0;  // 0 = no timeout
};

struct MessageStoreOptions {
  WriteConcernOptions write_concern;
  // Try a plain ordered insert before falling back to upserts (see
  // upsert_messages()). false: always `$setOnInsert` upserts.
  bool insert_fast_path = true;
  // Statements per upsert command. FerretDB v1 hangs (until the socket
  // times out) on one update command with more than ~100 statements that
  // match existing documents, and runs each statement in its own
  // transaction, so keep this small.
  size_t upsert_chunk = 64;
  // Written as `_owner` into every plan document (several instances on one
  // MongoDB: the owner's id); empty = not written.
  std::string owner;
};

// A running instance of a cluster, as its heartbeat left it.
struct InstanceDoc {
  std::string id;
  std::string url;
  int64_t started_ms = 0;
  int64_t heartbeat_ms = 0;
};

enum class FailureKind {
  kTransient,  // the same write may succeed later: retry with backoff
  kPermanent,  // this document will never be accepted
};

// A classified MongoDB failure. `reason` is a short, bounded label for
// metrics (agentd_persist_failures_total{reason=...}).
struct MongoFailure {
  FailureKind kind = FailureKind::kTransient;
  std::string reason;   // network, timeout, server_selection, not_primary, write_concern, shutdown,
                        // auth, server, unknown, duplicate_key, too_large, invalid, rejected
  std::string message;  // the driver's / server's text
  int32_t code = 0;     // server or driver error code
  bool transient() const { return kind == FailureKind::kTransient; }
};

// Classifies a failed call. `reply` (may be null) is the server reply, whose
// writeErrors / writeConcernErrors / errorLabels refine the answer.
MongoFailure classify(const bson_error_t& err, const bson_t* reply);

// True when `f` says the server refuses the write concern as configured
// (reason "write_concern" with a refusal code: BadValue naming 'j'/'w',
// UnknownReplWriteConcern, UnsatisfiableWriteConcern), as opposed to a
// write-concern wait that timed out or was interrupted (retried as usual).
bool write_concern_refused(const MongoFailure& f);

// "{w: majority, j: true}", "{w: 2, j: false}": for messages.
std::string describe(const WriteConcernOptions& wc);

// Either ok or a classified failure.
class [[nodiscard]] WriteStatus {
 public:
  WriteStatus() = default;
  explicit WriteStatus(MongoFailure f) : failure_(std::move(f)) {}
  static WriteStatus ok() { return {}; }
  bool is_ok() const { return !failure_.has_value(); }
  const MongoFailure& failure() const { return *failure_; }
  Status to_status() const;  // kUnavailable when transient, kInvalidArgument / kTooLarge when permanent

 private:
  std::optional<MongoFailure> failure_;
};

// One message to write: the outbox's final envelope bytes.
struct MessageDoc {
  std::string_view plan_id;
  uint64_t seq = 0;
  std::string_view bytes;
};

struct DeadLetterDoc {
  bool is_plan = false;
  std::string_view plan_id;
  uint64_t seq_or_version = 0;
  uint64_t pending_id = 0;
  std::string_view error;
  int64_t dead_at_ms = 0;
  std::string_view bytes;
};

class MessageStore {
 public:
  // Does not contact the server. `pool` must outlive the store.
  MessageStore(MongoPool* pool, MessageStoreOptions options = {});
  ~MessageStore();
  MessageStore(const MessageStore&) = delete;
  MessageStore& operator=(const MessageStore&) = delete;

  MongoPool* pool() const { return pool_; }

  // Creates the indexes listed at the top, one createIndexes per index
  // (idempotent; see the FerretDB note). Transient failures come back as
  // kUnavailable so the caller can retry.
  Status ensure_indexes();

  // Writes `batch` in order so that every document exists afterwards and
  // none is overwritten; a replay is a no-op.
  //  1. Fast path: one ordered bulk *insert* (FerretDB commits an insert
  //     bulk in one transaction; measured 30–100x faster than upserts).
  //  2. If that fails with a duplicate key, some documents already exist (a
  //     replay after a crash or a lost ack): one find of the batch's _ids,
  //     and the documents MongoDB does not hold are inserted again (up to
  //     kInsertRounds rounds, for a concurrent writer). Replayed documents
  //     are counted in replayed_documents().
  //  3. If a duplicate key remains that is not on _id (or the rounds ran
  //     out), the rest is written as ordered bulks of `$setOnInsert` upserts
  //     filtered by _id, at most `upsert_chunk` statements each, so the
  //     server decides (a message_id taken by another _id fails permanently).
  // Invalid JSON / unmappable bytes fail permanently before anything is
  // sent. On a bulk error the failure is reported as a whole (FerretDB does
  // not reliably say which document); the caller splits the batch to find
  // the offender.
  WriteStatus upsert_messages(std::span<const MessageDoc> batch);

  // Adds to `out` the _ids ("<plan_id>:<seq>") of `batch` that the messages
  // collection holds with the same content: one find by _id. A document
  // holding other bytes under one of them is a permanent failure with reason
  // "conflict" naming it. Other failures are classified like a write's.
  WriteStatus existing_ids(std::span<const MessageDoc> batch, std::unordered_set<std::string>* out);

  // Documents upsert_messages() found already stored and skipped (replays).
  uint64_t replayed_documents() const { return replayed_.load(std::memory_order_relaxed); }

  // True when a message document with this _id exists (used to tell an
  // upsert race's duplicate key from a real unique-index conflict).
  Result<bool> message_exists(std::string_view plan_id, uint64_t seq);

  // Replaces the plan document when `version` is newer than the stored one
  // (or inserts it). An older or equal version is a successful no-op.
  // `plan_bytes` is the plan record's canonical JSON.
  WriteStatus upsert_plan(std::string_view plan_id, uint64_t version, std::string_view plan_bytes);

  // Records a dead letter (idempotent by _id; best-effort for callers).
  WriteStatus insert_dead_letter(const DeadLetterDoc& d);

  // One upsert of meta's write_concern_probe document with the configured
  // write concern: the server's answer to it, before any message depends on
  // it. A refusal is write_concern_refused(); unreachable is transient.
  WriteStatus probe_write_concern(int64_t now_ms);

  // Reads for the API's merged read. Failures: kUnavailable when transient,
  // kCorruption when a stored document does not map back to JSON.
  // Messages of the plan with seq > after_seq, ascending, at most `limit`;
  // bytes are the canonical envelope (byte-equal to the outbox's).
  Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq, size_t limit);
  Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id);
  // The user's plans, newest created_at first, at most `limit`.
  Result<std::vector<PlanRecord>> list_plans(std::string_view user_id, size_t limit);
  // The `_owner` of the plan's document: nullopt when MongoDB holds no such
  // plan, "" when it holds one without an owner.
  Result<std::optional<std::string>> plan_owner(std::string_view plan_id);

  // The instance registry (several agentd on one MongoDB). heartbeat()
  // upserts this instance's document; list_instances() returns every
  // document (callers judge staleness by heartbeat_ms); remove_instance()
  // deletes one at a clean stop.
  WriteStatus heartbeat(const InstanceDoc& self);
  Result<std::vector<InstanceDoc>> list_instances();
  WriteStatus remove_instance(std::string_view id);

  // The team a user selected, shared by a cluster's instances: set_user_team()
  // replaces it; user_team() is nullopt when the user never selected one.
  WriteStatus set_user_team(std::string_view user_id, std::string_view team_id);
  Result<std::optional<std::string>> user_team(std::string_view user_id);

  // Number of documents in `collection`; for tests and tools.
  Result<int64_t> count(std::string_view collection);

 private:
  enum class BulkMode { kInsert, kUpsert };
  WriteStatus bulk_write(std::span<const MessageDoc> batch, BulkMode mode);
  // update_one(selector, update) with upsert on `collection`, under the
  // configured write concern (kConfigured) or the client's default
  // (kDefault); a failure is classify()'d into the WriteStatus.
  enum class Concern { kConfigured, kDefault };
  WriteStatus upsert_one(std::string_view collection, const bson_t* selector, const bson_t* update, Concern concern);
  static constexpr int kInsertRounds = 3;

  MongoPool* pool_;
  MessageStoreOptions options_;
  mongoc_write_concern_t* write_concern_;  // owned; built from options_
  std::atomic<uint64_t> replayed_{0};
};

}  // namespace agentd
