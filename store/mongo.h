// MongoDB connection: a mongo-c-driver client pool built from --mongo-uri.
//
// Every call here blocks on the network: run it on the flusher's thread or a
// dedicated worker, never on an io_context thread that serves clients.
// The database is the one the URI names, else "agentd".
#pragma once

#include <mongoc/mongoc.h>

#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace agentd {

// Call once per process before any other mongoc use (idempotent). Routes
// the driver's log to spdlog (warnings and below at debug level).
void mongo_global_init();

class MongoPool {
 public:
  // Parses the URI and builds the pool; does not contact the server.
  static Result<std::unique_ptr<MongoPool>> open(std::string_view uri, std::string_view app_name = "agentd");
  ~MongoPool();
  MongoPool(const MongoPool&) = delete;
  MongoPool& operator=(const MongoPool&) = delete;

  const std::string& database() const { return database_; }

  // A client borrowed from the pool, returned on destruction.
  class Lease {
   public:
    Lease(mongoc_client_pool_t* pool, mongoc_client_t* c) : pool_(pool), client_(c) {}
    Lease(Lease&& o) noexcept : pool_(o.pool_), client_(o.client_) { o.client_ = nullptr; }
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (client_) mongoc_client_pool_push(pool_, client_);
    }
    mongoc_client_t* get() const { return client_; }

   private:
    mongoc_client_pool_t* pool_;
    mongoc_client_t* client_;
  };
  Lease lease();

  // {ping: 1} against the database; kUnavailable when unreachable.
  Status ping();

 private:
  MongoPool(mongoc_uri_t* uri, mongoc_client_pool_t* pool, std::string db)
      : uri_(uri), pool_(pool), database_(std::move(db)) {}
  mongoc_uri_t* uri_;
  mongoc_client_pool_t* pool_;
  std::string database_;
};

// Text of a bson_error_t: "domain.code: message".
std::string describe(const bson_error_t& e);

}  // namespace agentd
