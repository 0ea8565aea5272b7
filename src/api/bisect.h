#pragma once

// The search of a bisection (POST .../branches/B:bisect, src/control/bisect.cc), as pure
// functions. States are indices 0..n-1 of
// the window's points, oldest first; -1 is the state at --since. Good states come before bad
// ones (a check that flips back and forth gets one of its changes from true to false).

#include <vector>

namespace arbor::api {

// The states to probe next, at once, inside (lo, hi) where lo is good and hi bad, hi-lo > 1:
// up to `count` that split the range in count + 1 parts (fewer when it is that narrow).
std::vector<int> NextProbes(int lo, int hi, int count);
// Narrows (lo, hi) with the answers for `probes` (in NextProbes' order): the first bad one
// becomes hi, the good ones before it move lo. Returns the index in `probes` of the new hi,
// or -1 if every probe was good.
int Narrow(const std::vector<int>& probes, const std::vector<bool>& good, int* lo, int* hi);

}  // namespace arbor::api
