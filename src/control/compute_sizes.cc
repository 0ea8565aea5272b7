// Compute sizes: the endpoints' sizes, the autoscaler and the usage meter
// (docs/compute-sizes.md). Engine methods; the arithmetic is in sizing.cc.

#include <algorithm>
#include <cmath>

#include "common/clock.h"
#include "common/log.h"
#include "control/engine.h"
#include "control/sizing.h"

namespace arbor::control {
namespace {

constexpr int64_t kHourUs = 3'600'000'000;

int64_t HourOf(int64_t us) { return us - ((us % kHourUs) + kHourUs) % kHourUs; }

}  // namespace

ComputeSize Engine::EffectiveSize(const EndpointRecord& e) {
  if (e.size.set()) return e.size;
  auto p = catalog_.projects.find(e.project);
  if (p == catalog_.projects.end()) return kBranchComputeSize;
  if (e.branch == p->second.default_branch && IsReadWrite(e)) {
    return p->second.default_branch_endpoint_size.set() ? p->second.default_branch_endpoint_size
                                                        : kDefaultBranchComputeSize;
  }
  return p->second.branch_endpoint_size.set() ? p->second.branch_endpoint_size : kBranchComputeSize;
}

uint64_t Engine::WriteRateFor(double current_cu) const {
  return static_cast<uint64_t>(static_cast<double>(options_.write_bytes_per_cu) * current_cu);
}

bool Engine::ProtectedLocked(const Live& live) {
  return live.starting || (live.running && live.syncing);
}

bool Engine::OthersProtectedLocked(const EndpointKey& self) const {
  for (const auto& [k, live] : live_) {
    if (k != self && ProtectedLocked(live)) return true;
  }
  return false;
}

void Engine::RefreshWriteRatesLocked() {
  int computes = 0;
  for (const auto& [k, live] : live_) computes += ProtectedLocked(live);
  for (auto& [k, live] : live_) {
    if (!live.mount) continue;
    const bool others = computes > (ProtectedLocked(live) ? 1 : 0);
    const uint64_t rate = others && live.checkpoints == 0 ? WriteRateFor(live.current_cu) : 0;
    if (rate == live.write_rate) continue;
    live.mount->SetWriteRate(rate);
    live.write_rate = rate;
  }
}

std::vector<HostShare> Engine::HostSharesLocked(const EndpointKey* except,
                                                std::vector<EndpointKey>* keys) {
  std::vector<HostShare> shares;
  for (const auto& [k, live] : live_) {
    if ((except != nullptr && k == *except) || !(live.running || live.starting)) continue;
    auto e = catalog_.endpoints.find(k);
    ComputeSize size = e != catalog_.endpoints.end() ? EffectiveSize(e->second) : ComputeSize{};
    // A compute starting or stopping keeps what it has until it runs.
    if (live.starting || live.stopping || !live.running) size.min_cu = live.current_cu;
    shares.push_back({size.max_cu, size.min_cu, live.current_cu});
    keys->push_back(k);
  }
  return shares;
}

void Engine::GiveBackLocked(const std::vector<EndpointKey>& keys,
                            const std::vector<HostShare>& shares, const char* what) {
  for (size_t i = 0; i < keys.size(); ++i) {
    Live& live = live_[keys[i]];
    if (shares[i].current_cu >= live.current_cu) continue;
    auto e = catalog_.endpoints.find(keys[i]);
    if (e == catalog_.endpoints.end()) continue;
    (void)ApplyCuLocked(keys[i], live, EffectiveSize(e->second), shares[i].current_cu,
                        "gave CPU back", what);
  }
}

void Engine::FitIntoHostLocked() {
  if (options_.host_cpus <= 0) return;
  std::vector<EndpointKey> keys;
  std::vector<HostShare> shares = HostSharesLocked(nullptr, &keys);
  double largest = 0, held = 0;
  for (const HostShare& h : shares) {
    largest = std::max(largest, h.max_cu);
    held += h.current_cu;
  }
  if (held <= options_.host_cpus) return;
  // Over-committed (a start took 1 CU of a full host): the computes smaller than the largest
  // give back, as they would to the growth of a compute of the largest size from nothing to
  // what the largest ones hold.
  std::vector<EndpointKey> smaller_keys;
  std::vector<HostShare> smaller;
  double theirs = 0;
  for (size_t i = 0; i < shares.size(); ++i) {
    if (shares[i].max_cu < largest) {
      smaller.push_back(shares[i]);
      smaller_keys.push_back(keys[i]);
    } else {
      theirs += shares[i].current_cu;
    }
  }
  if (smaller.empty()) return;
  (void)GrowWithinHost(options_.host_cpus, largest, 0, theirs, &smaller);
  GiveBackLocked(smaller_keys, smaller, "the host's CPUs are over-committed");
}

bool Engine::ApplyCuLocked(const EndpointKey& key, Live& live, const ComputeSize& size, double cu,
                           const char* why, const std::string& what) {
  auto e = catalog_.endpoints.find(key);
  if (e == catalog_.endpoints.end()) return false;
  const std::string cid = ComputeId(e->second);
  compute::Limits limits = LimitsFor({size.min_cu, live.memory_cu}, cu);
  limits.weight = LimitsFor(size, cu).weight;
  Status st = supervisor_->Resize(cid, limits);
  if (!st.ok()) {
    log::warn("engine: resizing {}: {}", cid, st.ToString());
    return false;
  }
  MeterLocked(key, live, WallMicros());  // what ran so far counts at the old size
  log::info("engine: {} {} {:g} -> {:g} CU ({}; size {:g}-{:g} CU)", cid, why, live.current_cu, cu,
            what, size.min_cu, size.max_cu);
  live.current_cu = cu;
  live.low_windows = 0;
  return true;
}

Result<EndpointRecord> Engine::SetEndpointSize(const std::string& project,
                                               const std::string& branch, const std::string& id,
                                               const ComputeSize& size) {
  ARBOR_RETURN_IF_ERROR(ValidateSize(size, "spec"));
  std::lock_guard l(mu_);
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e, FindEndpoint(project, branch, id));
  EndpointRecord updated = *e;
  updated.size = size;
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(updated)}));
  *e = updated;
  auto live = live_.find({project, branch, id});
  if (live != live_.end() && live->second.running) {
    Live& lv = live->second;
    MeterLocked(live->first, lv, WallMicros());  // what ran so far counts at the old size
    const double before = lv.current_cu;
    lv.current_cu = std::clamp(lv.current_cu, size.min_cu, size.max_cu);
    lv.memory_cu = std::max(lv.memory_cu, size.max_cu);  // memory only grows while it runs
    lv.low_windows = 0;
    RefreshWriteRatesLocked();
    compute::Limits limits = LimitsFor({size.min_cu, lv.memory_cu}, lv.current_cu);
    limits.weight = LimitsFor(size, lv.current_cu).weight;
    Status st = supervisor_->Resize(ComputeId(updated), limits);
    if (!st.ok()) {
      log::warn("engine: resizing {}: {}", ComputeId(updated), st.ToString());
    } else {
      log::info("engine: {} resized to {:g}-{:g} CU; CPU limit {:g} -> {:g} CU, memory {:g} CU",
                ComputeId(updated), size.min_cu, size.max_cu, before, lv.current_cu, lv.memory_cu);
    }
  }
  return updated;
}

