// inspect and dump: read-only views of an outbox.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <utility>

#include "core/clock.h"
#include "core/json.h"
#include "outbox/format.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace agentd::tool {

namespace of = outbox_format;

namespace {

struct PendingSummary {
  uint64_t messages = 0;
  uint64_t plans = 0;
  int64_t oldest_ms = 0;  // 0: none
};

Result<PendingSummary> summarize_pending(const OutboxSnapshot& snap) {
  PendingSummary s;
  Status bad;
  Status st = snap.scan(OutboxTable::kPending, {}, [&](std::string_view k, std::string_view v) {
    auto p = of::parse_pending_value(v);
    if (!p.is_ok()) {
      bad = corruption("pending key " + printable(k) + ": " + p.status().message());
      return false;
    }
    (p->kind == PendingKind::kMessage ? s.messages : s.plans)++;
    if (s.oldest_ms == 0) s.oldest_ms = p->appended_at_ms;  // id order = append order
    return true;
  });
  AGENTD_RETURN_IF_ERROR(st);
  AGENTD_RETURN_IF_ERROR(bad);
  return s;
}

}  // namespace

int run_inspect(const InspectOptions& o) {
  int exit = kExitOk;
  auto reader = open_read_only(o.dir, &exit);
  if (!reader) return exit;
  auto info = reader->info();
  if (!info.is_ok()) return report_error("inspect", info.status(), exit_code(info.status()));
  auto snap = reader->snapshot();
  if (!snap.is_ok()) return report_error("inspect", snap.status(), exit_code(snap.status()));
  const OutboxSnapshot& s = **snap;
  uint64_t counts[kOutboxTableCount] = {};
  for (int i = 0; i < kOutboxTableCount; ++i) {
    auto st = s.stat(static_cast<OutboxTable>(i));
    if (!st.is_ok()) return report_error("inspect", st.status(), exit_code(st.status()));
    counts[i] = st->entries;
  }
  auto used = s.used_bytes();
  if (!used.is_ok()) return report_error("inspect", used.status(), exit_code(used.status()));
  auto pend = summarize_pending(s);
  if (!pend.is_ok()) return report_error("inspect", pend.status(), exit_code(pend.status()));
  int64_t now = now_unix_ms();
  int64_t age_ms = pend->oldest_ms > 0 ? now - pend->oldest_ms : 0;
  uint64_t plans = counts[static_cast<int>(OutboxTable::kPlans)];
  uint64_t messages = counts[static_cast<int>(OutboxTable::kMessages)];
  uint64_t pending = counts[static_cast<int>(OutboxTable::kPending)];
  uint64_t dead = counts[static_cast<int>(OutboxTable::kDead)];
  if (o.json) {
    JsonObject j;
    j.str("path", o.dir)
        .num("format_version", info->format_version)
        .num("file_bytes", static_cast<int64_t>(info->file_bytes))
        .num("used_bytes", static_cast<int64_t>(*used))
        .num("map_bytes", static_cast<int64_t>(info->map_size))
        .num("plans", static_cast<int64_t>(plans))
        .num("messages", static_cast<int64_t>(messages))
        .num("pending", static_cast<int64_t>(pending))
        .num("pending_messages", static_cast<int64_t>(pend->messages))
        .num("pending_plans", static_cast<int64_t>(pend->plans));
    if (pend->oldest_ms > 0) {
      j.str("oldest_pending_at", format_rfc3339_ms(pend->oldest_ms)).num("oldest_pending_age_ms", age_ms);
    } else {
      j.null("oldest_pending_at").null("oldest_pending_age_ms");
    }
    j.num("dead_letters", static_cast<int64_t>(dead));
    std::cout << j.done() << "\n";
    return kExitOk;
  }
  std::cout << "outbox          " << o.dir << "\n"
            << "format version  " << info->format_version << "\n"
            << "size            " << human_bytes(info->file_bytes) << " on disk (data.mdb), " << human_bytes(*used)
            << " in use, map maximum " << human_bytes(info->map_size) << "\n"
            << "plans           " << plans << "\n"
            << "messages        " << messages << "\n"
            << "pending         " << pending << " (" << pend->messages << " messages, " << pend->plans
            << " plan records)";
  if (pend->oldest_ms > 0) {
    std::cout << ", oldest " << human_age(age_ms) << " old (appended " << format_rfc3339_ms(pend->oldest_ms) << ")";
  }
  std::cout << "\n"
            << "dead letters    " << dead << "\n";
  return kExitOk;
}

