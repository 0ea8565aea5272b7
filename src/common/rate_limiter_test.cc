#include "common/rate_limiter.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "common/clock.h"

namespace arbor {
namespace {

TEST(RateLimiterTest, UnlimitedNeverSleeps) {
  RateLimiter r(0);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(r.Acquire(1 << 20).count(), 0);
  EXPECT_EQ(r.waited_ns(), 0u);
  EXPECT_EQ(r.bytes(), 100u << 20);
}

// 4 MiB at 16 MiB/s with a 0.05 s burst takes about 0.25 s: the long-run rate holds.
TEST(RateLimiterTest, HoldsTheRateAcrossThreads) {
  RateLimiter r(16 << 20, 0.05);
  const int64_t start = MonoNanos();
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 8; ++i) (void)r.Acquire(128 << 10);
    });
  }
  for (auto& t : ts) t.join();
  const double took_s = static_cast<double>(MonoNanos() - start) / 1e9;
  // 4 MiB / 16 MiB/s = 0.25 s, less the burst (0.05 s) that was free.
  EXPECT_GE(took_s, 0.19);
  EXPECT_GT(r.waited_ns(), 0u);
}

TEST(RateLimiterTest, BurstIsFree) {
  RateLimiter r(1 << 20, 1.0);
  EXPECT_EQ(r.Acquire(512 << 10).count(), 0);  // within a second's budget
}

TEST(RateLimiterTest, StopWakesSleepers) {
  RateLimiter r(1024, 0);  // 1 KiB/s: 1 MiB would take 17 minutes
  (void)r.Acquire(1024);
  std::thread sleeper([&] { (void)r.Acquire(1 << 20); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int64_t before = MonoNanos();
  r.Stop();
  sleeper.join();
  EXPECT_LT(MonoNanos() - before, 5'000'000'000);
  EXPECT_EQ(r.Acquire(1 << 20).count(), 0);  // after Stop, nothing waits
}

TEST(RateLimiterTest, RaisingTheRateDropsTheDebt) {
  RateLimiter r(1024, 0);
  (void)r.Acquire(1024);
  r.SetRate(0);
  EXPECT_EQ(r.Acquire(1 << 30).count(), 0);
  r.SetRate(1 << 30);
  EXPECT_LT(r.Acquire(1 << 20).count(), 100'000'000);
}

}  // namespace
}  // namespace arbor
