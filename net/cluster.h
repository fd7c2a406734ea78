// Cluster: several agentd instances on one MongoDB (docs/scale-out.md).
//
// Each instance owns the plans it created: its outbox is their only
// sequencer, and the flusher writes the owner's id into their MongoDB
// documents (`_owner`). An instance serves any plan:
//  - its own from its outbox and MongoDB, as a single instance does;
//  - a foreign plan by asking the owner (its internal endpoints below, which
//    answer from the owner's merged read: complete, with the unflushed
//    tail), or, the owner being unreachable, from MongoDB alone, saying how
//    far that is complete (ReadNote);
//  - writes to a foreign plan are forwarded to the owner (Router), never
//    appended here; live frames are relayed from the owner (net/relay.h).
//
// Membership: every instance upserts { _id: id, url, heartbeat_ms } into
// MongoDB's `instances` every `heartbeat`; an entry older than `stale_after`
// is down. Peers authenticate with the cluster secret (net/auth.h).
//
// Internal endpoints (peer-only: the cluster secret is required; they answer
// only for plans in this instance's outbox and never ask another instance):
//   GET /internal/v1/plan?plan_id=P             -> the plan record (404: not held here)
//   GET /internal/v1/messages?plan_id=P&after_seq=N&limit=L
//        -> application/x-agentd-messages: per message "<seq> <length>\n<bytes>\n", ascending
//   GET /internal/v1/plans?user_id=U&limit=L    -> JSON array of the user's plan records held here
//   POST /internal/v1/cursor?op=set|open|advance&user_id=U&plan_id=P&seq=N&generation=G
//        -> {"start_seq","generation"}: the resume cursors (net/resume_cursors.h) of a plan live
//           with its owner, so that a page loaded through one instance and a socket opened on
//           another agree on where the socket starts
//
// Threads: every call that says "blocking" talks to MongoDB or a peer; run it
// on the read pool, never on a network thread. The object is thread-safe.
#pragma once

#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/message_log.h"
#include "core/metrics.h"
#include "core/plan_record.h"
#include "core/status.h"
#include "core/thread_annotations.h"
#include "net/history.h"
#include "store/message_store.h"

namespace agentd::net {

struct ClusterConfig {
  std::string instance_id;    // --instance-id
  std::string advertise_url;  // --advertise-url: http://host:port, how peers reach this instance
  std::string secret;         // the contents of --cluster-secret-file
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds stale_after{5000};
  std::chrono::milliseconds peer_timeout{5000};  // one call to a peer, connect to last byte
};

// Validates an advertise URL ("http://host:port", no path); the host and port.
Result<std::pair<std::string, std::string>> parse_peer_url(std::string_view url);

struct Peer {
  std::string id;
  std::string url;  // http://host:port
  std::string host, port;
};

// A peer's HTTP answer.
struct PeerReply {
  unsigned status = 0;
  std::string content_type;
  std::string retry_after;
  std::string body;
};

// Where a plan the local outbox does not hold lives.
struct PlanOwner {
  enum class Kind { kUnknown, kSelf, kPeer };
  Kind kind = Kind::kUnknown;
  Peer peer;  // kPeer: the owner (reachable or not)
};

class Cluster final : public RemotePlans {
 public:
  // `log`: this instance's outbox (what "held here" means). `store` must
  // outlive the cluster.
  Cluster(ClusterConfig cfg, MessageLog* log, MessageStore* store, HistoryReader* history, MetricsRegistry& metrics);
  ~Cluster() override;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const ClusterConfig& config() const { return cfg_; }

  // Registers (one heartbeat, blocking) and starts the heartbeat thread.
  // A failed first heartbeat is logged; the thread keeps trying.
  void start();
  // Stops the thread and removes this instance's entry (blocking, bounded
  // by the driver's timeouts). Idempotent.
  void stop();

  // Live peers (fresh heartbeat), this instance excluded.
  std::vector<Peer> live_peers() const;

  // Blocking. The owner of a plan this outbox does not hold: from the cache,
  // MongoDB's `_owner`, else the live peer that holds it.
  PlanOwner owner_of(std::string_view plan_id);

  // Blocking. One HTTP call to `peer` with the cluster secret and, when
  // `user` is not empty, the caller's identity. kUnavailable when the peer
  // cannot be reached or does not answer within peer_timeout.
  Result<PeerReply> call(const Peer& peer, boost::beast::http::verb verb, std::string_view target,
                         std::string_view body = {}, std::string_view content_type = {}, std::string_view user = {});

  // call() to a plan's owner; when it cannot be reached, the registry is
  // read again and, if the owner has a new address (restarted), called there.
  Result<PeerReply> call_owner(const Peer& owner, boost::beast::http::verb verb, std::string_view target,
                               std::string_view body = {}, std::string_view content_type = {},
                               std::string_view user = {});

  // Blocking. A resume-cursor operation at a foreign plan's owner (see the
  // internal route above); nullopt when the owner cannot be reached.
  struct CursorReply {
    uint64_t start_seq = 0;
    uint64_t generation = 0;
  };
  std::optional<CursorReply> remote_cursor(const Peer& owner, std::string_view op, std::string_view user,
                                           std::string_view plan_id, uint64_t seq, uint64_t generation = 0);
  // The owner of `plan_id` when it is a peer (the outbox does not hold the
  // plan); blocking.
  std::optional<Peer> foreign_owner(std::string_view plan_id);

  // RemotePlans (MergedReader's hook for plans the outbox does not hold).
  Result<std::optional<PlanRecord>> get_plan(std::string_view plan_id, ReadNote* note) override;
  Result<std::vector<StoredMessage>> read_messages(std::string_view plan_id, uint64_t after_seq, size_t limit,
                                                   ReadNote* note) override;
  Result<std::vector<PlanRecord>> peer_plans(std::string_view user_id, size_t limit) override;

  // The internal endpoints' bodies, from this instance's outbox / merged read.
  static std::string encode_messages(const std::vector<StoredMessage>& messages);
  static Result<std::vector<StoredMessage>> decode_messages(std::string_view body);

  Counter& forwarded(std::string_view result);  // agentd_cluster_forwards_total{result}

  // Blocking. The team each user selected, shared by every instance
  // (MongoDB's user_teams): user_team() is nullopt when never selected.
  Status set_user_team(std::string_view user, std::string_view team_id);
  Result<std::optional<std::string>> user_team(std::string_view user);

 private:
  // MongoDB and peer calls run with mu_ released: EXCLUDES(mu_).
  void beat() EXCLUDES(mu_);
  void refresh() EXCLUDES(mu_);  // re-reads the instance registry (blocking)
  void run() EXCLUDES(mu_);
  std::optional<Peer> known(std::string_view id) const EXCLUDES(mu_);
  void remember(std::string_view plan_id, const std::string& owner) EXCLUDES(mu_);

  const ClusterConfig cfg_;
  MessageLog* const log_;
  MessageStore* const store_;
  HistoryReader* const history_;
  MetricsRegistry& metrics_;
  Counter& heartbeat_failures_;
  const int64_t started_ms_;

  mutable Mutex mu_;
  std::unordered_map<std::string, InstanceDoc> instances_ GUARDED_BY(mu_);  // every registered instance
  std::unordered_map<std::string, std::string> owners_ GUARDED_BY(mu_);     // plan -> owner id (bounded)
  bool stop_ GUARDED_BY(mu_) = false;
  CondVar cv_{&mu_};  // signalled by stop()
  std::thread thread_;
  bool stopped_ = false;  // stop() ran (caller's thread)
};

}  // namespace agentd::net
