// ResumeCursors: where a WebSocket opened WITHOUT after_seq starts (contract
// decision 5). The MACAE UIs load a plan with GET /plan, then open the socket
// with no after_seq (and v4 reconnects the same way after a drop). Each
// (user, plan) remembers the last seq that user was shown: GET /plan sets it
// to the last message of its answer, and a socket opened without after_seq
// advances it as it writes — unless a GET /plan came after that socket
// opened (a reloading page's old socket may still write after the new page
// loaded; it must not move the new page's cursor past what that page
// showed). Such a socket replays from the cursor, so whatever committed
// between the page load (or a dropped socket) and the new socket still
// arrives once; without a cursor it starts live, at the plan's last seq.
//
// Bounded: at most `capacity` entries (least recently used dropped first),
// each valid for `ttl` after its last update. Thread-safe; no I/O under the
// lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/thread_annotations.h"

namespace agentd::net {

class ResumeCursors {
 public:
  using Clock = std::chrono::steady_clock;
  ResumeCursors(size_t capacity, Clock::duration ttl) : capacity_(capacity), ttl_(ttl) {}

  // A socket's hold on a cursor: where it starts and which page load (the
  // latest GET /plan, or the socket that found no cursor) it belongs to.
  struct Ticket {
    uint64_t start_seq = 0;
    uint64_t generation = 0;
  };

  // GET /plan: the user was just shown everything up to `seq` (a new page
  // load: sockets opened before it no longer move the cursor).
  void set(std::string_view user, std::string_view plan, uint64_t seq);
  // A socket opens without after_seq: it starts at the cursor, or (none, or
  // expired) at `live_seq`, which then becomes the cursor.
  Ticket open(std::string_view user, std::string_view plan, uint64_t live_seq);
  // The socket holding `t` wrote `seq`: the cursor moves forward, never
  // back, unless a later GET /plan replaced the socket's page load.
  void advance(std::string_view user, std::string_view plan, uint64_t seq, const Ticket& t);
  // The cursor, unless missing or expired.
  std::optional<uint64_t> get(std::string_view user, std::string_view plan) const;
  size_t size() const;

 private:
  struct Entry {
    uint64_t seq = 0;
    uint64_t generation = 0;
    Clock::time_point at;
    std::list<std::string>::iterator lru;  // position in lru_
  };
  static std::string key(std::string_view user, std::string_view plan);
  // The entry of `k`, touched; a new one (or an expired one reset) at
  // `seq` with *fresh = true.
  Entry& entry(const std::string& k, uint64_t seq, Clock::time_point now, bool* fresh) REQUIRES(mu_);

  const size_t capacity_;
  const Clock::duration ttl_;
  mutable Mutex mu_;
  std::unordered_map<std::string, Entry> map_ GUARDED_BY(mu_);
  std::list<std::string> lru_ GUARDED_BY(mu_);  // most recent first
  uint64_t next_generation_ GUARDED_BY(mu_) = 1;
};

}  // namespace agentd::net
