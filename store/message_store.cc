#include "store/message_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <unordered_map>

#include "store/bson_codec.h"

namespace agentd {
namespace {

// A collection handle from a leased client, destroyed before the lease.
class Collection {
 public:
  Collection(MongoPool::Lease& lease, const std::string& db, std::string_view name)
      : c_(mongoc_client_get_collection(lease.get(), db.c_str(), std::string(name).c_str())) {}
  ~Collection() { mongoc_collection_destroy(c_); }
  Collection(const Collection&) = delete;
  Collection& operator=(const Collection&) = delete;
  mongoc_collection_t* get() const { return c_; }

 private:
  mongoc_collection_t* c_;
};

// A stack bson_t destroyed on scope exit.
struct Bson {
  bson_t b = BSON_INITIALIZER;
  Bson() = default;
  Bson(const Bson&) = delete;
  Bson& operator=(const Bson&) = delete;
  ~Bson() { bson_destroy(&b); }
  bson_t* get() { return &b; }
};

MongoFailure make(FailureKind kind, std::string reason, std::string message, int32_t code) {
  MongoFailure f;
  f.kind = kind;
  f.reason = std::move(reason);
  f.message = std::move(message);
  f.code = code;
  return f;
}

// True when (code, message) says the server refuses the write concern as
// configured (never a wait that timed out or was interrupted). MongoDB's
// validateWriteConcern() answers BadValue (2) "cannot use 'j' option when a
// host does not have journaling enabled", "cannot use 'w' > 1 when a host is
// not replicated" (older: "... with a standalone"), "cannot use non-majority
// 'w' mode ..."; a replica set answers UnknownReplWriteConcern (79, no such
// tag) or UnsatisfiableWriteConcern (100, w above the data-bearing members);
// FailedToParse (9) / TypeMismatch (14) name "writeConcern" when malformed.
bool refuses_write_concern(int32_t code, std::string_view m) {
  if (code == 79 || code == 100) return true;
  if (code != 2 && code != 9 && code != 14) return false;
  for (std::string_view needle : {"'j' option", "'w' > 1", "'w' mode", "writeConcern", "write concern"}) {
    if (m.find(needle) != std::string_view::npos) return true;
  }
  return false;
}

// A server error code (MongoDB's error_codes.yml) for the command or the
// server as a whole: only a duplicate key is about the data; every other
// code, known or not (OutOfDiskSpace, LockTimeout, quota and throttling codes
// of Atlas or Cosmos DB, ...), says "try again later".
MongoFailure classify_server_code(int32_t code, std::string message) {
  auto transient = [&](const char* reason) { return make(FailureKind::kTransient, reason, message, code); };
  auto permanent = [&](const char* reason) { return make(FailureKind::kPermanent, reason, message, code); };
  if (refuses_write_concern(code, message)) return transient("write_concern");
  switch (code) {
    case 6:     // HostUnreachable
    case 7:     // HostNotFound
    case 9001:  // SocketException
      return transient("network");
    case 50:   // MaxTimeMSExpired
    case 89:   // NetworkTimeout
    case 262:  // ExceededTimeLimit
      return transient("timeout");
    case 189:    // PrimarySteppedDown
    case 10107:  // NotWritablePrimary
    case 11602:  // InterruptedDueToReplStateChange
    case 13435:  // NotPrimaryNoSecondaryOk
    case 13436:  // NotPrimaryOrSecondary
      return transient("not_primary");
    case 91:     // ShutdownInProgress
    case 11600:  // InterruptedAtShutdown
      return transient("shutdown");
    case 64:   // WriteConcernFailed
    case 79:   // UnknownReplWriteConcern
    case 100:  // UnsatisfiableWriteConcern
      return transient("write_concern");
    case 13:  // Unauthorized
    case 18:  // AuthenticationFailed
      return transient("auth");
    case 1:      // InternalError: FerretDB's backend hiccups (SQLite busy) land here
    case 112:    // WriteConflict
    case 133:    // FailedToSatisfyReadPreference
    case 134:    // ReadConcernMajorityNotAvailableYet
    case 11601:  // Interrupted
      return transient("server");
    case 11000:  // DuplicateKey
    case 11001: return permanent("duplicate_key");
    default: return transient("unknown");
  }
}

// A per-document write error (writeErrors[i].code): permanent only when the
// code says this document itself will never be accepted; anything else is
// classified as a command-level code would be (retried).
MongoFailure classify_document_code(int32_t code, std::string message) {
  auto permanent = [&](const char* reason) { return make(FailureKind::kPermanent, reason, message, code); };
  // MongoDB before 3.x reported a refused write concern per document
  // (BadValue "cannot use 'j' option ..."): about the server, not the document.
  if (refuses_write_concern(code, message)) return make(FailureKind::kTransient, "write_concern", message, code);
  switch (code) {
    case 10334:  // BSONObjectTooLarge
    case 17419:  // document too large after update
    case 17420: return permanent("too_large");
    case 121:  // DocumentValidationFailure
      return permanent("invalid");
    case 2:   // BadValue (FerretDB: nested arrays, NUL, NaN, ...)
    case 9:   // FailedToParse
    case 14:  // TypeMismatch
    case 22:  // InvalidBSON
    case 52:  // DollarPrefixedFieldName
    case 53:  // InvalidIdField
    case 55:  // InvalidDBRef
    case 56:  // EmptyFieldName
    case 57:  // DottedFieldName
      return permanent("rejected");
    default: return classify_server_code(code, std::move(message));
  }
}

// The first element of the array `key` in `reply`, if the array is non-empty.
bool first_array_doc(const bson_t* reply, const char* key, bson_iter_t* doc) {
  bson_iter_t it, child;
  if (!reply || !bson_iter_init_find(&it, reply, key) || !BSON_ITER_HOLDS_ARRAY(&it)) return false;
  if (!bson_iter_recurse(&it, &child) || !bson_iter_next(&child) || !BSON_ITER_HOLDS_DOCUMENT(&child)) return false;
  *doc = child;
  return true;
}

void read_code_msg(const bson_iter_t& doc, int32_t* code, std::string* msg) {
  bson_iter_t it;
  if (bson_iter_recurse(&doc, &it) && bson_iter_find(&it, "code") && BSON_ITER_HOLDS_NUMBER(&it)) {
    *code = static_cast<int32_t>(bson_iter_as_int64(&it));
  }
  if (bson_iter_recurse(&doc, &it) && bson_iter_find(&it, "errmsg") && BSON_ITER_HOLDS_UTF8(&it)) {
    *msg = bson_iter_utf8(&it, nullptr);
  }
}

bool mentions_too_large(std::string_view m) {
  return m.find("too large") != std::string_view::npos || m.find("too big") != std::string_view::npos;
}

Status unavailable_or(Code code, const MongoFailure& f, std::string_view what) {
  std::string m = std::string(what) + ": " + f.message;
  if (f.transient()) return unavailable(std::move(m));
  return Status(code, std::move(m));
}

Result<uint64_t> read_uint(const bson_t* doc, const char* key) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, key) || !(BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it))) {
    return corruption(std::string("document without integer '") + key + "'");
  }
  int64_t v = bson_iter_as_int64(&it);
  if (v < 0) return corruption(std::string("negative '") + key + "'");
  return static_cast<uint64_t>(v);
}

}  // namespace

