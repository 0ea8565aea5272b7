// Branches, exact point-in-time recovery and computes, through the real daemon, real
// arborfs mounts and real PostgreSQL 15.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "storage/store.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::json;
using testutil::Pg;

class BranchTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = Daemon::Start("branch").release(); }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  // Creates a branch (no expiry); returns the HTTP answer.
  static testutil::HttpAnswer Create(const std::string& name, json spec) {
    if (!spec.contains("ttl") && !spec.contains("expire_time")) spec["no_expiry"] = true;
    return daemon_->Call("POST", "projects/default/branches?branch_id=" + name,
                         json{{"spec", spec}});
  }
  static std::string CreateOk(const std::string& name, json spec) {
    auto a = Create(name, std::move(spec));
    EXPECT_EQ(a.status, 200) << a.body.dump();
    return daemon_->Connect(name);
  }
  static void Delete(const std::string& name) {
    auto a = daemon_->Call("DELETE", "projects/default/branches/" + name);
    EXPECT_EQ(a.status, 200) << a.body.dump();
  }
  static std::string Parent(const std::string& name) { return "projects/default/branches/" + name; }

  static Daemon* daemon_;
};
Daemon* BranchTest::daemon_ = nullptr;

// The seed's scenario: 32 rows, note T, delete them all, branch at T.
TEST_F(BranchTest, BranchAtTimeBringsBackDeletedRows) {
  Pg prod(daemon_->Connect("production"));
  prod.Query("create table seed(id int primary key, v text)");
  prod.Query("insert into seed select g, 'row ' || g from generate_series(1, 32) g");
  int64_t t = testutil::NowMicros();
  prod.Query("delete from seed");
  ASSERT_EQ(prod.One("select count(*) from seed"), "0");

  Pg branch(CreateOk("undo", {{"source_branch_time", testutil::Rfc3339(t)}}));
  EXPECT_EQ(branch.One("select count(*) from seed"), "32");
  EXPECT_EQ(prod.One("select count(*) from seed"), "0");

  // Both take writes independently, and each sees only its own.
  branch.Query("insert into seed values (100, 'branch only')");
  prod.Query("insert into seed values (200, 'parent only')");
  EXPECT_EQ(branch.One("select string_agg(id::text, ',') from seed where id >= 100"), "100");
  EXPECT_EQ(prod.One("select string_agg(id::text, ',') from seed"), "200");

  auto got = daemon_->Call("GET", "projects/default/branches/undo");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["status"]["source_branch"], Parent("production"));
  EXPECT_EQ(got.body["spec"]["source_branch_time"], testutil::Rfc3339(t));
  prod.Query("drop table seed");
}

// Every row acknowledged before T is on the branch at T, and no row begun after T is.
TEST_F(BranchTest, BranchAtTimeIsExactToTheCommit) {
  std::string conn = daemon_->Connect("production");
  {
    Pg setup(conn);
    setup.Query("create table ticks(id int primary key)");
  }
  struct Tick {
    int id;
    int64_t begin_us, ack_us;
  };
  std::vector<Tick> ticks;
  {
    Pg writer(conn);
    int64_t until = testutil::NowMicros() + 4'000'000;
    for (int i = 1; testutil::NowMicros() < until; ++i) {
      int64_t begin = testutil::NowMicros();
      writer.Query("insert into ticks values (" + std::to_string(i) + ")");
      ticks.push_back({i, begin, testutil::NowMicros()});
    }
  }
  ASSERT_GT(ticks.size(), 50u);
  for (int k = 1; k <= 10; ++k) {
    // Ten times spread over the run, each falling between two commits.
    const Tick& at = ticks[ticks.size() * k / 11];
    int64_t t = at.ack_us + (k % 3) * 37;
    std::string name = "exact-" + std::to_string(k);
    Pg b(CreateOk(name, {{"source_branch_time", testutil::Rfc3339(t)}}));
    std::set<int> present;
    for (const auto& id : b.Query("select id from ticks")) present.insert(std::stoi(id));
    for (const Tick& x : ticks) {
      if (x.ack_us < t) {
        EXPECT_TRUE(present.count(x.id)) << "row " << x.id << " was acknowledged " << (t - x.ack_us)
                                         << " us before T but is missing";
      }
      if (x.begin_us > t) {
        EXPECT_FALSE(present.count(x.id))
            << "row " << x.id << " began " << (x.begin_us - t) << " us after T but is present";
      }
    }
    Delete(name);
  }
  Pg(conn).Query("drop table ticks");
}

