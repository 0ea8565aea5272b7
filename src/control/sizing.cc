#include "control/sizing.h"

#include <algorithm>
#include <cmath>

namespace arbor::control {
namespace {

bool QuarterStep(double v) { return std::fabs(v * 4 - std::round(v * 4)) < 1e-9; }
double RoundUpToQuarter(double v) { return std::ceil(v * 4 - 1e-9) / 4; }

}  // namespace

Status ValidateSize(const ComputeSize& s, const std::string& where) {
  auto bad = [&](const std::string& why) {
    char text[128];
    std::snprintf(text, sizeof text, " (min %g, max %g)", s.min_cu, s.max_cu);
    return Status::InvalidArgument(where + ": " + why + text);
  };
  if (!std::isfinite(s.min_cu) || !std::isfinite(s.max_cu)) return bad("sizes must be numbers");
  if (s.min_cu < kMinCu || s.max_cu > kMaxCu) {
    return bad("compute sizes are 0.25 to 8 CU (1 CU = 1 vCPU and 2 GiB)");
  }
  if (s.min_cu > s.max_cu) return bad("autoscaling_limit_min_cu exceeds autoscaling_limit_max_cu");
  if (!QuarterStep(s.min_cu) || !QuarterStep(s.max_cu)) {
    return bad("sizes are multiples of 0.25 CU");
  }
  return Status::Ok();
}

compute::Limits LimitsFor(const ComputeSize& size, double current_cu) {
  compute::Limits l;
  l.cpus = std::clamp(current_cu, size.min_cu, size.max_cu);
  l.weight = static_cast<uint32_t>(std::clamp(std::lround(size.max_cu * 100), 1L, 10000L));
  l.memory_max_bytes = static_cast<uint64_t>(size.max_cu * static_cast<double>(kBytesPerCu));
  l.memory_high_bytes = l.memory_max_bytes / 10 * 9;
  return l;
}

PgSizing SizingFor(double max_cu) {
  const uint64_t memory_mb = static_cast<uint64_t>(max_cu * static_cast<double>(kBytesPerCu)) >> 20;
  PgSizing s;
  s.shared_buffers_mb = memory_mb / 4;
  s.effective_cache_size_mb = memory_mb / 4 * 3;
  s.work_mem_kb = std::max<uint64_t>(4096, (memory_mb << 10) / 256);
  s.max_connections =
      std::min(1700, 100 + static_cast<int>(std::lround(std::max(0.0, max_cu - 0.5) * 200)));
  return s;
}

double StartCu(const ComputeSize& size) { return std::clamp(1.0, size.min_cu, size.max_cu); }

double GrowWithinHost(double host_cpus, double max_cu, double current_cu, double wanted_cu,
                      std::vector<HostShare>* others) {
  if (wanted_cu <= current_cu) return wanted_cu;
  double held = current_cu;
  for (const HostShare& o : *others) held += o.current_cu;
  double free = host_cpus - held;
  double need = wanted_cu - current_cu;
  if (free < need) {
    // Take back from the smallest computes first, each down to its min at most.
    std::vector<HostShare*> order;
    for (HostShare& o : *others) {
      if (o.max_cu < max_cu && o.current_cu > o.min_cu) order.push_back(&o);
    }
    std::sort(order.begin(), order.end(),
              [](const HostShare* a, const HostShare* b) { return a->max_cu < b->max_cu; });
    for (HostShare* o : order) {
      const double missing = need - std::max(0.0, free);
      if (missing <= 0) break;
      const double next = std::max(o->min_cu, RoundUpToQuarter(o->current_cu - missing));
      free += o->current_cu - next;
      o->current_cu = next;
    }
  }
  const double grant = std::floor(std::max(0.0, std::min(need, free)) * 4 + 1e-9) / 4;
  return current_cu + grant;
}

std::optional<double> AutoscaleDecision(const ComputeSize& size, double current_cu,
                                        double used_cpus, int* low_windows) {
  const double limit = std::clamp(current_cu, size.min_cu, size.max_cu);
  if (limit != current_cu) {  // the size changed under it
    *low_windows = 0;
    return limit;
  }
  if (used_cpus >= 0.85 * limit) {
    *low_windows = 0;
    if (limit >= size.max_cu) return std::nullopt;
    return std::min(size.max_cu, RoundUpToQuarter(limit * 2));
  }
  if (used_cpus < 0.30 * limit && limit > size.min_cu) {
    if (++*low_windows < kDownWindows) return std::nullopt;
    *low_windows = 0;
    double target =
        std::max({size.min_cu, RoundUpToQuarter(limit / 2), RoundUpToQuarter(used_cpus * 2)});
    if (target >= limit) return std::nullopt;
    return target;
  }
  *low_windows = 0;
  return std::nullopt;
}

}  // namespace arbor::control
