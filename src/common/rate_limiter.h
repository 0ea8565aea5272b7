#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace arbor {

// A byte budget per second with a short burst (the generic cell rate algorithm): Acquire
// reserves its bytes at once and sleeps until the budget has paid for them, so concurrent
// callers queue behind each other in arrival order and the long-run rate never exceeds the
// limit, whatever the request sizes. A request larger than the burst is allowed; it is paid
// for by the time after it. Thread-safe; unlimited, Acquire takes no lock.
class RateLimiter {
 public:
  // `bytes_per_s` 0: unlimited. `burst_s`: how many seconds of budget an idle caller may
  // spend at once.
  explicit RateLimiter(uint64_t bytes_per_s = 0, double burst_s = 0.25);

  // Changes the rate for the requests that come after (one already sleeping keeps its turn).
  // 0: unlimited.
  void SetRate(uint64_t bytes_per_s);
  uint64_t rate() const;

  // Blocks until `bytes` fit in the budget, or until Stop. Returns how long it slept.
  std::chrono::nanoseconds Acquire(uint64_t bytes);

  // Wakes every sleeper and makes every later Acquire return at once (shutting down).
  void Stop();

  // Totals since construction: nanoseconds callers slept, and bytes they acquired.
  uint64_t waited_ns() const;
  uint64_t bytes() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> rate_{0};  // bytes per second; 0: unlimited. Written under mu_.
  double burst_s_ = 0;
  int64_t tat_ns_ = 0;    // when the budget will have paid for every reservation; under mu_
  bool stopped_ = false;  // under mu_
  std::atomic<uint64_t> waited_ns_{0};
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace arbor
