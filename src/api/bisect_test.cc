#include "api/bisect.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace arbor::api {
namespace {

// Runs the whole search over states -1..n-1 whose first bad one is `first_bad` (-1 is the
// good start, n-1 the bad end); returns (lo, hi, probes, rounds).
struct Outcome {
  int lo, hi, probes, rounds;
};
Outcome Search(int n, int first_bad, int start = -1, int ways = 2) {
  Outcome o{start, n - 1, 0, 0};
  while (o.hi - o.lo > 1) {
    std::vector<int> probes = NextProbes(o.lo, o.hi, ways);
    std::vector<bool> good;
    for (int p : probes) {
      EXPECT_GT(p, o.lo);
      EXPECT_LT(p, o.hi);
      good.push_back(p < first_bad);
    }
    int before_lo = o.lo, before_hi = o.hi;
    Narrow(probes, good, &o.lo, &o.hi);
    EXPECT_TRUE(o.lo > before_lo || o.hi < before_hi) << "no progress";
    o.probes += static_cast<int>(probes.size());
    ++o.rounds;
    if (o.rounds > 64) break;
  }
  return o;
}

TEST(BisectSearch, FindsTheAdjacentPairForEveryChangePoint) {
  for (int n = 1; n <= 120; ++n) {
    for (int first_bad = 0; first_bad < n; ++first_bad) {
      for (int ways : {1, 2, 3}) {
        Outcome o = Search(n, first_bad, -1, ways);
        EXPECT_EQ(o.hi, first_bad) << "n=" << n << " ways=" << ways;
        EXPECT_EQ(o.lo, first_bad - 1) << "n=" << n << " ways=" << ways;
      }
    }
  }
}

TEST(BisectSearch, TenThousandCommitsTakeAtMostTwentyProbes) {
  // Two for the window's ends, then two a round.
  for (int first_bad : {0, 1, 4999, 5000, 7777, 9998, 9999}) {
    Outcome o = Search(10'000, first_bad);
    EXPECT_EQ(o.hi, first_bad);
    EXPECT_LE(o.rounds, static_cast<int>(std::ceil(std::log(10'001.0) / std::log(3.0))) + 1);
    EXPECT_LE(2 + o.probes, 20) << "first bad " << first_bad;
  }
}

TEST(BisectSearch, OneProbeARoundIsABinarySearch) {
  // What the daemon runs: one standby walks forward, so one probe a round.
  for (int first_bad : {0, 1, 4999, 5000, 7777, 9998, 9999}) {
    Outcome o = Search(10'000, first_bad, -1, 1);
    EXPECT_EQ(o.hi, first_bad);
    EXPECT_LE(o.probes, 14) << "first bad " << first_bad;  // ceil(log2(10001))
  }
}

TEST(BisectSearch, AFlipBackStillEndsOnAChangeFromGoodToBad) {
  // good 0..9, bad 10..19, good 20..29, bad 30..39: any answer must be a good->bad edge.
  auto is_good = [](int i) { return i < 10 || (i >= 20 && i < 30); };
  int lo = -1, hi = 39;
  while (hi - lo > 1) {
    std::vector<int> probes = NextProbes(lo, hi, 2);
    std::vector<bool> good;
    for (int p : probes) good.push_back(is_good(p));
    Narrow(probes, good, &lo, &hi);
  }
  EXPECT_EQ(hi, lo + 1);
  EXPECT_TRUE(lo < 0 || is_good(lo));
  EXPECT_FALSE(is_good(hi));
}

}  // namespace
}  // namespace arbor::api
