#include "compute/cgroups.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace arbor::compute {
namespace {

constexpr uint64_t kPeriodMicros = 100'000;
// A paced process runs in slices of `cpus` times this (Pace; 2.5 ms at 0.25 CPUs, never
// under 1 ms): short bursts of its writes rather than long ones.
constexpr uint64_t kPacePeriodMicros = 10'000;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Writes `value` to a control file in one write (as `echo value > file` does).
Status WriteFile(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return Status::IOError(Errno("opening " + path));
  ssize_t n = write(fd, value.data(), value.size());
  int saved = errno;
  close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    errno = saved;
    return Status::IOError(Errno("writing '" + value + "' to " + path));
  }
  return Status::Ok();
}

Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IOError(Errno("creating " + path));
  }
  return Status::Ok();
}

// The daemon's own group in each hierarchy, from /proc/self/cgroup: "" for v2's "0::/path"
// line, and each v1 controller's name for its line.
std::map<std::string, std::string> OwnGroups(const std::string& self_cgroup) {
  std::map<std::string, std::string> out;
  std::istringstream in(Slurp(self_cgroup));
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (path == "/") path.clear();
    if (controllers.empty()) {
      out[""] = path;
      continue;
    }
    std::istringstream cs(controllers);
    std::string c;
    while (std::getline(cs, c, ',')) out[c] = path;
  }
  return out;
}

bool HasWord(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    if (w == word) return true;
  }
  return false;
}

}  // namespace

std::unique_ptr<Cgroups> Cgroups::Detect(const std::string& parent_name,
                                         const std::string& mount_root,
                                         const std::string& self_cgroup) {
  std::unique_ptr<Cgroups> g(new Cgroups());
  auto own = OwnGroups(self_cgroup);
  std::vector<std::string> reasons;

  // cgroup v2: the unified hierarchy at the mount root, or at unified/ beside v1 controllers.
  for (const std::string& root : {mount_root, mount_root + "/unified"}) {
    if (!Exists(root + "/cgroup.controllers") || !own.count("")) continue;
    std::string self = root + own[""];
    std::string controllers = Slurp(self + "/cgroup.controllers");
    if (!HasWord(controllers, "cpu") || !HasWord(controllers, "memory")) {
      reasons.push_back("cgroup v2 at " + root + " has no cpu and memory controllers here");
      continue;
    }
    // Controllers reach a child only through its parent's subtree_control; a v2 group with
    // processes of its own cannot delegate (unless it is the root).
    Status st = WriteFile(self + "/cgroup.subtree_control", "+cpu +memory");
    if (!st.ok()) {
      reasons.push_back("cgroup v2: cannot delegate cpu and memory from the daemon's group (" +
                        st.message() + "); run the daemon in a delegated group");
      continue;
    }
    std::string parent = self + "/" + parent_name;
    st = MakeDir(parent);
    if (st.ok()) st = WriteFile(parent + "/cgroup.subtree_control", "+cpu +memory");
    if (!st.ok()) {
      reasons.push_back("cgroup v2: " + st.message());
      continue;
    }
    g->version_ = Version::kV2;
    g->parents_ = {{"", parent}};
    return g;
  }

  // cgroup v1: cpu, cpuacct and memory hierarchies (cpu and cpuacct may be one mount).
  std::vector<std::pair<std::string, std::string>> parents;
  for (const std::string c : {"cpu", "cpuacct", "memory"}) {
    std::string mount = mount_root + "/" + c;
    if (!Exists(mount + "/cgroup.procs") || !own.count(c)) {
      reasons.push_back("cgroup v1 has no " + c + " hierarchy");
      break;
    }
    std::string parent = mount + own[c] + "/" + parent_name;
    Status st = MakeDir(parent);
    if (!st.ok()) {
      reasons.push_back("cgroup v1: " + st.message());
      break;
    }
    parents.emplace_back(c, parent);
  }
  if (parents.size() == 3) {
    g->version_ = Version::kV1;
    g->parents_ = std::move(parents);
    return g;
  }
  if (reasons.empty()) reasons.push_back("no cgroup file system at " + mount_root);
  std::string why;
  for (const std::string& r : reasons) why += (why.empty() ? "" : "; ") + r;
  g->why_not_ = why;
  return g;
}

