// Locking the compiler checks: clang's thread-safety attributes, and a mutex,
// scoped lock and condition variable that carry them.
//
// Mark what a mutex protects and what a function needs held:
//
//   Mutex mu_;
//   std::deque<Op> queue_ GUARDED_BY(mu_);
//   void drain() REQUIRES(mu_);        // caller holds mu_
//   void enqueue(Op op) EXCLUDES(mu_);  // takes mu_ itself
//
//   void Foo::enqueue(Op op) {
//     MutexLock l(&mu_);
//     queue_.push_back(std::move(op));
//   }
//
// clang with -Wthread-safety (the fuzz build, scripts/fuzz) rejects an access
// to queue_ without mu_ held, a call to drain() without it, and a lock taken
// twice. The macros are no-ops on other compilers. std::lock_guard and
// std::unique_lock carry no attributes: lock a Mutex with MutexLock.
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#if defined(__clang__)
#define AGENTD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define AGENTD_THREAD_ANNOTATION(x)
#endif

// A class that is a lock (Mutex).
#define CAPABILITY(x) AGENTD_THREAD_ANNOTATION(capability(x))
// A class whose constructor acquires and destructor releases (MutexLock).
#define SCOPED_CAPABILITY AGENTD_THREAD_ANNOTATION(scoped_lockable)
// A member read or written only with the lock held.
#define GUARDED_BY(x) AGENTD_THREAD_ANNOTATION(guarded_by(x))
// A pointer member whose pointee is read or written only with the lock held.
#define PT_GUARDED_BY(x) AGENTD_THREAD_ANNOTATION(pt_guarded_by(x))
// Lock ordering: this lock is taken after / before the named ones.
#define ACQUIRED_AFTER(...) AGENTD_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define ACQUIRED_BEFORE(...) AGENTD_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
// The caller must hold the lock (exclusively / shared).
#define REQUIRES(...) AGENTD_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) AGENTD_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// The caller must not hold the lock (the function takes it).
#define EXCLUDES(...) AGENTD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// The function takes / releases the lock and returns with it held / released.
#define ACQUIRE(...) AGENTD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) AGENTD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) AGENTD_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// The function checks (at run time, in debug builds) that the lock is held;
// the analysis trusts it from there on.
#define ASSERT_CAPABILITY(x) AGENTD_THREAD_ANNOTATION(assert_capability(x))
// The function returns a reference to the lock.
#define RETURN_CAPABILITY(x) AGENTD_THREAD_ANNOTATION(lock_returned(x))
// Turns the analysis off for one function; say why next to it.
#define NO_THREAD_SAFETY_ANALYSIS AGENTD_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace agentd {

// std::mutex with the attributes, and AssertHeld(): in debug builds it checks
// that the calling thread is the one holding the lock.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() {
    mu_.lock();
    owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  void unlock() RELEASE() {
    owner_.store(std::thread::id(), std::memory_order_relaxed);
    mu_.unlock();
  }
  void AssertHeld() const ASSERT_CAPABILITY(this) {
    assert(owner_.load(std::memory_order_relaxed) == std::this_thread::get_id());
  }

 private:
  friend class CondVar;
  std::mutex mu_;
  // The holder, for AssertHeld(); written only by the holder. Always present
  // so that the layout does not depend on NDEBUG.
  std::atomic<std::thread::id> owner_{};
};

// Holds a Mutex for its scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->lock(); }
  ~MutexLock() RELEASE() { mu_->unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable tied to one Mutex: wait() and wait_until() need it
// held (checked by AssertHeld(); the analysis cannot tie `cv_` to `mu_`, so
// they carry no REQUIRES). There is no predicate overload (a lambda is
// analysed on its own, without the lock): loop on the condition instead,
//   while (!stop_ && queue_.empty()) cv_.wait();
class CondVar {
 public:
  explicit CondVar(Mutex* mu) : mu_(mu) {}
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases the mutex while waiting; holds it again on return.
  void wait() {
    mu_->AssertHeld();
    std::unique_lock<std::mutex> l(mu_->mu_, std::adopt_lock);
    mu_->owner_.store(std::thread::id(), std::memory_order_relaxed);
    cv_.wait(l);
    mu_->owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    l.release();
  }
  // As wait(); false when `deadline` passed (a wakeup may still be spurious).
  template <class Clock, class Duration>
  bool wait_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    mu_->AssertHeld();
    std::unique_lock<std::mutex> l(mu_->mu_, std::adopt_lock);
    mu_->owner_.store(std::thread::id(), std::memory_order_relaxed);
    bool woken = cv_.wait_until(l, deadline) == std::cv_status::no_timeout;
    mu_->owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    l.release();
    return woken;
  }
  // Signalling needs no lock.
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }

 private:
  Mutex* const mu_;
  std::condition_variable cv_;
};

}  // namespace agentd
