// agentd-outbox: offline inspection, verification and replay of agentd's
// LMDB outbox. Wires the command line to tools/commands.h; nothing else.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

#include "core/clock.h"
#include "outbox/format.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace {

constexpr const char* kExitCodes = R"(Exit codes:
  0  success (verify: every invariant holds)
  1  verify found a violation; replay had documents MongoDB rejected
  2  bad command line
  3  the outbox folder does not exist
  4  the folder is not an agentd outbox
  5  locked: a live agentd holds the outbox (commands that write)
  6  corrupt LMDB environment or outbox bytes
  7  on-disk format version newer (or older) than this tool reads
  8  MongoDB unreachable or failing transiently (rerun replay to resume)
  9  destructive action not confirmed (no terminal and no --yes)
  10 no such dead letter / plan
  11 other I/O error

inspect, dump, verify, dead-letters list and replay (without --ack) open
the outbox read-only and are safe beside a running agentd.)";

// RFC 3339 UTC, with or without milliseconds.
bool parse_time(const std::string& s, int64_t* ms) {
  if (agentd::parse_rfc3339_ms(s, ms)) return true;
  if (s.size() == 20 && s.back() == 'Z') return agentd::parse_rfc3339_ms(s.substr(0, 19) + ".000Z", ms);
  return false;
}

// An optional time flag into *ms (left alone when `value` is empty); false
// after saying why when it is not a time.
bool parse_time_flag(const char* flag, const std::string& value, std::optional<int64_t>* ms) {
  if (value.empty()) return true;
  int64_t parsed = 0;
  if (!parse_time(value, &parsed)) {
    std::cerr << "agentd-outbox: " << flag << " " << value << ": not an RFC 3339 UTC time like 2026-11-26T02:31:00Z\n";
    return false;
  }
  *ms = parsed;
  return true;
}

// --plan's value (empty: not given); false after saying why when too long.
bool plan_id_fits(const std::string& plan) {
  if (plan.size() <= agentd::outbox_format::kMaxPlanIdLen) return true;
  std::cerr << "agentd-outbox: --plan is " << plan.size() << " bytes; plan ids have at most "
            << agentd::outbox_format::kMaxPlanIdLen << "\n";
  return false;
}

struct DeadLetterCommands {
  CLI::App* list;
  CLI::App* retry;
  CLI::App* drop;
};

DeadLetterCommands add_dead_letter_commands(CLI::App& app, agentd::tool::DeadLetterOptions& dl) {
  auto* dead = app.add_subcommand("dead-letters", "list, retry or drop dead letters");
  dead->require_subcommand(1);
  DeadLetterCommands c;
  c.list = dead->add_subcommand("list", "list dead letters (read-only)");
  c.list->add_option("dir", dl.dir, "outbox folder")->required();
  c.list->add_flag("--json", dl.json, "JSON Lines");
  c.retry = dead->add_subcommand("retry", "put dead letters back on the pending queue (needs agentd stopped)");
  c.drop = dead->add_subcommand("drop", "delete dead letters for good (asks first; needs agentd stopped)");
  for (auto* sub : {c.retry, c.drop}) {
    sub->add_option("dir", dl.dir, "outbox folder")->required();
    auto* id = sub->add_option("--id", dl.ids, "dead letter id (repeatable)");
    auto* all = sub->add_flag("--all", dl.all, "every dead letter");
    id->excludes(all);
  }
  c.drop->add_flag("--yes", dl.yes, "do not ask for confirmation");
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace agentd::tool;
  spdlog::set_level(spdlog::level::warn);  // the outbox's open logs stay out of our output
  // A closed pipe (`dump | head`) is a write error the commands handle (they
  // stop and end their read transaction), not a death by SIGPIPE that would
  // leave a stale LMDB reader slot pinning the live outbox's pages.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"agentd-outbox: inspect, dump, verify and replay agentd's LMDB outbox"};
  app.footer(kExitCodes);
  app.require_subcommand(1);

  InspectOptions inspect;
  auto* c_inspect = app.add_subcommand("inspect", "size, plans, messages, pending, dead letters, format version");
  c_inspect->add_option("dir", inspect.dir, "outbox folder (agentd's --data-dir)")->required();
  c_inspect->add_flag("--json", inspect.json, "one JSON object instead of text");

  DumpOptions dump;
  std::string since, until;
  auto* c_dump = app.add_subcommand("dump", "messages as JSON Lines: the stored envelope bytes, one per line");
  c_dump->add_option("dir", dump.dir, "outbox folder")->required();
  c_dump->add_option("--plan", dump.plan, "only this plan");
  c_dump->add_option("--from-seq", dump.from_seq, "lowest seq (inclusive)");
  c_dump->add_option("--to-seq", dump.to_seq, "highest seq (inclusive)");
  auto* pend = c_dump->add_flag("--pending", dump.pending_only, "only messages not yet acknowledged by MongoDB");
  auto* flushed = c_dump->add_flag("--flushed", dump.flushed_only, "only messages that are not pending");
  pend->excludes(flushed);
  c_dump->add_option("--since", since, "appended at or after this RFC 3339 UTC time (outbox commit time)");
  c_dump->add_option("--until", until, "appended before this RFC 3339 UTC time");

  VerifyOptions verify;
  auto* c_verify = app.add_subcommand("verify", "check every invariant; exit 1 with a report when one fails");
  c_verify->add_option("dir", verify.dir, "outbox folder")->required();
  c_verify->add_option("--max-problems", verify.max_problems, "problems printed (all are counted)");

  ReplayOptions replay;
  auto* c_replay = app.add_subcommand(
      "replay", "push messages and plan records to MongoDB with the flusher's idempotent upserts (rerun-safe)");
  c_replay->add_option("dir", replay.dir, "outbox folder")->required();
  c_replay->add_option("--mongo-uri", replay.mongo_uri, "MongoDB URI (database from the URI, else agentd)");
  auto* all = c_replay->add_flag("--all", replay.all, "every stored message and plan record (default: pending)");
  auto* plan = c_replay->add_option("--plan", replay.plan, "one plan's stored messages and record");
  all->excludes(plan);
  c_replay->add_flag("--dry-run", replay.dry_run, "count what would be pushed; contact nothing");
  c_replay->add_flag("--ack", replay.ack,
                     "pending mode: acknowledge what MongoDB accepted (opens for writing; agentd must be stopped)");
  c_replay->add_option("--batch", replay.batch, "items per bulk")->check(CLI::Range(1, 10000));
  c_replay->add_option("--progress", replay.progress, "-1 auto (bar on a terminal), 0 plain lines, 1 bar")
      ->check(CLI::Range(-1, 1));

  DeadLetterOptions dl;
  DeadLetterCommands c_dead = add_dead_letter_commands(app, dl);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  if (!plan_id_fits(dump.plan) || !plan_id_fits(replay.plan)) return kExitUsage;
  if (*c_inspect) return run_inspect(inspect);
  if (*c_dump) {
    if (!parse_time_flag("--since", since, &dump.since_ms) || !parse_time_flag("--until", until, &dump.until_ms)) {
      return kExitUsage;
    }
    return run_dump(dump);
  }
  if (*c_verify) return run_verify(verify);
  if (*c_replay) return run_replay(replay);
  if (*c_dead.list) return run_dead_letters_list(dl);
  if (*c_dead.retry) return run_dead_letters_retry(dl);
  if (*c_dead.drop) return run_dead_letters_drop(dl);
  return kExitUsage;
}
