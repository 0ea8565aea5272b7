#pragma once

// Per-compute resource limits with the kernel's control groups: each compute's process tree
// runs in a group of its own, with a CPU limit, a CPU weight and memory limits.
//
// Two layouts are supported, detected at start:
//   - cgroup v2 (Debian's default): one unified hierarchy with the `cpu` and `memory`
//     controllers (cpu.max, cpu.weight, memory.max, memory.high, cpu.stat);
//   - cgroup v1: separate `cpu` (cpu.cfs_quota_us, cpu.shares), `cpuacct` (cpuacct.usage)
//     and `memory` (memory.limit_in_bytes, memory.soft_limit_in_bytes) hierarchies, as on
//     hosts that mount v1 controllers with v2 only at /sys/fs/cgroup/unified.
// The groups live under the daemon's own group in each hierarchy (so a limit set on the
// daemon's container still bounds its computes), in a directory of the daemon's own
// (`parent_name`). Where neither layout is writable (an unprivileged daemon, a read-only
// mount, a v2 group that cannot delegate controllers), computes run unlimited and
// `Describe` says why; nothing fails.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace arbor::compute {

// What one compute may use.
struct Limits {
  double cpus = 0;                // CPU time per wall second (0.25 = a quarter of a core); 0: none
  uint32_t weight = 100;          // its share when CPUs are contended, relative to others (1-10000)
  uint64_t memory_max_bytes = 0;  // the hard limit; 0: none
  uint64_t memory_high_bytes = 0;  // reclaim pressure starts here (v2 memory.high; v1 soft limit)
  bool operator==(const Limits&) const = default;
};

// The control groups of this daemon's computes. Thread-safe (every call writes its own
// files), except Pace and Unpace of one group, which the caller serializes. Does not own the
// processes in its groups; Remove needs them gone.
class Cgroups {
 public:
  enum class Version { kNone, kV1, kV2 };

  // Detects the layout under `mount_root` (normally /sys/fs/cgroup), reading the daemon's own
  // groups from `self_cgroup` (normally /proc/self/cgroup), and makes the directory
  // `parent_name` in each hierarchy used. Never fails: Version kNone with the reason when no
  // layout can be used.
  static std::unique_ptr<Cgroups> Detect(const std::string& parent_name,
                                         const std::string& mount_root = "/sys/fs/cgroup",
                                         const std::string& self_cgroup = "/proc/self/cgroup");
  ~Cgroups();

  Version version() const { return version_; }
  // "cgroup v2 (/sys/fs/cgroup/...)", "cgroup v1 (cpu, cpuacct, memory)", or "none: <why>".
  std::string Describe() const;

  // Makes (or reuses) the group `name` and sets `limits` on it. With kNone, does nothing.
  // IOError if a file cannot be written.
  [[nodiscard]] Status Create(const std::string& name, const Limits& limits);
  // Changes the limits of an existing group (autoscaling). Processes stay where they are.
  [[nodiscard]] Status Update(const std::string& name, const Limits& limits);
  // The `cgroup.procs` files a process writes "0" to, to join the group, one per hierarchy.
  // Opened before fork by the caller; the child writes to them before it execs.
  std::vector<std::string> ProcsFiles(const std::string& name) const;
  // Holds the process `pid` of group `name` to `cpus` CPUs (raised to 0.1 at least), over a
  // 10 ms period so that it runs in short slices, in the child group `NAME/paced` of v1's cpu
  // hierarchy (cpuacct and memory still count it to NAME, and NAME's quota still bounds it;
  // `cpus` must not exceed NAME's), until Unpace. The caller has checked that `pid` is one of
  // the group's processes, and serializes Pace and Unpace of one group. FailedPrecondition
  // under v2, where a group with processes can have no child with controllers (the compute's
  // processes would need a leaf of their own), and with kNone.
  [[nodiscard]] Status Pace(const std::string& name, pid_t pid, double cpus);
  // Moves `pid` back into group `name` (if it still lives) and removes the paced group.
  [[nodiscard]] Status Unpace(const std::string& name, pid_t pid);
  // Removes the group (and a paced group left of it); its processes must have exited.
  // NotFound is not an error.
  [[nodiscard]] Status Remove(const std::string& name);
  // CPU time the group's processes have used, in microseconds (v2 cpu.stat usage_usec, v1
  // cpuacct.usage). NotFound if there is no such group; FailedPrecondition with kNone.
  [[nodiscard]] Result<uint64_t> CpuUsageMicros(const std::string& name) const;
  // How many times the kernel held the group's processes back at its CPU limit (cpu.stat
  // nr_throttled, v1 and v2).
  [[nodiscard]] Result<uint64_t> ThrottledPeriods(const std::string& name) const;
  // Removes the daemon's directory in each hierarchy (at shutdown), if no group is left in it.
  [[nodiscard]] Status RemoveParents();
  // Memory charged to the group now, in bytes.
  [[nodiscard]] Result<uint64_t> MemoryBytes(const std::string& name) const;

 private:
  Cgroups() = default;
  std::string Dir(const std::string& controller, const std::string& name) const;
  std::string PacedDir(const std::string& name) const;

  Version version_ = Version::kNone;
  std::string why_not_;
  // kV2: "" -> the unified parent dir. kV1: "cpu", "cpuacct", "memory" -> parent dirs.
  std::vector<std::pair<std::string, std::string>> parents_;
};

}  // namespace arbor::compute
