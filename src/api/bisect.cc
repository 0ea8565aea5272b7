#include "api/bisect.h"

#include <cstddef>

namespace arbor::api {

std::vector<int> NextProbes(int lo, int hi) {
  if (hi - lo <= 2) return {lo + 1};
  std::vector<int> mids{lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3};
  if (mids[0] == mids[1]) mids.pop_back();
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
