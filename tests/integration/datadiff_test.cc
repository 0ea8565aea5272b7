// arbor diff --data against the real daemon, real postgres and the real CLI: the rows that
// differ between two branches (or a branch's past), found by reading only the pages either
// side wrote since they diverged (GET .../changed_pages), and an SQL patch that makes the
// first side's rows the second's.

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::json;
using testutil::Pg;

using testutil::CliRun;

class DataDiffTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The tests below count the pages a diff reads, which stay few when each create waited
    // for its parent's whole CHECKPOINT (the default; with a bounded wait, a busy machine
    // could make one outlast it, and the pages the parent then writes after the fork would
    // be read too). Pinned here whatever the environment says; the daemon inherits it.
    setenv("ARBOR_BRANCH_CHECKPOINT_WAIT_MS", "-1", 1);
    daemon_ = Daemon::Start("dd").release();
    if (daemon_ == nullptr) return;
    Pg prod(daemon_->Connect("production"));
    std::string setup =
        "create table items (id int primary key, name text, note text, extra int);"
        "alter table items alter column note set storage external;"
        "insert into items select g, 'n' || g, case when g % 3 = 0 then null else 'x' || g end,"
        "  g from generate_series(1, 200) g;"
        "create table logs (a int, b text);"
        "insert into logs values (1, 'a'), (1, 'a'), (2, 'b'), (3, null);"
        "create table vf (id int primary key, v text);"
        "insert into vf select g, 'v' || g from generate_series(1, 100) g;"
        "create table big (id int primary key, payload text) with (autovacuum_enabled = off);"
        "insert into big select g, md5(g::text) from generate_series(1, 50000) g";
    setup_error_ = prod.TryExec(setup);
    if (!setup_error_.empty()) return;
    auto made = daemon_->Call("POST", "projects/default/branches?branch_id=dev",
                              {{"spec", {{"no_expiry", true}}}});
    if (made.status != 200) setup_error_ = made.body.dump();
    if (!setup_error_.empty()) return;
    Pg dev(daemon_->Connect("dev"));
    setup_error_ = dev.TryExec(
        "update items set name = 'changed' where id = 5;"
        "update items set note = null where id = 7;"
        "update items set note = 'NULL' where id = 3;"
        "delete from items where id in (10, 11);"
        "insert into items values (1001, 'new', repeat('x', 100000), 1);"
        "update items set note = repeat('y', 100000) where id = 20;"
        "alter table items drop column extra;"
        "delete from logs where ctid = (select ctid from logs where a = 1 limit 1);"
        "insert into logs values (2, 'b'), (4, 'it''s');"
        "delete from vf where id = 1");
    if (setup_error_.empty()) setup_error_ = dev.TryExec("vacuum full vf");
    if (setup_error_.empty()) setup_error_ = dev.TryExec("update vf set v = 'z' where id = 2");
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(daemon_, nullptr);
    ASSERT_EQ(setup_error_, "");
  }

  static CliRun Arbor(const std::string& args) { return testutil::RunArbor(daemon_->home(), args); }

  static json Table(const json& j, const std::string& name) {
    for (const json& t : j["tables"]) {
      if (t.value("table", "") == name) return t;
    }
    return json();
  }

  static Daemon* daemon_;
  static std::string setup_error_;
};
Daemon* DataDiffTest::daemon_ = nullptr;
std::string DataDiffTest::setup_error_;

