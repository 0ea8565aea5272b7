// Snapshots (projects/P/branches/B/snapshots/S) against the real daemon, real postgres, psql's
// library and the arbor CLI: a snapshot holds its branch's state when it was taken, a branch
// made from it has that state (a row deleted on the source after the snapshot is there, and not
// on the source), what is in use cannot be deleted, bad input gets a clear 4xx, and a viewer
// token only reads.
//
// That a snapshot outlives the history window, and that GC frees a deleted snapshot's space,
// are tested at the engine and store level with the store's clock moved (control_test,
// storage_test): a project's history window is at least an hour, too long to wait for here.

#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <sstream>
#include <string>

#include "testutil/branches.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::json;

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

class Snapshots : public testing::Test {
 protected:
  static void SetUpTestSuite() { d_ = Daemon::Start("snap").release(); }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static std::string Path(const std::string& branch, const std::string& rest = "") {
    return "projects/default/branches/" + branch + "/snapshots" + rest;
  }
  static testutil::HttpAnswer Take(const std::string& branch, const std::string& id,
                                   const json& spec, const std::string& token = "") {
    return d_->Call("POST", Path(branch, "?snapshot_id=" + id), {{"spec", spec}}, token);
  }
  static testutil::CliRun Arbor(const std::string& args, const std::string& env = "") {
    return testutil::RunArbor(d_->home(), args, env);
  }
  static std::string Token(const std::string& name, const std::string& role) {
    json body{{"name", name}, {"role", role}, {"project", "default"}};
    httplib::Client cli(Slurp(d_->home() + "/api"));
    httplib::Headers h{{"Authorization", "Bearer " + Slurp(d_->home() + "/admin-token")}};
    auto r = cli.Post("/api/2.0/tokens", h, body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
    if (!r) return "";
    return json::parse(r->body).value("token", "");
  }

  static Daemon* d_;
};
Daemon* Snapshots::d_ = nullptr;

TEST_F(Snapshots, ABranchFromASnapshotHasItsStateAndTheSourceGoesOn) {
  testutil::Fork(d_, "app", "production");
  testutil::ExecOn(d_, "app",
                   "create table items (id int primary key, what text);"
                   "insert into items values (1, 'kept'), (2, 'deleted later')");

  auto taken = Take("app", "before-cleanup", {{"no_expiry", true}});
  ASSERT_EQ(taken.status, 200) << taken.body.dump();
  EXPECT_EQ(taken.body.value("name", ""), "projects/default/branches/app/snapshots/before-cleanup");
  EXPECT_EQ(taken.body["status"].value("source_branch", ""), "projects/default/branches/app");
  EXPECT_TRUE(taken.body["spec"].value("no_expiry", false));
  EXPECT_GT(taken.body["status"].value("logical_size_bytes", int64_t{0}), 1'000'000)
      << "a snapshot sees the whole database";
  EXPECT_EQ(taken.body["status"].value("exclusive_size_bytes", int64_t{-1}), 0)
      << "nothing is shadowed yet";

  // After the snapshot: the row goes, and the table is rewritten.
  testutil::ExecOn(d_, "app", "delete from items where id = 2");
  testutil::ExecOn(d_, "app", "vacuum full items");
  EXPECT_EQ(testutil::OneOn(d_, "app", "select count(*) from items"), "1");

  // With the CLI: a branch from the snapshot.
  auto made =
      Arbor("branch create restored --from-snapshot app/before-cleanup --no-expiry -o json");
  ASSERT_EQ(made.rc, 0) << made.out << made.err;
  json branch = json::parse(made.out, nullptr, false);
  ASSERT_TRUE(branch.is_object()) << made.out;
  EXPECT_EQ(branch["status"].value("source_snapshot", ""),
            "projects/default/branches/app/snapshots/before-cleanup");
  EXPECT_EQ(branch["status"].value("source_branch", ""), "projects/default/branches/app");
  EXPECT_EQ(testutil::OneOn(d_, "restored", "select string_agg(what, ',' order by id) from items"),
            "kept,deleted later");
  EXPECT_EQ(testutil::OneOn(d_, "app", "select string_agg(what, ',' order by id) from items"),
            "kept");
  // The branch from the snapshot is a branch like any other: it takes writes.
  testutil::ExecOn(d_, "restored", "insert into items values (3, 'new')");
  EXPECT_EQ(testutil::OneOn(d_, "restored", "select count(*) from items"), "3");
  EXPECT_EQ(testutil::OneOn(d_, "app", "select count(*) from items"), "1");

  // The full name works too, through the API.
  auto full =
      d_->Call("POST", "projects/default/branches?branch_id=restored2",
               {{"spec",
                 {{"source_snapshot", "projects/default/branches/app/snapshots/before-cleanup"},
                  {"ttl", "3600s"}}}});
  ASSERT_EQ(full.status, 200) << full.body.dump();
  EXPECT_EQ(testutil::OneOn(d_, "restored2", "select count(*) from items"), "2");

  // Listed, with what it alone keeps now that the source rewrote the table.
  auto list = Arbor("snapshot list app -o json");
  ASSERT_EQ(list.rc, 0) << list.out << list.err;
  json snaps = json::parse(list.out, nullptr, false);
  ASSERT_TRUE(snaps.is_object()) << list.out;
  ASSERT_EQ(snaps["snapshots"].size(), 1u) << list.out;
  auto human = Arbor("snapshot list");
  EXPECT_EQ(human.rc, 0);
  EXPECT_NE(human.out.find("before-cleanup"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("EXCLUSIVE"), std::string::npos) << human.out;

  // In use: neither the snapshot nor its branch can go, and each says why.
  auto refused = d_->Call("DELETE", Path("app", "/before-cleanup"));
  EXPECT_EQ(refused.status, 409) << refused.body.dump();
  EXPECT_NE(refused.body.value("message", "").find("projects/default/branches/restored"),
            std::string::npos)
      << refused.body.dump();
  auto branch_refused = d_->Call("DELETE", "projects/default/branches/app");
  EXPECT_EQ(branch_refused.status, 409) << branch_refused.body.dump();

  // Once the branches from it are gone, it goes (with the CLI), and then its branch can go.
  ASSERT_EQ(d_->Call("DELETE", "projects/default/branches/restored").status, 200);
  ASSERT_EQ(d_->Call("DELETE", "projects/default/branches/restored2").status, 200);
  auto snap_refused = d_->Call("DELETE", "projects/default/branches/app");
  EXPECT_EQ(snap_refused.status, 409) << snap_refused.body.dump();
  EXPECT_NE(snap_refused.body.value("message", "").find("delete the snapshots first"),
            std::string::npos)
      << snap_refused.body.dump();
  auto del = Arbor("snapshot delete app before-cleanup");
  EXPECT_EQ(del.rc, 0) << del.out << del.err;
  EXPECT_EQ(d_->Call("GET", Path("app", "/before-cleanup")).status, 404);
  EXPECT_EQ(d_->Call("DELETE", "projects/default/branches/app").status, 200);
}

TEST_F(Snapshots, BadInputGetsAClearErrorAndChangesNothing) {
  testutil::Fork(d_, "bad", "production");
  struct Case {
    std::string id;
    json spec;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"s1", json::object(), "Expiration must be specified"},
           {"s1", {{"ttl", "3600s"}, {"no_expiry", true}}, "only one"},
           {"s1", {{"no_expiry", true}, {"source_branch_time", "yesterday"}}, "RFC 3339"},
           {"s1",
            {{"no_expiry", true}, {"source_branch_time", "2001-01-01T00:00:00Z"}},
            "earliest time still available"},
           {"s1", {{"no_expiry", true}, {"is_protected", true}}, "unknown field"},
           {"Bad_Id", {{"no_expiry", true}}, "snapshot id"},
       }) {
    auto a = Take("bad", c.id, c.spec);
    EXPECT_EQ(a.status, 400) << c.spec.dump() << " -> " << a.body.dump();
    EXPECT_NE(a.body.value("message", "").find(c.says), std::string::npos)
        << c.spec.dump() << " -> " << a.body.dump();
  }
  EXPECT_EQ(d_->Call("POST", Path("bad"), {{"spec", {{"no_expiry", true}}}}).status, 400)
      << "no snapshot_id";
  EXPECT_EQ(Take("nosuch", "s1", {{"no_expiry", true}}).status, 404);
  auto list = d_->Call("GET", Path("bad"));
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(list.body["snapshots"].empty()) << list.body.dump();