Status Engine::SetDefaultSizes(const std::string& project,
                               const std::optional<ComputeSize>& branches,
                               const std::optional<ComputeSize>& default_branch) {
  if (branches && branches->set()) {
    ARBOR_RETURN_IF_ERROR(ValidateSize(*branches, "spec.default_endpoint_settings"));
  }
  if (default_branch && default_branch->set()) {
    ARBOR_RETURN_IF_ERROR(ValidateSize(*default_branch, "spec.default_branch_endpoint_settings"));
  }
  std::lock_guard l(mu_);
  auto it = catalog_.projects.find(project);
  if (it == catalog_.projects.end()) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  ProjectRecord updated = it->second;
  if (branches) updated.branch_endpoint_size = *branches;
  if (default_branch) updated.default_branch_endpoint_size = *default_branch;
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(updated)}));
  it->second = updated;
  return Status::Ok();
}

void Engine::MeterLocked(const EndpointKey& key, Live& live, int64_t now_us) {
  if (!live.running || live.metered_us == 0 || now_us <= live.metered_us) return;
  const auto& [project, branch, endpoint] = key;
  auto k = std::make_tuple(project, HourOf(now_us), branch, endpoint);
  UsageRecord& u = catalog_.usage[k];
  if (u.project.empty()) {
    u.project = project;
    u.branch = branch;
    u.endpoint = endpoint;
    u.hour_us = std::get<1>(k);
  }
  u.cu_seconds += live.current_cu * static_cast<double>(now_us - live.metered_us) / 1e6;
  live.metered_us = now_us;
  if (live.written_timeline.value() != 0) {
    auto b = catalog_.branches.find({project, branch});
    if (b != catalog_.branches.end() && b->second.timeline == live.written_timeline) {
      const uint64_t w = store_->WrittenBytes(live.written_timeline);
      if (w > live.written_mark) u.written_bytes += w - live.written_mark;
      live.written_mark = w;
    } else {
      // A reset or restore gave the branch another timeline: count from its start.
      live.written_timeline = b != catalog_.branches.end() ? b->second.timeline : TimelineId(0);
      live.written_mark = 0;
    }
  }
  usage_dirty_.insert(k);
}