TEST_F(DataDiffTest, FindsEveryKindOfChangeByKeyAndByWholeRow) {
  CliRun r = Arbor("-o json diff --data production dev");
  ASSERT_EQ(r.rc, 1) << r.err << r.out;
  json j = json::parse(r.out);
  EXPECT_FALSE(j.value("identical", true));
  EXPECT_TRUE(j.value("change_index", false)) << r.out;

  json items = Table(j, "public.items");
  ASSERT_TRUE(items.is_object()) << r.out;
  EXPECT_EQ(items["key"], "primary key");
  EXPECT_EQ(items["columns"], json::array({"id", "name", "note"}));
  EXPECT_NE(items["notes"].dump().find("common columns only (only in production: extra)"),
            std::string::npos)
      << items["notes"].dump();
  EXPECT_EQ(items["only_in_from_count"], 2);
  EXPECT_EQ(items["only_in_to_count"], 1);
  EXPECT_EQ(items["changed_count"], 4);
  EXPECT_EQ(items["read"], "changed pages");
  EXPECT_EQ(items["only_in_from"][0]["id"], "10");
  EXPECT_EQ(items["only_in_from"][1]["id"], "11");
  EXPECT_EQ(items["only_in_to"][0]["id"], "1001");
  EXPECT_EQ(items["only_in_to"][0]["note"].get<std::string>(), std::string(100000, 'x'));
  std::map<std::string, json> changed;
  for (const json& c : items["changed"]) changed[c["key"]["id"].get<std::string>()] = c;
  ASSERT_EQ(changed.size(), 4u) << items["changed"].dump();
  EXPECT_TRUE(changed["3"]["from"]["note"].is_null());
  EXPECT_EQ(changed["3"]["to"]["note"], "NULL");  // the text, not SQL NULL
  EXPECT_EQ(changed["5"]["to"]["name"], "changed");
  EXPECT_EQ(changed["7"]["from"]["note"], "x7");
  EXPECT_TRUE(changed["7"]["to"]["note"].is_null());
  EXPECT_EQ(changed["20"]["to"]["note"].get<std::string>(), std::string(100000, 'y'));

  json logs = Table(j, "public.logs");
  ASSERT_TRUE(logs.is_object()) << r.out;
  EXPECT_EQ(logs["key"], "whole row");
  EXPECT_EQ(logs["only_in_from_count"], 1);
  EXPECT_EQ(logs["only_in_to_count"], 2);
  EXPECT_EQ(logs["only_in_from"][0], json({{"a", "1"}, {"b", "a"}}));

  json vf = Table(j, "public.vf");
  ASSERT_TRUE(vf.is_object()) << r.out;
  EXPECT_EQ(vf["read"], "full");  // VACUUM FULL gave it a new file on dev
  EXPECT_EQ(vf["only_in_from_count"], 1);
  EXPECT_EQ(vf["only_in_to_count"], 0);
  EXPECT_EQ(vf["changed_count"], 1);

  // The untouched big table was not read at all.
  EXPECT_FALSE(Table(j, "public.big").is_object());
  EXPECT_NE(j["skipped_tables"].dump().find("public.big"), std::string::npos) << r.out;
  // The schema difference comes along.
  EXPECT_NE(j["schema"].dump().find("public.items.extra"), std::string::npos) << j["schema"];
}

