// dead-letters list | retry | drop.
//
// list is read-only. retry (back onto the pending queue under a new id) and
// drop (delete for good; asks for confirmation) need the write open, which
// takes agentd's LOCK: they fail with kExitLocked beside a live agentd.
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/json.h"
#include "outbox/format.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace agentd::tool {

namespace of = outbox_format;

namespace {

struct Dead {
  uint64_t id = 0;
  PendingKind kind = PendingKind::kMessage;
  std::string plan_id;
  uint64_t number = 0;
  int64_t dead_at_ms = 0;
  std::string error;
  std::string bytes;
};

Result<std::vector<Dead>> read_dead(const OutboxReader& r) {
  auto snap = r.snapshot();
  if (!snap.is_ok()) return snap.status();
  std::vector<Dead> out;
  Status bad;
  Status st = (*snap)->scan(OutboxTable::kDead, {}, [&](std::string_view k, std::string_view v) {
    auto id = of::parse_id_key(k, "dead letter");
    if (!id.is_ok()) {
      bad = id.status();
      return false;
    }
    auto d = of::parse_dead_value(v);
    if (!d.is_ok()) {
      bad = Status(d.status().code(), "dead letter " + std::to_string(*id) + ": " + d.status().message());
      return false;
    }
    auto p = of::parse_pending_value(d->pending);
    if (!p.is_ok()) {
      bad = Status(p.status().code(), "dead letter " + std::to_string(*id) + ": " + p.status().message());
      return false;
    }
    out.push_back(Dead{*id, p->kind, std::string(p->plan_id), p->number, d->dead_at_ms, std::string(d->error),
                       std::string(p->payload)});
    return true;
  });
  AGENTD_RETURN_IF_ERROR(st);
  AGENTD_RETURN_IF_ERROR(bad);
  return out;
}

// Reads the dead letters, checks the chosen ids exist, returns them and the
// environment's map size.
int select_ids(const DeadLetterOptions& o, std::vector<uint64_t>* ids, uint64_t* map_size) {
  if (o.all == !o.ids.empty()) {
    std::cerr << "agentd-outbox: give either --id N (repeatable) or --all\n";
    return kExitUsage;
  }
  int exit = kExitOk;
  auto reader = open_read_only(o.dir, &exit);
  if (!reader) return exit;
  auto info = reader->info();
  if (!info.is_ok()) return report_error("dead-letters", info.status(), exit_code(info.status()));
  *map_size = info->map_size;
  auto dead = read_dead(*reader);
  if (!dead.is_ok()) return report_error("dead-letters", dead.status(), exit_code(dead.status()));
  std::set<uint64_t> have;
  for (const Dead& d : *dead) have.insert(d.id);
  if (o.all) {
    ids->assign(have.begin(), have.end());
    return kExitOk;
  }
  for (uint64_t id : o.ids) {
    if (!have.count(id)) {
      std::cerr << "agentd-outbox: no dead letter with id " << id << " in " << o.dir << "\n";
      return kExitNotFound;
    }
  }
  *ids = o.ids;
  return kExitOk;
}

// Opens for writing (after the reader is closed) and applies `fn` to each id.
template <typename Fn>
int apply_each(const DeadLetterOptions& o, const std::vector<uint64_t>& ids, uint64_t map_size, const char* verb,
               Fn fn) {
  int exit = kExitOk;
  auto ob = open_for_write(o.dir, map_size, &exit);
  if (!ob) return exit;
  size_t done = 0;
  for (uint64_t id : ids) {
    Status st = fn(*ob, id);
    if (!st.is_ok()) {
      std::cout << verb << " " << done << " of " << ids.size() << " dead letters\n";
      return report_error(std::string(verb) + " dead letter " + std::to_string(id), st, exit_code(st));
    }
    ++done;
  }
  std::cout << verb << " " << done << " dead letter" << (done == 1 ? "" : "s") << "\n";
  return kExitOk;
}

}  // namespace

int run_dead_letters_list(const DeadLetterOptions& o) {
  int exit = kExitOk;
  auto reader = open_read_only(o.dir, &exit);
  if (!reader) return exit;
  auto dead = read_dead(*reader);
  if (!dead.is_ok()) return report_error("dead-letters list", dead.status(), exit_code(dead.status()));
  int64_t now = now_unix_ms();
  for (const Dead& d : *dead) {
    bool msg = d.kind == PendingKind::kMessage;
    if (o.json) {
      JsonObject j;
      j.num("id", static_cast<int64_t>(d.id))
          .str("kind", msg ? "message" : "plan")
          .str("plan_id", d.plan_id)
          .num(msg ? "seq" : "version", static_cast<int64_t>(d.number))
          .str("dead_at", format_rfc3339_ms(d.dead_at_ms))
          .str("error", d.error)
          .str("bytes", d.bytes);
      std::cout << j.done() << "\n";
      continue;
    }
    std::cout << "id " << d.id << "  " << (msg ? "message" : "plan record") << "  plan " << d.plan_id << "  "
              << (msg ? "seq " : "version ") << d.number << "  dead " << format_rfc3339_ms(d.dead_at_ms) << " ("
              << human_age(now - d.dead_at_ms) << " ago)\n    error: " << d.error << "\n";
  }
  if (!o.json) std::cout << dead->size() << " dead letter" << (dead->size() == 1 ? "" : "s") << "\n";
  return kExitOk;
}

int run_dead_letters_retry(const DeadLetterOptions& o) {
  std::vector<uint64_t> ids;
  uint64_t map_size = 0;
  if (int rc = select_ids(o, &ids, &map_size); rc != kExitOk) return rc;
  if (ids.empty()) {
    std::cout << "no dead letters\n";
    return kExitOk;
  }
  return apply_each(o, ids, map_size, "retried", [](Outbox& ob, uint64_t id) { return ob.retry_dead_letter_sync(id); });
}

int run_dead_letters_drop(const DeadLetterOptions& o) {
  std::vector<uint64_t> ids;
  uint64_t map_size = 0;
  if (int rc = select_ids(o, &ids, &map_size); rc != kExitOk) return rc;
  if (ids.empty()) {
    std::cout << "no dead letters\n";
    return kExitOk;
  }
  std::string what = "drop " + std::to_string(ids.size()) + " dead letter" + (ids.size() == 1 ? "" : "s") +
                     " for good (they will never reach MongoDB)?";
  if (Status st = confirm(what, o.yes); !st.is_ok()) return report_error("dead-letters drop", st, kExitNotConfirmed);
  return apply_each(o, ids, map_size, "dropped", [](Outbox& ob, uint64_t id) { return ob.drop_dead_letter_sync(id); });
}

}  // namespace agentd::tool
