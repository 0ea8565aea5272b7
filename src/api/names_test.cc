#include "api/names.h"

#include <gtest/gtest.h>

namespace arbor::api {
namespace {

TEST(ValidateId, AcceptsLowercaseLettersDigitsHyphens) {
  EXPECT_TRUE(ValidateId("dev", "branch id").ok());
  EXPECT_TRUE(ValidateId("a", "branch id").ok());
  EXPECT_TRUE(ValidateId("ci-run-42", "branch id").ok());
  EXPECT_TRUE(ValidateId(std::string(63, 'a'), "branch id").ok());
}

TEST(ValidateId, RefusesWithAMessageNamingTheProblem) {
  auto st = ValidateId("", "branch id");
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message(), "branch id must not be empty");
  st = ValidateId(std::string(64, 'a'), "branch id");
  EXPECT_NE(st.message().find("64 characters long; the limit is 63"), std::string::npos);
  EXPECT_NE(ValidateId("Dev", "branch id").message().find("start with a lowercase letter"),
            std::string::npos);
  EXPECT_NE(ValidateId("1dev", "branch id").message().find("start with a lowercase letter"),
            std::string::npos);
  EXPECT_NE(ValidateId("-dev", "branch id").message().find("start"), std::string::npos);
  EXPECT_EQ(ValidateId("dEv", "branch id").message(),
            "branch id 'dEv' may hold only lowercase letters, digits and hyphens");
  EXPECT_FALSE(ValidateId("a_b", "branch id").ok());
  EXPECT_FALSE(ValidateId("a.b", "branch id").ok());
  EXPECT_FALSE(ValidateId("..", "branch id").ok());
  EXPECT_FALSE(ValidateId("a/b", "branch id").ok());
  EXPECT_FALSE(ValidateId("a b", "branch id").ok());
}

TEST(Names, ParseAndFormatRoundTrip) {
  auto p = ParseProjectName("projects/default");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->project, "default");
  EXPECT_EQ(p->ToString(), "projects/default");

  auto b = ParseBranchName("projects/default/branches/dev");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->project, "default");
  EXPECT_EQ(b->branch, "dev");
  EXPECT_EQ(b->ToString(), "projects/default/branches/dev");

  auto e = ParseEndpointName("projects/p/branches/b/endpoints/primary");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->endpoint, "primary");
  EXPECT_EQ(e->Parent().ToString(), "projects/p/branches/b");
  EXPECT_EQ(e->ToString(), "projects/p/branches/b/endpoints/primary");
}

TEST(Names, RefuseWrongShapesAndBadIds) {
  EXPECT_FALSE(ParseProjectName("").ok());
  EXPECT_FALSE(ParseProjectName("projects/").ok());
  EXPECT_FALSE(ParseProjectName("project/x").ok());
  EXPECT_FALSE(ParseProjectName("projects/x/").ok());
  EXPECT_FALSE(ParseBranchName("projects/p/branches").ok());
  EXPECT_FALSE(ParseBranchName("projects/p/branch/b").ok());
  EXPECT_FALSE(ParseBranchName("projects/p/branches/../x").ok());
  EXPECT_FALSE(ParseBranchName("projects//branches/b").ok());
  EXPECT_FALSE(ParseBranchName("dev").ok());
  EXPECT_FALSE(ParseEndpointName("projects/p/branches/b").ok());
  EXPECT_FALSE(ParseEndpointName("projects/p/branches/b/endpoints/E").ok());
  EXPECT_EQ(ParseBranchName("projects/P/branches/b").status().message(),
            "project id 'P' must start with a lowercase letter");
  EXPECT_EQ(ParseBranchName("dev").status().message(),
            "'dev' is not a resource name of the form projects/{project}/branches/{branch}");
}

TEST(Duration, ParsesWholeSeconds) {
  EXPECT_EQ(*ParseDuration("3600s"), 3600);
  EXPECT_EQ(*ParseDuration("0s"), 0);
  EXPECT_EQ(*ParseDuration("3024000s"), 3024000);
  EXPECT_EQ(FormatDuration(86400), "86400s");
}