std::string message_doc_id(std::string_view plan_id, uint64_t seq) {
  std::string id;
  id.reserve(plan_id.size() + 21);
  id.append(plan_id).append(":").append(std::to_string(seq));
  return id;
}

std::string message_content_hash(std::string_view envelope) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 offset basis
  for (unsigned char c : envelope) {
    h ^= c;
    h *= 1099511628211ull;  // FNV prime
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "fnv1a64:";
  for (int shift = 60; shift >= 0; shift -= 4) out.push_back(kHex[(h >> shift) & 0xf]);
  return out;
}

MongoFailure classify(const bson_error_t& err, const bson_t* reply) {
  std::string message = describe(err);
  if (reply) {
    bson_iter_t doc;
    if (first_array_doc(reply, "writeConcernErrors", &doc)) {
      int32_t code = 0;
      std::string msg = message;
      read_code_msg(doc, &code, &msg);
      return make(FailureKind::kTransient, "write_concern", "write concern: " + msg, code);
    }
    if (mongoc_error_has_label(reply, "RetryableWriteError") ||
        mongoc_error_has_label(reply, "TransientTransactionError")) {
      return make(FailureKind::kTransient, "server", message, static_cast<int32_t>(err.code));
    }
    if (first_array_doc(reply, "writeErrors", &doc)) {
      int32_t code = 0;
      std::string msg = message;
      read_code_msg(doc, &code, &msg);
      return classify_document_code(code, msg);
    }
  }
  const auto code = static_cast<int32_t>(err.code);
  switch (err.domain) {
    case MONGOC_ERROR_STREAM:
    case MONGOC_ERROR_PROTOCOL: return make(FailureKind::kTransient, "network", message, code);
    case MONGOC_ERROR_SERVER_SELECTION: return make(FailureKind::kTransient, "server_selection", message, code);
    case MONGOC_ERROR_WRITE_CONCERN: return make(FailureKind::kTransient, "write_concern", message, code);
    case MONGOC_ERROR_CLIENT:
      if (err.code == MONGOC_ERROR_CLIENT_TOO_BIG) return make(FailureKind::kPermanent, "too_large", message, code);
      if (err.code == MONGOC_ERROR_CLIENT_AUTHENTICATE) return make(FailureKind::kTransient, "auth", message, code);
      return make(FailureKind::kTransient, "network", message, code);
    case MONGOC_ERROR_BSON:
    case MONGOC_ERROR_COMMAND:
      if (err.domain == MONGOC_ERROR_BSON || err.code == MONGOC_ERROR_COMMAND_INVALID_ARG) {
        return make(FailureKind::kPermanent, mentions_too_large(message) ? "too_large" : "invalid", message, code);
      }
      return make(FailureKind::kTransient, "server", message, code);
    case MONGOC_ERROR_SERVER:
    case MONGOC_ERROR_QUERY:
    case MONGOC_ERROR_INSERT:
    case MONGOC_ERROR_COLLECTION: return classify_server_code(code, message);
    default: return make(FailureKind::kTransient, "server", message, code);
  }
}

