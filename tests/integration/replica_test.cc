// Read replicas (ENDPOINT_TYPE_READ_ONLY without a pinned time) against the real daemon, real
// postgres and libpq: a replica serves its branch's rows, sees what the primary commits,
// refuses writes with PostgreSQL's own error, keeps serving while the primary is suspended
// and catches up when it comes back, has its own port and tokens, shows its replay lag, and
// follows its branch through a reset and a delete.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "testutil/branches.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::json;
using testutil::Pg;

class Replicas : public testing::Test {
 protected:
  static void SetUpTestSuite() { d_ = Daemon::Start("rr").release(); }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static std::string Endpoints(const std::string& branch, const std::string& rest = "") {
    return "projects/default/branches/" + branch + "/endpoints" + rest;
  }
  static testutil::HttpAnswer MakeReplica(const std::string& branch, const std::string& id) {
    return d_->Call("POST", Endpoints(branch, "?endpoint_id=" + id),
                    {{"spec", {{"endpoint_type", "ENDPOINT_TYPE_READ_ONLY"}}}});
  }
  // A token for endpoint `ep` of `branch` (as owner).
  static std::string Token(const std::string& branch, const std::string& ep) {
    auto cred = d_->Call("POST", "credentials",
                         {{"endpoint", "projects/default/branches/" + branch + "/endpoints/" + ep},
                          {"ttl", "3600s"}});
    EXPECT_EQ(cred.status, 200) << cred.body.dump();
    return cred.body.value("token", "");
  }
  // A libpq conninfo for endpoint `ep` of `branch` through its own port, with `token` (a fresh
  // one of its own when empty).
  static std::string ConnectTo(const std::string& branch, const std::string& ep,
                               std::string token = "") {
    auto got = d_->Call("GET", Endpoints(branch, "/" + ep));
    EXPECT_EQ(got.status, 200) << got.body.dump();
    if (token.empty()) token = Token(branch, ep);
    return "host=127.0.0.1 port=" + std::to_string(got.body["status"].value("port", 0)) +
           " user=owner dbname=postgres sslmode=disable connect_timeout=60 password=" + token;
  }
  // Polls `sql` on the endpoint until it answers `want` (a replica applies the primary's WAL
  // shortly after the commit); returns the last answer.
  static std::string AwaitOn(const std::string& conninfo, const std::string& sql,
                             const std::string& want) {
    std::string got;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    Pg pg(conninfo);
    if (!pg.ok()) return "no connection";
    while (std::chrono::steady_clock::now() < deadline) {
      got = pg.One(sql);
      if (got == want) return got;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return got;
  }
  static json Status(const std::string& branch, const std::string& ep) {
    auto got = d_->Call("GET", Endpoints(branch, "/" + ep));
    EXPECT_EQ(got.status, 200) << got.body.dump();
    return got.body.value("status", json::object());
  }

  static Daemon* d_;
};
Daemon* Replicas::d_ = nullptr;

TEST_F(Replicas, AReplicaFollowsItsPrimaryAndRefusesWrites) {
  testutil::Fork(d_, "shop", "production");
  testutil::ExecOn(d_, "shop", "create table orders (id int primary key); insert into orders "
                               "values (1)");
  auto made = MakeReplica("shop", "reader");
  ASSERT_EQ(made.status, 200) << made.body.dump();
  EXPECT_EQ(made.body["spec"].value("endpoint_type", ""), "ENDPOINT_TYPE_READ_ONLY");
  EXPECT_FALSE(made.body["spec"].contains("source_branch_time")) << "not a pinned endpoint";
  EXPECT_EQ(made.body["status"].value("replication_state", ""), "STOPPED");
  auto primary = d_->Call("GET", Endpoints("shop", "/primary"));
  EXPECT_NE(made.body["status"].value("port", 0), primary.body["status"].value("port", 1))
      << "a replica has its own port";

  std::string reader = ConnectTo("shop", "reader");
  EXPECT_EQ(AwaitOn(reader, "select count(*) from orders", "1"), "1");
  {
    Pg pg(reader);
    ASSERT_TRUE(pg.ok());
    EXPECT_EQ(pg.One("select pg_is_in_recovery()"), "t");
    std::string err = pg.TryExec("insert into orders values (99)");
    EXPECT_NE(err.find("read-only transaction"), std::string::npos) << err;
  }

  // A commit on the primary reaches the replica by streaming.
  testutil::ExecOn(d_, "shop", "insert into orders values (2)");
  EXPECT_EQ(AwaitOn(reader, "select count(*) from orders", "2"), "2");
  EXPECT_EQ(AwaitOn(reader, "select max(id) from orders", "2"), "2");
  json st = Status("shop", "reader");
  EXPECT_EQ(st.value("current_state", ""), "ACTIVE");
  EXPECT_EQ(st.value("replication_state", ""), "STREAMING") << st.dump();
  EXPECT_TRUE(st.contains("replay_lag")) << st.dump();

  // The primary's token is not the replica's: each endpoint has its own credentials.
  {
    std::string with_primary_token = ConnectTo("shop", "reader", Token("shop", "primary"));
    PGconn* c = PQconnectdb(with_primary_token.c_str());
    EXPECT_NE(PQstatus(c), CONNECTION_OK) << "the primary's token opened the replica";
    PQfinish(c);
  }

  // The primary suspended: the replica still serves the branch.
  auto stopped = d_->Call("POST", Endpoints("shop", "/primary:stop"));
  ASSERT_EQ(stopped.status, 200) << stopped.body.dump();
  EXPECT_EQ(AwaitOn(reader, "select count(*) from orders", "2"), "2");
  EXPECT_EQ(Status("shop", "reader").value("replication_state", ""), "PRIMARY_SUSPENDED");
  // ...and catches up once it is back.
  testutil::ExecOn(d_, "shop", "insert into orders values (3)");
  EXPECT_EQ(AwaitOn(reader, "select count(*) from orders", "3"), "3");
}

TEST_F(Replicas, SeveralReplicasFollowOneBranchAndItsResetAndDelete) {
  testutil::Fork(d_, "qa", "production");
  testutil::ExecOn(d_, "qa", "create table t (v text); insert into t values ('qa')");
  ASSERT_EQ(MakeReplica("qa", "r1").status, 200);
  ASSERT_EQ(MakeReplica("qa", "r2").status, 200);
  EXPECT_EQ(MakeReplica("qa", "r1").status, 409) << "the same id twice";
  std::string r1 = ConnectTo("qa", "r1");
  std::string r2 = ConnectTo("qa", "r2");
  EXPECT_EQ(AwaitOn(r1, "select count(*) from t", "1"), "1");
  EXPECT_EQ(AwaitOn(r2, "select count(*) from t", "1"), "1");
  testutil::ExecOn(d_, "qa", "insert into t values ('more')");
  EXPECT_EQ(AwaitOn(r1, "select count(*) from t", "2"), "2");
  EXPECT_EQ(AwaitOn(r2, "select count(*) from t", "2"), "2");

  // A reset gives the branch its parent's state: the replicas follow it (production has no t).
  auto reset = d_->Call("POST", "projects/default/branches/qa:reset", json::object());
  ASSERT_EQ(reset.status, 200) << reset.body.dump();
  {
    Pg pg(ConnectTo("qa", "r1"));
    ASSERT_TRUE(pg.ok());
    EXPECT_EQ(pg.One("select count(*) from pg_class where relname = 't'"), "0")
        << "the replica still serves the state before the reset";
  }

  // A replica may be deleted; a branch with replicas may be deleted.
  EXPECT_EQ(d_->Call("DELETE", Endpoints("qa", "/r2")).status, 200);
  auto list = d_->Call("GET", Endpoints("qa"));
  ASSERT_EQ(list.status, 200);
  for (const auto& e : list.body["endpoints"]) EXPECT_NE(e.value("name", ""), "r2");
  EXPECT_EQ(list.body["endpoints"].size(), 2u) << list.body.dump();
  auto del = d_->Call("DELETE", "projects/default/branches/qa");
  EXPECT_EQ(del.status, 200) << del.body.dump();
  EXPECT_EQ(d_->Call("GET", Endpoints("qa", "/r1")).status, 404);
}

TEST_F(Replicas, BadRequestsGetAClearError) {
  // An unknown branch is a clear 404; a pinned-field mix is a clear 400.
  EXPECT_EQ(MakeReplica("nosuch", "r").status, 404);
  auto mixed = d_->Call("POST", Endpoints("production", "?endpoint_id=bad"),
                        {{"spec", {{"endpoint_type", "ENDPOINT_TYPE_READ_WRITE"},
                                   {"source_branch_time", "2020-01-01T00:00:00Z"}}}});
  EXPECT_EQ(mixed.status, 400) << mixed.body.dump();
}

}  // namespace
}  // namespace arbor
