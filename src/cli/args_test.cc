#include "cli/args.h"

#include <gtest/gtest.h>

#include "api/names.h"

namespace arbor::cli {
namespace {

const int64_t kNow = 1795536000LL * 1'000'000;  // 2026-11-24T16:00:00Z

TEST(ResolveBranch, ShortNamesAreInTheProjectAndFullNamesAsGiven) {
  auto b = ResolveBranch("dev", "default");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ToString(), "projects/default/branches/dev");
  b = ResolveBranch("projects/other/branches/x", "default");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ToString(), "projects/other/branches/x");
  EXPECT_EQ(ResolveBranch("../x", "default").status().message(),
            "branch id '../x' must start with a lowercase letter");
  EXPECT_EQ(ResolveBranch("dev", "Prod").status().message(),
            "project id 'Prod' must start with a lowercase letter");
  EXPECT_FALSE(ResolveBranch("projects/p/branches", "default").ok());
  EXPECT_FALSE(ResolveBranch("", "default").ok());
}

TEST(TimeArg, RelativeAndAbsolute) {
  EXPECT_EQ(*ParseTimeArg("-5m", kNow), kNow - 300'000'000);
  EXPECT_EQ(*ParseTimeArg("-30s", kNow), kNow - 30'000'000);
  EXPECT_EQ(*ParseTimeArg("-2h", kNow), kNow - 7'200'000'000);
  EXPECT_EQ(*ParseTimeArg("-1h30m", kNow), kNow - 5'400'000'000);
  EXPECT_EQ(*ParseTimeArg("-1d", kNow), kNow - 86'400'000'000);
  EXPECT_EQ(*ParseTimeArg("now", kNow), kNow);
  EXPECT_EQ(*ParseTimeArg("+2h", kNow), kNow + 7'200'000'000);
  EXPECT_EQ(*ParseTimeArg("2026-11-24T17:00:00+01:00", kNow), kNow);
  for (const char* bad : {"", "-", "-5", "5m", "-5x", "--5m", "-m", "yesterday", "-5m3"}) {
    auto r = ParseTimeArg(bad, kNow);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_EQ(ParseTimeArg("5m", kNow).status().message(),
            "'5m' is not a time: use RFC 3339 (2026-11-24T16:00:00Z), \"now\", how long ago "
            "(-5m, -30s, -2h) or from now (+2h)");
}

TEST(DurationArg, HumanUnits) {
  EXPECT_EQ(*ParseDurationArg("3600s"), 3600);
  EXPECT_EQ(*ParseDurationArg("90m"), 5400);
  EXPECT_EQ(*ParseDurationArg("2h"), 7200);
  EXPECT_EQ(*ParseDurationArg("7d"), 604800);
  EXPECT_EQ(*ParseDurationArg("1w"), 604800);
  EXPECT_EQ(*ParseDurationArg("1h30m"), 5400);
  for (const char* bad : {"", "90", "1.5h", "-1h", "h", "1y", "1h 30m"}) {
    EXPECT_FALSE(ParseDurationArg(bad).ok()) << bad;
  }
  EXPECT_EQ(ParseDurationArg("90").status().message(),
            "'90' is not a duration: use e.g. 3600s, 90m, 2h, 7d or 1h30m");
}

TEST(Human, DurationsAndBytes) {
  EXPECT_EQ(HumanDuration(0), "0s");
  EXPECT_EQ(HumanDuration(59), "59s");
  EXPECT_EQ(HumanDuration(300), "5m");
  EXPECT_EQ(HumanDuration(3600), "1h");
  EXPECT_EQ(HumanDuration(7500), "2h5m");
  EXPECT_EQ(HumanDuration(3 * 86400 + 4 * 3600 + 59), "3d4h");
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(8192), "8.0 KiB");
  EXPECT_EQ(HumanBytes(40960000), "39.1 MiB");
  EXPECT_EQ(HumanBytes(int64_t{3} << 30), "3.0 GiB");
}

}  // namespace
}  // namespace arbor::cli