  // A taken snapshot: a second of the same id is refused; a branch names it wrongly.
  ASSERT_EQ(Take("bad", "once", {{"ttl", "3600s"}}).status, 200);
  EXPECT_EQ(Take("bad", "once", {{"ttl", "3600s"}}).status, 409);
  for (const json& spec : {json{{"source_snapshot", "bad/nosuch"}, {"no_expiry", true}},
                           json{{"source_snapshot", "once"}, {"no_expiry", true}},
                           json{{"source_snapshot", "bad/once"},
                                {"source_branch_time", "2026-01-01T00:00:00Z"},
                                {"no_expiry", true}},
                           json{{"source_snapshot", "projects/other/branches/bad/snapshots/once"},
                                {"no_expiry", true}}}) {
    auto a = d_->Call("POST", "projects/default/branches?branch_id=wrong", {{"spec", spec}});
    EXPECT_TRUE(a.status == 400 || a.status == 404) << spec.dump() << " -> " << a.body.dump();
  }
  EXPECT_EQ(d_->Call("GET", "projects/default/branches/wrong").status, 404);
  auto got = d_->Call("GET", Path("bad", "/once"));
  ASSERT_EQ(got.status, 200) << got.body.dump();
  EXPECT_FALSE(got.body["status"].value("expire_time", "").empty());
  EXPECT_EQ(d_->Call("DELETE", Path("bad", "/once")).status, 200);
  EXPECT_EQ(d_->Call("DELETE", Path("bad", "/once")).status, 404);
}

