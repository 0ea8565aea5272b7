#include "api/bisect.h"

#include <cstddef>
#include <cstdint>

namespace arbor::api {

std::vector<int> NextProbes(int lo, int hi, int count) {
  std::vector<int> mids;
  for (int i = 1; i <= count; ++i) {
    int m = lo + static_cast<int>(static_cast<int64_t>(hi - lo) * i / (count + 1));
    if (m > lo && m < hi && (mids.empty() || m > mids.back())) mids.push_back(m);
  }
  if (mids.empty()) mids.push_back(lo + 1);
  return mids;
}

int Narrow(const std::vector<int>& probes, const std::vector<bool>& good, int* lo, int* hi) {
  for (std::size_t i = 0; i < probes.size() && i < good.size(); ++i) {
    if (!good[i]) {
      *hi = probes[i];
      return static_cast<int>(i);
    }
    *lo = probes[i];
  }
  return -1;
}

}  // namespace arbor::api
