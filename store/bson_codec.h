// Conversions between agentd's canonical JSON (core/json.h) and BSON.
//
// JSON -> BSON keeps key order; integers become int32 when they fit, else
// int64; other numbers become double. BSON -> JSON accepts exactly the types
// that conversion produces (string, int32, int64, double, bool, null,
// document, array) and writes the canonical compact form, so
// bson_to_json(json_to_bson(x)) == x for every canonical x. That is how a
// MongoDB document is proven byte-equal to the outbox's envelope.
#pragma once

#include <bson/bson.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "core/status.h"

namespace agentd {

// Owns a heap bson_t (bson_t's alignment attribute rules out unique_ptr).
class BsonPtr {
 public:
  explicit BsonPtr(bson_t* b = nullptr) : b_(b) {}
  BsonPtr(BsonPtr&& o) noexcept : b_(o.b_) { o.b_ = nullptr; }
  BsonPtr& operator=(BsonPtr&& o) noexcept {
    std::swap(b_, o.b_);
    return *this;
  }
  ~BsonPtr() {
    if (b_) bson_destroy(b_);
  }
  bson_t* get() const { return b_; }

 private:
  bson_t* b_;
};

// Appends the members of JSON object `json` to `out` (which may already hold
// fields, e.g. `_id`).
Status append_json_object(bson_t* out, std::string_view json);

// A new document: {_id: id, ...members of json}.
Result<BsonPtr> json_to_bson(std::string_view json, std::string_view id = {});

// Canonical JSON of `doc`, leaving out the top-level keys listed in `skip`
// (e.g. "_id").
Result<std::string> bson_to_json(const bson_t* doc, std::initializer_list<std::string_view> skip = {});

// Canonical JSON of `doc` with its top-level keys written in exactly the
// order `order` lists (each must be present), leaving out `skip`; any other
// top-level key is kCorruption. MongoDB (and FerretDB) store the fields of a
// `$setOnInsert` upsert in lexicographic order, so this is how a message
// document is turned back into the envelope's byte order. Nested documents
// keep their stored order (an upsert stores a field's value as given).
Result<std::string> bson_to_json_ordered(const bson_t* doc, std::initializer_list<std::string_view> order,
                                         std::initializer_list<std::string_view> skip = {});

}  // namespace agentd