// Ten branches of one parent take writes at once; each keeps its own data.
TEST_F(BranchTest, TenBranchesUnderConcurrentWritesStayIsolated) {
  {
    Pg prod(daemon_->Connect("production"));
    prod.Query("create table load(branch text, n int)");
    prod.Query("insert into load select 'base', g from generate_series(1, 100) g");
  }
  std::vector<std::string> conns;
  for (int i = 0; i < 10; ++i) {
    auto a = Create("load-" + std::to_string(i), json::object());
    ASSERT_EQ(a.status, 200) << a.body.dump();
  }
  for (int i = 0; i < 10; ++i) conns.push_back(daemon_->Connect("load-" + std::to_string(i)));
  std::vector<std::thread> writers;
  for (int i = 0; i < 10; ++i) {
    writers.emplace_back([&, i] {
      Pg pg(conns[i]);
      for (int n = 0; n < 50; ++n) {
        pg.Query("insert into load values ('b" + std::to_string(i) + "', " + std::to_string(n) +
                 ")");
      }
      pg.Query("update load set n = n + 1000 where branch = 'base' and n % 10 = " +
               std::to_string(i));
    });
  }
  for (auto& w : writers) w.join();
  for (int i = 0; i < 10; ++i) {
    Pg pg(conns[i]);
    EXPECT_EQ(pg.One("select count(*) from load where branch = 'b" + std::to_string(i) + "'"),
              "50");
    EXPECT_EQ(pg.One("select count(*) from load where branch <> 'base' and branch <> 'b" +
                     std::to_string(i) + "'"),
              "0");
    EXPECT_EQ(pg.One("select count(*) from load where n > 1000"), "10");
    EXPECT_EQ(testutil::AmCheck(daemon_->AdminConnect("load-" + std::to_string(i))), "")
        << "branch load-" << i;
  }
  Pg prod(daemon_->Connect("production"));
  EXPECT_EQ(prod.One("select count(*) from load"), "100");
  EXPECT_EQ(prod.One("select count(*) from load where n > 1000"), "0");
  for (int i = 0; i < 10; ++i) Delete("load-" + std::to_string(i));
  prod.Query("drop table load");
}

// A migration on a branch is invisible on the parent; a reset brings the parent's schema.
TEST_F(BranchTest, MigrationStaysOnBranchAndResetUndoesIt) {
  Pg prod(daemon_->Connect("production"));
  prod.Query("create table accounts(id int primary key, name text)");
  prod.Query("create index accounts_name on accounts(name)");
  prod.Query("create table legacy(x int)");
  prod.Query("insert into accounts select g, 'n' || g from generate_series(1, 1000) g");
  auto schema = [](Pg& pg) {
    return pg.One(
        "select string_agg(table_name || '.' || column_name || ':' || data_type, ',' order by "
        "table_name, column_name) from information_schema.columns where table_schema = "
        "'public'");
  };
  std::string before = schema(prod);

  auto created = Create("migration", json::object());
  ASSERT_EQ(created.status, 200) << created.body.dump();
  std::string conn = daemon_->Connect("migration");
  {
    Pg mig(conn);
    mig.Query("alter table accounts add column email text default 'x@example.com'");
    mig.Query("alter table accounts alter column name type varchar(64)");
    mig.Query("create table audit(at timestamptz, what text)");
    mig.Query("drop table legacy");
    mig.Query("reindex table accounts");
    EXPECT_NE(schema(mig), before);
    EXPECT_EQ(mig.One("select count(*) from accounts where email is not null"), "1000");
  }
  EXPECT_EQ(schema(prod), before);
  EXPECT_EQ(prod.One("select count(*) from legacy"), "0");

  // Reset: same name, same connection string, the parent's schema again.
  prod.Query("insert into accounts values (5000, 'added on parent after the branch')");
  auto endpoint_url = [&] {
    auto e = daemon_->Call("GET", "projects/default/branches/migration/endpoints/primary");
    return e.body["status"].value("connection_string", "");
  };
  std::string url_before = endpoint_url();
  auto reset = daemon_->Call("POST", "projects/default/branches/migration:reset");
  ASSERT_EQ(reset.status, 200) << reset.body.dump();
  EXPECT_EQ(endpoint_url(), url_before);
  Pg again(conn);  // the token issued before the reset still opens the branch
  EXPECT_EQ(schema(again), before);
  EXPECT_EQ(again.One("select count(*) from accounts"), "1001");
  EXPECT_EQ(testutil::AmCheck(daemon_->AdminConnect("migration")), "");
  Delete("migration");
  prod.Query("drop table accounts; drop table legacy");
}

