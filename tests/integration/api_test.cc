// The REST API and the daemon, through the real binary: bad input gets a clear error and
// changes nothing; expiry; one daemon per data directory; kill -9 loses nothing committed.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::json;
using testutil::Pg;

class ApiTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = Daemon::Start("api").release(); }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }
  static Daemon* daemon_;
};
Daemon* ApiTest::daemon_ = nullptr;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

TEST_F(ApiTest, EmbeddedDefaultExists) {
  auto p = daemon_->Call("GET", "projects/default");
  ASSERT_EQ(p.status, 200) << p.body.dump();
  EXPECT_EQ(p.body["status"]["default_branch"], "projects/default/branches/production");
  EXPECT_EQ(p.body["spec"]["history_retention_duration"], "86400s");
  auto b = daemon_->Call("GET", "projects/default/branches/production");
  ASSERT_EQ(b.status, 200);
  EXPECT_EQ(b.body["status"]["default"], true);
  EXPECT_EQ(b.body["status"]["current_state"], "READY");
  EXPECT_GT(b.body["status"]["logical_size_bytes"].get<uint64_t>(), 10u << 20);
  auto e = daemon_->Call("GET", "projects/default/branches/production/endpoints/primary");
  ASSERT_EQ(e.status, 200);
  EXPECT_EQ(e.body["status"]["current_state"], "ACTIVE");
  // Item 4, "One permanent password opens everything": the endpoint's connection string
  // carries no password; a token (or a role password) is given apart from it.
  EXPECT_EQ(e.body["status"]["connection_string"],
            "postgresql://owner@127.0.0.1:" + std::to_string(e.body["status"].value("port", 0)) +
                "/postgres");
  Pg pg(daemon_->Connect("production"));
  EXPECT_EQ(pg.One("select 1"), "1");
  EXPECT_EQ(pg.One("select current_user"), "owner");
}

