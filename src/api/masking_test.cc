#include "api/masking.h"

#include <gtest/gtest.h>

#include "api/types.h"

namespace arbor::api {
namespace {

Result<std::vector<MaskRule>> Parse(const char* text) {
  std::vector<MaskRule> rules;
  Status st = MaskRulesFromJson(Json::parse(text), &rules);
  if (!st.ok()) return st;
  return rules;
}

TEST(MaskRules, EveryStrategyRoundTrips) {
  const char* text = R"([
    {"column": "public.users.email", "with": "email"},
    {"column": "public.users.name", "with": "name"},
    {"column": "public.users.ssn", "with": "hash"},
    {"column": "public.users.note", "with": "null"},
    {"column": "public.users.age", "with": {"fixed": 42}},
    {"column": "public.users.city", "with": {"fixed": "Paris"}},
    {"column": "public.users.phone", "with": {"sql": "left(phone, 3) || 'xxxx'"}}
  ])";
  auto rules = Parse(text);
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  ASSERT_EQ(rules->size(), 7u);
  EXPECT_EQ(rules->at(0).with, MaskStrategy::kEmail);
  EXPECT_EQ(rules->at(4).with, MaskStrategy::kFixed);
  EXPECT_EQ(rules->at(4).value, "42");
  EXPECT_EQ(rules->at(5).value, "Paris");
  EXPECT_EQ(rules->at(6).with, MaskStrategy::kSql);
  // The JSON written is the JSON read (fixed values as text).
  std::vector<MaskRule> again;
  ASSERT_TRUE(MaskRulesFromJson(ToJson(*rules), &again).ok());
  EXPECT_EQ(again, *rules);
  EXPECT_EQ(ToJson(rules->at(6)).dump(),
            R"({"column":"public.users.phone","with":{"sql":"left(phone, 3) || 'xxxx'"}})");
}

TEST(MaskRules, BadRulesNameTheRuleAndWhy) {
  struct Case {
    const char* json;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"column": "a.b.c"})", "expected an array"},
           {R"([])", "is empty"},
           {R"([{"column": "users.email", "with": "email"}])", "spec.masking[0].column"},
           {R"([{"column": "a..c", "with": "email"}])", "empty name"},
           {R"([{"column": "a.b.c.d", "with": "email"}])", "schema.table.column"},
           {R"([{"column": "a.b.c", "with": "md5"}])", "spec.masking[0].with"},
           {R"([{"column": "a.b.c"}])", "with is required"},
           {R"([{"with": "hash"}])", "column is required"},
           {R"([{"column": "a.b.c", "with": "hash", "as": 1}])", "unknown field as"},
           {R"([{"column": "a.b.c", "with": {"fixed": null}}])", "for NULL use"},
           {R"([{"column": "a.b.c", "with": {"sql": ""}}])", "expression is empty"},
           {R"([{"column": "a.b.c", "with": {"sql": "$1"}}])", "parameters"},
           {R"([{"column": "a.b.c", "with": {"fixed": 1, "sql": "1"}}])", "expected \"null\""},
           {R"([{"column": "a.b.c", "with": "hash"}, {"column": "a.b.c", "with": "null"}])",
            "spec.masking[1].column: a.b.c has a rule already"},
       }) {
    auto r = Parse(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.says), std::string::npos)
        << c.json << " -> " << r.status().message();
  }
}

TEST(MaskRules, BranchSpecCarriesThemAndStatusTheMaskingPoint) {
  Json j = Json::parse(R"({"spec": {"masking": [{"column": "public.t.c", "with": "hash"}]},
                           "name": "projects/p/branches/b",
                           "status": {"masked_time": "2026-11-30T12:00:00.000000Z"}})");
  Branch b;
  ASSERT_TRUE(FromJson(j, &b).ok());
  ASSERT_TRUE(b.spec.masking.has_value());
  EXPECT_EQ(b.spec.masking->at(0).column, "public.t.c");
  ASSERT_TRUE(b.status.masked_time_us.has_value());
  EXPECT_EQ(ToJson(b)["status"]["masked_time"], "2026-11-30T12:00:00.000000Z");
  j["spec"]["masking"] = Json::array({{{"column", "t.c"}, {"with", "hash"}}});
  EXPECT_FALSE(FromJson(j, &b).ok());
}

}  // namespace
}  // namespace arbor::api