Cgroups::~Cgroups() = default;

std::string Cgroups::Describe() const {
  switch (version_) {
    case Version::kV2:
      return "cgroup v2 (cpu and memory under " + parents_.front().second + ")";
    case Version::kV1:
      return "cgroup v1 (cpu, cpuacct and memory under " + parents_.front().second + ")";
    case Version::kNone:
      break;
  }
  return "none: " + why_not_;
}

std::string Cgroups::Dir(const std::string& controller, const std::string& name) const {
  for (const auto& [c, parent] : parents_) {
    if (c == controller) return parent + "/" + name;
  }
  return "";
}

Status Cgroups::Create(const std::string& name, const Limits& limits) {
  if (version_ == Version::kNone) return Status::Ok();
  for (const auto& [c, parent] : parents_) ARBOR_RETURN_IF_ERROR(MakeDir(parent + "/" + name));
  // A paced group left by a daemon killed meanwhile (empty: its processes died with it) would
  // make v1 refuse a quota below its own.
  if (version_ == Version::kV1) (void)rmdir(PacedDir(name).c_str());
  return Update(name, limits);
}

Status Cgroups::Update(const std::string& name, const Limits& limits) {
  if (version_ == Version::kNone) return Status::Ok();
  uint64_t quota =
      limits.cpus > 0 ? std::max<uint64_t>(1000, std::llround(limits.cpus * kPeriodMicros)) : 0;
  uint32_t weight = std::clamp<uint32_t>(limits.weight, 1, 10000);
  if (version_ == Version::kV2) {
    std::string d = Dir("", name);
    ARBOR_RETURN_IF_ERROR(
        WriteFile(d + "/cpu.max", (quota ? std::to_string(quota) : std::string("max")) + " " +
                                      std::to_string(kPeriodMicros)));
    ARBOR_RETURN_IF_ERROR(WriteFile(d + "/cpu.weight", std::to_string(weight)));
    // memory.high first when lowering: memory.max below it would be refused by nothing, but
    // the pressure should start before the hard limit.
    ARBOR_RETURN_IF_ERROR(WriteFile(
        d + "/memory.high",
        limits.memory_high_bytes ? std::to_string(limits.memory_high_bytes) : std::string("max")));
    return WriteFile(d + "/memory.max", limits.memory_max_bytes
                                            ? std::to_string(limits.memory_max_bytes)
                                            : std::string("max"));
  }
  std::string cpu = Dir("cpu", name);
  ARBOR_RETURN_IF_ERROR(WriteFile(cpu + "/cpu.cfs_period_us", std::to_string(kPeriodMicros)));
  ARBOR_RETURN_IF_ERROR(
      WriteFile(cpu + "/cpu.cfs_quota_us", quota ? std::to_string(quota) : std::string("-1")));
  // cpu.shares: 1024 is one default share; weight 100 is v2's default.
  ARBOR_RETURN_IF_ERROR(WriteFile(cpu + "/cpu.shares",
                                  std::to_string(std::max<uint64_t>(2, weight * 1024ull / 100))));
  std::string mem = Dir("memory", name);
  ARBOR_RETURN_IF_ERROR(WriteFile(
      mem + "/memory.limit_in_bytes",
      limits.memory_max_bytes ? std::to_string(limits.memory_max_bytes) : std::string("-1")));
  return WriteFile(
      mem + "/memory.soft_limit_in_bytes",
      limits.memory_high_bytes ? std::to_string(limits.memory_high_bytes) : std::string("-1"));
}

std::vector<std::string> Cgroups::ProcsFiles(const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& [c, parent] : parents_) out.push_back(parent + "/" + name + "/cgroup.procs");
  return out;
}

// A child of the group in v1's cpu hierarchy.
std::string Cgroups::PacedDir(const std::string& name) const { return Dir("cpu", name) + "/paced"; }