// Reads in pages of kDumpPage keys, each in its own short read transaction
// written out after the transaction ended: a slow or closed stdout never
// holds a snapshot of the live outbox (LMDB keeps every page a reader might
// see). A closed pipe ends the dump quietly with exit 0.
int run_dump(const DumpOptions& o) {
  constexpr size_t kDumpPage = 1000;
  int exit = kExitOk;
  auto reader = open_read_only(o.dir, &exit);
  if (!reader) return exit;
  // Messages with a pending entry (fresh or inline) are pending.
  std::set<std::pair<std::string, uint64_t>> pending;
  Status bad;
  if (o.pending_only || o.flushed_only) {
    auto snap = reader->snapshot();
    if (!snap.is_ok()) return report_error("dump", snap.status(), exit_code(snap.status()));
    Status st = (*snap)->scan(OutboxTable::kPending, {}, [&](std::string_view k, std::string_view v) {
      auto p = of::parse_pending_value(v);
      if (!p.is_ok()) {
        bad = corruption("pending key " + printable(k) + ": " + p.status().message());
        return false;
      }
      if (p->kind == PendingKind::kMessage) pending.emplace(std::string(p->plan_id), p->number);
      return true;
    });
    if (!st.is_ok()) return report_error("dump", st, exit_code(st));
    if (!bad.is_ok()) return report_error("dump", bad, exit_code(bad));
  }
  std::string from = o.plan.empty() ? std::string() : of::message_key(o.plan, o.from_seq);
  std::string out;
  uint64_t written = 0;
  for (bool more = true; more;) {
    more = false;
    size_t visited = 0;
    std::string next;
    {
      auto snap = reader->snapshot();
      if (!snap.is_ok()) return report_error("dump", snap.status(), exit_code(snap.status()));
      Status st = (*snap)->scan(OutboxTable::kMessages, from, [&](std::string_view k, std::string_view v) {
        if (visited++ == kDumpPage) {  // the next page starts here, in a new transaction
          next = std::string(k);
          more = true;
          return false;
        }
        std::string_view plan;
        uint64_t seq = 0;
        if (!split_message_key(k, &plan, &seq)) {
          bad = corruption("malformed messages key " + printable(k) + " (run verify)");
          return false;
        }
        if (!o.plan.empty() && plan != o.plan) return false;  // past the plan's range
        if (seq < o.from_seq || seq > o.to_seq) return true;
        auto m = of::parse_message_value(v);
        if (!m.is_ok()) {
          bad = corruption("plan " + std::string(plan) + " seq " + std::to_string(seq) + ": " + m.status().message());
          return false;
        }
        if (o.since_ms && m->appended_at_ms < *o.since_ms) return true;
        if (o.until_ms && m->appended_at_ms >= *o.until_ms) return true;
        if (o.pending_only || o.flushed_only) {
          bool is_pending = pending.count({std::string(plan), seq}) > 0;
          if (o.pending_only != is_pending) return true;
        }
        out.append(m->envelope);
        out.push_back('\n');
        ++written;
        return true;
      });
      if (!st.is_ok()) return report_error("dump", st, exit_code(st));
      if (!bad.is_ok()) return report_error("dump", bad, exit_code(bad));
    }  // the read transaction ends before anything is written
    from = std::move(next);
    std::fwrite(out.data(), 1, out.size(), stdout);
    out.clear();
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      if (errno == EPIPE) return kExitOk;  // the reader went away (`| head`)
      return report_error("dump", io_error(std::string("write to stdout: ") + std::strerror(errno)), kExitIo);
    }
  }
  std::cerr << "agentd-outbox: dumped " << written << " messages\n";
  return kExitOk;
}

}  // namespace agentd::tool
