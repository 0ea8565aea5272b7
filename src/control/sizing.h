#pragma once

// Compute sizes (docs/compute-sizes.md): what a size in compute units means for the kernel's
// limits and for PostgreSQL's settings, and the autoscaler's decision. Pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "compute/cgroups.h"
#include "control/catalog.h"

namespace arbor::control {

inline constexpr double kMinCu = 0.25;
inline constexpr double kMaxCu = 8;
inline constexpr uint64_t kBytesPerCu = uint64_t{2} << 30;  // 1 CU = 1 vCPU and 2 GiB

// OK if 0.25 <= min <= max <= 8, both multiples of 0.25; else InvalidArgument naming `where`.
[[nodiscard]] Status ValidateSize(const ComputeSize& s, const std::string& where);

// The kernel's limits of a compute of size `size` running at `current_cu`:
//   CPU: `current_cu` vCPUs, weight 100 per CU of max_cu (its share when cores are contended);
//   memory: max_cu x 2 GiB hard, memory.high (v2) or the soft limit (v1) at 90 % of it.
compute::Limits LimitsFor(const ComputeSize& size, double current_cu);

// PostgreSQL's settings for a compute whose largest size is `max_cu` (fixed for the life of
// the postmaster: shared memory cannot grow or shrink while it runs).
struct PgSizing {
  uint64_t shared_buffers_mb = 0;        // a quarter of the memory
  uint64_t effective_cache_size_mb = 0;  // three quarters
  uint64_t work_mem_kb = 0;              // memory / 256, at least 4 MiB
  int max_connections = 0;               // 100 + 200 per CU above 0.5, at most 1,700
};
PgSizing SizingFor(double max_cu);

// One autoscaling decision for a compute limited to `current_cu` vCPUs that used `used_cpus`
// (CPU seconds per wall second) over the last window (a second); `low_windows` counts the
// windows in a row it was mostly idle (updated). Up at once to twice the size when it used
// 85 % or more of its limit; down to half (not below what it used, times two) after
// kDownWindows windows in a row under 30 %. nullopt: no change. Always within
// [min_cu, max_cu], in steps of 0.25.
inline constexpr int kDownWindows = 10;
std::optional<double> AutoscaleDecision(const ComputeSize& size, double current_cu,
                                        double used_cpus, int* low_windows);

// The CPU limit a compute starts with: 1 CU, within its size, whatever the host holds (a
// start, its recovery and the first queries' catalog loads, is not slowed to a quarter
// core); the engine fits it into the host once it runs, and an idle compute comes down to
// its min within kDownWindows seconds per halving.
double StartCu(const ComputeSize& size);

// The host's share-out (docs/compute-sizes.md, "The host's CPUs"): a compute that wants to
// grow from `current_cu` to `wanted_cu` gets what is free; a larger compute (greater max
// size) may take CPU back from smaller ones that run above their min. `others` are the
// other running computes: {max_cu, min_cu, current_cu}, and receive their new current CU
// (multiples of 0.25, never below min). Returns the grown size: between current_cu and
// wanted_cu, in steps of 0.25.
struct HostShare {
  double max_cu = 0;
  double min_cu = 0;
  double current_cu = 0;
};
double GrowWithinHost(double host_cpus, double max_cu, double current_cu, double wanted_cu,
                      std::vector<HostShare>* others);

}  // namespace arbor::control
