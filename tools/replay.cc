// replay: pushes outbox items to MongoDB with the flusher's own upserts
// (store/message_store.h: $setOnInsert messages, version-guarded plans), so a
// replay never overwrites and a rerun is a no-op: that is what makes it
// resumable. Items are read in chunks, each in a short read snapshot, so a
// live agentd's writer is not held back by a long-lived reader.
//
// Sources: the pending queue (default), every message and plan record
// (--all), or one plan's (--plan). Messages go before plan records, as in
// the flusher, so a plan record never claims a last_seq MongoDB lacks.
//
// Counts: `upserted` are messages MongoDB did not have before the chunk
// (sent through MessageStore::upsert_messages), `skipped` those it already
// had (looked up by _id just before; their upsert would be a no-op, so it is
// not sent). A concurrent flusher can move a message from one count to the
// other, never lose it. Plan records always go through upsert_plan (its
// version guard makes an older version a no-op) and count as `plans`.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/clock.h"
#include "outbox/format.h"
#include "store/message_store.h"
#include "store/mongo.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace agentd::tool {

namespace of = outbox_format;

namespace {

constexpr size_t kMaxChunkBytes = 8u << 20;

// One item to push: a message (seq) or a plan record (version).
struct Item {
  uint64_t pending_id = 0;  // pending mode
  PendingKind kind = PendingKind::kMessage;
  std::string plan_id;
  uint64_t number = 0;
  std::string bytes;
};

// Where items come from, chunk by chunk.
class Source {
 public:
  virtual ~Source() = default;
  // Appends the next items (none: done).
  virtual Status next(size_t max_count, std::vector<Item>* out) = 0;
};

// Pending entries through the read-only reader.
class PendingReaderSource : public Source {
 public:
  explicit PendingReaderSource(const OutboxReader* r) : r_(r) {}
  Status next(size_t max_count, std::vector<Item>* out) override {
    auto snap = r_->snapshot();
    if (!snap.is_ok()) return snap.status();
    const OutboxSnapshot& s = **snap;
    Status bad;
    size_t bytes = 0;
    Status st = s.scan(OutboxTable::kPending, of::pending_key(after_ + 1), [&](std::string_view k, std::string_view v) {
      if (out->size() >= max_count || bytes >= kMaxChunkBytes) return false;
      auto id = of::parse_id_key(k, "pending");
      auto p = of::parse_pending_value(v);
      if (!id.is_ok() || !p.is_ok()) {
        bad = corruption("pending key " + printable(k) + ": " +
                         (id.is_ok() ? p.status().message() : id.status().message()) + " (run verify)");
        return false;
      }
      Item it{*id, p->kind, std::string(p->plan_id), p->number, {}};
      if (p->flags & of::kInline) {
        it.bytes = std::string(p->payload);
      } else {
        auto mv = s.get(OutboxTable::kMessages, of::message_key(p->plan_id, p->number));
        if (!mv.is_ok() || !*mv) {
          bad = corruption("pending entry " + std::to_string(*id) + " points at missing message " +
                           std::string(p->plan_id) + " seq " + std::to_string(p->number) + " (run verify)");
          return false;
        }
        auto m = of::parse_message_value(**mv);
        if (!m.is_ok()) {
          bad = m.status();
          return false;
        }
        it.bytes = std::string(m->envelope);
      }
      after_ = *id;
      bytes += it.bytes.size();
      out->push_back(std::move(it));
      return true;
    });
    AGENTD_RETURN_IF_ERROR(st);
    return bad;
  }

 private:
  const OutboxReader* r_;
  uint64_t after_ = 0;
};

// Pending entries through the write-opened Outbox (--ack).
class PendingOutboxSource : public Source {
 public:
  explicit PendingOutboxSource(Outbox* o) : o_(o) {}
  Status next(size_t max_count, std::vector<Item>* out) override {
    auto entries = o_->read_pending(max_count, kMaxChunkBytes, after_);
    if (!entries.is_ok()) return entries.status();
    for (PendingEntry& e : *entries) {
      uint64_t number = e.kind == PendingKind::kMessage ? e.seq : e.plan_version;
      out->push_back(Item{e.id, e.kind, std::move(e.plan_id), number, e.bytes ? *e.bytes : std::string()});
      after_ = e.id;
    }
    return Status::ok();
  }

