#pragma once

#include <chrono>
#include <cstdint>

namespace arbor {

// Wall-clock time in microseconds since the Unix epoch.
inline int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Monotonic time in nanoseconds, for measuring intervals only.
inline int64_t MonoNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace arbor