namespace {

// The members of a message document: {_id, <the envelope's members>, _hash}
// (appended to `doc`, a new document or an upsert's $setOnInsert).
Status append_message_doc(bson_t* doc, const std::string& id, std::string_view envelope) {
  BSON_APPEND_UTF8(doc, "_id", id.c_str());
  Status st = append_json_object(doc, envelope);
  BSON_APPEND_UTF8(doc, "_hash", message_content_hash(envelope).c_str());
  return st;
}

// Adds `wc` to a write's options (a transient failure when the driver
// cannot encode it).
WriteStatus append_write_concern(mongoc_write_concern_t* wc, bson_t* opts) {
  if (mongoc_write_concern_append(wc, opts)) return WriteStatus::ok();
  return WriteStatus(make(FailureKind::kTransient, "server", "cannot encode write concern", 0));
}

}  // namespace

Status check_message_document(std::string_view plan_id, uint64_t seq, std::string_view envelope) {
  Bson doc;
  const std::string id = message_doc_id(plan_id, seq);
  AGENTD_RETURN_IF_ERROR(append_message_doc(doc.get(), id, envelope));
  if (doc.get()->len > kMaxMongoDocumentBytes) {
    return Status(Code::kTooLarge, "the message would be a MongoDB document of " + std::to_string(doc.get()->len) +
                                       " bytes, over MongoDB's limit of " + std::to_string(kMaxMongoDocumentBytes));
  }
  return Status::ok();
}

bool write_concern_refused(const MongoFailure& f) {
  return f.reason == "write_concern" && refuses_write_concern(f.code, f.message);
}

std::string describe(const WriteConcernOptions& wc) {
  return std::string("{w: ") + (wc.majority ? std::string("majority") : std::to_string(wc.w)) +
         ", j: " + (wc.journal ? "true" : "false") + "}";
}

Status WriteStatus::to_status() const {
  if (is_ok()) return Status::ok();
  const MongoFailure& f = *failure_;
  if (f.transient()) return unavailable("mongodb (" + f.reason + "): " + f.message);
  return Status(f.reason == "too_large" ? Code::kTooLarge : Code::kInvalidArgument,
                "mongodb rejected (" + f.reason + "): " + f.message);
}

MessageStore::MessageStore(MongoPool* pool, MessageStoreOptions options)
    : pool_(pool), options_(options), write_concern_(mongoc_write_concern_new()) {
  const WriteConcernOptions& wc = options_.write_concern;
  // Invariant: writes are acknowledged (the flusher acks the outbox only
  // after MongoDB acknowledged; w:0 would make that a lie).
  assert(wc.majority || wc.w >= 1);
  if (wc.majority) {
    mongoc_write_concern_set_wmajority(write_concern_, wc.wtimeout_ms);
  } else {
    mongoc_write_concern_set_w(write_concern_, wc.w < 1 ? 1 : wc.w);
    if (wc.wtimeout_ms > 0) mongoc_write_concern_set_wtimeout_int64(write_concern_, wc.wtimeout_ms);
  }
  mongoc_write_concern_set_journal(write_concern_, wc.journal);
}

MessageStore::~MessageStore() { mongoc_write_concern_destroy(write_concern_); }

