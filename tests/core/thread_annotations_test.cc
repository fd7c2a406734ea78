#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "core/thread_annotations.h"

using namespace agentd;

namespace {

struct Counter {
  Mutex mu;
  CondVar cv{&mu};
  int value GUARDED_BY(mu) = 0;

  void add() EXCLUDES(mu) {
    MutexLock l(&mu);
    bump();
    cv.notify_all();
  }
  void bump() REQUIRES(mu) {
    mu.AssertHeld();
    ++value;
  }
};

}  // namespace

TEST_CASE("Mutex and MutexLock serialize writers") {
  Counter c;
  std::thread t([&] {
    for (int i = 0; i < 10000; ++i) c.add();
  });
  for (int i = 0; i < 10000; ++i) c.add();
  t.join();
  MutexLock l(&c.mu);
  CHECK(c.value == 20000);
}

TEST_CASE("CondVar waits with the mutex released and holds it again on return") {
  Counter c;
  std::thread t([&] { c.add(); });
  {
    MutexLock l(&c.mu);
    while (c.value == 0) c.cv.wait();
    c.mu.AssertHeld();
    CHECK(c.value == 1);
  }
  t.join();
}

TEST_CASE("CondVar wait_until reports the deadline") {
  Counter c;
  MutexLock l(&c.mu);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
  bool woken = true;
  while (woken && c.value == 0) woken = c.cv.wait_until(deadline);
  CHECK_FALSE(woken);
  CHECK(std::chrono::steady_clock::now() >= deadline);
  c.mu.AssertHeld();
}
