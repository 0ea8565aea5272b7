#include "common/rate_limiter.h"

#include <algorithm>

#include "common/clock.h"

namespace arbor {

RateLimiter::RateLimiter(uint64_t bytes_per_s, double burst_s)
    : rate_(bytes_per_s), burst_s_(std::max(0.0, burst_s)) {}

void RateLimiter::SetRate(uint64_t bytes_per_s) {
  std::lock_guard l(mu_);
  if (bytes_per_s == rate_) return;
  rate_ = bytes_per_s;
  // Debt taken at the old rate is not carried over to the new one.
  tat_ns_ = std::min(tat_ns_, MonoNanos());
}

uint64_t RateLimiter::rate() const {
  std::lock_guard l(mu_);
  return rate_;
}

std::chrono::nanoseconds RateLimiter::Acquire(uint64_t bytes) {
  std::unique_lock l(mu_);
  bytes_ += bytes;
  if (rate_ == 0 || stopped_) return std::chrono::nanoseconds(0);
  const int64_t now = MonoNanos();
  const double rate = static_cast<double>(rate_);
  const auto cost = static_cast<int64_t>(static_cast<double>(bytes) / rate * 1e9);
  const auto burst = static_cast<int64_t>(burst_s_ * 1e9);
  tat_ns_ = std::max(tat_ns_, now) + cost;
  const int64_t wake = tat_ns_ - burst;
  if (wake <= now) return std::chrono::nanoseconds(0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(wake - now);
  cv_.wait_until(l, deadline, [&] { return stopped_; });
  const int64_t slept = std::max<int64_t>(0, MonoNanos() - now);
  waited_ns_ += static_cast<uint64_t>(slept);
  return std::chrono::nanoseconds(slept);
}

void RateLimiter::Stop() {
  {
    std::lock_guard l(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

uint64_t RateLimiter::waited_ns() const {
  std::lock_guard l(mu_);
  return waited_ns_;
}

uint64_t RateLimiter::bytes() const {
  std::lock_guard l(mu_);
  return bytes_;
}

}  // namespace arbor