Status MessageStore::ensure_indexes() {
  struct Index {
    std::string_view collection;
    const char* name;
    std::vector<std::pair<const char*, int>> keys;
    bool unique;
  };
  const Index indexes[] = {
      {kMessagesCollection, "plan_seq", {{"plan_id", 1}, {"seq", 1}}, true},
      {kMessagesCollection, "plan_message_id", {{"plan_id", 1}, {"message_id", 1}}, true},
      {kPlansCollection, "user_created", {{"user_id", 1}, {"created_at", -1}}, false},
  };
  MongoPool::Lease lease = pool_->lease();
  mongoc_database_t* db = mongoc_client_get_database(lease.get(), pool_->database().c_str());
  Status result;
  {
    // Migration: agentd before issue 13 made message_id unique across plans,
    // while the outbox dedups per plan (the same client message_id in two
    // plans was accepted by one and dead-lettered by the other).
    Bson cmd, reply;
    BSON_APPEND_UTF8(cmd.get(), "dropIndexes", std::string(kMessagesCollection).c_str());
    BSON_APPEND_UTF8(cmd.get(), "index", "message_id");
    bson_error_t err;
    if (!mongoc_database_write_command_with_opts(db, cmd.get(), nullptr, reply.get(), &err)) {
      MongoFailure f = classify(err, reply.get());
      // 26 NamespaceNotFound (no collection yet), 27 IndexNotFound (migrated).
      if (f.code != 26 && f.code != 27) {
        result = unavailable_or(Code::kFailedPrecondition, f, "dropIndexes messages.message_id");
      }
    } else {
      spdlog::info("MongoDB: dropped the global unique index messages.message_id (now unique per plan)");
    }
  }
  // One index per command: FerretDB v1 crashes the connection on a
  // createIndexes that lists several indexes which already exist.
  for (const Index& ix : indexes) {
    if (!result.is_ok()) break;
    Bson cmd, reply;
    bson_t list, spec, key;
    std::string coll(ix.collection);
    BSON_APPEND_UTF8(cmd.get(), "createIndexes", coll.c_str());
    BSON_APPEND_ARRAY_BEGIN(cmd.get(), "indexes", &list);
    BSON_APPEND_DOCUMENT_BEGIN(&list, "0", &spec);
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
    for (const auto& [field, dir] : ix.keys) BSON_APPEND_INT32(&key, field, dir);
    bson_append_document_end(&spec, &key);
    BSON_APPEND_UTF8(&spec, "name", ix.name);
    if (ix.unique) BSON_APPEND_BOOL(&spec, "unique", true);
    bson_append_document_end(&list, &spec);
    bson_append_array_end(cmd.get(), &list);
    bson_error_t err;
    if (!mongoc_database_write_command_with_opts(db, cmd.get(), nullptr, reply.get(), &err)) {
      MongoFailure f = classify(err, reply.get());
      result = unavailable_or(Code::kFailedPrecondition, f,
                              "createIndexes " + coll + "." + ix.name);  // e.g. existing data violates unique
      break;
    }
  }
  mongoc_database_destroy(db);
  return result;
}

namespace {

// Destroys `cur`; the failure its iteration ended with, if any (classified
// while the cursor still owns the reply).
std::optional<MongoFailure> close_cursor(mongoc_cursor_t* cur) {
  bson_error_t err;
  const bson_t* reply = nullptr;
  std::optional<MongoFailure> f;
  if (mongoc_cursor_error_document(cur, &err, &reply)) f = classify(err, reply);
  mongoc_cursor_destroy(cur);
  return f;
}

}  // namespace

WriteStatus MessageStore::upsert_messages(std::span<const MessageDoc> batch) {
  std::span<const MessageDoc> todo = batch;
  std::vector<MessageDoc> missing;  // backs `todo` once a replay was found
  if (options_.insert_fast_path) {
    for (int round = 0; !todo.empty() && round < kInsertRounds; ++round) {
      WriteStatus ws = bulk_write(todo, BulkMode::kInsert);
      if (ws.is_ok() || ws.failure().reason != "duplicate_key") return ws;
      // A replay (a lost ack, a crash between write and ack): write only the
      // documents MongoDB does not hold yet, again as inserts.
      std::unordered_set<std::string> have;
      if (WriteStatus found = existing_ids(todo, &have); !found.is_ok()) return found;
      if (have.empty()) break;  // the conflict is not on _id (message_id?): the upserts decide
      std::vector<MessageDoc> rest;
      for (const MessageDoc& m : todo) {
        if (have.count(message_doc_id(m.plan_id, m.seq)) == 0) rest.push_back(m);
      }
      replayed_.fetch_add(todo.size() - rest.size(), std::memory_order_relaxed);
      missing = std::move(rest);
      todo = missing;
    }
    if (todo.empty()) return WriteStatus::ok();
  }
  const size_t chunk = std::max<size_t>(1, options_.upsert_chunk);
  for (size_t i = 0; i < todo.size(); i += chunk) {
    WriteStatus ws = bulk_write(todo.subspan(i, std::min(chunk, todo.size() - i)), BulkMode::kUpsert);
    if (!ws.is_ok()) return ws;
  }
  // An upsert that matched an existing _id changed nothing and reported
  // success: check that what is stored is what we wrote.
  std::unordered_set<std::string> have;
  return existing_ids(todo, &have);
}

