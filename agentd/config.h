// agentd's configuration: every flag, each also read from an AGENTD_*
// environment variable, with its default and its help text.
#pragma once

#include <CLI/CLI.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "agentd/runtime_host.h"

namespace agentd {

// $XDG_STATE_HOME/agentd, else ~/.local/state/agentd.
std::string default_data_dir();

struct Config {
  std::string listen = "127.0.0.1:8000";
  std::string data_dir = default_data_dir();
  std::string mongo_uri;
  unsigned threads = 2;
  std::string log_level = "info";
  // ---- net (HTTP/WebSocket) ----
  std::string auth = "dev";
  std::string auth_token_file;
  std::string cors_origins;
  size_t max_body_bytes = 1 << 20;
  size_t max_connections = 10000;
  size_t ws_max_per_plan = 2000;
  size_t ws_queue_frames = 4096;
  unsigned header_timeout_ms = 10000;
  unsigned ws_idle_timeout_ms = 60000;
  unsigned sse_keepalive_ms = 15000;
  unsigned shutdown_timeout_ms = 10000;
  uint64_t outbox_max_bytes = 8ull << 30;
  unsigned outbox_retention_hours = 24;   // with MongoDB: flushed messages kept this long
  unsigned embedded_retention_days = 0;   // embedded: finished plans kept this long (0 = forever)
  unsigned outbox_prune_interval_s = 60;  // how often retention runs
  std::string web_dir;
  // ---- store (MongoDB flusher) ----
  std::string write_concern = "majority";  // with journal: no acknowledged write rolled back by a failover
  bool journal = true;
  size_t flush_batch = 1000;
  unsigned flush_backoff_max_ms = 30000;
  unsigned flush_drain_timeout_ms = 5000;
  // ---- cluster: several instances on one MongoDB (docs/scale-out.md) ----
  std::string cluster_secret_file;  // set = cluster mode (needs --mongo-uri)
  std::string instance_id;          // default: derived from the host name and --data-dir
  std::string advertise_url;        // default: http://<--listen> (a wildcard address needs this flag)
  unsigned cluster_heartbeat_ms = 1000;
  unsigned cluster_stale_ms = 5000;
  // ---- runtime (agentd/runtime_host.h) ----
  RuntimeFlags runtime;
};

// Registers every flag of `cfg` on `app` (defaults shown in --help).
void add_flags(CLI::App& app, Config& cfg);

std::vector<std::string> split_csv(const std::string& s);
// The default --instance-id: "<host name>-<16 hex digits of a hash of the
// absolute data folder>", stable across restarts on the same folder.
std::string default_instance_id(const std::string& data_dir);
bool split_host_port(const std::string& s, std::string* host, unsigned short* port);

}  // namespace agentd