void Engine::FlushUsageLocked() {
  if (usage_dirty_.empty()) return;
  storage::MetaWrites writes;
  for (const auto& k : usage_dirty_) {
    auto it = catalog_.usage.find(k);
    if (it != catalog_.usage.end()) writes.push_back(Catalog::Put(it->second));
  }
  Status st = store_->WriteMeta(writes);
  if (!st.ok()) {
    log::warn("engine: writing usage: {}", st.ToString());
    return;  // kept dirty: the next flush tries again
  }
  usage_dirty_.clear();
}

void Engine::Autoscale(int64_t now_us) {
  std::lock_guard l(mu_);
  struct Growth {
    EndpointKey key;
    ComputeSize size;
    double wanted = 0;
    double used = 0;
  };
  std::vector<Growth> growths;
  // Which computes commit: each one's fsyncs since the last look (about a second ago).
  for (auto& [key, live] : live_) {
    if (!live.running || !live.mount) continue;
    const uint64_t fsyncs = live.mount->Fsyncs();
    live.syncing = fsyncs != live.fsyncs_seen;
    live.fsyncs_seen = fsyncs;
  }
  for (auto& [key, live] : live_) {
    if (!live.running || live.stopping) continue;
    auto e = catalog_.endpoints.find(key);
    if (e == catalog_.endpoints.end()) continue;
    if (live.cpu_sample_us != 0 && now_us - live.cpu_sample_us < options_.autoscale_window_us) {
      continue;
    }
    MeterLocked(key, live, now_us);
    const std::string cid = ComputeId(e->second);
    auto cpu = supervisor_->CpuUsageMicros(cid);
    if (!cpu.ok()) continue;  // no control group: it runs unlimited, at its size on paper
    const uint64_t throttled = live.mount ? live.mount->WriteThrottledNanos() : 0;
    if (live.cpu_sample_us == 0 || *cpu < live.cpu_us || throttled < live.throttle_sample_ns) {
      live.cpu_us = *cpu;
      live.cpu_sample_us = now_us;
      live.throttle_sample_ns = throttled;
      continue;
    }
    const double window_us = static_cast<double>(now_us - live.cpu_sample_us);
    double used = static_cast<double>(*cpu - live.cpu_us) / window_us;
    // Writes that waited for their budget most of the window: bound by its size as surely
    // as a compute at its CPU limit (the budget follows the CPU limit).
    const double write_bound =
        static_cast<double>(throttled - live.throttle_sample_ns) / 1000.0 / window_us;
    if (write_bound >= 0.5) used = std::max(used, live.current_cu);
    live.cpu_us = *cpu;
    live.cpu_sample_us = now_us;
    live.throttle_sample_ns = throttled;
    const ComputeSize size = EffectiveSize(e->second);
    auto next = AutoscaleDecision(size, live.current_cu, used, &live.low_windows);
    if (!next || *next <= live.current_cu) live.held = false;
    if (!next) continue;
    if (*next > live.current_cu && options_.host_cpus > 0) {
      growths.push_back({key, size, *next, used});
      continue;
    }
    char what[64];
    std::snprintf(what, sizeof what, "it used %.2f CPUs of its %g", used, live.current_cu);
    (void)ApplyCuLocked(key, live, size, *next, "autoscaled", what);
  }
  // Growth within the host's CPUs, larger computes first; they may take CPU back from
  // smaller ones above their min.
  std::sort(growths.begin(), growths.end(),
            [](const Growth& a, const Growth& b) { return a.size.max_cu > b.size.max_cu; });
  for (const Growth& g : growths) {
    Live& live = live_[g.key];
    std::vector<EndpointKey> keys;
    std::vector<HostShare> others = HostSharesLocked(&g.key, &keys);
    const double grown =
        GrowWithinHost(options_.host_cpus, g.size.max_cu, live.current_cu, g.wanted, &others);
    GiveBackLocked(keys, others, "a larger compute needs the host's CPUs");
    if (grown > live.current_cu) {
      char what[96];
      std::snprintf(what, sizeof what, "it used %.2f CPUs of its %g%s", g.used, live.current_cu,
                    grown < g.wanted ? "; the host's CPUs allow no more" : "");
      live.held =
          !ApplyCuLocked(g.key, live, g.size, grown, "autoscaled", what) || grown < g.wanted;
    } else if (!live.held) {
      live.held = true;
      auto e = catalog_.endpoints.find(g.key);
      log::info("engine: {} held at {:g} CU: the host's {:g} CPUs are held by other computes",
                e != catalog_.endpoints.end() ? ComputeId(e->second) : "?", live.current_cu,
                options_.host_cpus);
    }
  }
  FitIntoHostLocked();
  RefreshWriteRatesLocked();
  // Usage reaches the store every few seconds, and at every stop and shutdown's next flush.
  if (now_us - usage_flushed_us_ >= 5'000'000) {
    FlushUsageLocked();
    usage_flushed_us_ = now_us;
  }
}

std::vector<UsageRecord> Engine::ProjectUsage(const std::string& project, int64_t start_us,
                                              int64_t end_us) {
  std::lock_guard l(mu_);
  // What the running computes used up to now, so that the answer is current.
  const int64_t now = WallMicros();
  for (auto& [key, live] : live_) {
    if (std::get<0>(key) == project && live.running && !live.stopping) MeterLocked(key, live, now);
  }
  std::vector<UsageRecord> out;
  auto it = catalog_.usage.lower_bound({project, HourOf(start_us), "", ""});
  for (; it != catalog_.usage.end() && std::get<0>(it->first) == project; ++it) {
    if (it->second.hour_us >= end_us) break;
    out.push_back(it->second);
  }
  return out;
}

std::string Engine::ComputeLimits() const {
  const compute::Cgroups* cg = supervisor_->cgroups();
  if (cg == nullptr) return "none: turned off (ARBOR_COMPUTE_LIMITS=off)";
  return cg->Describe();
}

}  // namespace arbor::control