WriteStatus MessageStore::existing_ids(std::span<const MessageDoc> batch, std::unordered_set<std::string>* out) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kMessagesCollection);
  Bson filter, opts;
  bson_t id, in;
  BSON_APPEND_DOCUMENT_BEGIN(filter.get(), "_id", &id);
  BSON_APPEND_ARRAY_BEGIN(&id, "$in", &in);
  uint32_t i = 0;
  for (const MessageDoc& m : batch) {
    const char* key;
    char buf[16];
    bson_uint32_to_string(i++, &key, buf, sizeof buf);
    std::string doc_id = message_doc_id(m.plan_id, m.seq);
    bson_append_utf8(&in, key, -1, doc_id.data(), static_cast<int>(doc_id.size()));
  }
  bson_append_array_end(&id, &in);
  bson_append_document_end(filter.get(), &id);
  std::unordered_map<std::string, std::string_view> bytes_of;
  for (const MessageDoc& m : batch) bytes_of.emplace(message_doc_id(m.plan_id, m.seq), m.bytes);
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  const bson_t* doc = nullptr;
  std::optional<MongoFailure> conflict;
  while (!conflict && mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_UTF8(&it)) continue;
    std::string doc_id = bson_iter_utf8(&it, nullptr);
    auto mine = bytes_of.find(doc_id);
    if (mine == bytes_of.end()) continue;
    bool same = false;
    if (bson_iter_init_find(&it, doc, "_hash") && BSON_ITER_HOLDS_UTF8(&it)) {
      same = bson_iter_utf8(&it, nullptr) == message_content_hash(mine->second);
    } else {
      auto stored = bson_to_json_ordered(
          doc, {"seq", "type", "data", "plan_id", "message_id", "timestamp", "user_id", "session_id", "metadata", "v"},
          {"_id"});
      same = stored.is_ok() && *stored == mine->second;
    }
    if (!same) {
      conflict = make(FailureKind::kPermanent, "conflict",
                      "message " + doc_id +
                          ": MongoDB holds other bytes under this plan and seq (a seq handed out again: a data folder "
                          "restored from a backup, or a lost tail of the outbox); not acknowledged as written",
                      0);
      break;
    }
    out->emplace(std::move(doc_id));
  }
  if (auto f = close_cursor(cur)) return WriteStatus(std::move(*f));
  if (conflict) return WriteStatus(std::move(*conflict));
  return WriteStatus::ok();
}

WriteStatus MessageStore::bulk_write(std::span<const MessageDoc> batch, BulkMode mode) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kMessagesCollection);
  Bson opts, upsert;
  BSON_APPEND_BOOL(opts.get(), "ordered", true);
  if (WriteStatus s = append_write_concern(write_concern_, opts.get()); !s.is_ok()) return s;
  BSON_APPEND_BOOL(upsert.get(), "upsert", true);
  mongoc_bulk_operation_t* bulk = mongoc_collection_create_bulk_operation_with_opts(coll.get(), opts.get());
  for (const MessageDoc& m : batch) {
    std::string id = message_doc_id(m.plan_id, m.seq);
    Status st;
    bson_error_t err;
    bool added = false;
    if (mode == BulkMode::kInsert) {
      Bson doc;
      st = append_message_doc(doc.get(), id, m.bytes);
      if (st.is_ok()) added = mongoc_bulk_operation_insert_with_opts(bulk, doc.get(), nullptr, &err);
    } else {
      Bson selector, update;
      bson_t child;
      BSON_APPEND_UTF8(selector.get(), "_id", id.c_str());
      BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$setOnInsert", &child);
      st = append_message_doc(&child, id, m.bytes);
      bson_append_document_end(update.get(), &child);
      if (st.is_ok()) {
        added = mongoc_bulk_operation_update_one_with_opts(bulk, selector.get(), update.get(), upsert.get(), &err);
      }
    }
    if (st.is_ok() && !added) st = invalid_argument(describe(err));
    if (!st.is_ok()) {
      mongoc_bulk_operation_destroy(bulk);
      return WriteStatus(make(FailureKind::kPermanent, st.code() == Code::kTooLarge ? "too_large" : "invalid",
                              "message " + id + ": " + st.message(), 0));
    }
  }
  Bson reply;
  bson_error_t err;
  uint32_t ok = mongoc_bulk_operation_execute(bulk, reply.get(), &err);
  mongoc_bulk_operation_destroy(bulk);
  if (ok == 0) return WriteStatus(classify(err, reply.get()));
  return WriteStatus::ok();
}

Result<bool> MessageStore::message_exists(std::string_view plan_id, uint64_t seq) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kMessagesCollection);
  Bson filter;
  std::string id = message_doc_id(plan_id, seq);
  BSON_APPEND_UTF8(filter.get(), "_id", id.c_str());
  bson_error_t err;
  int64_t n = mongoc_collection_count_documents(coll.get(), filter.get(), nullptr, nullptr, nullptr, &err);
  if (n < 0) return unavailable_or(Code::kInternal, classify(err, nullptr), "count " + id);
  return n > 0;
}

