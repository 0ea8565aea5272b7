// arbor merge against the real daemon, real postgres and the real CLI: a branch's row changes
// since its fork applied to its parent in one transaction, three-way by primary key, with
// conflicts, foreign keys, sequences, --dry-run and protected targets.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "testutil/branches.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::CliRun;
using testutil::Daemon;
using testutil::json;
using testutil::Pg;

class MergeTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = Daemon::Start("mg").release(); }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  static CliRun Arbor(const std::string& args, const std::string& env = "") {
    return testutil::RunArbor(daemon_->home(), args, env);
  }

  static void Fork(const std::string& b, const std::string& parent) {
    testutil::Fork(daemon_, b, parent);
  }
  static void Exec(const std::string& b, const std::string& sql) {
    testutil::ExecOn(daemon_, b, sql);
  }
  static std::string One(const std::string& b, const std::string& sql) {
    return testutil::OneOn(daemon_, b, sql);
  }
  static std::string Sum(const std::string& b, const std::string& t) {
    return testutil::RowsSum(daemon_, b, t);
  }

  static json Table(const json& tables, const std::string& name) {
    for (const json& t : tables) {
      if (t.value("table", "") == name) return t;
    }
    return json();
  }

  static Daemon* daemon_;
};
Daemon* MergeTest::daemon_ = nullptr;

TEST_F(MergeTest, CleanMergeAppliesExactlyTheSourcesChanges) {
  Fork("t1", "production");
  Exec("t1",
       "create table items (id serial primary key, name text, qty int);"
       "insert into items (name, qty) select 'n' || g, g from generate_series(1, 50) g;"
       "create table tags (k text primary key, v text);"
       "insert into tags values ('a', '1'), ('b', '2'), ('c', '3')");
  // The last write before the fork: the ancestor (t1 pinned at the fork time) must have it.
  Exec("t1", "insert into tags values ('last', 'before the fork')");
  Fork("s1", "t1");

  // Right after the fork there is nothing to merge, and nothing the ancestor lacks.
  CliRun r = Arbor("-o json merge s1 --into t1 --dry-run");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  json j = json::parse(r.out);
  EXPECT_EQ(j["change_count"], 0) << r.out;
  EXPECT_EQ(j["conflict_count"], 0) << r.out;
  for (const json& t : j["tables"]) EXPECT_EQ(t["same_on_both"], 0) << r.out;

  // The source: inserts (advancing the sequence), updates, deletes.
  Exec("s1",
       "insert into items (name, qty) select 'new' || g, g from generate_series(1, 5) g;"
       "update items set qty = qty + 100 where id in (3, 4);"
       "delete from items where id in (10, 11);"
       "update tags set v = 'src' where k = 'a';"
       "insert into tags values ('d', null)");
  // The target: unrelated changes, and one identical to the source's.
  Exec("t1",
       "update items set name = 'tgt' where id = 20;"
       "delete from items where id = 30;"
       "update tags set v = 'tgt' where k = 'b';"
       "insert into tags values ('d', null)");
  std::string seq_source = One("s1", "select last_value from items_id_seq");

  r = Arbor("merge s1 --into t1");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("Merged 10 row changes into t1 in one transaction."), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("1 key changed alike"), std::string::npos) << r.out;

  // The source's changes are there, and the target's own are kept.
  EXPECT_EQ(One("t1", "select count(*) from items where name like 'new%'"), "5");
  EXPECT_EQ(One("t1",
                "select string_agg(qty::text, ',' order by id) from items where id in (3, "
                "4)"),
            "103,104");
  EXPECT_EQ(One("t1", "select count(*) from items where id in (10, 11, 30)"), "0");
  EXPECT_EQ(One("t1", "select name from items where id = 20"), "tgt");
  EXPECT_EQ(One("t1",
                "select string_agg(k || '=' || coalesce(v, 'null'), ',' order by k) from "
                "tags"),
            "a=src,b=tgt,c=3,d=null,last=before the fork");
  // The sequence the source advanced is at least as far on the target: a new row gets a new id.
  EXPECT_GE(std::stoll(One("t1", "select last_value from items_id_seq")), std::stoll(seq_source));
  Exec("t1", "insert into items (name, qty) values ('after', 0)");

  // Now the two differ only by the target's own changes (and the row just added).
  r = Arbor("-o json diff --data s1 t1 --table items --table tags");
  ASSERT_EQ(r.rc, 1) << r.err << r.out;
  j = json::parse(r.out);
  json items = Table(j["tables"], "public.items");
  EXPECT_EQ(items["only_in_from_count"], 1) << items.dump();  // 30, deleted on the target
  EXPECT_EQ(items["only_in_from"][0]["id"], "30");
  EXPECT_EQ(items["only_in_to_count"], 1) << items.dump();  // 'after'
  EXPECT_EQ(items["only_in_to"][0]["name"], "after");
  EXPECT_EQ(items["changed_count"], 1) << items.dump();  // 20
  EXPECT_EQ(items["changed"][0]["key"]["id"], "20");
  json tags = Table(j["tables"], "public.tags");
  EXPECT_EQ(tags["changed_count"], 1) << tags.dump();  // b
  EXPECT_EQ(tags["changed"][0]["key"]["k"], "b");
  EXPECT_EQ(tags["only_in_from_count"], 0);
  EXPECT_EQ(tags["only_in_to_count"], 0);
}

