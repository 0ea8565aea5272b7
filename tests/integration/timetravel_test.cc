// The undo button: time travel on read-only endpoints pinned at a time, and bisect, against
// the real daemon, real postgres (hot standbys on ephemeral timelines), the real CLI and psql.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
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

class TimeTravelTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = Daemon::Start("tt").release(); }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  // Runs `arbor ARGS` against the daemon.
  static CliRun Arbor(const std::string& args) { return testutil::RunArbor(daemon_->home(), args); }

  // A token URL for endpoint `ep` of `branch` (started first).
  static std::string EndpointUrl(const std::string& branch, const std::string& ep) {
    std::string name = "projects/default/branches/" + branch + "/endpoints/" + ep;
    auto started = daemon_->Call("POST", name + ":start", json::object());
    EXPECT_EQ(started.status, 200) << started.body.dump();
    auto cred = daemon_->Call("POST", "credentials", {{"endpoint", name}});
    EXPECT_EQ(cred.status, 200) << cred.body.dump();
    return "postgresql://owner:" + cred.body.value("token", std::string()) +
           "@127.0.0.1:" + std::to_string(started.body["status"].value("port", 0)) + "/postgres";
  }

  static size_t BranchCount() {
    auto list = daemon_->Call("GET", "projects/default/branches");
    return list.body["branches"].size();
  }

  static Daemon* daemon_;
};
Daemon* TimeTravelTest::daemon_ = nullptr;