WriteStatus MessageStore::upsert_plan(std::string_view plan_id, uint64_t version, std::string_view plan_bytes) {
  if (version > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return WriteStatus(make(FailureKind::kPermanent, "invalid", "plan version out of range", 0));
  }
  auto doc = json_to_bson(plan_bytes, plan_id);
  if (!doc) {
    return WriteStatus(
        make(FailureKind::kPermanent, "invalid", "plan " + std::string(plan_id) + ": " + doc.status().message(), 0));
  }
  if (!options_.owner.empty()) {
    bson_append_utf8(doc->get(), "_owner", -1, options_.owner.data(), static_cast<int>(options_.owner.size()));
  }
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kPlansCollection);
  Bson filter, opts, reply;
  bson_t lt;
  std::string id(plan_id);
  BSON_APPEND_UTF8(filter.get(), "_id", id.c_str());
  BSON_APPEND_DOCUMENT_BEGIN(filter.get(), "version", &lt);
  BSON_APPEND_INT64(&lt, "$lt", static_cast<int64_t>(version));
  bson_append_document_end(filter.get(), &lt);
  BSON_APPEND_BOOL(opts.get(), "upsert", true);
  if (WriteStatus s = append_write_concern(write_concern_, opts.get()); !s.is_ok()) return s;
  bson_error_t err;
  if (!mongoc_collection_replace_one(coll.get(), filter.get(), doc->get(), opts.get(), reply.get(), &err)) {
    MongoFailure f = classify(err, reply.get());
    // The filter missed because the stored version is >= `version`; the
    // upsert's insert then collided with the existing _id: already newer.
    if (f.reason == "duplicate_key") return WriteStatus::ok();
    f.message = "plan " + id + " v" + std::to_string(version) + ": " + f.message;
    return WriteStatus(std::move(f));
  }
  return WriteStatus::ok();
}

WriteStatus MessageStore::upsert_one(std::string_view collection, const bson_t* selector, const bson_t* update,
                                     Concern concern) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), collection);
  Bson opts, reply;
  BSON_APPEND_BOOL(opts.get(), "upsert", true);
  if (concern == Concern::kConfigured) {
    if (WriteStatus s = append_write_concern(write_concern_, opts.get()); !s.is_ok()) return s;
  }
  bson_error_t err;
  if (!mongoc_collection_update_one(coll.get(), selector, update, opts.get(), reply.get(), &err)) {
    return WriteStatus(classify(err, reply.get()));
  }
  return WriteStatus::ok();
}

WriteStatus MessageStore::insert_dead_letter(const DeadLetterDoc& d) {
  std::string id = std::string(d.is_plan ? "plan:" : "message:") + std::string(d.plan_id) + ":" +
                   (d.is_plan ? "v" : "") + std::to_string(d.seq_or_version);
  Bson selector, update;
  bson_t child;
  BSON_APPEND_UTF8(selector.get(), "_id", id.c_str());
  BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$setOnInsert", &child);
  BSON_APPEND_UTF8(&child, "_id", id.c_str());
  BSON_APPEND_UTF8(&child, "kind", d.is_plan ? "plan" : "message");
  bson_append_utf8(&child, "plan_id", -1, d.plan_id.data(), static_cast<int>(d.plan_id.size()));
  BSON_APPEND_INT64(&child, d.is_plan ? "version" : "seq", static_cast<int64_t>(d.seq_or_version));
  BSON_APPEND_INT64(&child, "pending_id", static_cast<int64_t>(d.pending_id));
  bson_append_utf8(&child, "error", -1, d.error.data(), static_cast<int>(d.error.size()));
  BSON_APPEND_INT64(&child, "dead_at_ms", d.dead_at_ms);
  // The bytes as text; invalid UTF-8 would make the document invalid, so
  // fall back to a note (the outbox keeps the real bytes).
  if (bson_utf8_validate(d.bytes.data(), d.bytes.size(), false)) {
    bson_append_utf8(&child, "bytes", -1, d.bytes.data(), static_cast<int>(d.bytes.size()));
  } else {
    BSON_APPEND_UTF8(&child, "bytes", "<not valid UTF-8; see the outbox's dead letters>");
  }
  bson_append_document_end(update.get(), &child);
  return upsert_one(kDeadLettersCollection, selector.get(), update.get(), Concern::kConfigured);
}

WriteStatus MessageStore::probe_write_concern(int64_t now_ms) {
  Bson selector, update;
  bson_t set;
  const std::string wc = describe(options_.write_concern);
  BSON_APPEND_UTF8(selector.get(), "_id", "write_concern_probe");
  BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$set", &set);
  BSON_APPEND_UTF8(&set, "write_concern", wc.c_str());
  BSON_APPEND_INT64(&set, "checked_at_ms", now_ms);
  bson_append_document_end(update.get(), &set);
  return upsert_one(kMetaCollection, selector.get(), update.get(), Concern::kConfigured);
}

