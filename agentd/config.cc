#include "agentd/config.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace agentd {

std::string default_data_dir() {
  if (const char* s = std::getenv("XDG_STATE_HOME"); s && *s) return std::string(s) + "/agentd";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.local/state/agentd";
  return "./agentd-data";
}

std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    i = j + 1;
  }
  return out;
}

bool split_host_port(const std::string& s, std::string* host, unsigned short* port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  try {
    int p = std::stoi(s.substr(colon + 1));
    if (p < 0 || p > 65535) return false;
    *port = static_cast<unsigned short>(p);
  } catch (...) {
    return false;
  }
  return true;
}

// Longer than 80 lines on purpose: a table, one statement per flag in
// --help order (README.md lists them in the same order).
void add_flags(CLI::App& app, Config& cfg) {
  app.footer(
      "Every flag can also be set by the environment variable shown.\n"
      "Exit codes: 0 clean stop, 1 internal error, 2 bad flags, 3 data folder unusable, 4 cannot listen.");
  app.add_option("--listen", cfg.listen, "HOST:PORT to serve HTTP and WebSocket on")
      ->envname("AGENTD_LISTEN")
      ->capture_default_str();
  app.add_option("--data-dir", cfg.data_dir, "folder of the LMDB outbox (created if missing; locked)")
      ->envname("AGENTD_DATA_DIR")
      ->capture_default_str();
  app.add_option("--mongo-uri", cfg.mongo_uri,
                 "MongoDB URI to flush messages to; empty = embedded default (the outbox is the store)")
      ->envname("AGENTD_MONGO_URI");
  app.add_option("--threads", cfg.threads, "io_context threads serving HTTP/WebSocket")
      ->envname("AGENTD_THREADS")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  app.add_option("--log-level", cfg.log_level, "trace, debug, info, warn, error")
      ->envname("AGENTD_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  // ---- net flags ----
  app.add_option("--auth", cfg.auth,
                 "identity: dev (x-ms-client-principal-id if sent, else the zero-UUID user; local runs only), "
                 "header (x-ms-client-principal-id required and trusted: only behind an authenticating proxy), "
                 "token (Authorization: Bearer checked against --auth-token-file)")
      ->envname("AGENTD_AUTH")
      ->check(CLI::IsMember({"dev", "header", "token"}))
      ->capture_default_str();
  app.add_option("--auth-token-file", cfg.auth_token_file, "file of '<token> <user_id>' lines for --auth=token")
      ->envname("AGENTD_AUTH_TOKEN_FILE");
  app.add_option("--cors-origins", cfg.cors_origins,
                 "comma-separated browser origins (scheme://host[:port]) allowed to call the API cross-origin, "
                 "with credentials; '*' = any origin, without credentials; empty = same origin only")
      ->envname("AGENTD_CORS_ORIGINS");
  app.add_option("--max-body-bytes", cfg.max_body_bytes, "largest request body; larger -> 413")
      ->envname("AGENTD_MAX_BODY_BYTES")
      ->check(CLI::Range(size_t{1024}, size_t{64} << 20))
      ->capture_default_str();
  app.add_option("--max-connections", cfg.max_connections, "open TCP connections (HTTP + WebSocket) at most")
      ->envname("AGENTD_MAX_CONNECTIONS")
      ->check(CLI::Range(size_t{1}, size_t{1000000}))
      ->capture_default_str();
  app.add_option("--ws-max-per-plan", cfg.ws_max_per_plan, "WebSockets per plan at most")
      ->envname("AGENTD_WS_MAX_PER_PLAN")
      ->check(CLI::Range(size_t{1}, size_t{1000000}))
      ->capture_default_str();
  app.add_option("--ws-queue-frames", cfg.ws_queue_frames,
                 "per-WebSocket send queue; a client that lets it fill is closed as a slow consumer")
      ->envname("AGENTD_WS_QUEUE_FRAMES")
      ->check(CLI::Range(size_t{2}, size_t{1000000}))
      ->capture_default_str();
  app.add_option("--header-timeout-ms", cfg.header_timeout_ms, "idle keep-alive / request header read timeout")
      ->envname("AGENTD_HEADER_TIMEOUT_MS")
      ->check(CLI::Range(10u, 3600000u))
      ->capture_default_str();
  app.add_option("--ws-idle-timeout-ms", cfg.ws_idle_timeout_ms,
                 "WebSocket idle timeout (pings are sent at half of it; no answer -> closed)")
      ->envname("AGENTD_WS_IDLE_TIMEOUT_MS")
      ->check(CLI::Range(100u, 3600000u))
      ->capture_default_str();
  app.add_option("--sse-keepalive-ms", cfg.sse_keepalive_ms,
                 "SSE streams (/plan/{id}/events): a keep-alive comment after this long without an event")
      ->envname("AGENTD_SSE_KEEPALIVE_MS")
      ->check(CLI::Range(50u, 3600000u))
      ->capture_default_str();
  app.add_option("--shutdown-timeout-ms", cfg.shutdown_timeout_ms,
                 "on SIGTERM/SIGINT: time for in-flight requests and WebSocket closes")
      ->envname("AGENTD_SHUTDOWN_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--outbox-max-bytes", cfg.outbox_max_bytes, "outbox size limit; appends beyond it get 503")
      ->envname("AGENTD_OUTBOX_MAX_BYTES")
      ->capture_default_str();
  app.add_option("--outbox-retention-hours", cfg.outbox_retention_hours,
                 "with --mongo-uri: messages MongoDB acknowledged stay in the outbox this long (reads while MongoDB "
                 "is down are served from it); pending ones are never removed")
      ->envname("AGENTD_OUTBOX_RETENTION_HOURS")
      ->check(CLI::Range(0u, 87600u))
      ->capture_default_str();
  app.add_option("--embedded-retention-days", cfg.embedded_retention_days,
                 "without --mongo-uri: finished plans not updated for this many days are removed with their "
                 "messages; 0 = keep everything")
      ->envname("AGENTD_EMBEDDED_RETENTION_DAYS")
      ->check(CLI::Range(0u, 36500u))
      ->capture_default_str();
  app.add_option("--outbox-prune-interval-s", cfg.outbox_prune_interval_s,
                 "how often retention (either kind) runs, and stale LMDB reader slots are cleared")
      ->envname("AGENTD_OUTBOX_PRUNE_INTERVAL_S")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  app.add_option("--web-dir", cfg.web_dir, "serve the web page at / from this folder; empty = the copy built in")
      ->envname("AGENTD_WEB_DIR");
  // ---- store flags ----
  app.add_option("--write-concern", cfg.write_concern,
                 "MongoDB write concern w: a number >= 1 or 'majority' (no tag names); checked by one write at "
                 "start: a server that refuses it (w > 1 on a standalone, w above the replica set's members) "
                 "stops agentd with exit 2 (FerretDB accepts any)")
      ->envname("AGENTD_WRITE_CONCERN")
      ->capture_default_str();
  app.add_option("--journal", cfg.journal,
                 "MongoDB write concern j (journaled); a server without journaling refuses true: exit 2 at start")
      ->envname("AGENTD_JOURNAL")
      ->capture_default_str();
  app.add_option("--flush-batch", cfg.flush_batch, "pending messages per MongoDB bulk write")
      ->envname("AGENTD_FLUSH_BATCH")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  app.add_option("--flush-backoff-max-ms", cfg.flush_backoff_max_ms,
                 "cap of the retry backoff while MongoDB is unreachable (base 50 ms, full jitter)")
      ->envname("AGENTD_FLUSH_BACKOFF_MAX_MS")
      ->check(CLI::Range(100u, 3600000u))
      ->capture_default_str();
  app.add_option("--flush-drain-timeout-ms", cfg.flush_drain_timeout_ms,
                 "on SIGTERM/SIGINT: time to drain pending messages to MongoDB (the rest stays in the outbox)")
      ->envname("AGENTD_FLUSH_DRAIN_TIMEOUT_MS")
      ->capture_default_str();
  // ---- cluster flags (docs/scale-out.md) ----
  app.add_option("--cluster-secret-file", cfg.cluster_secret_file,
                 "several instances on one MongoDB: the shared secret peers authenticate with (a file; "
                 "setting it turns cluster mode on and needs --mongo-uri)")
      ->envname("AGENTD_CLUSTER_SECRET_FILE");
  app.add_option("--instance-id", cfg.instance_id,
                 "this instance's id in the cluster; default: host name + a hash of --data-dir (stable)")
      ->envname("AGENTD_INSTANCE_ID");
  app.add_option("--advertise-url", cfg.advertise_url,
                 "how peers reach this instance, http://host:port; default: http://<--listen>")
      ->envname("AGENTD_ADVERTISE_URL");
  app.add_option("--cluster-heartbeat-ms", cfg.cluster_heartbeat_ms,
                 "how often this instance renews its registry entry")
      ->envname("AGENTD_CLUSTER_HEARTBEAT_MS")
      ->check(CLI::Range(100u, 60000u))
      ->capture_default_str();
  app.add_option("--cluster-stale-ms", cfg.cluster_stale_ms,
                 "a peer whose heartbeat is older than this is treated as down")
      ->envname("AGENTD_CLUSTER_STALE_MS")
      ->check(CLI::Range(200u, 600000u))
      ->capture_default_str();
  add_runtime_flags(app, cfg.runtime);
}

std::string default_instance_id(const std::string& data_dir) {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || !host[0]) std::snprintf(host, sizeof host, "agentd");
  std::error_code ec;
  std::string dir = std::filesystem::weakly_canonical(data_dir, ec).string();
  if (ec) dir = data_dir;
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  for (unsigned char c : dir) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::string(host) + "-" + hex;
}

}  // namespace agentd