 private:
  Outbox* o_;
  uint64_t after_ = 0;
};

// Stored messages (all, or one plan's), then the plan records.
class StoredSource : public Source {
 public:
  StoredSource(const OutboxReader* r, std::string plan) : r_(r), plan_(std::move(plan)) {
    from_ = plan_.empty() ? std::string() : of::message_prefix(plan_);
  }
  Status next(size_t max_count, std::vector<Item>* out) override {
    auto snap = r_->snapshot();
    if (!snap.is_ok()) return snap.status();
    const OutboxSnapshot& s = **snap;
    Status bad;
    size_t bytes = 0;
    if (!messages_done_) {
      bool skip_first = !last_key_.empty();
      std::string from = last_key_.empty() ? from_ : last_key_;
      Status st = s.scan(OutboxTable::kMessages, from, [&](std::string_view k, std::string_view v) {
        if (skip_first) {
          skip_first = false;
          if (k == last_key_) return true;
        }
        if (out->size() >= max_count || bytes >= kMaxChunkBytes) return false;
        std::string_view plan;
        uint64_t seq = 0;
        if (!split_message_key(k, &plan, &seq)) {
          bad = corruption("malformed messages key " + printable(k) + " (run verify)");
          return false;
        }
        if (!plan_.empty() && plan != plan_) {
          messages_done_ = true;
          return false;
        }
        auto m = of::parse_message_value(v);
        if (!m.is_ok()) {
          bad = corruption("plan " + std::string(plan) + " seq " + std::to_string(seq) + ": " + m.status().message());
          return false;
        }
        out->push_back(Item{0, PendingKind::kMessage, std::string(plan), seq, std::string(m->envelope)});
        bytes += m->envelope.size();
        last_key_ = std::string(k);
        return true;
      });
      AGENTD_RETURN_IF_ERROR(st);
      AGENTD_RETURN_IF_ERROR(bad);
      if (out->empty()) messages_done_ = true;
      if (!out->empty()) return Status::ok();
    }
    if (plans_done_) return Status::ok();
    plans_done_ = true;  // plan records: one chunk (they are few and small)
    Status st = s.scan(OutboxTable::kPlans, plan_, [&](std::string_view k, std::string_view v) {
      if (!plan_.empty() && k != plan_) return false;
      auto p = decode_plan(v);
      if (!p.is_ok()) {
        bad = corruption("plan record " + printable(k) + ": " + p.status().message());
        return false;
      }
      out->push_back(Item{0, PendingKind::kPlan, std::string(k), p->version, std::string(v)});
      return true;
    });
    AGENTD_RETURN_IF_ERROR(st);
    return bad;
  }

 private:
  const OutboxReader* r_;
  std::string plan_, from_, last_key_;
  bool messages_done_ = false, plans_done_ = false;
};

// A progress bar with rate on a terminal; a plain line per few seconds
// otherwise. Written to stderr.
class Progress {
 public:
  Progress(uint64_t total, bool bar) : total_(total), bar_(bar), start_(std::chrono::steady_clock::now()) {}
  void update(uint64_t done, bool final) {
    auto now = std::chrono::steady_clock::now();
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
    if (bar_) {
      constexpr int kWidth = 30;
      double frac = total_ ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total_)) : 1.0;
      int filled = static_cast<int>(frac * kWidth);
      std::string b(static_cast<size_t>(filled), '#');
      b.append(static_cast<size_t>(kWidth - filled), '-');
      std::fprintf(stderr, "\r[%s] %llu/%llu %3.0f%%  %.0f items/s ", b.c_str(), static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(total_), frac * 100, rate);
      if (final) std::fprintf(stderr, "\n");
      std::fflush(stderr);
      return;
    }
    if (!final && now - last_line_ < std::chrono::seconds(2)) return;
    last_line_ = now;
    std::fprintf(stderr, "replay: %llu/%llu items, %.0f items/s%s\n", static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(total_), rate, final ? " (done)" : "");
  }

 private:
  uint64_t total_;
  bool bar_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_line_{};
};

