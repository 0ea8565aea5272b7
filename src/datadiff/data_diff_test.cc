#include "datadiff/data_diff.h"

#include <gtest/gtest.h>

namespace arbor::datadiff {
namespace {

TableShape Items() {
  TableShape s;
  s.name = "public.items";
  s.sql_name = "public.items";
  s.columns = {"id", "name", "note"};
  s.sql_columns = {"id", "name", "\"Note\""};
  s.key = {0};
  return s;
}

DataRow R(std::initializer_list<DataValue> v) { return DataRow(v); }

TEST(DataDiffTest, ByKeyFindsRowsOnOneSideAndChangedRows) {
  auto d =
      CompareRows(Items(), {R({"1", "a", std::nullopt}), R({"2", "b", "x"}), R({"3", "c", "y"})},
                  {R({"3", "c", "y"}), R({"2", "b", "NULL"}), R({"4", "d", std::nullopt})});
  ASSERT_EQ(d.only_from.size(), 1u);
  EXPECT_EQ(d.only_from[0][0], "1");
  ASSERT_EQ(d.only_to.size(), 1u);
  EXPECT_EQ(d.only_to[0][0], "4");
  ASSERT_EQ(d.changed.size(), 1u);
  EXPECT_EQ(d.changed[0].from[2], "x");
  EXPECT_EQ(d.changed[0].to[2], "NULL");
  EXPECT_TRUE(d.Differs());
}

TEST(DataDiffTest, IntegerKeysSortByValue) {
  auto d = CompareRows(Items(), {}, {R({"20", "a", "x"}), R({"3", "b", "x"}), R({"-1", "c", "x"})});
  ASSERT_EQ(d.only_to.size(), 3u);
  EXPECT_EQ(d.only_to[0][0], "-1");
  EXPECT_EQ(d.only_to[1][0], "3");
  EXPECT_EQ(d.only_to[2][0], "20");
  // Distinct texts stay distinct keys, whatever their value.
  auto t = CompareRows(Items(), {R({"7", "a", "x"})}, {R({"007", "a", "x"}), R({"1a", "b", "x"})});
  EXPECT_EQ(t.only_from.size(), 1u);
  EXPECT_EQ(t.only_to.size(), 2u);
  EXPECT_TRUE(t.changed.empty());
}

TEST(DataDiffTest, NullIsNotTheTextNull) {
  auto d = CompareRows(Items(), {R({"1", "a", std::nullopt})}, {R({"1", "a", "NULL"})});
  ASSERT_EQ(d.changed.size(), 1u);
  auto same = CompareRows(Items(), {R({"1", "a", std::nullopt})}, {R({"1", "a", std::nullopt})});
  EXPECT_FALSE(same.Differs());
}

TEST(DataDiffTest, WithoutKeyDuplicatesCount) {
  TableShape s = Items();
  s.key.clear();
  auto d =
      CompareRows(s, {R({"1", "a", "x"}), R({"1", "a", "x"}), R({"2", "b", std::nullopt})},
                  {R({"1", "a", "x"}), R({"2", "b", std::nullopt}), R({"2", "b", std::nullopt})});
  ASSERT_EQ(d.only_from.size(), 1u);
  EXPECT_EQ(d.only_from[0][0], "1");
  ASSERT_EQ(d.only_to.size(), 1u);
  EXPECT_EQ(d.only_to[0][0], "2");
  EXPECT_TRUE(d.changed.empty());
}

TEST(DataDiffTest, SqlLiteralsDoubleQuotesAndKeepNull) {
  EXPECT_EQ(SqlLiteral(std::nullopt), "NULL");
  EXPECT_EQ(SqlLiteral(std::string("NULL")), "'NULL'");
  EXPECT_EQ(SqlLiteral(std::string("it's")), "'it''s'");
  EXPECT_EQ(SqlLiteral(std::string("a\\b")), "'a\\b'");
  EXPECT_EQ(SqlLiteral(std::string("")), "''");
}

TEST(DataDiffTest, PatchDeletesUpdatesThenInserts) {
  auto d = CompareRows(Items(), {R({"1", "a", std::nullopt}), R({"2", "b", "x"})},
                       {R({"2", "b'", "x"}), R({"4", "d", std::nullopt})});
  std::string sql = RenderSqlPatch({d});
  EXPECT_EQ(sql,
            "BEGIN;\n"
            "\n-- public.items: 1 row deleted, 1 row updated, 1 row inserted\n"
            "DELETE FROM ONLY public.items WHERE id = '1';\n"
            "UPDATE ONLY public.items SET name = 'b''' WHERE id = '2';\n"
            "INSERT INTO public.items (id, name, \"Note\") VALUES ('4', 'd', NULL);\n"
            "COMMIT;\n");
}

TEST(DataDiffTest, PatchWithoutKeyDeletesOneMatchingRow) {
  TableShape s = Items();
  s.key.clear();
  s.identity_always = true;
  auto d = CompareRows(s, {R({"1", "a", std::nullopt})}, {R({"2", "b", "y"})});
  std::string sql = RenderSqlPatch({d});
  EXPECT_NE(sql.find("DELETE FROM ONLY public.items WHERE ctid = (SELECT ctid FROM ONLY "
                     "public.items WHERE id::text = '1' AND name::text = 'a' AND \"Note\" IS NULL "
                     "LIMIT 1);\n"),
            std::string::npos)
      << sql;
  EXPECT_NE(sql.find("INSERT INTO public.items (id, name, \"Note\") OVERRIDING SYSTEM VALUE "
                     "VALUES ('2', 'b', 'y');"),
            std::string::npos)
      << sql;
}

TEST(DataDiffTest, NoDifferencesRenderAsSuch) {
  auto d = CompareRows(Items(), {R({"1", "a", "x"})}, {R({"1", "a", "x"})});
  EXPECT_EQ(RenderSqlPatch({d}), "-- No data differences.\n");
  EXPECT_EQ(RenderDataText({d}, "a", "b"), "No data differences.\n");
}

TEST(DataDiffTest, TextShowsCountsAndTheFirstRows) {
  std::vector<DataRow> from, to;
  for (int i = 0; i < 15; ++i) from.push_back(R({std::to_string(i), "n", std::nullopt}));
  to.push_back(R({"3", "changed", std::nullopt}));
  auto d = CompareRows(Items(), from, to);
  std::string text = RenderDataText({d}, "prod", "dev", 10);
  EXPECT_NE(text.find("table public.items (by primary key id): 14 only in prod, 0 only in dev, "
                      "1 changed"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  - ... and 4 more"), std::string::npos) << text;
  EXPECT_NE(text.find("  ~ id='3': name: 'n' -> 'changed'"), std::string::npos) << text;
  EXPECT_NE(text.find("1 table differs."), std::string::npos) << text;
}

TEST(DataDiffTest, JsonHoldsEveryRow) {
  std::vector<DataRow> from;
  for (int i = 0; i < 25; ++i) from.push_back(R({std::to_string(i), "n", std::nullopt}));
  auto d = CompareRows(Items(), from, {});
  api::Json j = DataDiffToJson({d});
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["only_in_from"].size(), 25u);
  EXPECT_TRUE(j[0]["only_in_from"][0]["note"].is_null());
  EXPECT_EQ(j[0]["key"], "primary key");
}

}  // namespace
}  // namespace arbor::datadiff
