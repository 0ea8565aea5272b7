// The data diff and merge over the REST API (POST .../branches/B:diff_data and
// POST .../branches/SOURCE:merge) against the real daemon and postgres: the same answers as
// the CLI's -o json, the merge's refusals and their statuses, and who may call them.

#include <gtest/gtest.h>

#include <string>

#include "testutil/branches.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::CliRun;
using testutil::Daemon;
using testutil::HttpAnswer;
using testutil::json;
using testutil::Pg;

class DataApiTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = Daemon::Start("da").release(); }
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
  static HttpAnswer Diff(const std::string& branch, const json& body,
                         const std::string& token = "") {
    return daemon_->Call("POST", "projects/default/branches/" + branch + ":diff_data", body, token);
  }
  static HttpAnswer Merge(const std::string& source, const json& body,
                          const std::string& token = "") {
    return daemon_->Call("POST", "projects/default/branches/" + source + ":merge", body, token);
  }
  // A new API token: `arbor token create NAME --role ROLE --project default`.
  static std::string Token(const std::string& name, const std::string& role) {
    CliRun t = Arbor("-o json token create " + name + " --role " + role + " --project default");
    EXPECT_EQ(t.rc, 0) << t.err << t.out;
    return t.rc == 0 ? json::parse(t.out).value("token", "") : "";
  }

  static Daemon* daemon_;
};
Daemon* DataApiTest::daemon_ = nullptr;

TEST_F(DataApiTest, DiffOverTheApiAnswersWhatTheCliPrints) {
  Fork("dt", "production");
  Exec("dt",
       "create table items (id int primary key, name text);"
       "insert into items select g, 'n' || g from generate_series(1, 40) g;"
       "create table logs (a int, b text); insert into logs values (1, 'a')");
  Fork("ds", "dt");
  Exec("ds",
       "update items set name = 'changed' where id = 5; delete from items where id = 6;"
       "insert into items values (100, 'new'); insert into logs values (2, 'it''s');"
       "alter table items add column extra int");

  // B = the branch of the URL is the CLI's first side, against its second.
  CliRun cli = Arbor("-o json diff --data dt ds");
  ASSERT_EQ(cli.rc, 1) << cli.err << cli.out;
  HttpAnswer api = Diff("dt", {{"against", "ds"}});
  ASSERT_EQ(api.status, 200) << api.body.dump();
  EXPECT_EQ(api.body, json::parse(cli.out));
  EXPECT_EQ(api.body["from"], "dt");
  EXPECT_EQ(api.body["to"], "ds");
  EXPECT_FALSE(api.body["identical"].get<bool>());

  // With tables and a full name, and as an SQL patch.
  cli = Arbor("diff --data dt ds --table items --format sql");
  ASSERT_EQ(cli.rc, 1) << cli.err << cli.out;
  api = Diff("dt", {{"against", "projects/default/branches/ds"},
                    {"tables", {"items"}},
                    {"format", "sql"},
                    {"database", "postgres"}});
  ASSERT_EQ(api.status, 200) << api.body.dump();
  EXPECT_EQ(api.body.value("patch", ""), cli.out);
  EXPECT_NE(cli.out.find("DELETE FROM"), std::string::npos) << cli.out;

  // Against a past state: the same pinned endpoint, the same answer.
  std::string now = testutil::Rfc3339(testutil::NowMicros());
  cli = Arbor("-o json diff --data ds dt@" + now);
  ASSERT_EQ(cli.rc, 1) << cli.err << cli.out;
  api = Diff("ds", {{"against", "dt@" + now}});
  ASSERT_EQ(api.status, 200) << api.body.dump();
  EXPECT_EQ(api.body, json::parse(cli.out));
  EXPECT_EQ(api.body["to"].get<std::string>().rfind("dt@", 0), 0u) << api.body["to"];

  // Identical sides.
  api = Diff("dt", {{"against", "dt"}});
  ASSERT_EQ(api.status, 200) << api.body.dump();
  EXPECT_TRUE(api.body["identical"].get<bool>()) << api.body.dump();
}