// A branch of a branch ... five deep, and a point-in-time branch of a branch.
TEST_F(BranchTest, FiveDeepChainAndPointInTimeOfABranch) {
  {
    Pg prod(daemon_->Connect("production"));
    prod.Query("create table levels(level int, note text)");
  }
  std::string parent = "production";
  std::vector<std::string> names;
  for (int level = 1; level <= 5; ++level) {
    std::string name = "level-" + std::to_string(level);
    Pg pg(CreateOk(name, {{"source_branch", Parent(parent)}}));
    pg.Query("insert into levels values (" + std::to_string(level) + ", 'on " + name + "')");
    names.push_back(name);
    parent = name;
  }
  for (int level = 1; level <= 5; ++level) {
    Pg pg(daemon_->Connect(names[level - 1]));
    EXPECT_EQ(pg.One("select count(*) from levels"), std::to_string(level));
    EXPECT_EQ(pg.One("select max(level) from levels"), std::to_string(level));
  }
  // Point in time on level-3: between two of its own commits.
  std::string conn3 = daemon_->Connect("level-3");
  int64_t t;
  {
    Pg l3(conn3);
    l3.Query("insert into levels values (30, 'before T')");
    t = testutil::NowMicros();
    l3.Query("insert into levels values (31, 'after T')");
  }
  Pg pitr(CreateOk("level-3-pitr", {{"source_branch", Parent("level-3")},
                                    {"source_branch_time", testutil::Rfc3339(t)}}));
  EXPECT_EQ(pitr.One("select string_agg(level::text, ',' order by level) from levels"), "1,2,3,30");
  Delete("level-3-pitr");
  for (int level = 5; level >= 1; --level) Delete(names[level - 1]);
  Pg(daemon_->Connect("production")).Query("drop table levels");
}

// A branch at an LSN holds what the parent had committed when its WAL reached it.
TEST_F(BranchTest, BranchAtLsn) {
  Pg prod(daemon_->Connect("production"));
  prod.Query("create table lsn_rows(n int)");
  prod.Query("insert into lsn_rows values (1)");
  std::string lsn = prod.One("select pg_current_wal_flush_lsn()");
  prod.Query("insert into lsn_rows values (2)");
  Pg b(CreateOk("at-lsn", {{"source_branch_lsn", lsn}}));
  EXPECT_EQ(b.One("select string_agg(n::text, ',') from lsn_rows"), "1");
  Delete("at-lsn");
  prod.Query("drop table lsn_rows");
}