TEST_F(ApiTest, BadInputGetsClearErrorsAndChangesNothing) {
  auto before = daemon_->Call("GET", "projects/default/branches");
  ASSERT_EQ(before.status, 200);

  // Expiration is required, and the message names all three fields.
  auto none = daemon_->Call("POST", "projects/default/branches?branch_id=noexp",
                            json{{"spec", json::object()}});
  EXPECT_EQ(none.status, 400);
  EXPECT_EQ(none.body["message"],
            "Expiration must be specified: set spec.ttl, spec.expire_time or spec.no_expiry");
  auto two = daemon_->Call("POST", "projects/default/branches?branch_id=two",
                           json{{"spec", {{"ttl", "3600s"}, {"no_expiry", true}}}});
  EXPECT_EQ(two.status, 400);
  // Bad branch names.
  for (std::string bad : std::vector<std::string>{"Upper", "9starts-with-digit", "has_underscore",
                                                  "x" + std::string(63, 'y')}) {
    auto a = daemon_->Call("POST", "projects/default/branches?branch_id=" + bad,
                           json{{"spec", {{"no_expiry", true}}}});
    EXPECT_EQ(a.status, 400) << bad;
    EXPECT_EQ(a.body["error_code"], "INVALID_PARAMETER_VALUE") << bad;
  }
  // A path traversal is not an id either.
  auto traversal = daemon_->Call("GET", "projects/default/branches/..%2Fx");
  EXPECT_TRUE(traversal.status == 400 || traversal.status == 404) << traversal.status;
  auto dots = daemon_->Call("POST", "projects/default/branches?branch_id=..%2Fx",
                            json{{"spec", {{"no_expiry", true}}}});
  EXPECT_EQ(dots.status, 400);
  auto empty = daemon_->Call(
      "POST", "projects/default/branches?branch_id=", json{{"spec", {{"no_expiry", true}}}});
  EXPECT_EQ(empty.status, 400);
  // Unknown fields are refused, not ignored.
  auto unknown = daemon_->Call("POST", "projects/default/branches?branch_id=typo",
                               json{{"spec", {{"no_expiry", true}, {"is_protectd", true}}}});
  EXPECT_EQ(unknown.status, 400);
  EXPECT_NE(unknown.body["message"].get<std::string>().find("is_protectd"), std::string::npos);
  // Wrong types and garbage bodies.
  auto wrong_type = daemon_->Call("POST", "projects/default/branches?branch_id=typed",
                                  json{{"spec", {{"no_expiry", "yes"}}}});
  EXPECT_EQ(wrong_type.status, 400);
  httplib::Client cli(Slurp(daemon_->home() + "/api"));
  httplib::Headers h{{"Authorization", "Bearer " + Slurp(daemon_->home() + "/admin-token")}};
  auto garbled = cli.Post("/api/2.0/postgres/projects/default/branches?branch_id=garbled", h,
                          "{\"spec\": {\"no_expiry\": tru", "application/json");
  ASSERT_TRUE(garbled);
  EXPECT_EQ(garbled->status, 400);
  EXPECT_NE(garbled->body.find("not valid JSON"), std::string::npos);
  auto huge = cli.Post("/api/2.0/postgres/projects/default/branches?branch_id=huge", h,
                       std::string(2 << 20, ' '), "application/json");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413);
  EXPECT_NE(huge->body.find("larger than 1 MiB"), std::string::npos);
  // Unknown things.
  // A 404 that any unmatched route would also give proves nothing: the answer must say that
  // the resource, not the route, is missing.
  for (const auto& [path, what] : std::vector<std::pair<std::string, std::string>>{
           {"projects/nope/branches", "project projects/nope does not exist"},
           {"projects/default/branches/nope",
            "branch projects/default/branches/nope does not exist"}}) {
    auto missing = daemon_->Call("GET", path);
    EXPECT_EQ(missing.status, 404) << path;
    EXPECT_EQ(missing.body.value("error_code", ""), "RESOURCE_DOES_NOT_EXIST") << path;
    EXPECT_EQ(missing.body.value("message", ""), what) << path;
  }
  auto no_route = daemon_->Call("GET", "projects/default/nothing-here");
  EXPECT_EQ(no_route.status, 404);
  EXPECT_EQ(no_route.body.value("error_code", ""), "ENDPOINT_NOT_FOUND");
  auto bad_ttl = daemon_->Call("POST", "projects/default/branches?branch_id=ttl",
                               json{{"spec", {{"ttl", "an hour"}}}});
  EXPECT_EQ(bad_ttl.status, 400);
  auto bad_window = daemon_->Call("POST", "projects?project_id=tiny",
                                  json{{"spec", {{"history_retention_duration", "60s"}}}});
  EXPECT_EQ(bad_window.status, 400);
  EXPECT_NE(bad_window.body["message"].get<std::string>().find("3600s"), std::string::npos);

  auto after = daemon_->Call("GET", "projects/default/branches");
  EXPECT_EQ(after.body["branches"].size(), before.body["branches"].size());
}