TEST_F(DataApiTest, MalformedRequestsAreRefusedWithASentence) {
  Fork("bt", "production");
  Exec("bt", "create table k (id int primary key)");
  auto expect400 = [](const HttpAnswer& a, const std::string& words) {
    EXPECT_EQ(a.status, 400) << a.body.dump();
    EXPECT_EQ(a.body.value("error_code", ""), "INVALID_PARAMETER_VALUE") << a.body.dump();
    EXPECT_NE(a.body.value("message", "").find(words), std::string::npos) << a.body.dump();
  };
  expect400(daemon_->CallRaw("POST", "projects/default/branches/bt:diff_data", "{nope"),
            "not valid JSON");
  expect400(Diff("bt", json::object()), "against is required");
  expect400(Diff("bt", {{"against", "bt"}, {"tabels", {"k"}}}), "unknown field body.tabels");
  expect400(Diff("bt", {{"against", "bt"}, {"tables", "k"}}), "array of strings");
  expect400(Diff("bt", {{"against", "Not A Branch"}}), "against");
  expect400(Diff("bt", {{"against", "bt@yesterday"}}), "RFC 3339");
  expect400(Diff("bt", {{"against", "bt"}, {"format", "xml"}}), "format");
  expect400(Diff("bt", {{"against", "bt"}, {"tables", {"nosuch"}}}),
            "no table public.nosuch on either side");
  expect400(Merge("bt", json::object()), "into is required");
  expect400(Merge("bt", {{"into", "bt"}}), "same branch");
  expect400(Merge("bt", {{"into", "production"}, {"dry_run", "yes"}}), "dry_run");
  expect400(Merge("bt", {{"into", "projects/other/branches/production"}}), "one project");
  auto missing = Diff("bt", {{"against", "nosuch"}});
  EXPECT_EQ(missing.status, 404) << missing.body.dump();
  missing = Merge("nosuch", {{"into", "production"}});
  EXPECT_EQ(missing.status, 404) << missing.body.dump();
}

TEST_F(DataApiTest, CleanMergeOverTheApiAppliesTheRows) {
  Fork("mt", "production");
  Exec("mt",
       "create table items (id serial primary key, name text);"
       "insert into items (name) select 'n' || g from generate_series(1, 30) g");
  Fork("ms", "mt");
  Exec("ms",
       "insert into items (name) values ('new1'), ('new2');"
       "update items set name = 'src' where id = 3; delete from items where id = 4");
  Exec("mt", "update items set name = 'tgt' where id = 10");
  std::string before = Sum("mt", "items");

  // A dry run answers what the CLI's does, and changes nothing.
  CliRun cli = Arbor("-o json merge ms --into mt --dry-run");
  ASSERT_EQ(cli.rc, 0) << cli.err << cli.out;
  HttpAnswer dry = Merge("ms", {{"into", "mt"}, {"dry_run", true}});
  ASSERT_EQ(dry.status, 200) << dry.body.dump();
  EXPECT_EQ(dry.body, json::parse(cli.out));
  EXPECT_EQ(dry.body["change_count"], 4) << dry.body.dump();
  EXPECT_FALSE(dry.body["merged"].get<bool>());
  EXPECT_EQ(Sum("mt", "items"), before);

  HttpAnswer done = Merge("ms", {{"into", "projects/default/branches/mt"}});
  ASSERT_EQ(done.status, 200) << done.body.dump();
  EXPECT_TRUE(done.body["merged"].get<bool>()) << done.body.dump();
  EXPECT_EQ(done.body["source"], "ms");
  EXPECT_EQ(done.body["target"], "mt");
  EXPECT_EQ(done.body["change_count"], 4);
  EXPECT_EQ(One("mt", "select string_agg(name, ',' order by id) from items where id > 30"),
            "new1,new2");
  EXPECT_EQ(One("mt", "select name from items where id = 3"), "src");
  EXPECT_EQ(One("mt", "select count(*) from items where id = 4"), "0");
  EXPECT_EQ(One("mt", "select name from items where id = 10"), "tgt");
  // The sequence the source advanced: a new row on the target gets a new id.
  Exec("mt", "insert into items (name) values ('after')");
}

