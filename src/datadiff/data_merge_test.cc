#include "datadiff/data_merge.h"

#include <gtest/gtest.h>

#include <map>

namespace arbor::datadiff {
namespace {

TableShape Items() {
  TableShape s;
  s.name = "public.items";
  s.sql_name = "public.items";
  s.columns = {"id", "name"};
  s.sql_columns = {"id", "name"};
  s.key = {0};
  return s;
}

DataRow R(std::initializer_list<DataValue> v) { return DataRow(v); }

// The ancestor's rows, shared by the tests: ids 1..6.
std::vector<DataRow> Ancestor() {
  return {R({"1", "a"}), R({"2", "b"}), R({"3", "c"}), R({"4", "d"}), R({"5", "e"}), R({"6", "f"})};
}

TEST(DataMergeTest, ChangesOnOneSideOnlyAreAppliedAndTheTargetsOwnAreKept) {
  // The source updates 1, deletes 2, inserts 10; the target updates 3, deletes 4, inserts 11.
  auto src = CompareRows(
      Items(), Ancestor(),
      {R({"1", "A"}), R({"3", "c"}), R({"4", "d"}), R({"5", "e"}), R({"6", "f"}), R({"10", "x"})});
  auto tgt = CompareRows(
      Items(), Ancestor(),
      {R({"1", "a"}), R({"2", "b"}), R({"3", "C"}), R({"5", "e"}), R({"6", "f"}), R({"11", "y"})});
  TableMerge m = ThreeWay(src, tgt);
  EXPECT_TRUE(m.conflicts.empty());
  EXPECT_EQ(m.same_on_both, 0u);
  ASSERT_EQ(m.apply.changed.size(), 1u);
  EXPECT_EQ(m.apply.changed[0].from, R({"1", "a"}));
  EXPECT_EQ(m.apply.changed[0].to, R({"1", "A"}));
  ASSERT_EQ(m.apply.only_from.size(), 1u);
  EXPECT_EQ(m.apply.only_from[0], R({"2", "b"}));
  ASSERT_EQ(m.apply.only_to.size(), 1u);
  EXPECT_EQ(m.apply.only_to[0], R({"10", "x"}));
  // The statements are by key and touch only what the source changed.
  SqlStatements st = RenderSqlStatements(m.apply);
  EXPECT_EQ(st.deletes, "DELETE FROM ONLY public.items WHERE id = '2';\n");
  EXPECT_EQ(st.updates, "UPDATE ONLY public.items SET name = 'A' WHERE id = '1';\n");
  EXPECT_EQ(st.inserts, "INSERT INTO public.items (id, name) VALUES ('10', 'x');\n");
}

TEST(DataMergeTest, EveryKindOfConflictIsFound) {
  // 1: both updated, differently. 2: source deleted, target updated. 3: source updated,
  // target deleted. 10: both inserted, differently.
  auto src = CompareRows(
      Items(), Ancestor(),
      {R({"1", "S"}), R({"3", "S"}), R({"4", "d"}), R({"5", "e"}), R({"6", "f"}), R({"10", "S"})});
  auto tgt = CompareRows(
      Items(), Ancestor(),
      {R({"1", "T"}), R({"2", "T"}), R({"4", "d"}), R({"5", "e"}), R({"6", "f"}), R({"10", "T"})});
  TableMerge m = ThreeWay(src, tgt);
  EXPECT_FALSE(m.apply.Differs());
  ASSERT_EQ(m.conflicts.size(), 4u);
  // Sorted by key, integers by value.
  EXPECT_EQ(m.conflicts[0].key, R({"1"}));
  EXPECT_EQ(m.conflicts[1].key, R({"2"}));
  EXPECT_EQ(m.conflicts[2].key, R({"3"}));
  EXPECT_EQ(m.conflicts[3].key, R({"10"}));
  std::map<std::string, const MergeConflict*> by_key;
  for (const MergeConflict& c : m.conflicts) by_key[*c.key[0]] = &c;
  ASSERT_EQ(by_key.size(), 4u);
  EXPECT_EQ(by_key["1"]->Kind(), "both updated");
  EXPECT_EQ(by_key["1"]->ancestor, R({"1", "a"}));
  EXPECT_EQ(by_key["1"]->source, R({"1", "S"}));
  EXPECT_EQ(by_key["1"]->target, R({"1", "T"}));
  EXPECT_EQ(by_key["2"]->Kind(), "deleted on the source, updated on the target");
  EXPECT_FALSE(by_key["2"]->source.has_value());
  EXPECT_EQ(by_key["3"]->Kind(), "updated on the source, deleted on the target");
  EXPECT_FALSE(by_key["3"]->target.has_value());
  EXPECT_EQ(by_key["10"]->Kind(), "both inserted");
  EXPECT_FALSE(by_key["10"]->ancestor.has_value());

  std::string text = RenderConflictsText({m});
  EXPECT_NE(text.find("table public.items: 4 conflicting keys"), std::string::npos) << text;
  EXPECT_NE(text.find("! id='1': both updated"), std::string::npos) << text;
  api::Json j = ConflictsToJson({m});
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["table"], "public.items");
  EXPECT_EQ(j[0]["count"], 4);
  EXPECT_EQ(j[0]["key_columns"], api::Json::array({"id"}));
}

TEST(DataMergeTest, IdenticalChangesOnBothSidesAreNeitherConflictsNorWrites) {
  // Both update 1 to the same row, both delete 2, both insert the same 10; the source also
  // updates 5, which is applied.
  auto src = CompareRows(
      Items(), Ancestor(),
      {R({"1", "Z"}), R({"3", "c"}), R({"4", "d"}), R({"5", "E"}), R({"6", "f"}), R({"10", "n"})});
  auto tgt = CompareRows(
      Items(), Ancestor(),
      {R({"1", "Z"}), R({"3", "c"}), R({"4", "d"}), R({"5", "e"}), R({"6", "f"}), R({"10", "n"})});
  TableMerge m = ThreeWay(src, tgt);
  EXPECT_TRUE(m.conflicts.empty());
  EXPECT_EQ(m.same_on_both, 3u);
  EXPECT_TRUE(m.apply.only_from.empty());
  EXPECT_TRUE(m.apply.only_to.empty());
  ASSERT_EQ(m.apply.changed.size(), 1u);
  EXPECT_EQ(m.apply.changed[0].to, R({"5", "E"}));
  EXPECT_EQ(RenderConflictsText({m}), "");
  EXPECT_TRUE(ConflictsToJson({m}).empty());
}

TEST(DataMergeTest, NullIsAValueLikeAnyOther) {
  // The source sets 1's name to NULL, the target to the text 'NULL': different results.
  auto src = CompareRows(Items(), Ancestor(),
                         {R({"1", std::nullopt}), R({"2", "b"}), R({"3", "c"}), R({"4", "d"}),
                          R({"5", "e"}), R({"6", "f"})});
  auto tgt = CompareRows(Items(), Ancestor(),
                         {R({"1", "NULL"}), R({"2", "b"}), R({"3", "c"}), R({"4", "d"}),
                          R({"5", "e"}), R({"6", "f"})});
  TableMerge m = ThreeWay(src, tgt);
  ASSERT_EQ(m.conflicts.size(), 1u);
  EXPECT_EQ(m.conflicts[0].Kind(), "both updated");
}

TEST(DataMergeTest, CompositeKeysMatchOnEveryKeyColumn) {
  TableShape s;
  s.name = s.sql_name = "public.pairs";
  s.columns = s.sql_columns = {"a", "b", "v"};
  s.key = {0, 1};
  std::vector<DataRow> anc = {R({"1", "1", "x"}), R({"1", "2", "y"})};
  auto src = CompareRows(s, anc, {R({"1", "1", "S"}), R({"1", "2", "y"})});
  auto tgt = CompareRows(s, anc, {R({"1", "1", "x"}), R({"1", "2", "T"})});
  TableMerge m = ThreeWay(src, tgt);
  EXPECT_TRUE(m.conflicts.empty());
  ASSERT_EQ(m.apply.changed.size(), 1u);
  EXPECT_EQ(RenderSqlStatements(m.apply).updates,
            "UPDATE ONLY public.pairs SET v = 'S' WHERE a = '1' AND b = '1';\n");
}

}  // namespace
}  // namespace arbor::datadiff