// The driver's own log: only errors, so progress output stays readable.
void quiet_mongoc_log(mongoc_log_level_t level, const char* domain, const char* message, void*) {
  if (level <= MONGOC_LOG_LEVEL_ERROR) std::fprintf(stderr, "mongoc %s: %s\n", domain, message);
}

struct Counts {
  uint64_t items = 0, upserted = 0, skipped = 0, plans = 0, rejected = 0, acked = 0;
};

class Replayer {
 public:
  Replayer(const ReplayOptions& o, MessageStore* store, Outbox* ack_to) : o_(o), store_(store), ack_to_(ack_to) {}

  // Pushes one chunk; a transient failure comes back as kUnavailable.
  Status push(const std::vector<Item>& items, Counts* c) {
    std::vector<uint64_t> ack_ids;
    std::vector<MessageDoc> docs;
    std::vector<const Item*> doc_items;
    std::map<std::string_view, const Item*> newest_plan;
    for (const Item& it : items) {
      if (it.kind == PendingKind::kMessage) {
        docs.push_back(MessageDoc{it.plan_id, it.number, it.bytes});
        doc_items.push_back(&it);
        continue;
      }
      auto [pos, fresh] = newest_plan.emplace(it.plan_id, &it);
      if (!fresh && it.number > pos->second->number) {
        ack_ids.push_back(pos->second->pending_id);  // superseded in this chunk
        pos->second = &it;
      } else if (!fresh) {
        ack_ids.push_back(it.pending_id);
      }
    }
    if (!docs.empty()) {
      // Documents MongoDB already has are skipped: their $setOnInsert upsert
      // would be a no-op, and FerretDB makes such no-ops slow. The rest go
      // through the flusher's upsert (a concurrent writer is harmless).
      std::unordered_set<std::string> existing;
      if (WriteStatus found = store_->existing_ids(docs, &existing); !found.is_ok()) return found.to_status();
      std::vector<MessageDoc> missing;
      std::vector<const Item*> missing_items;
      for (size_t i = 0; i < docs.size(); ++i) {
        if (existing.count(message_doc_id(docs[i].plan_id, docs[i].seq))) {
          ++c->skipped;
          ack_ids.push_back(doc_items[i]->pending_id);
        } else {
          missing.push_back(docs[i]);
          missing_items.push_back(doc_items[i]);
        }
      }
      WriteStatus ws = missing.empty() ? WriteStatus::ok() : store_->upsert_messages(missing);
      if (ws.is_ok()) {
        c->upserted += missing.size();
        for (const Item* it : missing_items) ack_ids.push_back(it->pending_id);
      } else if (ws.failure().transient()) {
        return ws.to_status();
      } else {
        // Permanent: find the offenders one by one, push the rest.
        for (size_t i = 0; i < missing.size(); ++i) {
          WriteStatus one = store_->upsert_messages(std::span<const MessageDoc>(&missing[i], 1));
          if (one.is_ok()) {
            ++c->upserted;
            ack_ids.push_back(missing_items[i]->pending_id);
          } else if (one.failure().transient()) {
            return one.to_status();
          } else {
            ++c->rejected;
            std::cerr << "\nagentd-outbox: MongoDB rejected plan " << missing[i].plan_id << " seq " << missing[i].seq
                      << ": " << one.failure().reason << ": " << one.failure().message << "\n";
          }
        }
      }
    }
    for (const auto& [plan_id, it] : newest_plan) {
      WriteStatus ws = store_->upsert_plan(it->plan_id, it->number, it->bytes);
      if (ws.is_ok()) {
        ++c->plans;
        ack_ids.push_back(it->pending_id);
      } else if (ws.failure().transient()) {
        return ws.to_status();
      } else {
        ++c->rejected;
        std::cerr << "\nagentd-outbox: MongoDB rejected plan record " << it->plan_id << " version " << it->number
                  << ": " << ws.failure().reason << ": " << ws.failure().message << "\n";
      }
    }
    c->items += items.size();
    if (ack_to_ && !ack_ids.empty()) {
      size_t n = ack_ids.size();
      AGENTD_RETURN_IF_ERROR(ack_to_->ack_sync(std::move(ack_ids)));
      c->acked += n;
    }
    return Status::ok();
  }

