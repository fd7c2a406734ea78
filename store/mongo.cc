#include "store/mongo.h"

#include <spdlog/spdlog.h>

#include <mutex>

namespace agentd {

namespace {

// mongo-c-driver logs through spdlog. Its warnings and debug lines repeat
// per connection attempt while a server is down ("Failed to buffer 4
// bytes", heartbeat errors, FerretDB's missing endSessions); the flusher
// logs the state changes that matter, so those go to debug.
void log_to_spdlog(mongoc_log_level_t level, const char* domain, const char* message, void*) {
  switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL: spdlog::error("mongoc {}: {}", domain, message); break;
    case MONGOC_LOG_LEVEL_TRACE: break;
    default: spdlog::debug("mongoc {}: {}", domain, message); break;
  }
}

}  // namespace

void mongo_global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    mongoc_init();
    mongoc_log_set_handler(log_to_spdlog, nullptr);
  });
}

std::string describe(const bson_error_t& e) {
  return std::to_string(e.domain) + "." + std::to_string(e.code) + ": " + e.message;
}

Result<std::unique_ptr<MongoPool>> MongoPool::open(std::string_view uri_text, std::string_view app_name) {
  mongo_global_init();
  bson_error_t err;
  mongoc_uri_t* uri = mongoc_uri_new_with_error(std::string(uri_text).c_str(), &err);
  if (!uri) return invalid_argument("--mongo-uri: " + std::string(err.message));
  // Fail fast on server selection so a down database surfaces as an error the
  // caller retries, rather than a call that hangs for 30 s.
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS)) {
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 2000);
  }
  if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS)) {
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 2000);
  }
  // mongo-c-driver's default socket timeout is 5 minutes: a hung server
  // would stall the flusher (and a graceful stop) that long.
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS)) {
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 30000);
  }
  if (!mongoc_uri_get_option_as_utf8(uri, MONGOC_URI_APPNAME, nullptr)) {
    mongoc_uri_set_appname(uri, std::string(app_name).c_str());
  }
  const char* db = mongoc_uri_get_database(uri);
  std::string database = (db && *db) ? db : "agentd";
  mongoc_client_pool_t* pool = mongoc_client_pool_new_with_error(uri, &err);
  if (!pool) {
    mongoc_uri_destroy(uri);
    return invalid_argument("--mongo-uri: " + std::string(err.message));
  }
  mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
  return std::unique_ptr<MongoPool>(new MongoPool(uri, pool, std::move(database)));
}

MongoPool::~MongoPool() {
  mongoc_client_pool_destroy(pool_);
  mongoc_uri_destroy(uri_);
}

MongoPool::Lease MongoPool::lease() { return Lease(pool_, mongoc_client_pool_pop(pool_)); }

Status MongoPool::ping() {
  Lease c = lease();
  bson_t cmd = BSON_INITIALIZER;
  BSON_APPEND_INT32(&cmd, "ping", 1);
  bson_error_t err;
  bool ok = mongoc_client_command_simple(c.get(), database_.c_str(), &cmd, nullptr, nullptr, &err);
  bson_destroy(&cmd);
  if (!ok) return unavailable("mongodb ping: " + describe(err));
  return Status::ok();
}

}  // namespace agentd