// A branch's first start recovers as after a crash when its replay stays in one WAL segment
// (a branch at the head: its parent checkpointed just before), and promotes onto a new
// PostgreSQL timeline when it is longer (docs/point-in-time.md, section 3). Either way the
// branch holds what the parent had.
TEST_F(BranchTest, AShortReplayRecoversInPlaceAndALongOnePromotes) {
  // The PostgreSQL timeline a cluster writes its WAL on: the first 8 hex digits of its file.
  auto tli = [](Pg& pg) {
    return std::stoul(pg.One("select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), nullptr,
                      16);
  };
  Pg prod(daemon_->Connect("production"));
  prod.Query("create table replay(n int, pad text)");
  prod.Query("insert into replay values (1, '')");
  unsigned long parent = tli(prod);
  {
    Pg b(CreateOk("short-replay", json::object()));
    EXPECT_EQ(b.One("select count(*) from replay"), "1");
    EXPECT_EQ(tli(b), parent) << "a branch at the head promoted instead of recovering in place";
  }
  Delete("short-replay");
  // 24 MB of rows after that checkpoint: the replay of a branch made after them crosses a
  // 16 MiB segment. A timed checkpoint of production in between would shorten it; so up to
  // three tries, of which one must promote.
  bool promoted = false;
  for (int i = 2; i <= 4 && !promoted; ++i) {
    prod.Query("insert into replay select " + std::to_string(i) +
               ", repeat('x', 1000) from generate_series(1, 24000)");
    int64_t t = testutil::NowMicros();
    std::string name = "long-replay-" + std::to_string(i);
    {
      Pg b(CreateOk(name, {{"source_branch_time", testutil::Rfc3339(t)}}));
      EXPECT_EQ(b.One("select max(n) from replay"), std::to_string(i));
      promoted = tli(b) == parent + 1;
      b.Query("insert into replay values (100, 'branch only')");
    }
    Delete(name);
  }
  EXPECT_TRUE(promoted) << "a replay of 24 MB recovered in place three times";
  EXPECT_EQ(prod.One("select count(*) from replay where n = 100"), "0");
  prod.Query("drop table replay");
}

// Restore in place: the branch goes back to its own past; what it had is kept as a backup.
TEST_F(BranchTest, RestoreInPlaceKeepsTheReplacedStateAsBackup) {
  std::string conn = CreateOk("incident", json::object());
  int64_t t;
  {
    Pg pg(conn);
    pg.Query("create table orders(id int)");
    pg.Query("insert into orders select generate_series(1, 10)");
    t = testutil::NowMicros();
    pg.Query("delete from orders where id > 3");  // the incident
  }
  auto r = daemon_->Call("POST", "projects/default/branches/incident:restore",
                         json{{"source_branch_time", testutil::Rfc3339(t)}});
  ASSERT_EQ(r.status, 200) << r.body.dump();
  std::string backup = r.body["backup_branch"];
  // Same name, same connection string: the token issued before the restore still opens it.
  auto endpoint = daemon_->Call("GET", "projects/default/branches/incident/endpoints/primary");
  EXPECT_EQ(endpoint.body["status"].value("connection_string", ""),
            conn.substr(0, conn.find(':', 13)) + conn.substr(conn.find('@')));
  daemon_->StartEndpoint("incident");
  EXPECT_EQ(Pg(conn).One("select count(*) from orders"), "10");
  std::string backup_id = backup.substr(backup.rfind('/') + 1);
  EXPECT_EQ(Pg(daemon_->Connect(backup_id)).One("select count(*) from orders"), "3");
  Delete("incident");
  Delete(backup_id);
}

// Wrong requests get a clear error and change nothing.
TEST_F(BranchTest, WrongRequestsGetClearErrorsAndChangeNothing) {
  Pg prod(daemon_->Connect("production"));
  prod.Query("create table keep(x int); insert into keep values (1)");
  auto before = daemon_->Call("GET", "projects/default/branches");
  ASSERT_EQ(before.status, 200);

  auto future =
      Create("bad-time",
             {{"source_branch_time", testutil::Rfc3339(testutil::NowMicros() + 3'600'000'000)}});
  EXPECT_EQ(future.status, 400);
  EXPECT_EQ(future.body["error_code"], "OUT_OF_RANGE");
  EXPECT_NE(future.body["message"].get<std::string>().find("allowed range"), std::string::npos)
      << future.body.dump();
  auto ancient = Create("bad-time", {{"source_branch_time", "2001-01-01T00:00:00Z"}});
  EXPECT_EQ(ancient.status, 400);
  auto garbage = Create("bad-time", {{"source_branch_time", "yesterday-ish"}});
  EXPECT_EQ(garbage.status, 400);
  EXPECT_EQ(garbage.body["error_code"], "INVALID_PARAMETER_VALUE");
  auto far_lsn = Create("bad-lsn", {{"source_branch_lsn", "FF/0"}});
  EXPECT_EQ(far_lsn.status, 400);
  EXPECT_NE(far_lsn.body["message"].get<std::string>().find("has not reached"), std::string::npos)
      << far_lsn.body.dump();

  ASSERT_EQ(Create("has-child", json::object()).status, 200);
  ASSERT_EQ(Create("the-child", {{"source_branch", Parent("has-child")}}).status, 200);
  auto del = daemon_->Call("DELETE", "projects/default/branches/has-child");
  EXPECT_EQ(del.status, 409);
  EXPECT_EQ(del.body["error_code"], "FAILED_PRECONDITION");
  auto reset_root = daemon_->Call("POST", "projects/default/branches/production:reset");
  EXPECT_EQ(reset_root.status, 409);
  EXPECT_NE(reset_root.body["message"].get<std::string>().find("root"), std::string::npos);
  auto del_root = daemon_->Call("DELETE", "projects/default/branches/production");
  EXPECT_EQ(del_root.status, 409);

  EXPECT_EQ(prod.One("select count(*) from keep"), "1");
  Delete("the-child");
  Delete("has-child");
  auto after = daemon_->Call("GET", "projects/default/branches");
  EXPECT_EQ(after.body["branches"].size(), before.body["branches"].size());
  prod.Query("drop table keep");
}

// Security finding 9: GC collects the history the window no longer covers; raising
// history_retention_duration afterwards must not offer that history again (a branch there
// would fork at a state that never existed). Through the API the window is at least an
// hour, so the test collects the history itself, as an hour-long window would an hour later:
// with the daemon stopped, it opens the daemon's store, runs one GC pass under a one-second
// window and puts the window back. Then the user raises the window.
TEST(BranchGcFloorTest, RaisingTheWindowDoesNotMakeCollectedHistoryBranchable) {
  auto d = Daemon::Start("gcfloor");
  auto post = [&](const std::string& path, const json& body) {
    return d->Call("POST", "projects/default/" + path, body);
  };
  int64_t before;
  std::string lsn_before;
  {
    Pg prod(d->Connect("production"));
    prod.Query("create table facts(v text)");
    prod.Query("insert into facts values ('old')");
    lsn_before = prod.One("select pg_current_wal_flush_lsn()");
    before = testutil::NowMicros();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    prod.Query("update facts set v = 'new'");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  d->Stop();
  int64_t collected_at;
  {
    storage::Store::Options o;
    o.path = d->home() + "/store";
    o.create_if_missing = false;
    o.background_gc = false;
    o.block_cache_bytes = 16 << 20;
    o.wal_prefill_bytes = 0;
    auto st = storage::Store::Open(o);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    std::vector<storage::TimelineInfo> roots;
    for (const auto& t : (*st)->ListTimelines()) {
      if (t.parent.value() == 0) roots.push_back(t);
    }
    ASSERT_EQ(roots.size(), 1u);  // the default project's
    ASSERT_TRUE((*st)->SetHistoryWindow(roots[0].id, 1'000'000).ok());
    collected_at = testutil::NowMicros();
    auto dropped = (*st)->RunGc();
    ASSERT_TRUE(dropped.ok()) << dropped.status().ToString();
    ASSERT_GT(*dropped, 0u);
    ASSERT_TRUE((*st)->SetHistoryWindow(roots[0].id, roots[0].history_window_us).ok());
  }
  d->Relaunch();
  auto patch = d->Call("PATCH", "projects/default?update_mask=spec.history_retention_duration",
                       json{{"spec", {{"history_retention_duration", "172800s"}}}});
  ASSERT_EQ(patch.status, 200) << patch.body.dump();

  // Before the floor: refused, naming the earliest time still available.
  auto branch =
      post("branches?branch_id=too-old",
           {{"spec", {{"source_branch_time", testutil::Rfc3339(before)}, {"no_expiry", true}}}});
  EXPECT_EQ(branch.status, 400) << branch.body.dump();
  EXPECT_EQ(branch.body["error_code"], "OUT_OF_RANGE") << branch.body.dump();
  std::string message = branch.body.value("message", "");
  const std::string lead = "earliest time still available, ";
  size_t at = message.find(lead);
  ASSERT_NE(at, std::string::npos) << message;
  EXPECT_NE(message.find("(history window 48h"), std::string::npos) << message;
  std::string earliest = message.substr(at + lead.size(), testutil::Rfc3339(before).size());
  EXPECT_GT(earliest, testutil::Rfc3339(before))
      << message;  // same format: text order is time order
  EXPECT_LE(earliest, testutil::Rfc3339(collected_at)) << message;

  auto by_lsn = post("branches?branch_id=too-old",
                     {{"spec", {{"source_branch_lsn", lsn_before}, {"no_expiry", true}}}});
  EXPECT_EQ(by_lsn.status, 400) << by_lsn.body.dump();
  EXPECT_EQ(by_lsn.body["error_code"], "OUT_OF_RANGE") << by_lsn.body.dump();
  EXPECT_NE(by_lsn.body.value("message", "").find(lead + earliest), std::string::npos)
      << by_lsn.body.dump();
  auto restore =
      post("branches/production:restore", {{"source_branch_time", testutil::Rfc3339(before)}});
  EXPECT_EQ(restore.status, 400) << restore.body.dump();
  EXPECT_EQ(restore.body["error_code"], "OUT_OF_RANGE") << restore.body.dump();
  ASSERT_EQ(post("branches?branch_id=kid", {{"spec", {{"no_expiry", true}}}}).status, 200);
  auto reset = post("branches/kid:reset", {{"source_branch_time", testutil::Rfc3339(before)}});
  EXPECT_EQ(reset.status, 400) << reset.body.dump();
  EXPECT_EQ(reset.body["error_code"], "OUT_OF_RANGE") << reset.body.dump();
  auto list = d->Call("GET", "projects/default/branches");
  EXPECT_EQ(list.body["branches"].size(), 2u) << list.body.dump();  // production and kid

  // At the floor, history is whole: a branch there holds what was committed by then.
  auto ok = post("branches?branch_id=at-floor",
                 {{"spec", {{"source_branch_time", earliest}, {"no_expiry", true}}}});
  ASSERT_EQ(ok.status, 200) << ok.body.dump();
  EXPECT_EQ(Pg(d->Connect("at-floor")).One("select string_agg(v, ',') from facts"), "new");
}

}  // namespace
}  // namespace arbor