TEST_F(DataApiTest, ConflictAnswers409WithTheKeysAndChangesNothing) {
  Fork("ct", "production");
  Exec("ct",
       "create table acct (id int primary key, balance int);"
       "insert into acct select g, 100 from generate_series(1, 10) g");
  Fork("cs", "ct");
  Exec("cs", "update acct set balance = 1 where id = 5; insert into acct values (50, 0)");
  Exec("ct", "update acct set balance = 999 where id = 5");
  std::string before = Sum("ct", "acct");

  HttpAnswer a = Merge("cs", {{"into", "ct"}});
  EXPECT_EQ(a.status, 409) << a.body.dump();
  EXPECT_EQ(a.body.value("error_code", ""), "ABORTED") << a.body.dump();
  EXPECT_NE(a.body.value("message", "").find("1 conflict"), std::string::npos) << a.body.dump();
  EXPECT_FALSE(a.body["merged"].get<bool>());
  EXPECT_EQ(a.body["conflict_count"], 1);
  ASSERT_EQ(a.body["conflicts"].size(), 1u) << a.body.dump();
  EXPECT_EQ(a.body["conflicts"][0]["table"], "public.acct");
  const json& c = a.body["conflicts"][0]["conflicts"][0];
  EXPECT_EQ(c["key"]["id"], "5");
  EXPECT_EQ(c["kind"], "both updated");
  EXPECT_EQ(c["source"]["balance"], "1");
  EXPECT_EQ(c["target"]["balance"], "999");
  EXPECT_EQ(Sum("ct", "acct"), before);
  EXPECT_EQ(One("ct", "select count(*) from acct where id = 50"), "0");
  // The body is the CLI's report, with the error's two fields.
  CliRun cli = Arbor("-o json merge cs --into ct");
  EXPECT_EQ(cli.rc, 1) << cli.err << cli.out;
  json report = a.body;
  report.erase("error_code");
  report.erase("message");
  EXPECT_EQ(report, json::parse(cli.out));
  // A dry run with conflicts is refused the same way.
  EXPECT_EQ(Merge("cs", {{"into", "ct"}, {"dry_run", true}}).status, 409);
}

TEST_F(DataApiTest, UnsupportedMergesAre412AndPostgresErrorsRollBack) {
  Fork("ut", "production");
  Exec("ut",
       "create table parent (id int primary key);"
       "create table child (id int primary key, pid int references parent(id));"
       "insert into parent values (1), (2); insert into child values (1, 1)");
  Fork("us", "ut");
  Fork("us2", "ut");

  // Not the parent: the CLI's sentence.
  HttpAnswer a = Merge("us", {{"into", "us2"}});
  EXPECT_EQ(a.status, 412) << a.body.dump();
  EXPECT_EQ(a.body.value("error_code", ""), "FAILED_PRECONDITION");
  EXPECT_NE(a.body.value("message", "").find("only a merge into the branch's parent is supported"),
            std::string::npos)
      << a.body.dump();

  // Schemas that differ.
  Exec("us2", "alter table child add column note text");
  a = Merge("us2", {{"into", "ut"}});
  EXPECT_EQ(a.status, 412) << a.body.dump();
  EXPECT_EQ(a.body.value("error_code", ""), "FAILED_PRECONDITION");
  CliRun cli = Arbor("merge us2 --into ut");
  EXPECT_EQ(cli.rc, 2) << cli.err;
  EXPECT_EQ("arbor: " + a.body.value("message", "") + "\n", cli.err);
  EXPECT_NE(cli.err.find("migrate-check"), std::string::npos) << cli.err;

  // A foreign key the target's rows break: rolled back, PostgreSQL's message.
  Exec("us", "update child set pid = 2 where id = 1; insert into parent values (3)");
  Exec("ut", "delete from parent where id = 2");
  std::string before = Sum("ut", "child") + Sum("ut", "parent");
  a = Merge("us", {{"into", "ut"}});
  EXPECT_EQ(a.status, 409) << a.body.dump();
  EXPECT_EQ(a.body.value("error_code", ""), "FAILED_PRECONDITION");
  EXPECT_NE(a.body.value("message", "").find("violates foreign key constraint"), std::string::npos)
      << a.body.dump();
  EXPECT_NE(a.body.value("message", "").find("rolled back"), std::string::npos) << a.body.dump();
  EXPECT_EQ(Sum("ut", "child") + Sum("ut", "parent"), before);
}