TEST(Duration, RefusesEverythingElse) {
  for (const char* bad :
       {"", "s", "3600", "1h", "-5s", "1.5s", " 5s", "5 s", "5S", "99999999999999s"}) {
    auto r = ParseDuration(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  }
  EXPECT_EQ(ParseDuration("1h").status().message(),
            "'1h' is not a duration in whole seconds (e.g. \"3600s\")");
}

TEST(Time, ParsesUtcAndOffsetsAndFractions) {
  const int64_t base = 1795536000LL * 1'000'000;  // 2026-11-24T16:00:00Z
  EXPECT_EQ(*ParseTime("2026-11-24T16:00:00Z"), base);
  EXPECT_EQ(*ParseTime("2026-11-24t16:00:00z"), base);
  EXPECT_EQ(*ParseTime("2026-11-24T17:00:00+01:00"), base);
  EXPECT_EQ(*ParseTime("2026-11-24T10:30:00-05:30"), base);
  EXPECT_EQ(*ParseTime("2026-11-24T16:00:00.5Z"), base + 500'000);
  EXPECT_EQ(*ParseTime("2026-11-24T16:00:00.123456Z"), base + 123'456);
  EXPECT_EQ(*ParseTime("2026-11-24T16:00:00.123456789Z"), base + 123'456);  // truncated
  EXPECT_EQ(*ParseTime("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseTime("1969-12-31T23:59:59.5Z"), -500'000);
  EXPECT_EQ(*ParseTime("2024-02-29T00:00:00Z"), 1709164800LL * 1'000'000);
}

TEST(Time, RefusesMalformedAndImpossibleTimes) {
  for (const char* bad :
       {"", "2026-11-24", "2026-11-24T16:00:00", "2026-11-24 16:00:00Z", "2026-11-24T16:00Z",
        "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
        "2026-11-24T24:00:00Z", "2026-11-24T16:60:00Z", "2026-11-24T16:00:00.Z",
        "2026-11-24T16:00:00.1234567890Z", "2026-11-24T16:00:00+0100", "2026-11-24T16:00:00+24:00",
        "2026-11-24T16:00:00ZZ", "26-11-24T16:00:00Z", "-5m", "now", "2026-1-24T16:00:00Z"}) {
    auto r = ParseTime(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("is not an RFC 3339 time"), std::string::npos);
    }
  }
  EXPECT_EQ(ParseTime("2026-11-24T16:00:00").status().message(),
            "'2026-11-24T16:00:00' is not an RFC 3339 time (a time zone is required: Z or "
            "+hh:mm; e.g. 2026-11-24T16:00:00Z)");
}

TEST(Time, FormatsUtcWithMicroseconds) {
  EXPECT_EQ(FormatTime(1795536000LL * 1'000'000 + 123'456), "2026-11-24T16:00:00.123456Z");
  EXPECT_EQ(FormatTime(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatTime(-500'000), "1969-12-31T23:59:59.500000Z");
  for (int64_t us : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{1795536000123456},
                     int64_t{951782400000000} /* 2000-02-29 */, int64_t{253402300799999999}}) {
    auto back = ParseTime(FormatTime(us));
    ASSERT_TRUE(back.ok()) << FormatTime(us);
    EXPECT_EQ(*back, us);
  }
}

TEST(Lsn, ParsesAndFormatsPostgresForm) {
  EXPECT_EQ(ParseLsn("0/16B3740")->value(), 0x16B3740u);
  EXPECT_EQ(ParseLsn("16/b374d848")->value(), (uint64_t{0x16} << 32) | 0xB374D848u);
  EXPECT_EQ(ParseLsn("FFFFFFFF/FFFFFFFF")->value(), ~uint64_t{0});
  EXPECT_EQ(FormatLsn(Lsn(0x16B3740)), "0/16B3740");
  EXPECT_EQ(FormatLsn(Lsn((uint64_t{0x16} << 32) | 0xB374D848u)), "16/B374D848");
  EXPECT_EQ(FormatLsn(Lsn(0)), "0/0");
}

TEST(Lsn, RefusesMalformed) {
  for (const char* bad : {"", "/", "0/", "/1", "0x1/2", "1/2/3", "G/1", "100000000/0", "1/-2",
                          " 0/1", "0/1 ", "12345"}) {
    EXPECT_FALSE(ParseLsn(bad).ok()) << bad;
  }
  EXPECT_EQ(ParseLsn("12345").status().message(), "'12345' is not an LSN (e.g. \"0/16B3740\")");
}

}  // namespace
}  // namespace arbor::api