Result<std::vector<StoredMessage>> MessageStore::read_messages(std::string_view plan_id, uint64_t after_seq,
                                                               size_t limit) {
  std::vector<StoredMessage> out;
  if (limit == 0) return out;
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kMessagesCollection);
  Bson filter, opts;
  bson_t gt, sort;
  bson_append_utf8(filter.get(), "plan_id", -1, plan_id.data(), static_cast<int>(plan_id.size()));
  BSON_APPEND_DOCUMENT_BEGIN(filter.get(), "seq", &gt);
  BSON_APPEND_INT64(&gt, "$gt", static_cast<int64_t>(std::min<uint64_t>(after_seq, INT64_MAX)));
  bson_append_document_end(filter.get(), &gt);
  BSON_APPEND_DOCUMENT_BEGIN(opts.get(), "sort", &sort);
  BSON_APPEND_INT32(&sort, "seq", 1);
  bson_append_document_end(opts.get(), &sort);
  BSON_APPEND_INT64(opts.get(), "limit", static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  const bson_t* doc = nullptr;
  Status bad;
  while (bad.is_ok() && mongoc_cursor_next(cur, &doc)) {
    auto seq = read_uint(doc, "seq");
    if (!seq) {
      bad = seq.status();
      break;
    }
    // Stored fields are in lexicographic order (upsert semantics); write
    // them back in the envelope's order (core/envelope.h).
    auto json = bson_to_json_ordered(
        doc, {"seq", "type", "data", "plan_id", "message_id", "timestamp", "user_id", "session_id", "metadata", "v"},
        {"_id", "_hash"});
    if (!json) {
      bad = json.status();
      break;
    }
    out.push_back(StoredMessage{*seq, std::make_shared<const std::string>(std::move(*json))});
  }
  if (auto f = close_cursor(cur))
    return unavailable_or(Code::kInternal, *f, "read messages of " + std::string(plan_id));
  if (!bad.is_ok()) return corruption("messages of " + std::string(plan_id) + ": " + bad.message());
  return out;
}

namespace {

Result<PlanRecord> plan_from_doc(const bson_t* doc) {
  auto json = bson_to_json(doc, {"_id", "_owner"});
  if (!json) return json.status();
  auto plan = decode_plan(*json);
  if (!plan) return corruption("plan document: " + plan.status().message());
  return std::move(*plan);
}

}  // namespace

Result<std::optional<PlanRecord>> MessageStore::get_plan(std::string_view plan_id) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kPlansCollection);
  Bson filter, opts;
  bson_append_utf8(filter.get(), "_id", -1, plan_id.data(), static_cast<int>(plan_id.size()));
  BSON_APPEND_INT64(opts.get(), "limit", 1);
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  const bson_t* doc = nullptr;
  std::optional<Result<PlanRecord>> got;
  if (mongoc_cursor_next(cur, &doc)) got.emplace(plan_from_doc(doc));
  if (auto f = close_cursor(cur)) return unavailable_or(Code::kInternal, *f, "get plan " + std::string(plan_id));
  if (!got) return std::optional<PlanRecord>();
  if (!*got) return got->status();
  return std::optional<PlanRecord>(std::move(got->value()));
}

Result<std::vector<PlanRecord>> MessageStore::list_plans(std::string_view user_id, size_t limit) {
  std::vector<PlanRecord> out;
  if (limit == 0) return out;
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kPlansCollection);
  Bson filter, opts;
  bson_t sort;
  bson_append_utf8(filter.get(), "user_id", -1, user_id.data(), static_cast<int>(user_id.size()));
  BSON_APPEND_DOCUMENT_BEGIN(opts.get(), "sort", &sort);
  BSON_APPEND_INT32(&sort, "created_at", -1);
  BSON_APPEND_INT32(&sort, "_id", 1);
  bson_append_document_end(opts.get(), &sort);
  BSON_APPEND_INT64(opts.get(), "limit", static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  const bson_t* doc = nullptr;
  Status bad;
  while (bad.is_ok() && mongoc_cursor_next(cur, &doc)) {
    auto plan = plan_from_doc(doc);
    if (!plan) {
      bad = plan.status();
      break;
    }
    out.push_back(std::move(*plan));
  }
  if (auto f = close_cursor(cur)) return unavailable_or(Code::kInternal, *f, "list plans");
  if (!bad.is_ok()) return bad;
  return out;
}

