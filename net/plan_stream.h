// PlanStream: the delivery core of one client's stream of a plan's messages,
// independent of the transport: net/websocket_session.h writes it as
// WebSocket frames, net/sse_session.h as Server-Sent Events (architecture.md
// invariant 5).
//
// Delivery: start() subscribes to the hub first, then replays persisted
// messages with seq > after_seq from the merged read, page by page, and keeps
// `last_seq_`, the highest persisted seq queued. A persisted frame is queued
// only if its seq is last_seq_ + 1; an older one is skipped (already queued)
// and a newer one means a gap, which starts (or continues) a replay from
// last_seq_. So whichever of live and replay brings a message first, each seq
// is queued once and in order. Live-only frames (seq 0) are queued as they
// come and never replayed.
//
// Bounds: one write in flight (the transport's write_front(), answered by
// written()); the queue holds at most `queue_frames` frames. Replay fills it
// only to half, then waits for writes; live frames that would overflow it
// make the client a slow consumer: delivery stops (the hub forgets it, the
// queue is freed) and slow_consumer() tells the transport to close it.
//
// Threads: deliver() on any thread (the hub's publisher); everything else on
// the strand `ex` (the transport's).
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "net/hub.h"
#include "net/state.h"

namespace agentd::net {

class PlanStream : public Subscriber, public std::enable_shared_from_this<PlanStream> {
 public:
  ~PlanStream() override;
  // Subscriber: any thread; only posts to the strand.
  void deliver(const Frame& frame) override;

 protected:
  PlanStream(ServerState& st, std::string plan_id, boost::asio::any_io_executor ex, size_t queue_frames);

  // On the strand, once: subscribe (kUnavailable over --ws-max-per-plan),
  // then replay seq > after_seq and continue live. With `first_seq` in
  // 1..after_seq, that one message is sent first (a plan's still-open
  // request, for a client that starts from a cursor past it), and the
  // replay waits for it: live frames meanwhile are treated as gaps.
  Status start(uint64_t after_seq, uint64_t first_seq = 0);
  // Forgets what is queued but not being written and replays from
  // `after_seq` (a client's resume request). A read in flight meanwhile is
  // left to finish and its result dropped: the replay reads again from
  // `after_seq` when it returns (an empty answer must not end the replay).
  void restart(uint64_t after_seq);
  // Queues a frame the transport makes itself (seq 0: e.g. a keep-alive).
  void push(Frame f);
  // Leaves the hub and frees the queue but for the frame being written;
  // nothing is queued any more. Idempotent.
  void stop_delivery();
  // The transport finished writing the front frame (`ok` false: it failed).
  void written(bool ok);

  bool queue_empty() const { return queue_.empty(); }
  size_t queue_size() const { return queue_.size(); }
  bool writing() const { return writing_; }
  uint64_t queued_seq() const { return last_seq_; }  // highest persisted seq queued
  bool replaying() const { return replaying_; }
  uint64_t written_seq() const { return written_seq_; }  // highest persisted seq written

  // Transport hooks, on the strand.
  // Write `f` (the queue's front); call written() when done. One at a time.
  virtual void write_front(const Frame& f) = 0;
  // The queue overflowed: delivery is stopped; close the client.
  virtual void slow_consumer() = 0;
  // A replay read failed (e.g. pruned history while MongoDB is unreachable):
  // delivery is stopped; close the client with `s`.
  virtual void replay_failed(const Status& s) = 0;
  // `f` went out on the wire.
  virtual void on_sent(const Frame& f) = 0;
  // Nothing queued and no replay running (everything committed so far is
  // on the wire).
  virtual void on_idle() = 0;
  // A frame read by the replay was queued (for metrics).
  virtual void on_replayed() {}

  ServerState& st_;
  const std::string plan_id_;

 private:
  void on_frame(const Frame& f);
  void start_replay(uint64_t after_seq);
  void on_first(uint64_t seq, uint64_t gen, Result<std::vector<StoredMessage>> r);
  void do_replay();
  void on_replay(uint64_t from, uint64_t gen, Result<std::vector<StoredMessage>> r);
  void do_write();

  const boost::asio::any_io_executor ex_;
  const size_t queue_frames_;

  // Strand-only state.
  std::deque<Frame> queue_;  // front is being written while writing_
  bool writing_ = false;
  bool subscribed_ = false;
  bool stopped_ = false;
  std::shared_ptr<void> relay_;  // a foreign plan's feed (net/relay.h), held while subscribed
  uint64_t last_seq_ = 0;        // highest persisted seq queued
  uint64_t written_seq_ = 0;     // highest persisted seq written
  bool replaying_ = false;
  bool replay_reading_ = false;
  bool opening_ = false;       // reading start()'s first_seq
  size_t replay_asked_ = 0;    // page size of the read in flight
  uint64_t replay_gen_ = 0;    // restart() count: a read begun before the latest restart is stale
  uint64_t skipped_live_ = 0;  // highest live seq dropped as a gap

  // Cross-thread: frames handed to the strand but not yet queued, and the
  // queue's size, for the slow-consumer check in deliver().
  std::atomic<size_t> posted_{0};
  std::atomic<size_t> queued_{0};
  std::atomic<bool> slow_{false};
  std::atomic<bool> dead_{false};
};

}  // namespace agentd::net