Status Cgroups::Pace(const std::string& name, pid_t pid, double cpus) {
  if (version_ != Version::kV1) {
    return Status::FailedPrecondition("pacing one process needs cgroup v1 (here: " + Describe() +
                                      ")");
  }
  const uint64_t quota = std::max<uint64_t>(
      1000, std::llround(std::max(cpus, 0.1) * static_cast<double>(kPacePeriodMicros)));
  const std::string d = PacedDir(name);
  ARBOR_RETURN_IF_ERROR(MakeDir(d));
  ARBOR_RETURN_IF_ERROR(WriteFile(d + "/cpu.cfs_period_us", std::to_string(kPacePeriodMicros)));
  ARBOR_RETURN_IF_ERROR(WriteFile(d + "/cpu.cfs_quota_us", std::to_string(quota)));
  return WriteFile(d + "/cgroup.procs", std::to_string(pid));
}

Status Cgroups::Unpace(const std::string& name, pid_t pid) {
  if (version_ != Version::kV1) return Status::Ok();
  Status st = WriteFile(Dir("cpu", name) + "/cgroup.procs", std::to_string(pid));
  // A process that has exited has nothing to move back.
  if (!st.ok() && Exists("/proc/" + std::to_string(pid))) return st;
  const std::string d = PacedDir(name);
  if (rmdir(d.c_str()) != 0 && errno != ENOENT) return Status::IOError(Errno("removing " + d));
  return Status::Ok();
}

Status Cgroups::Remove(const std::string& name) {
  Status first;
  if (version_ == Version::kV1) {
    const std::string paced = PacedDir(name);
    if (rmdir(paced.c_str()) != 0 && errno != ENOENT) {
      first = Status::IOError(Errno("removing " + paced));
    }
  }
  for (const auto& [c, parent] : parents_) {
    std::string d = parent + "/" + name;
    if (rmdir(d.c_str()) != 0 && errno != ENOENT && first.ok()) {
      first = Status::IOError(Errno("removing " + d));
    }
  }
  return first;
}

Result<uint64_t> Cgroups::ThrottledPeriods(const std::string& name) const {
  if (version_ == Version::kNone) return Status::FailedPrecondition(Describe());
  std::string path = (version_ == Version::kV2 ? Dir("", name) : Dir("cpu", name)) + "/cpu.stat";
  if (!Exists(path)) return Status::NotFound("no group " + name);
  std::istringstream in(Slurp(path));
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "nr_throttled") return value;
  }
  return Status::IOError(path + " has no nr_throttled");
}

Status Cgroups::RemoveParents() {
  Status first;
  for (const auto& [c, parent] : parents_) {
    if (rmdir(parent.c_str()) != 0 && errno != ENOENT && first.ok()) {
      first = Status::IOError(Errno("removing " + parent));
    }
  }
  return first;
}

Result<uint64_t> Cgroups::CpuUsageMicros(const std::string& name) const {
  if (version_ == Version::kNone) return Status::FailedPrecondition(Describe());
  if (version_ == Version::kV2) {
    std::string path = Dir("", name) + "/cpu.stat";
    if (!Exists(path)) return Status::NotFound("no group " + name);
    std::istringstream in(Slurp(path));
    std::string key;
    uint64_t value = 0;
    while (in >> key >> value) {
      if (key == "usage_usec") return value;
    }
    return Status::IOError(path + " has no usage_usec");
  }
  std::string path = Dir("cpuacct", name) + "/cpuacct.usage";
  if (!Exists(path)) return Status::NotFound("no group " + name);
  return std::strtoull(Slurp(path).c_str(), nullptr, 10) / 1000;
}

Result<uint64_t> Cgroups::MemoryBytes(const std::string& name) const {
  if (version_ == Version::kNone) return Status::FailedPrecondition(Describe());
  std::string path = version_ == Version::kV2 ? Dir("", name) + "/memory.current"
                                              : Dir("memory", name) + "/memory.usage_in_bytes";
  if (!Exists(path)) return Status::NotFound("no group " + name);
  return std::strtoull(Slurp(path).c_str(), nullptr, 10);
}

}  // namespace arbor::compute