 private:
  const ReplayOptions& o_;
  MessageStore* store_;
  Outbox* ack_to_;
};

// Items the source will yield, for the progress total.
Result<uint64_t> count_items(const OutboxReader& r, const ReplayOptions& o) {
  auto snap = r.snapshot();
  if (!snap.is_ok()) return snap.status();
  const OutboxSnapshot& s = **snap;
  if (!o.all && o.plan.empty()) {
    auto st = s.stat(OutboxTable::kPending);
    if (!st.is_ok()) return st.status();
    return st->entries;
  }
  if (o.all) {
    auto m = s.stat(OutboxTable::kMessages);
    if (!m.is_ok()) return m.status();
    auto p = s.stat(OutboxTable::kPlans);
    if (!p.is_ok()) return p.status();
    return m->entries + p->entries;
  }
  uint64_t n = 0;
  Status st = s.scan(OutboxTable::kMessages, of::message_prefix(o.plan), [&](std::string_view k, std::string_view) {
    std::string_view plan;
    uint64_t seq;
    if (!split_message_key(k, &plan, &seq) || plan != o.plan) return false;
    ++n;
    return true;
  });
  AGENTD_RETURN_IF_ERROR(st);
  auto rec = s.get(OutboxTable::kPlans, o.plan);
  if (!rec.is_ok()) return rec.status();
  if (*rec) ++n;
  if (n == 0) return not_found("plan " + o.plan + " has neither messages nor a plan record in this outbox");
  return n;
}

void print_counts(const char* verb, const Counts& c, bool dry_run) {
  if (dry_run) {
    std::cout << "replay (dry run): would push " << c.items << " items: " << c.upserted << " messages, " << c.plans
              << " plan records; nothing was sent\n";
    return;
  }
  std::cout << "replay " << verb << ": " << c.items << " items, " << c.upserted << " messages upserted, " << c.skipped
            << " already in MongoDB (skipped), " << c.plans << " plan records pushed, " << c.rejected << " rejected, "
            << c.acked << " pending entries acked\n";
}

}  // namespace