TEST_F(Snapshots, AViewerOnlyReadsAndTheScheduleIsAProjectSetting) {
  testutil::Fork(d_, "acc", "production");
  ASSERT_EQ(Take("acc", "mine", {{"no_expiry", true}}).status, 200);
  const std::string viewer = Token("snap-viewer", "viewer");
  const std::string dev = Token("snap-dev", "developer");
  ASSERT_FALSE(viewer.empty());
  ASSERT_FALSE(dev.empty());

  EXPECT_EQ(d_->Call("GET", Path("acc"), json(), viewer).status, 200);
  EXPECT_EQ(d_->Call("GET", Path("acc", "/mine"), json(), viewer).status, 200);
  EXPECT_EQ(Take("acc", "theirs", {{"no_expiry", true}}, viewer).status, 403);
  EXPECT_EQ(d_->Call("DELETE", Path("acc", "/mine"), json(), viewer).status, 403);
  EXPECT_EQ(d_->Call("GET", Path("acc", "/mine")).status, 200) << "the viewer deleted it";
  auto cli = Arbor("snapshot create acc theirs --no-expiry", "ARBOR_TOKEN=" + viewer);
  EXPECT_NE(cli.rc, 0);
  EXPECT_NE(cli.err.find("viewer"), std::string::npos) << cli.err;

  // A developer takes and deletes snapshots of unprotected branches.
  EXPECT_EQ(Take("acc", "devs", {{"no_expiry", true}}, dev).status, 200);
  EXPECT_EQ(d_->Call("DELETE", Path("acc", "/devs"), json(), dev).status, 200);

  // The schedule: an admin's project setting, validated, shown on the project.
  const std::string mask = "projects/default?update_mask=spec.snapshot_schedule";
  json sched{
      {"spec", {{"snapshot_schedule", {{"branch", "acc"}, {"every", "86400s"}, {"keep", 7}}}}}};
  EXPECT_EQ(d_->Call("PATCH", mask, sched, dev).status, 403);
  for (const json& bad :
       {json{{"branch", "acc"}, {"every", "10s"}, {"keep", 7}},
        json{{"branch", "acc"}, {"every", "86400s"}, {"keep", 0}},
        json{{"branch", "acc"}, {"every", "86400s"}},
        json{{"branch", "acc"}, {"every", "daily"}, {"keep", 1}},
        json{{"branch", "acc"}, {"every", "86400s"}, {"keep", 7}, {"at", "noon"}}}) {
    auto a = d_->Call("PATCH", mask, {{"spec", {{"snapshot_schedule", bad}}}});
    EXPECT_EQ(a.status, 400) << bad.dump() << " -> " << a.body.dump();
  }
  auto set = d_->Call("PATCH", mask, sched);
  ASSERT_EQ(set.status, 200) << set.body.dump();
  EXPECT_EQ(set.body["spec"]["snapshot_schedule"],
            json({{"branch", "projects/default/branches/acc"}, {"every", "86400s"}, {"keep", 7}}));
  auto off = d_->Call("PATCH", mask, {{"spec", json::object()}});
  ASSERT_EQ(off.status, 200) << off.body.dump();
  EXPECT_FALSE(off.body["spec"].contains("snapshot_schedule"));

  // The same with the CLI: set (of the default branch unless another is named), shown by
  // `project get`, refused for a developer, and removed.
  cli = Arbor("project update --snapshot-every 1h --snapshot-keep 3");
  ASSERT_EQ(cli.rc, 0) << cli.out << cli.err;
  EXPECT_NE(cli.out.find("snapshot schedule   production every 3600s, keep 3"), std::string::npos)
      << cli.out;
  EXPECT_EQ(
      d_->Call("GET", "projects/default").body["spec"]["snapshot_schedule"],
      json({{"branch", "projects/default/branches/production"}, {"every", "3600s"}, {"keep", 3}}));
  cli = Arbor("project update --snapshot-every 1d --snapshot-keep 7 --snapshot-branch acc",
              "ARBOR_TOKEN=" + dev);
  EXPECT_NE(cli.rc, 0) << cli.out;
  EXPECT_EQ(Arbor("project update --snapshot-keep 7").rc, 2);  // no --snapshot-every
  EXPECT_EQ(d_->Call("GET", "projects/default").body["spec"]["snapshot_schedule"]["keep"], 3);
  cli = Arbor("project update --no-snapshot-schedule");
  ASSERT_EQ(cli.rc, 0) << cli.out << cli.err;
  EXPECT_NE(cli.out.find("snapshot schedule   none"), std::string::npos) << cli.out;
  EXPECT_FALSE(d_->Call("GET", "projects/default").body["spec"].contains("snapshot_schedule"));
}

}  // namespace
}  // namespace arbor