// Unrelated commits, each its own transaction.
void Noise(Pg& pg, int n) {
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(pg.TryExec("insert into noise values (" + std::to_string(i) + ")"), "");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The seed's incident: 32 rows, commits, a wipe, commits. Bisect names the wipe, exactly.
TEST_F(TimeTravelTest, BisectNamesTheDeleteAndTheStatesAroundItAreExact) {
  Pg prod(daemon_->Connect("production"));
  ASSERT_EQ(
      prod.TryExec("create table final_entities (id int primary key, name text);"
                   "insert into final_entities select g, 'e' || g from generate_series(1, 32) g;"
                   "create table noise (x int)"),
      "");
  int64_t start = testutil::NowMicros();
  Noise(prod, 15);
  // A checkpoint inside the window (a branch at the head checkpoints its parent): standbys
  // walked across it replay the checkpoint record and make a restartpoint.
  auto mid = daemon_->Call("POST", "projects/default/branches?branch_id=tt-mid",
                           {{"spec", {{"no_expiry", true}}}});
  ASSERT_EQ(mid.status, 200) << mid.body.dump();
  Noise(prod, 10);
  ASSERT_EQ(prod.TryExec("delete from final_entities"), "");
  Noise(prod, 25);
  ASSERT_EQ(daemon_->Call("DELETE", "projects/default/branches/tt-mid").status, 200);
  size_t branches = BranchCount();

  CliRun r = Arbor("-o json bisect production --since " + testutil::Rfc3339(start) +
                   " --check 'select count(*) = 32 from final_entities'");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  std::string good = j.value("last_good_time", std::string());
  std::string bad = j.value("first_bad_time", std::string());
  ASSERT_FALSE(good.empty()) << r.out;
  ASSERT_FALSE(bad.empty()) << r.out;
  EXPECT_LT(j.value("last_good_time_us", int64_t{0}), j.value("first_bad_time_us", int64_t{0}));
  // Over 50+ commits a binary search needs about log2 of them, plus the two ends.
  EXPECT_LE(j.value("probes", 99), 12) << r.out;
  // Standbys walk forward from state to state instead of each probe starting its own.
  EXPECT_GE(j.value("walks", 0), 1) << r.out;
  EXPECT_GE(j.value("points", 0), 50) << r.out;
  EXPECT_FALSE(j.value("first_bad_lsn", std::string()).empty());
  EXPECT_NE(j.value("command", std::string()).find("--at " + good), std::string::npos);
  // Probes touched nothing: no branch made, and no probe endpoint left.
  EXPECT_EQ(BranchCount(), branches);
  auto eps = daemon_->Call("GET", "projects/default/branches/production/endpoints");
  EXPECT_EQ(eps.body["endpoints"].size(), 1u) << eps.body.dump();

  // Branches at the two answers: 32 rows, then none.
  auto at_good = daemon_->Call("POST", "projects/default/branches?branch_id=before-wipe",
                               {{"spec", {{"source_branch_time", good}, {"ttl", "3600s"}}}});
  ASSERT_EQ(at_good.status, 200) << at_good.body.dump();
  auto at_bad = daemon_->Call("POST", "projects/default/branches?branch_id=after-wipe",
                              {{"spec", {{"source_branch_time", bad}, {"ttl", "3600s"}}}});
  ASSERT_EQ(at_bad.status, 200) << at_bad.body.dump();
  Pg before(daemon_->Connect("before-wipe"));
  EXPECT_EQ(before.One("select count(*) from final_entities"), "32");
  Pg after(daemon_->Connect("after-wipe"));
  EXPECT_EQ(after.One("select count(*) from final_entities"), "0");
  // Adjacent: the noise rows are the same in both, so no other commit lies between them.
  EXPECT_EQ(before.One("select count(*) from noise"), after.One("select count(*) from noise"));

  // Time travel from the CLI: the past reads 32 while production reads 0, and no branch.
  branches = BranchCount();
  r = Arbor("psql production@" + good + " -- -tAc 'select count(*) from final_entities'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "32\n");
  EXPECT_EQ(prod.One("select count(*) from final_entities"), "0");
  EXPECT_EQ(BranchCount(), branches);
  r = Arbor("branch list");
  EXPECT_EQ(r.out.find("@"), std::string::npos) << r.out;
}

TEST_F(TimeTravelTest, APinnedEndpointIsReadOnlyAndNeverChanges) {
  Pg prod(daemon_->Connect("production"));
  ASSERT_EQ(prod.TryExec("create table ledger (id int primary key, amount int);"
                         "insert into ledger values (1, 100)"),
            "");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int64_t then = testutil::NowMicros();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(prod.TryExec("insert into ledger values (2, 200); update ledger set amount = 101 "
                         "where id = 1"),
            "");

  auto made =
      daemon_->Call("POST", "projects/default/branches/production/endpoints?endpoint_id=audit",
                    {{"spec",
                      {{"endpoint_type", "ENDPOINT_TYPE_READ_ONLY"},
                       {"source_branch_time", testutil::Rfc3339(then)}}}});
  ASSERT_EQ(made.status, 200) << made.body.dump();
  EXPECT_EQ(made.body["spec"].value("endpoint_type", std::string()), "ENDPOINT_TYPE_READ_ONLY");
  {
    Pg past(EndpointUrl("production", "audit"));
    EXPECT_EQ(past.One("select string_agg(id || ':' || amount, ',' order by id) from ledger"),
              "1:100");
    // PostgreSQL's own read-only error, whatever the session tries.
    EXPECT_NE(past.TryExec("insert into ledger values (3, 300)").find("read-only transaction"),
              std::string::npos);
    EXPECT_NE(past.TryExec("set default_transaction_read_only = off; "
                           "update ledger set amount = 0")
                  .find("read-only"),
              std::string::npos);
    EXPECT_NE(past.TryExec("create table t (x int)").find("read-only"), std::string::npos);
  }
  // The parent never changed, and writes after the pin do not show in it.
  EXPECT_EQ(prod.One("select string_agg(id || ':' || amount, ',' order by id) from ledger"),
            "1:101,2:200");
  ASSERT_EQ(prod.TryExec("delete from ledger"), "");
  {
    Pg past(EndpointUrl("production", "audit"));
    EXPECT_EQ(past.One("select count(*) from ledger"), "1");
  }

  // Through the shared proxy port with no CLI: options=endpoint=P/B@TIME, with a token of
  // the branch's endpoint.
  auto cred =
      daemon_->Call("POST", "credentials",
                    {{"endpoint", "projects/default/branches/production/endpoints/primary"}});
  std::string token = cred.body.value("token", std::string());
  std::string via_proxy = "host=127.0.0.1 port=" + std::to_string(daemon_->proxy_port()) +
                          " user=owner dbname=postgres password=" + token +
                          " options='endpoint=default/production@" + testutil::Rfc3339(then) + "'";
  {
    Pg past(via_proxy);
    EXPECT_EQ(past.One("select amount from ledger where id = 1"), "100");
  }

  // A time outside the history: OUT_OF_RANGE with the range.
  auto early =
      daemon_->Call("POST", "projects/default/branches/production/endpoints?endpoint_id=early",
                    {{"spec",
                      {{"endpoint_type", "ENDPOINT_TYPE_READ_ONLY"},
                       {"source_branch_time", "2001-01-01T00:00:00Z"}}}});
  EXPECT_EQ(early.status, 400);
  EXPECT_EQ(early.body.value("error_code", std::string()), "OUT_OF_RANGE");
  EXPECT_NE(early.body.value("message", std::string()).find("allowed range"), std::string::npos);

  // Bad specs get a clear 400 and make nothing.
  const std::string eps = "projects/default/branches/production/endpoints?endpoint_id=bad";
  for (const json& spec :
       {json{{"endpoint_type", "ENDPOINT_TYPE_READ_WRITE"}, {"source_branch_time", "-1h"}},
        json{{"endpoint_type", "ENDPOINT_TYPE_READ_ONLY"}, {"source_branch_time", "yesterday"}},
        json{{"endpoint_type", "ENDPOINT_TYPE_READ_ONLY"}, {"source_branch_lsn", "0/zz"}},
        json{{"endpoint_type", "ENDPOINT_TYPE_READ_ONLY"},
             {"source_branch_time", testutil::Rfc3339(then)},
             {"source_branch_lsn", "0/1"}}}) {
    auto bad = daemon_->Call("POST", eps, {{"spec", spec}});
    EXPECT_EQ(bad.status, 400) << spec.dump() << " " << bad.body.dump();
  }
  EXPECT_EQ(daemon_->Call("GET", "projects/default/branches/production/endpoints/bad").status, 404);
  // A garbled BRANCH@ through the proxy is refused before anything is made.
  std::string garbled = "host=127.0.0.1 port=" + std::to_string(daemon_->proxy_port()) +
                        " user=owner dbname=postgres password=" + token +
                        " options='endpoint=default/production@not-a-time'";
  PGconn* c = PQconnectdb(garbled.c_str());
  EXPECT_NE(PQstatus(c), CONNECTION_OK);
  PQfinish(c);

  auto gone = daemon_->Call("DELETE", "projects/default/branches/production/endpoints/audit");
  EXPECT_EQ(gone.status, 200) << gone.body.dump();
  EXPECT_EQ(daemon_->Call("GET", "projects/default/branches/production/endpoints/audit").status,
            404);
}

TEST_F(TimeTravelTest, AnotherBranchsTokenDoesNotOpenThePast) {
  auto dev = daemon_->Call("POST", "projects/default/branches?branch_id=tt-dev",
                           {{"spec", {{"ttl", "3600s"}}}});
  ASSERT_EQ(dev.status, 200) << dev.body.dump();
  auto cred = daemon_->Call("POST", "credentials",
                            {{"endpoint", "projects/default/branches/tt-dev/endpoints/primary"}});
  std::string token = cred.body.value("token", std::string());
  int64_t when_us = testutil::NowMicros() - 1'000'000;
  std::string when = testutil::Rfc3339(when_us);
  std::string conninfo = "host=127.0.0.1 port=" + std::to_string(daemon_->proxy_port()) +
                         " user=owner dbname=postgres password=" + token +
                         " options='endpoint=default/production@" + when + "'";
  PGconn* c = PQconnectdb(conninfo.c_str());
  EXPECT_NE(PQstatus(c), CONNECTION_OK);
  EXPECT_NE(std::string(PQerrorMessage(c)).find("token"), std::string::npos) << PQerrorMessage(c);
  PQfinish(c);
  // Nothing was made for a refused login.
  auto ep = daemon_->Call(
      "GET", "projects/default/branches/production/endpoints/at-" + std::to_string(when_us));
  EXPECT_EQ(ep.status, 404) << ep.body.dump();
}

TEST_F(TimeTravelTest, DeletingABranchTakesItsPinnedEndpoints) {
  auto dev = daemon_->Call("POST", "projects/default/branches?branch_id=tt-gone",
                           {{"spec", {{"ttl", "3600s"}}}});
  ASSERT_EQ(dev.status, 200) << dev.body.dump();
  {
    Pg pg(daemon_->Connect("tt-gone"));
    ASSERT_EQ(pg.TryExec("create table x (a int); insert into x values (1)"), "");
  }
  CliRun r = Arbor("psql tt-gone@-0s -- -tAc 'select count(*) from x'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  auto del = daemon_->Call("DELETE", "projects/default/branches/tt-gone");
  EXPECT_EQ(del.status, 200) << del.body.dump();
  EXPECT_EQ(daemon_->Call("GET", "projects/default/branches/tt-gone").status, 404);
}

TEST_F(TimeTravelTest, BisectSaysWhenTheCheckIsBadInputOrNeverFlips) {
  Pg prod(daemon_->Connect("production"));
  ASSERT_EQ(
      prod.TryExec("create table if not exists steady (x int); insert into steady values (1)"), "");
  int64_t start = testutil::NowMicros();
  ASSERT_EQ(prod.TryExec("insert into steady values (2)"), "");
  std::string since = " --since " + testutil::Rfc3339(start);
  CliRun r = Arbor("bisect production" + since + " --check 'select count(*) from steady'");
  EXPECT_EQ(r.rc, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("one boolean"), std::string::npos) << r.err;
  r = Arbor("bisect production" + since + " --check 'select true where false'");
  EXPECT_EQ(r.rc, 2) << r.out << r.err;
  r = Arbor("bisect production" + since + " --check 'select count(*) > 0 from steady'");
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("never turns false"), std::string::npos) << r.err;

  // The same through the API.
  auto api = daemon_->Call(
      "POST", "projects/default/branches/production:bisect",
      {{"check", "select count(*) > 0 from steady"}, {"since", testutil::Rfc3339(start)}});
  EXPECT_EQ(api.status, 200) << api.body.dump();
  EXPECT_EQ(api.body.value("found", true), false) << api.body.dump();
  api = daemon_->Call("POST", "projects/default/branches/production:bisect",
                      {{"since", testutil::Rfc3339(start)}});
  EXPECT_EQ(api.status, 400) << api.body.dump();
  api = daemon_->Call("POST", "projects/default/branches/production:bisect",
                      {{"check", "select 1"}, {"since", testutil::Rfc3339(start)}});
  EXPECT_EQ(api.status, 400) << api.body.dump();
  EXPECT_NE(api.body.value("message", std::string()).find("one boolean"), std::string::npos);
  // However a search ends, its standbys go with it (other tests' pinned endpoints may stay).
  auto eps = daemon_->Call("GET", "projects/default/branches/production/endpoints");
  for (const auto& e : eps.body["endpoints"]) {
    EXPECT_EQ(e.value("name", std::string()).find("bisect"), std::string::npos) << e.dump();
  }
}

}  // namespace
}  // namespace arbor