namespace {

// The flag combinations replay refuses; kExitOk when none.
int check_replay_options(const ReplayOptions& o) {
  if (o.ack && (o.all || !o.plan.empty())) {
    std::cerr << "agentd-outbox: --ack works with the pending queue only (not with --all or --plan)\n";
    return kExitUsage;
  }
  if (o.ack && o.dry_run) {
    std::cerr << "agentd-outbox: --ack and --dry-run exclude each other\n";
    return kExitUsage;
  }
  if (!o.dry_run && o.mongo_uri.empty()) {
    std::cerr << "agentd-outbox: replay needs --mongo-uri (or --dry-run)\n";
    return kExitUsage;
  }
  return kExitOk;
}

std::unique_ptr<Source> read_source(OutboxReader* reader, const ReplayOptions& o) {
  if (o.all || !o.plan.empty()) return std::make_unique<StoredSource>(reader, o.plan);
  return std::make_unique<PendingReaderSource>(reader);
}

// --dry-run: counts what would be pushed, contacts nothing.
int dry_run(OutboxReader* reader, const ReplayOptions& o) {
  Counts c;
  std::unique_ptr<Source> src = read_source(reader, o);
  for (;;) {
    std::vector<Item> items;
    Status st = src->next(o.batch, &items);
    if (!st.is_ok()) return report_error("replay", st, exit_code(st));
    if (items.empty()) break;
    for (const Item& it : items) (it.kind == PendingKind::kMessage ? c.upserted : c.plans)++;
    c.items += items.size();
  }
  print_counts("", c, true);
  return kExitOk;
}

// The MongoDB replay writes to, reachable. Null after reporting why not
// (*exit set).
std::unique_ptr<MongoPool> open_mongo(const ReplayOptions& o, int* exit) {
  mongoc_log_set_handler(quiet_mongoc_log, nullptr);
  mongo_global_init();
  auto pool = MongoPool::open(o.mongo_uri, "agentd-outbox");
  if (!pool.is_ok()) {
    *exit = report_error("--mongo-uri", pool.status(), kExitUsage);
    return nullptr;
  }
  if (Status st = (*pool)->ping(); !st.is_ok()) {
    *exit = report_error("MongoDB unreachable", st, kExitMongoUnavailable);
    return nullptr;
  }
  return std::move(*pool);
}

// Pushes every item of `src` in batches; the exit code.
int push_all(Source* src, Replayer* rep, const ReplayOptions& o, uint64_t total) {
  bool bar = o.progress < 0 ? ::isatty(STDERR_FILENO) != 0 : o.progress == 1;
  Progress progress(total, bar);
  Counts c;
  for (;;) {
    std::vector<Item> items;
    Status st = src->next(o.batch, &items);
    if (!st.is_ok()) return report_error("replay: reading the outbox", st, exit_code(st));
    if (items.empty()) break;
    st = rep->push(items, &c);
    if (!st.is_ok()) {
      progress.update(c.items, true);
      print_counts("stopped", c, false);
      if (st.code() == Code::kUnavailable) {
        return report_error("MongoDB failed (transient; rerun to resume, replay is idempotent)", st,
                            kExitMongoUnavailable);
      }
      return report_error("replay", st, exit_code(st));
    }
    progress.update(c.items, false);
  }
  progress.update(c.items, true);
  print_counts("done", c, false);
  return c.rejected > 0 ? kExitFailed : kExitOk;
}

}  // namespace

int run_replay(const ReplayOptions& o) {
  if (int bad = check_replay_options(o); bad != kExitOk) return bad;
  int exit = kExitOk;
  auto reader = open_read_only(o.dir, &exit);
  if (!reader) return exit;
  auto total = count_items(*reader, o);
  if (!total.is_ok()) return report_error("replay", total.status(), exit_code(total.status()));
  if (*total == 0 && !o.all && o.plan.empty()) {
    std::cerr << "agentd-outbox: nothing pending in " << o.dir
              << " (an agentd without MongoDB tracks nothing; --all pushes every stored message)\n";
  }
  if (o.dry_run) return dry_run(reader.get(), o);

  auto pool = open_mongo(o, &exit);
  if (!pool) return exit;
  MessageStore store(pool.get());
  if (Status st = store.ensure_indexes(); !st.is_ok()) return report_error("MongoDB indexes", st, exit_code(st));
  std::unique_ptr<Outbox> writer;
  std::unique_ptr<Source> src;
  if (o.ack) {
    uint64_t map_size = 0;
    auto info = reader->info();
    if (info.is_ok()) map_size = info->map_size;
    reader.reset();  // LMDB: one open of an environment per process
    writer = open_for_write(o.dir, map_size, &exit);
    if (!writer) return exit;
    src = std::make_unique<PendingOutboxSource>(writer.get());
  } else {
    src = read_source(reader.get(), o);
  }
  Replayer rep(o, &store, writer.get());
  return push_all(src.get(), &rep, o, *total);
}

}  // namespace agentd::tool
