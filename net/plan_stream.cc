#include "net/plan_stream.h"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>

namespace agentd::net {

namespace asio = boost::asio;

PlanStream::PlanStream(ServerState& st, std::string plan_id, asio::any_io_executor ex, size_t queue_frames)
    : st_(st), plan_id_(std::move(plan_id)), ex_(std::move(ex)), queue_frames_(std::max<size_t>(queue_frames, 2)) {}

PlanStream::~PlanStream() {
  if (subscribed_) st_.hub.unsubscribe(plan_id_, this);
}

Status PlanStream::start(uint64_t after_seq, uint64_t first_seq) {
  // Subscribe first, then replay: whatever commits from now on arrives live,
  // whatever committed before is in the replay read.
  Status s = st_.hub.subscribe(plan_id_, shared_from_this());
  if (!s.is_ok()) return s;
  subscribed_ = true;
  // Another instance's plan: its owner's frames reach the hub through a relay.
  if (st_.relays) relay_ = st_.relays->watch(plan_id_);
  if (first_seq == 0 || first_seq > after_seq) {
    start_replay(after_seq);
    return Status::ok();
  }
  // The first message, then the replay (which waits for it: a page must
  // see the question before what follows it).
  last_seq_ = after_seq;
  replaying_ = true;
  replay_reading_ = true;
  opening_ = true;  // live frames meanwhile are gaps: the replay sends them after
  auto self = shared_from_this();
  const uint64_t gen = replay_gen_;
  st_.run_read([this, self, first_seq] { return st_.reader.read_messages(plan_id_, first_seq - 1, 1); },
               [self, first_seq, gen](Result<std::vector<StoredMessage>> r) {
                 asio::post(self->ex_, [self, first_seq, gen, r = std::move(r)]() mutable {
                   self->on_first(first_seq, gen, std::move(r));
                 });
               });
  return Status::ok();
}

void PlanStream::on_first(uint64_t seq, uint64_t gen, Result<std::vector<StoredMessage>> r) {
  replay_reading_ = false;
  opening_ = false;
  if (stopped_) return;
  if (gen != replay_gen_) return do_replay();  // a resume came meanwhile: its range replaces the opening
  if (!r) spdlog::warn("stream {}: first message {}: {}", plan_id_, seq, r.status().message());
  if (r && r->size() == 1 && (*r)[0].seq == seq) push(Frame{(*r)[0].seq, std::move((*r)[0].bytes)});
  do_replay();
}

void PlanStream::restart(uint64_t after_seq) {
  if (stopped_) return;
  while (queue_.size() > (writing_ ? 1u : 0u)) queue_.pop_back();
  queued_.store(queue_.size());
  // A read in flight answers for the old position: on_replay()/on_first()
  // drop it and read again from here.
  ++replay_gen_;
  start_replay(after_seq);
}

void PlanStream::deliver(const Frame& frame) {
  if (dead_.load(std::memory_order_relaxed) || slow_.load(std::memory_order_relaxed)) return;
  size_t pending = posted_.fetch_add(1) + 1 + queued_.load(std::memory_order_relaxed);
  if (pending > queue_frames_) {
    posted_.fetch_sub(1);
    if (!slow_.exchange(true)) {
      asio::post(ex_, [self = shared_from_this()] {
        if (self->stopped_) return;
        self->stop_delivery();
        self->slow_consumer();
      });
    }
    return;
  }
  asio::post(ex_, [self = shared_from_this(), frame] {
    self->posted_.fetch_sub(1);
    self->on_frame(frame);
  });
}

void PlanStream::on_frame(const Frame& f) {
  if (stopped_) return;
  if (f.seq == 0) return push(f);
  if (f.seq <= last_seq_) return;  // already queued (by the replay)
  if (f.seq == last_seq_ + 1 && !opening_) {
    last_seq_ = f.seq;
    return push(f);
  }
  // A gap: the log has the missing seqs (they are committed); read them.
  skipped_live_ = std::max(skipped_live_, f.seq);
  if (!replaying_) start_replay(last_seq_);
}

void PlanStream::push(Frame f) {
  if (stopped_) return;
  queue_.push_back(std::move(f));
  queued_.store(queue_.size(), std::memory_order_relaxed);
  do_write();
}

void PlanStream::start_replay(uint64_t after_seq) {
  last_seq_ = after_seq;
  replaying_ = true;
  do_replay();
}

void PlanStream::do_replay() {
  if (!replaying_ || replay_reading_ || stopped_) return;
  size_t room_half = queue_frames_ / 2;
  if (queue_.size() >= room_half) return;  // written() resumes us
  size_t n = std::min(st_.cfg.ws_replay_page, room_half - queue_.size());
  if (n == 0) n = 1;
  replay_reading_ = true;
  replay_asked_ = n;
  uint64_t from = last_seq_;
  const uint64_t gen = replay_gen_;
  auto self = shared_from_this();
  st_.run_read([this, self, from, n] { return st_.reader.read_messages(plan_id_, from, n); },
               [self, from, gen](Result<std::vector<StoredMessage>> r) {
                 asio::dispatch(self->ex_, [self, from, gen, r = std::move(r)]() mutable {
                   self->on_replay(from, gen, std::move(r));
                 });
               });
}

void PlanStream::on_replay(uint64_t from, uint64_t gen, Result<std::vector<StoredMessage>> r) {
  replay_reading_ = false;
  if (stopped_) return;
  // Begun before a resume: it read from another position (an empty answer
  // would end the replay before the resumed range). Read again.
  if (gen != replay_gen_) return do_replay();
  if (!r) {
    spdlog::warn("stream {}: replay after seq {}: {}", plan_id_, from, r.status().message());
    stop_delivery();
    return replay_failed(r.status());
  }
  bool contiguous = true;
  for (auto& m : *r) {
    if (m.seq <= last_seq_) continue;  // came live meanwhile
    if (m.seq != last_seq_ + 1) {
      contiguous = false;
      break;
    }
    last_seq_ = m.seq;
    on_replayed();
    push(Frame{m.seq, std::move(m.bytes)});
    if (stopped_) return;
  }
  // A short page means we have read everything committed before the read
  // began; later commits arrive live (we subscribed before the first read),
  // except those dropped as gaps while we read: keep reading for them.
  if (contiguous && r->size() < replay_asked_ && skipped_live_ <= last_seq_) {
    replaying_ = false;
    if (queue_.empty() && !writing_) on_idle();
    return;
  }
  do_replay();
}

void PlanStream::do_write() {
  // One write in flight: push() and written() both end here.
  if (writing_ || queue_.empty() || stopped_) return;
  writing_ = true;
  write_front(queue_.front());
}

void PlanStream::written(bool ok) {
  writing_ = false;
  if (!ok) {
    stop_delivery();
    return;
  }
  if (!queue_.empty()) {
    Frame f = std::move(queue_.front());
    queue_.pop_front();
    queued_.store(queue_.size(), std::memory_order_relaxed);
    if (f.seq > written_seq_) written_seq_ = f.seq;
    on_sent(f);
  }
  if (stopped_) return;
  if (replaying_) do_replay();
  if (queue_.empty() && !replaying_ && !writing_) return on_idle();
  do_write();
}

void PlanStream::stop_delivery() {
  if (stopped_) return;
  stopped_ = true;
  dead_.store(true);
  if (subscribed_) {
    st_.hub.unsubscribe(plan_id_, this);
    subscribed_ = false;
  }
  relay_.reset();
  // Free the queue now (a write in flight keeps only its own frame).
  while (queue_.size() > (writing_ ? 1u : 0u)) queue_.pop_back();
  queued_.store(queue_.size());
}

}  // namespace agentd::net
