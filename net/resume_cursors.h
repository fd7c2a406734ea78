// ResumeCursors: where a WebSocket opened WITHOUT after_seq starts (contract
// decision 5). The MACAE UIs load a plan with GET /plan, then open the socket
// with no after_seq (and v4 reconnects the same way after a drop). Each
// (user, plan) remembers the last seq that user was shown: GET /plan sets it
// to the last message of its answer, and a socket opened without after_seq
// advances it as it writes. Such a socket replays from the cursor, so
// whatever committed between the page load (or a dropped socket) and the new
// socket still arrives once; without a cursor it starts live, at the plan's
// last seq.
//
// Bounded: at most `capacity` entries (least recently used dropped first),
// each valid for `ttl` after its last update. Thread-safe; no I/O under the
// lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace agentd::net {

class ResumeCursors {
 public:
  using Clock = std::chrono::steady_clock;
  ResumeCursors(size_t capacity, Clock::duration ttl) : capacity_(capacity), ttl_(ttl) {}

  // GET /plan: the user was just shown everything up to `seq`.
  void set(std::string_view user, std::string_view plan, uint64_t seq);
  // A socket wrote `seq` to the user: the cursor moves forward, never back.
  void advance(std::string_view user, std::string_view plan, uint64_t seq);
  // The cursor, unless missing or expired.
  std::optional<uint64_t> get(std::string_view user, std::string_view plan) const;
  size_t size() const;

 private:
  struct Entry {
    uint64_t seq = 0;
    Clock::time_point at;
    std::list<std::string>::iterator lru;  // position in lru_
  };
  static std::string key(std::string_view user, std::string_view plan);
  void put(std::string k, uint64_t seq, bool forward_only);

  const size_t capacity_;
  const Clock::duration ttl_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;  // guarded by mu_
  std::list<std::string> lru_;                  // most recent first; guarded by mu_
};

}  // namespace agentd::net
