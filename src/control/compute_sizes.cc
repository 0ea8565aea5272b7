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
    if (live.cpu_sample_us == 0 || *cpu < live.cpu_us) {
      live.cpu_us = *cpu;
      live.cpu_sample_us = now_us;
      continue;
    }
    const double used =
        static_cast<double>(*cpu - live.cpu_us) / static_cast<double>(now_us - live.cpu_sample_us);
    live.cpu_us = *cpu;
    live.cpu_sample_us = now_us;
    const ComputeSize size = EffectiveSize(e->second);
    const double before = live.current_cu;
    auto next = AutoscaleDecision(size, live.current_cu, used, &live.low_windows);
    if (!next) continue;
    compute::Limits limits = LimitsFor({size.min_cu, live.memory_cu}, *next);
    limits.weight = LimitsFor(size, *next).weight;
    Status st = supervisor_->Resize(cid, limits);
    if (!st.ok()) {
      log::warn("engine: autoscaling {}: {}", cid, st.ToString());
      continue;
    }
    live.current_cu = *next;
    live.low_windows = 0;
    log::info(
        "engine: {} autoscaled {:g} -> {:g} CU (it used {:.2f} CPUs of its {:g}; size "
        "{:g}-{:g} CU)",
        cid, before, *next, used, before, size.min_cu, size.max_cu);
  }
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
