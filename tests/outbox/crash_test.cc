// The crash test (issue 4): a child appends from several threads and reports
// each completed (plan, seq, hash); the parent SIGKILLs it at random moments,
// reopens the outbox and checks that every reported message is there with the
// same bytes, seqs are contiguous without duplicates, and appends continue at
// the right seq. AGENTD_OUTBOX_CRASH_ITERATIONS=N runs N kills (default 50).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "outbox/outbox.h"
#include "tests/outbox/outbox_test_util.h"
#include "tests/support/process.h"

using namespace agentd;

namespace {

off_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// Drops a line torn by the kill so the next run's lines start clean.
void truncate_to_last_line(const std::string& path) {
  std::string s = test::read_file(path);
  size_t end = s.rfind('\n');
  REQUIRE(::truncate(path.c_str(), end == std::string::npos ? 0 : static_cast<off_t>(end + 1)) == 0);
}

}  // namespace

TEST_CASE("SIGKILL at random moments loses no acknowledged message and never reuses a seq") {
  int iterations = 50;
  if (const char* n = std::getenv("AGENTD_OUTBOX_CRASH_ITERATIONS")) iterations = std::atoi(n);
  std::string dir = test::make_temp_dir("outbox-crash");
  std::string report = dir + "/report.txt", log = dir + "/child.log", data = dir + "/outbox";
  std::mt19937 rng(std::random_device{}());
  std::map<std::pair<std::string, uint64_t>, uint64_t> reported;  // (plan, seq) -> hash
  constexpr int kPlans = 6;
  size_t total_reported = 0;
  for (int it = 0; it < iterations; ++it) {
    off_t before = file_size(report);
    auto child = test::ChildProcess::spawn(
        {OUTBOX_CRASH_CHILD, data, report, std::to_string(it), "4", std::to_string(kPlans)}, log);
    // Let it get going (at least one report), then kill it at a random moment.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (file_size(report) == before && child.running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE_MESSAGE(child.running(), "child exited early: " << test::read_file(log));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 60000));
    REQUIRE_MESSAGE(child.running(), "child failed: " << test::read_file(log));
    child.kill();
    truncate_to_last_line(report);

    std::istringstream lines(test::read_file(report));
    std::string plan;
    uint64_t seq, hash;
    while (lines >> plan >> seq >> hash) {
      auto [pos, inserted] = reported.emplace(std::make_pair(plan, seq), hash);
      REQUIRE_MESSAGE(pos->second == hash, "seq " << seq << " of " << plan << " reported twice with other bytes");
    }

    OutboxOptions o;
    o.dir = data;
    o.track_pending = true;
    o.max_bytes = 256ull << 20;
    auto ob = Outbox::open(o);
    REQUIRE_MESSAGE(ob.is_ok(), ob.status().to_string());
    size_t messages = 0;
    for (int p = 0; p < kPlans; ++p) {
      std::string id = "plan-" + std::to_string(p);
      auto stored = (*ob)->read_messages(id, 0, 1000000);
      REQUIRE(stored.is_ok());
      messages += stored->size();
      for (size_t i = 0; i < stored->size(); ++i) {
        REQUIRE_MESSAGE((*stored)[i].seq == i + 1, id << ": seq " << (*stored)[i].seq << " at position " << i);
      }
      for (auto r = reported.lower_bound({id, 0}); r != reported.end() && r->first.first == id; ++r) {
        REQUIRE_MESSAGE(r->first.second <= stored->size(), id << ": reported seq " << r->first.second << " missing");
        CHECK(test::fnv1a(*(*stored)[r->first.second - 1].bytes) == r->second);
      }
      CHECK(*(*ob)->last_seq(id) == stored->size());
      if (p == it % kPlans) {  // appends continue at the right seq
        auto a = (*ob)->append_sync(test::message_request(id, "parent-" + std::to_string(it)));
        REQUIRE(a.is_ok());
        CHECK(a->seq == stored->size() + 1);
        reported.emplace(std::make_pair(id, a->seq), test::fnv1a(*a->bytes));
        ++messages;
      }
    }
    // Plan records committed with their messages: versions 1..V each with a
    // pending entry, and last_seq pointing at a stored message.
    auto pending = (*ob)->read_pending(10000000, size_t{1} << 40);
    REQUIRE(pending.is_ok());
    std::map<std::string, std::vector<uint64_t>> versions;
    size_t message_entries = 0;
    for (const auto& e : *pending) {
      if (e.kind == PendingKind::kPlan) versions[e.plan_id].push_back(e.plan_version);
      if (e.kind == PendingKind::kMessage) ++message_entries;
    }
    for (const auto& [id, vs] : versions) {
      auto plan = (*ob)->get_plan(id);
      REQUIRE(plan.is_ok());
      REQUIRE(plan->has_value());
      CHECK((*plan)->version == vs.size());
      for (size_t i = 0; i < vs.size(); ++i) CHECK(vs[i] == i + 1);
      CHECK((*plan)->last_seq >= 1);
      CHECK((*plan)->last_seq <= *(*ob)->last_seq(id));
    }
    auto st = (*ob)->stats();
    REQUIRE(st.is_ok());
    CHECK(st->messages == messages);
    CHECK(message_entries == messages);  // one pending entry per message, nothing acked
    total_reported = reported.size();
  }
  MESSAGE(iterations << " kills, " << total_reported << " acknowledged messages verified");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
