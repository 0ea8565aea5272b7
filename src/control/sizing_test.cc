#include "control/sizing.h"

#include <gtest/gtest.h>

namespace arbor::control {
namespace {

TEST(Sizing, SizesAreQuarterStepsFromAQuarterToEight) {
  EXPECT_TRUE(ValidateSize({0.25, 1}, "spec").ok());
  EXPECT_TRUE(ValidateSize({8, 8}, "spec").ok());
  EXPECT_FALSE(ValidateSize({0.1, 1}, "spec").ok());
  EXPECT_FALSE(ValidateSize({1, 9}, "spec").ok());
  EXPECT_FALSE(ValidateSize({2, 1}, "spec").ok());
  EXPECT_FALSE(ValidateSize({0.3, 1}, "spec").ok());
  Status st = ValidateSize({0.25, 0.6}, "spec");
  EXPECT_NE(st.message().find("multiples of 0.25"), std::string::npos) << st.message();
}

TEST(Sizing, LimitsFollowTheSize) {
  compute::Limits l = LimitsFor({0.25, 2}, 0.5);
  EXPECT_EQ(l.cpus, 0.5);
  EXPECT_EQ(l.weight, 200u);
  EXPECT_EQ(l.memory_max_bytes, 4ull << 30);
  EXPECT_LT(l.memory_high_bytes, l.memory_max_bytes);
  EXPECT_EQ(LimitsFor({0.25, 2}, 5).cpus, 2);  // clamped into the size
}

TEST(Sizing, PostgresSettingsFollowTheMaxSize) {
  PgSizing q = SizingFor(0.25);
  EXPECT_EQ(q.shared_buffers_mb, 128u);
  EXPECT_EQ(q.effective_cache_size_mb, 384u);
  EXPECT_EQ(q.work_mem_kb, 4096u);
  EXPECT_EQ(q.max_connections, 100);
  PgSizing two = SizingFor(2);
  EXPECT_EQ(two.shared_buffers_mb, 1024u);
  EXPECT_EQ(two.work_mem_kb, 16384u);
  EXPECT_EQ(two.max_connections, 400);
  EXPECT_LE(SizingFor(8).max_connections, 1700);
}

TEST(Sizing, TheAutoscalerGoesUpAtOnceAndDownAfterAWhile) {
  int low = 0;
  // CPU-bound at its limit: doubled, up to the max.
  EXPECT_EQ(AutoscaleDecision({0.25, 1}, 0.25, 0.24, &low), 0.5);
  EXPECT_EQ(AutoscaleDecision({0.25, 1}, 0.75, 0.74, &low), 1.0);
  EXPECT_EQ(AutoscaleDecision({0.25, 1}, 1, 1.0, &low), std::nullopt);
  // Between the thresholds: no change.
  EXPECT_EQ(AutoscaleDecision({0.25, 1}, 1, 0.5, &low), std::nullopt);
  // Idle: down only on the kDownWindows-th window in a row, by half, not below min.
  for (int i = 1; i < kDownWindows; ++i) {
    EXPECT_EQ(AutoscaleDecision({0.25, 1}, 1, 0.01, &low), std::nullopt) << i;
  }
  EXPECT_EQ(AutoscaleDecision({0.25, 1}, 1, 0.01, &low), 0.5);
  EXPECT_EQ(low, 0);
  // A busy window in between starts the count again (hysteresis).
  EXPECT_EQ(AutoscaleDecision({0.25, 1}, 0.5, 0.01, &low), std::nullopt);
  EXPECT_EQ(AutoscaleDecision({0.25, 1}, 0.5, 0.3, &low), std::nullopt);
  EXPECT_EQ(low, 0);
  // Not below twice what it still uses.
  low = kDownWindows - 1;
  EXPECT_EQ(AutoscaleDecision({0.25, 4}, 4, 1.1, &low), 2.25);
  low = kDownWindows - 1;
  EXPECT_EQ(AutoscaleDecision({0.25, 8}, 8, 1.5, &low), 4.0);
  // A size changed under it: clamped at once.
  EXPECT_EQ(AutoscaleDecision({0.25, 0.5}, 1, 0.0, &low), 0.5);
  EXPECT_EQ(AutoscaleDecision({2, 4}, 1, 0.0, &low), 2.0);
}

TEST(Sizing, AComputeStartsAtOneCuWithinItsSize) {
  EXPECT_EQ(StartCu({0.25, 1}), 1.0);
  EXPECT_EQ(StartCu({0.25, 0.5}), 0.5);
  EXPECT_EQ(StartCu({2, 4}), 2.0);
}

TEST(Sizing, GrowthTakesFreeCpusThenTakesBackFromSmallerComputes) {
  // 2 CPUs: production at 1, a branch at 1. Production wants 2: the branch gives back down
  // to its min (0.25), so production gets 1.75.
  std::vector<HostShare> others{{1, 0.25, 1}};
  EXPECT_EQ(GrowWithinHost(2, 2, 1, 2, &others), 1.75);
  EXPECT_EQ(others[0].current_cu, 0.25);
  // A branch wants more while production holds the host: nothing, and production keeps it.
  others = {{2, 2, 2}};
  EXPECT_EQ(GrowWithinHost(2, 1, 0.25, 0.5, &others), 0.25);
  EXPECT_EQ(others[0].current_cu, 2);
  // An equal compute takes nothing back from another.
  others = {{1, 0.25, 1}};
  EXPECT_EQ(GrowWithinHost(1.5, 1, 0.5, 1, &others), 0.5);
  EXPECT_EQ(others[0].current_cu, 1);
  // Free CPUs first, then the smallest computes down to their mins, and only what is needed.
  others = {{1, 0.25, 0.75}, {0.5, 0.25, 0.5}};
  EXPECT_EQ(GrowWithinHost(4, 4, 2, 3, &others), 3.0);  // 0.75 free + 0.25 of the smallest
  EXPECT_EQ(others[1].current_cu, 0.25);
  EXPECT_EQ(others[0].current_cu, 0.75);
  EXPECT_EQ(GrowWithinHost(4, 4, 3, 4, &others), 3.5);  // then the other gives its 0.5
  EXPECT_EQ(others[0].current_cu, 0.25);
  // A shrink that is not wanted.
  others = {};
  EXPECT_EQ(GrowWithinHost(2, 1, 1, 0.5, &others), 0.5);
}

}  // namespace
}  // namespace arbor::control