Result<std::optional<std::string>> MessageStore::plan_owner(std::string_view plan_id) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kPlansCollection);
  Bson filter, opts;
  bson_t proj;
  bson_append_utf8(filter.get(), "_id", -1, plan_id.data(), static_cast<int>(plan_id.size()));
  BSON_APPEND_DOCUMENT_BEGIN(opts.get(), "projection", &proj);
  BSON_APPEND_INT32(&proj, "_owner", 1);
  bson_append_document_end(opts.get(), &proj);
  BSON_APPEND_INT64(opts.get(), "limit", 1);
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  const bson_t* doc = nullptr;
  std::optional<std::string> owner;
  if (mongoc_cursor_next(cur, &doc)) {
    owner.emplace();
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_owner") && BSON_ITER_HOLDS_UTF8(&it)) {
      uint32_t len = 0;
      const char* v = bson_iter_utf8(&it, &len);
      owner->assign(v, len);
    }
  }
  if (auto f = close_cursor(cur)) return unavailable_or(Code::kInternal, *f, "owner of plan " + std::string(plan_id));
  return owner;
}

WriteStatus MessageStore::heartbeat(const InstanceDoc& self) {
  Bson selector, update;
  bson_t set;
  bson_append_utf8(selector.get(), "_id", -1, self.id.data(), static_cast<int>(self.id.size()));
  BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$set", &set);
  bson_append_utf8(&set, "url", -1, self.url.data(), static_cast<int>(self.url.size()));
  BSON_APPEND_INT64(&set, "started_ms", self.started_ms);
  BSON_APPEND_INT64(&set, "heartbeat_ms", self.heartbeat_ms);
  bson_append_document_end(update.get(), &set);
  return upsert_one(kInstancesCollection, selector.get(), update.get(), Concern::kDefault);
}

Result<std::vector<InstanceDoc>> MessageStore::list_instances() {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kInstancesCollection);
  Bson filter, opts;
  BSON_APPEND_INT64(opts.get(), "limit", 1000);  // a cluster is a handful of instances
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  const bson_t* doc = nullptr;
  std::vector<InstanceDoc> out;
  while (mongoc_cursor_next(cur, &doc)) {
    InstanceDoc d;
    bson_iter_t it;
    uint32_t len = 0;
    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it)) {
      const char* v = bson_iter_utf8(&it, &len);
      d.id.assign(v, len);
    }
    if (bson_iter_init_find(&it, doc, "url") && BSON_ITER_HOLDS_UTF8(&it)) {
      const char* v = bson_iter_utf8(&it, &len);
      d.url.assign(v, len);
    }
    if (bson_iter_init_find(&it, doc, "started_ms")) d.started_ms = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, doc, "heartbeat_ms")) d.heartbeat_ms = bson_iter_as_int64(&it);
    if (!d.id.empty() && !d.url.empty()) out.push_back(std::move(d));
  }
  if (auto f = close_cursor(cur)) return unavailable_or(Code::kInternal, *f, "list instances");
  return out;
}

WriteStatus MessageStore::remove_instance(std::string_view id) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kInstancesCollection);
  Bson selector, reply;
  bson_append_utf8(selector.get(), "_id", -1, id.data(), static_cast<int>(id.size()));
  bson_error_t err;
  if (!mongoc_collection_delete_one(coll.get(), selector.get(), nullptr, reply.get(), &err)) {
    return WriteStatus(classify(err, reply.get()));
  }
  return WriteStatus::ok();
}

WriteStatus MessageStore::set_user_team(std::string_view user_id, std::string_view team_id) {
  Bson selector, update;
  bson_t set;
  bson_append_utf8(selector.get(), "_id", -1, user_id.data(), static_cast<int>(user_id.size()));
  BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$set", &set);
  bson_append_utf8(&set, "team_id", -1, team_id.data(), static_cast<int>(team_id.size()));
  bson_append_document_end(update.get(), &set);
  return upsert_one(kUserTeamsCollection, selector.get(), update.get(), Concern::kDefault);
}

Result<std::optional<std::string>> MessageStore::user_team(std::string_view user_id) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), kUserTeamsCollection);
  Bson filter, opts;
  bson_append_utf8(filter.get(), "_id", -1, user_id.data(), static_cast<int>(user_id.size()));
  BSON_APPEND_INT64(opts.get(), "limit", 1);
  mongoc_cursor_t* cur = mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr);
  const bson_t* doc = nullptr;
  std::optional<std::string> team;
  if (mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "team_id") && BSON_ITER_HOLDS_UTF8(&it)) {
      uint32_t len = 0;
      const char* v = bson_iter_utf8(&it, &len);
      team.emplace(v, len);
    }
  }
  if (auto f = close_cursor(cur)) return unavailable_or(Code::kInternal, *f, "team of user " + std::string(user_id));
  return team;
}

Result<int64_t> MessageStore::count(std::string_view collection) {
  MongoPool::Lease lease = pool_->lease();
  Collection coll(lease, pool_->database(), collection);
  Bson filter;
  bson_error_t err;
  int64_t n = mongoc_collection_count_documents(coll.get(), filter.get(), nullptr, nullptr, nullptr, &err);
  if (n < 0) return unavailable_or(Code::kInternal, classify(err, nullptr), "count " + std::string(collection));
  return n;
}

}  // namespace agentd