TEST_F(DataDiffTest, TextReportCountsAndSaysHowRowsAreKeyed) {
  CliRun r = Arbor("diff --data production dev");
  ASSERT_EQ(r.rc, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("table public.items (by primary key id): 2 only in production, 1 only in "
                       "dev, 4 changed"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("table public.logs (no primary key: rows compared whole): 1 only in "
                       "production, 2 only in dev, 0 changed"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("compared on the common columns only"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  ~ id='5': name: 'n5' -> 'changed'"), std::string::npos) << r.out;
  EXPECT_LT(r.out.find("Schema diff production -> dev"), r.out.find("Data diff production -> dev"));
  // Keys in order: integers by value.
  EXPECT_LT(r.out.find("~ id='3'"), r.out.find("~ id='20'")) << r.out;
  EXPECT_NE(r.out.find("3 tables differ."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 skipped"), std::string::npos) << r.out;

  // --table limits the schema diff too: big's schema and rows are the same.
  r = Arbor("diff --data production dev --table big");
  EXPECT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("No schema differences."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("No data differences."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("0 tables (0 read in full; 0 pages read on the two sides); 1 skipped"),
            std::string::npos)
      << r.out;
  r = Arbor("diff --data production dev --table items");
  EXPECT_EQ(r.rc, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("public.items.extra"), std::string::npos) << r.out;
  r = Arbor("diff --data production dev --table nosuch");
  EXPECT_EQ(r.rc, 2) << r.err << r.out;
}

TEST_F(DataDiffTest, ChangedPagesNameNoPageOfAnUntouchedTable) {
  Pg prod(daemon_->Connect("production"));
  uint32_t big = std::stoul(prod.One("select pg_relation_filenode('big')"));
  uint32_t items = std::stoul(prod.One("select pg_relation_filenode('items')"));
  uint32_t db = std::stoul(prod.One("select oid from pg_database where datname = 'postgres'"));
  auto a = daemon_->Call("GET",
                         "projects/default/branches/production/endpoints/primary/changed_pages"
                         "?against=projects/default/branches/dev/endpoints/primary");
  ASSERT_EQ(a.status, 200) << a.body.dump();
  EXPECT_TRUE(a.body.value("complete", false));
  bool saw_items = false;
  for (const json& d : a.body["databases"]) {
    for (const json& rel : d["relations"]) {
      EXPECT_NE(rel["relfilenode"].get<uint32_t>(), big) << a.body.dump();
      if (d["oid"].get<uint32_t>() == db && rel["relfilenode"].get<uint32_t>() == items) {
        saw_items = true;
        EXPECT_FALSE(rel["pages"].empty());
      }
    }
  }
  EXPECT_TRUE(saw_items) << a.body.dump();
  // A viewer may ask (it only reads); no token may not.
  CliRun made = Arbor("-o json token create viewer-dd --role viewer");
  ASSERT_EQ(made.rc, 0) << made.err;
  std::string token = json::parse(made.out).value("token", std::string());
  std::string path =
      "/api/2.0/postgres/projects/default/branches/production/endpoints/primary/changed_pages"
      "?against=projects/default/branches/dev/endpoints/primary";
  std::ifstream api_file(daemon_->home() + "/api");
  std::string api;
  std::getline(api_file, api);
  httplib::Client http(api);
  auto as_viewer = http.Get(path, {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(as_viewer);
  EXPECT_EQ(as_viewer->status, 200) << as_viewer->body;
  auto anonymous = http.Get(path);
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  // Another project's endpoint, or a bad name, is refused.
  auto bad = daemon_->Call("GET",
                           "projects/default/branches/production/endpoints/primary/changed_pages"
                           "?against=projects/other/branches/dev/endpoints/primary");
  EXPECT_EQ(bad.status, 400) << bad.body.dump();
  bad =
      daemon_->Call("GET", "projects/default/branches/production/endpoints/primary/changed_pages");
  EXPECT_EQ(bad.status, 400) << bad.body.dump();
}

TEST_F(DataDiffTest, SqlPatchMakesTheRowsEqual) {
  auto made = daemon_->Call("POST", "projects/default/branches?branch_id=patched",
                            {{"spec", {{"no_expiry", true}}}});
  ASSERT_EQ(made.status, 200) << made.body.dump();
  CliRun r = Arbor("diff --data patched dev --format sql");
  ASSERT_EQ(r.rc, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("DELETE FROM ONLY public.items WHERE id = '10';"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("UPDATE ONLY public.items SET note = 'NULL' WHERE id = '3';"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("UPDATE ONLY public.items SET note = NULL WHERE id = '7';"),
            std::string::npos)
      << r.out;
  Pg patched(daemon_->Connect("patched"));
  ASSERT_EQ(patched.TryExec("alter table items drop column extra"), "");
  ASSERT_EQ(patched.TryExec(r.out), "") << r.out.substr(0, 2000);
  r = Arbor("diff --data patched dev");
  EXPECT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("No data differences."), std::string::npos) << r.out;
  Pg dev(daemon_->Connect("dev"));
  EXPECT_EQ(patched.One("select count(*) from logs where a = 2"), "2");
  EXPECT_EQ(patched.One("select md5(string_agg(i::text, ',' order by id)) from items i"),
            dev.One("select md5(string_agg(i::text, ',' order by id)) from items i"));
}

// One row changed in a 50,000-row table: a page or two read on each side, not the table.
TEST_F(DataDiffTest, OneRowOfABigTableCostsAPageNotTheTable) {
  auto made = daemon_->Call("POST", "projects/default/branches?branch_id=touch",
                            {{"spec", {{"no_expiry", true}}}});
  ASSERT_EQ(made.status, 200) << made.body.dump();
  Pg touch(daemon_->Connect("touch"));
  ASSERT_EQ(touch.TryExec("update big set payload = 'touched' where id = 25000"), "");
  int64_t size = std::stoll(touch.One("select pg_relation_size('big') / 8192"));
  ASSERT_GT(size, 300);
  CliRun r = Arbor("-o json diff --data production touch --table big");
  ASSERT_EQ(r.rc, 1) << r.err << r.out;
  json big = Table(json::parse(r.out), "public.big");
  ASSERT_TRUE(big.is_object()) << r.out;
  EXPECT_EQ(big["read"], "changed pages");
  EXPECT_EQ(big["changed_count"], 1);
  EXPECT_EQ(big["changed"][0]["to"]["payload"], "touched");
  EXPECT_EQ(big["only_in_from_count"], 0);
  EXPECT_EQ(big["only_in_to_count"], 0);
  EXPECT_LE(big["pages_read_from"].get<int64_t>(), 4) << r.out;
  EXPECT_LE(big["pages_read_to"].get<int64_t>(), 4) << r.out;
}

// Two projects share no history: every table is read in full, and the output says why.
TEST_F(DataDiffTest, AcrossProjectsEveryTableIsReadInFull) {
  auto made = daemon_->Call("POST", "projects?project_id=other",
                            {{"spec", {{"history_retention_duration", "86400s"}}}});
  ASSERT_EQ(made.status, 200) << made.body.dump();
  Pg other(daemon_->Connect("production", "other"));
  ASSERT_EQ(other.TryExec("create table logs (a int, b text);"
                          "insert into logs values (1, 'a'), (1, 'a'), (2, 'b'), (3, null), "
                          "(5, 'e')"),
            "");
  CliRun r = Arbor(
      "-o json diff --data production projects/other/branches/production "
      "--table logs");
  ASSERT_EQ(r.rc, 1) << r.err << r.out;
  json j = json::parse(r.out);
  EXPECT_FALSE(j.value("change_index", true));
  EXPECT_NE(j.value("fallback", std::string()).find("different projects"), std::string::npos)
      << r.out;
  json logs = Table(j, "public.logs");
  ASSERT_TRUE(logs.is_object()) << r.out;
  EXPECT_EQ(logs["read"], "full");
  EXPECT_EQ(logs["only_in_from_count"], 0);
  EXPECT_EQ(logs["only_in_to_count"], 1);
  EXPECT_EQ(logs["only_in_to"][0], json({{"a", "5"}, {"b", "e"}}));
}

TEST_F(DataDiffTest, BranchAtTimeIsASide) {
  Pg dev(daemon_->Connect("dev"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  int64_t t = testutil::NowMicros();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_EQ(dev.TryExec("insert into items values (2000, 'late', null);"
                        "update logs set b = 'bb' where a = 2"),
            "");
  CliRun r = Arbor("-o json diff --data dev@" + testutil::Rfc3339(t) +
                   " dev --table items "
                   "--table public.logs");
  ASSERT_EQ(r.rc, 1) << r.err << r.out;
  json j = json::parse(r.out);
  json items = Table(j, "public.items");
  ASSERT_TRUE(items.is_object()) << r.out;
  EXPECT_EQ(items["only_in_from_count"], 0);
  EXPECT_EQ(items["only_in_to_count"], 1);
  EXPECT_EQ(items["changed_count"], 0);
  EXPECT_EQ(items["only_in_to"][0]["id"], "2000");
  json logs = Table(j, "public.logs");
  ASSERT_TRUE(logs.is_object()) << r.out;
  EXPECT_EQ(logs["only_in_from_count"], 2);  // both (2, 'b') rows of dev
  EXPECT_EQ(logs["only_in_to_count"], 2);
  EXPECT_FALSE(Table(j, "public.vf").is_object());  // not asked for
  EXPECT_TRUE(j["schema"]["identical"].get<bool>()) << j["schema"];
}

}  // namespace
}  // namespace arbor
