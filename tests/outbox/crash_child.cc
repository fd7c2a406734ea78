// The crash test's child: appends from several threads until it is killed,
// and reports each completed append as a "plan seq hash" line.
//
//   outbox_crash_child DIR REPORT_FILE RUN_ID THREADS PLANS
//
// A line is written with one write(2) on an O_APPEND descriptor only after
// append() completed, i.e. after the commit was synced; a SIGKILL cannot lose
// a write(2) that returned (the page cache survives the process), so every
// complete line in REPORT_FILE is a message the outbox acknowledged.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "outbox/outbox.h"
#include "tests/outbox/outbox_test_util.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s DIR REPORT_FILE RUN_ID THREADS PLANS\n", argv[0]);
    return 2;
  }
  agentd::OutboxOptions o;
  o.dir = argv[1];
  o.track_pending = true;
  o.max_bytes = 256ull << 20;
  auto ob = agentd::Outbox::open(o);
  if (!ob.is_ok()) {
    std::fprintf(stderr, "open: %s\n", ob.status().to_string().c_str());
    return 1;
  }
  int fd = ::open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open report file");
    return 1;
  }
  std::string run = argv[3];
  int threads = std::atoi(argv[4]), plans = std::atoi(argv[5]);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(std::random_device{}());
      for (uint64_t i = 0;; ++i) {
        std::string plan = "plan-" + std::to_string(rng() % plans);
        std::string content(16 + rng() % 2000, static_cast<char>('a' + rng() % 26));
        std::string mid = "r" + run + "-t" + std::to_string(t) + "-" + std::to_string(i);
        agentd::AppendRequest req = agentd::test::message_request(plan, mid, content);
        if (rng() % 4 == 0) {  // the plan record changes with this message, in one transaction
          req.plan = agentd::test::make_plan(plan, "u-1", "2026-11-26T01:00:00.000Z");
        }
        auto r = (*ob)->append_sync(req);
        if (!r.is_ok()) {
          std::fprintf(stderr, "append: %s\n", r.status().to_string().c_str());
          std::_Exit(1);
        }
        if (i % 8 == 7) {  // a re-post of the same message_id is a duplicate with the same seq and bytes
          auto again = (*ob)->append_sync(req);
          if (!again.is_ok() || !again->duplicate || again->seq != r->seq || *again->bytes != *r->bytes) {
            std::fprintf(stderr, "duplicate of %s/%s not recognized\n", plan.c_str(), mid.c_str());
            std::_Exit(3);
          }
        }
        std::string line =
            plan + " " + std::to_string(r->seq) + " " + std::to_string(agentd::test::fnv1a(*r->bytes)) + "\n";
        if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::_Exit(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  return 0;
}