TEST_F(DataApiTest, WhoMayDiffAndMerge) {
  Fork("at", "production");
  Exec("at", "create table p (id int primary key, v text); insert into p values (1, 'a')");
  Fork("as", "at");
  Exec("as", "update p set v = 'b' where id = 1");
  std::string viewer = Token("da-viewer", "viewer");
  std::string dev = Token("da-dev", "developer");
  ASSERT_FALSE(viewer.empty());
  ASSERT_FALSE(dev.empty());

  // A viewer may diff, and may not merge.
  HttpAnswer a = Diff("at", {{"against", "as"}}, viewer);
  EXPECT_EQ(a.status, 200) << a.body.dump();
  a = Merge("as", {{"into", "at"}}, viewer);
  EXPECT_EQ(a.status, 403) << a.body.dump();
  EXPECT_EQ(a.body.value("error_code", ""), "PERMISSION_DENIED");
  EXPECT_NE(a.body.value("message", "").find("viewer"), std::string::npos) << a.body.dump();
  EXPECT_EQ(One("at", "select v from p"), "a");

  // A developer may not merge into a protected target; an admin may.
  auto protect =
      daemon_->Call("PATCH", "projects/default/branches/at?update_mask=spec.is_protected",
                    {{"spec", {{"is_protected", true}}}});
  ASSERT_EQ(protect.status, 200) << protect.body.dump();
  a = Merge("as", {{"into", "at"}}, dev);
  EXPECT_EQ(a.status, 403) << a.body.dump();
  EXPECT_NE(a.body.value("message", "").find("merge into projects/default/branches/at"),
            std::string::npos)
      << a.body.dump();
  EXPECT_NE(a.body.value("message", "").find("protected"), std::string::npos) << a.body.dump();
  EXPECT_EQ(One("at", "select v from p"), "a");
  // ...and may diff it (reading).
  EXPECT_EQ(Diff("at", {{"against", "as"}}, dev).status, 200);

  // A token of one project reaches no other project's branches, on either side.
  a = Diff("at", {{"against", "projects/other/branches/production"}}, dev);
  EXPECT_EQ(a.status, 403) << a.body.dump();
  EXPECT_NE(a.body.value("message", "").find("limited to project default"), std::string::npos)
      << a.body.dump();
  a = daemon_->Call("POST", "projects/other/branches/production:diff_data",
                    {{"against", "production"}}, viewer);
  EXPECT_EQ(a.status, 403) << a.body.dump();
  a = daemon_->Call("POST", "projects/other/branches/production:merge", {{"into", "x"}}, dev);
  EXPECT_EQ(a.status, 403) << a.body.dump();

  // A forged token is not a caller.
  a = Merge("as", {{"into", "at"}}, "arbor_forged0000000000000000000000000000");
  EXPECT_EQ(a.status, 401) << a.body.dump();
  a = Diff("at", {{"against", "as"}}, viewer + "x");
  EXPECT_EQ(a.status, 401) << a.body.dump();

  a = Merge("as", {{"into", "at"}});
  EXPECT_EQ(a.status, 200) << a.body.dump();
  EXPECT_EQ(One("at", "select v from p"), "b");
  daemon_->Call("PATCH", "projects/default/branches/at?update_mask=spec.is_protected",
                {{"spec", {{"is_protected", false}}}});
}

}  // namespace
}  // namespace arbor