TEST_F(MergeTest, ConflictRefusesTheWholeMergeAndChangesNothing) {
  Fork("t2", "production");
  Exec("t2",
       "create table acct (id int primary key, balance int);"
       "insert into acct select g, 100 from generate_series(1, 20) g");
  Fork("s2", "t2");
  Exec("s2",
       "update acct set balance = 1 where id = 5; update acct set balance = 2 where id = 6;"
       "delete from acct where id = 7; insert into acct values (100, 0)");
  Exec("t2",
       "update acct set balance = 999 where id = 5; update acct set balance = 3 where id = 7");
  std::string before = Sum("t2", "acct");

  CliRun r = Arbor("merge s2 --into t2");
  EXPECT_EQ(r.rc, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("table public.acct: 2 conflicting keys"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("! id='5': both updated"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("! id='7': deleted on the source, updated on the target"), std::string::npos)
      << r.out;
  EXPECT_EQ(Sum("t2", "acct"), before);

  r = Arbor("-o json merge s2 --into t2");
  EXPECT_EQ(r.rc, 1) << r.err << r.out;
  json j = json::parse(r.out);
  EXPECT_FALSE(j["merged"].get<bool>());
  EXPECT_EQ(j["conflict_count"], 2);
  ASSERT_EQ(j["conflicts"].size(), 1u) << r.out;
  EXPECT_EQ(j["conflicts"][0]["table"], "public.acct");
  EXPECT_EQ(j["conflicts"][0]["conflicts"][0]["key"]["id"], "5");
  EXPECT_EQ(j["conflicts"][0]["conflicts"][0]["source"]["balance"], "1");
  EXPECT_EQ(j["conflicts"][0]["conflicts"][0]["target"]["balance"], "999");
  EXPECT_EQ(Sum("t2", "acct"), before);

  // Not parent and child: refused, saying what is supported.
  Fork("s2b", "t2");
  r = Arbor("merge s2 --into s2b");
  EXPECT_EQ(r.rc, 2) << r.err << r.out;
  EXPECT_NE(r.err.find("only a merge into the branch's parent is supported"), std::string::npos)
      << r.err;
  // Schemas that differ: refused, pointing at migrate-check.
  Exec("s2b", "alter table acct add column note text");
  Fork("s2c", "t2");
  Exec("t2", "alter table acct add column note text");
  r = Arbor("merge s2c --into t2");
  EXPECT_EQ(r.rc, 2) << r.err << r.out;
  EXPECT_NE(r.err.find("migrate-check"), std::string::npos) << r.err;
}

TEST_F(MergeTest, ForeignKeyFailureRollsBackEverything) {
  Fork("t3", "production");
  Exec("t3",
       "create table parent (id int primary key);"
       "create table child (id int primary key, pid int references parent(id));"
       "insert into parent values (1), (2); insert into child values (1, 1)");
  Fork("s3", "t3");
  Exec("s3",
       "update child set pid = 2 where id = 1; insert into child values (2, 2);"
       "insert into parent values (3)");
  Exec("t3", "delete from parent where id = 2");
  std::string before = Sum("t3", "child") + Sum("t3", "parent");

  CliRun r = Arbor("merge s3 --into t3");
  EXPECT_EQ(r.rc, 4) << r.err << r.out;
  EXPECT_NE(r.err.find("violates foreign key constraint"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rolled back"), std::string::npos) << r.err;
  EXPECT_EQ(Sum("t3", "child") + Sum("t3", "parent"), before);
  EXPECT_EQ(One("t3", "select count(*) from parent where id = 3"), "0");
}

TEST_F(MergeTest, NewParentAndChildRowsAreInsertedParentsFirst) {
  Fork("t4", "production");
  Exec("t4",
       "create table zparent (id int primary key);"
       "create table achild (id int primary key, pid int references zparent(id));"
       "insert into zparent values (1)");
  Fork("s4", "t4");
  Exec("s4", "insert into zparent values (2); insert into achild values (1, 2)");
  CliRun r = Arbor("merge s4 --into t4");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_EQ(One("t4", "select pid from achild where id = 1"), "2");
}

TEST_F(MergeTest, SequenceAdvancedOnTheSourceIsAsFarOnTheTarget) {
  Fork("t5", "production");
  Exec("t5",
       "create sequence counter; select nextval('counter');"
       "create table k (id int primary key)");
  Fork("s5", "t5");
  Exec("s5", "select nextval('counter') from generate_series(1, 500)");
  long long src = std::stoll(One("s5", "select last_value from counter"));
  CliRun r = Arbor("merge s5 --into t5");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("sequence public.counter: advanced to at least"), std::string::npos)
      << r.out;
  EXPECT_GE(std::stoll(One("t5", "select last_value from counter")), src);
  EXPECT_GT(std::stoll(One("t5", "select nextval('counter')")), src);
}

TEST_F(MergeTest, DryRunChangesNothing) {
  Fork("t6", "production");
  Exec("t6",
       "create table d (id int primary key, v text);"
       "insert into d select g, 'v' from generate_series(1, 10) g");
  Fork("s6", "t6");
  Exec("s6",
       "update d set v = 'w' where id = 1; delete from d where id = 2;"
       "insert into d values (11, 'x')");
  std::string before = Sum("t6", "d");
  CliRun r = Arbor("merge s6 --into t6 --dry-run");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("table public.d (by primary key id): 1 only in t6, 1 only in s6, 1 changed"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Dry run: nothing changed."), std::string::npos) << r.out;
  EXPECT_EQ(Sum("t6", "d"), before);
  r = Arbor("-o json merge s6 --into t6 --dry-run");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  json j = json::parse(r.out);
  EXPECT_FALSE(j["merged"].get<bool>());
  EXPECT_EQ(j["change_count"], 3);
  EXPECT_EQ(Sum("t6", "d"), before);
}

TEST_F(MergeTest, DeveloperTokenCannotMergeIntoProtectedProduction) {
  Exec("production",
       "create table prot (id int primary key, v text); insert into prot values (1, 'a')");
  Fork("feat", "production");
  Exec("feat", "update prot set v = 'b' where id = 1");
  auto protect =
      daemon_->Call("PATCH", "projects/default/branches/production?update_mask=spec.is_protected",
                    {{"spec", {{"is_protected", true}}}});
  ASSERT_EQ(protect.status, 200) << protect.body.dump();
  CliRun t = Arbor("-o json token create dev-merge --role developer --project default");
  ASSERT_EQ(t.rc, 0) << t.err << t.out;
  std::string dev = json::parse(t.out).value("token", "");
  ASSERT_FALSE(dev.empty());

  CliRun r = Arbor("merge feat --into production", "ARBOR_TOKEN='" + dev + "'");
  EXPECT_EQ(r.rc, 5) << r.err << r.out;
  // Refused by POST credentials, where the protected-branch rule is.
  EXPECT_NE(r.err.find("cannot get credentials for"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("protected"), std::string::npos) << r.err;
  EXPECT_EQ(One("production", "select v from prot where id = 1"), "a");
  // An admin may.
  r = Arbor("merge feat --into production");
  EXPECT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_EQ(One("production", "select v from prot where id = 1"), "b");
  daemon_->Call("PATCH", "projects/default/branches/production?update_mask=spec.is_protected",
                {{"spec", {{"is_protected", false}}}});
}

TEST_F(MergeTest, AChangedTableWithoutAPrimaryKeyIsRefusedUnlessLeftOut) {
  Fork("t7", "production");
  Exec("t7",
       "create table nokey (a int, b text); insert into nokey values (1, 'x');"
       "create table keyed (id int primary key, v text); insert into keyed values (1, 'x')");
  Fork("s7", "t7");
  Exec("s7", "insert into nokey values (2, 'y'); update keyed set v = 'y' where id = 1");
  std::string before = Sum("t7", "keyed") + Sum("t7", "nokey");
  CliRun r = Arbor("merge s7 --into t7");
  EXPECT_EQ(r.rc, 2) << r.err << r.out;
  EXPECT_NE(r.err.find("public.nokey: it has no primary key"), std::string::npos) << r.err;
  EXPECT_EQ(Sum("t7", "keyed") + Sum("t7", "nokey"), before);
  r = Arbor("merge s7 --into t7 --table keyed");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_EQ(One("t7", "select v from keyed where id = 1"), "y");
  EXPECT_EQ(One("t7", "select count(*) from nokey"), "1");
}

}  // namespace
}  // namespace arbor
