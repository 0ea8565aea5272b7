#pragma once

#include <chrono>
#include <cstdint>
#include <string>

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

// Microseconds since the epoch -> "2026-11-24T16:00:00.123456Z" (RFC 3339, UTC, 6 digits).
std::string FormatRfc3339(int64_t micros);

}  // namespace arbor