TEST_F(ApiTest, WrongTokenIsRefused) {
  httplib::Client cli(Slurp(daemon_->home() + "/api"));
  auto none = cli.Get("/api/2.0/postgres/projects");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  std::string token = Slurp(daemon_->home() + "/admin-token");
  std::string forged = token;
  forged[0] = forged[0] == 'a' ? 'b' : 'a';
  auto bad = cli.Get("/api/2.0/postgres/projects", {{"Authorization", "Bearer " + forged}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
  EXPECT_NE(bad->body.find("UNAUTHENTICATED"), std::string::npos);
  // The token file is private.
  struct stat st;
  ASSERT_EQ(stat((daemon_->home() + "/admin-token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ApiTest, ProtectedAndExpiringBranches) {
  auto p = daemon_->Call("POST", "projects/default/branches?branch_id=guarded",
                         json{{"spec", {{"no_expiry", true}, {"is_protected", true}}}});
  ASSERT_EQ(p.status, 200) << p.body.dump();
  auto del = daemon_->Call("DELETE", "projects/default/branches/guarded");
  EXPECT_EQ(del.status, 409);
  EXPECT_NE(del.body["message"].get<std::string>().find("protected"), std::string::npos);
  auto unprotect =
      daemon_->Call("PATCH", "projects/default/branches/guarded?update_mask=spec.is_protected",
                    json{{"spec", {{"is_protected", false}}}});
  ASSERT_EQ(unprotect.status, 200) << unprotect.body.dump();
  EXPECT_EQ(daemon_->Call("DELETE", "projects/default/branches/guarded").status, 200);

  // A protected branch, the root and a branch with children never expire.
  auto prot = daemon_->Call("POST", "projects/default/branches?branch_id=prot-ttl",
                            json{{"spec", {{"ttl", "3600s"}, {"is_protected", true}}}});
  EXPECT_EQ(prot.status, 409);
  auto root_ttl =
      daemon_->Call("PATCH", "projects/default/branches/production?update_mask=spec.expiration",
                    json{{"spec", {{"ttl", "3600s"}}}});
  EXPECT_EQ(root_ttl.status, 409);
  EXPECT_EQ(daemon_->Call("GET", "projects/default/branches/production")
                .body["status"]
                .contains("expire_time"),
            false);

  // A branch with a 2 s TTL is gone once the reaper has run (every 5 s).
  auto e = daemon_->Call("POST", "projects/default/branches?branch_id=ephemeral",
                         json{{"spec", {{"ttl", "2s"}}}});
  ASSERT_EQ(e.status, 200) << e.body.dump();
  EXPECT_TRUE(e.body["status"].contains("expire_time"));
  // Its compute runs, on a mount named after the endpoint's uid.
  auto ep = daemon_->Call("POST", "projects/default/branches/ephemeral/endpoints/primary:start");
  ASSERT_EQ(ep.status, 200) << ep.body.dump();
  std::string mount_name = ep.body["uid"];
  auto mounted = [&] {
    std::ifstream mounts("/proc/mounts");
    std::string line;
    while (std::getline(mounts, line)) {
      if (line.find(mount_name) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(mounted());
  int gone_after = -1;
  for (int i = 0; i < 30; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (daemon_->Call("GET", "projects/default/branches/ephemeral").status == 404) {
      gone_after = i;
      break;
    }
  }
  EXPECT_GE(gone_after, 2) << "expired before its TTL";
  EXPECT_NE(gone_after, -1) << "the expired branch is still there";
  EXPECT_FALSE(mounted()) << "the expired branch's mount is still there";
}

TEST_F(ApiTest, ConcurrentCreatesOfOneNameHaveOneWinner) {
  for (int round = 0; round < 50; ++round) {
    std::string name = "race-" + std::to_string(round);
    int statuses[2] = {0, 0};
    std::thread a([&] {
      statuses[0] = daemon_
                        ->Call("POST", "projects/default/branches?branch_id=" + name,
                               json{{"spec", {{"no_expiry", true}}}})
                        .status;
    });
    std::thread b([&] {
      statuses[1] = daemon_
                        ->Call("POST", "projects/default/branches?branch_id=" + name,
                               json{{"spec", {{"no_expiry", true}}}})
                        .status;
    });
    a.join();
    b.join();
    EXPECT_EQ(std::min(statuses[0], statuses[1]), 200) << "round " << round;
    EXPECT_EQ(std::max(statuses[0], statuses[1]), 409) << "round " << round;
    EXPECT_EQ(daemon_->Call("DELETE", "projects/default/branches/" + name).status, 200);
  }
}

TEST_F(ApiTest, SecondUpReportsTheRunningDaemon) {
  std::string cmd = std::string(ARBOR_BINARY) + " up --data-dir " + daemon_->home() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  EXPECT_EQ(pclose(p), 0);
  EXPECT_NE(out.find("already running (pid " + std::to_string(daemon_->pid())), std::string::npos)
      << out;
  EXPECT_NE(out.find("postgresql://"), std::string::npos) << out;
}

// A commit PostgreSQL acknowledged survives a kill -9 of the Arbor daemon.
TEST_F(ApiTest, KillNineOfTheDaemonLosesNoCommit) {
  std::string conn = daemon_->Connect("production");
  {
    Pg pg(conn);
    pg.Query("create table survive(n int)");
    pg.Query("insert into survive select generate_series(1, 500)");
  }
  daemon_->KillAndRestart();
  Pg pg(daemon_->Connect("production"));
  EXPECT_EQ(pg.One("select count(*) from survive"), "500");
  EXPECT_EQ(testutil::AmCheck(daemon_->AdminConnect("production")), "");
  pg.Query("drop table survive");
}

// Endpoints that were running come back by themselves after the daemon restarts.
TEST_F(ApiTest, RunningEndpointsComeBackAfterARestart) {
  ASSERT_EQ(daemon_
                ->Call("POST", "projects/default/branches?branch_id=comes-back",
                       json{{"spec", {{"no_expiry", true}}}})
                .status,
            200);
  ASSERT_EQ(daemon_
                ->Call("POST", "projects/default/branches?branch_id=stays-idle",
                       json{{"spec", {{"no_expiry", true}}}})
                .status,
            200);
  Pg(daemon_->Connect("comes-back")).Query("create table kept(x int)");
  daemon_->KillAndRestart();
  auto e = daemon_->Call("GET", "projects/default/branches/comes-back/endpoints/primary");
  EXPECT_EQ(e.body["status"]["current_state"], "ACTIVE");
  auto idle = daemon_->Call("GET", "projects/default/branches/stays-idle/endpoints/primary");
  EXPECT_EQ(idle.body["status"]["current_state"], "IDLE");
  Pg pg(daemon_->Connect("comes-back"));
  EXPECT_EQ(pg.One("select count(*) from kept"), "0");
  daemon_->Call("DELETE", "projects/default/branches/comes-back");
  daemon_->Call("DELETE", "projects/default/branches/stays-idle");
}

// kill -9 in the middle of branch creations: every acknowledged branch is there and works,
// and no half-made branch shows.
TEST_F(ApiTest, KillNineDuringBranchCreationsKeepsEveryAcknowledgedBranch) {
  std::vector<std::string> acked;
  std::atomic<bool> started{false};
  std::thread creator([&] {
    for (int i = 0; i < 1000; ++i) {
      std::string name = "k9-" + std::to_string(i);
      auto a = daemon_->Call("POST", "projects/default/branches?branch_id=" + name,
                             json{{"spec", {{"no_expiry", true}}}});
      if (a.status != 200) return;  // the daemon died under us
      acked.push_back(name);
      started = true;
    }
  });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  daemon_->Kill9();
  creator.join();
  ASSERT_GT(acked.size(), 0u);
  daemon_->Relaunch();

  auto list = daemon_->Call("GET", "projects/default/branches");
  ASSERT_EQ(list.status, 200);
  std::set<std::string> present;
  for (const auto& b : list.body["branches"]) {
    std::string name = b["name"];
    std::string id = name.substr(name.rfind('/') + 1);
    present.insert(id);
    // Whatever exists is whole: it has its endpoint.
    auto eps = daemon_->Call("GET", "projects/default/branches/" + id + "/endpoints");
    EXPECT_EQ(eps.status, 200) << id;
    EXPECT_EQ(eps.body["endpoints"].size(), 1u) << id;
  }
  for (const auto& name : acked) EXPECT_TRUE(present.count(name)) << name << " was acknowledged";
  EXPECT_LE(present.size(), acked.size() + 2);  // production, and at most the one in flight
  // The last acknowledged one works.
  Pg pg(daemon_->Connect(acked.back()));
  EXPECT_EQ(pg.One("select 1"), "1");
  for (const auto& id : present) {
    if (id != "production") daemon_->Call("DELETE", "projects/default/branches/" + id);
  }
}

}  // namespace
}  // namespace arbor
