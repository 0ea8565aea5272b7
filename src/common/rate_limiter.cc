#include "common/rate_limiter.h"

#include <algorithm>

#include "common/clock.h"

namespace arbor {

RateLimiter::RateLimiter(uint64_t bytes_per_s, double burst_s)
    : rate_(bytes_per_s), burst_s_(std::max(0.0, burst_s)) {}

void RateLimiter::SetRate(uint64_t bytes_per_s) {
  std::lock_guard l(mu_);
  if (stopped_ || bytes_per_s == rate_.load()) return;
  rate_.store(bytes_per_s);
  // Debt taken at the old rate is not carried over to the new one.
  tat_ns_ = std::min(tat_ns_, MonoNanos());
}

uint64_t RateLimiter::rate() const { return rate_.load(); }

std::chrono::nanoseconds RateLimiter::Acquire(uint64_t bytes) {
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  if (rate_.load(std::memory_order_relaxed) == 0) return std::chrono::nanoseconds(0);
  std::unique_lock l(mu_);
  const uint64_t rate_now = rate_.load();
  if (rate_now == 0 || stopped_) return std::chrono::nanoseconds(0);
  const int64_t now = MonoNanos();
  const auto cost =
      static_cast<int64_t>(static_cast<double>(bytes) / static_cast<double>(rate_now) * 1e9);
  const auto burst = static_cast<int64_t>(burst_s_ * 1e9);
  tat_ns_ = std::max(tat_ns_, now) + cost;
  const int64_t wake = tat_ns_ - burst;
  if (wake <= now) return std::chrono::nanoseconds(0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(wake - now);
  cv_.wait_until(l, deadline, [&] { return stopped_; });
  const int64_t slept = std::max<int64_t>(0, MonoNanos() - now);
  waited_ns_.fetch_add(static_cast<uint64_t>(slept));
  return std::chrono::nanoseconds(slept);
}

void RateLimiter::Stop() {
  {
    std::lock_guard l(mu_);
    stopped_ = true;
    rate_.store(0);  // later calls return at once, without the lock
  }
  cv_.notify_all();
}

uint64_t RateLimiter::waited_ns() const { return waited_ns_.load(); }

uint64_t RateLimiter::bytes() const { return bytes_.load(); }

}  // namespace arbor
