// Undelete against the real daemon, real postgres, libpq and the arbor CLI: a deleted branch
// refuses logins, is listed with its purge time, and comes back with its rows on the same
// port; an id taken again by a new branch is refused with a sentence that offers
// ?new_branch_id=, which works; who may list, undelete and purge; and a purge is final and
// gives the space back to the disk. (The purge after the history window, at least an hour, is
// tested at the engine's level: engine_test.)

#include <gtest/gtest.h>
#include <httplib.h>
#include <libpq-fe.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "testutil/branches.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

namespace fs = std::filesystem;
using testutil::Daemon;
using testutil::json;
using testutil::Pg;

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// Bytes of the files under `dir`: what the store holds on disk.
uint64_t DiskBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2)) total += it->file_size(e2);
  }
  return total;
}

class Undelete : public testing::Test {
 protected:
  static void SetUpTestSuite() { d_ = Daemon::Start("undel").release(); }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static std::string Path(const std::string& branch) {
    return "projects/default/branches/" + branch;
  }
  // The deleted branches listed with ?show_deleted=true, by id.
  static std::map<std::string, json> Deleted(const std::string& token = "") {
    auto a = d_->Call("GET", "projects/default/branches?show_deleted=true", json(), token);
    EXPECT_EQ(a.status, 200) << a.body.dump();
    std::map<std::string, json> out;
    for (const auto& b : a.body["branches"]) {
      if (b["status"].value("deleted", false)) out[b.value("name", "")] = b;
    }
    return out;
  }
  static bool Listed(const std::string& branch) {
    auto a = d_->Call("GET", "projects/default/branches");
    for (const auto& b : a.body["branches"]) {
      if (b.value("name", "") == Path(branch)) return true;
    }
    return false;
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
  // Whether libpq can log in with `conninfo` (the proxy refuses a missing endpoint).
  static bool CanLogIn(const std::string& conninfo) {
    PGconn* c = PQconnectdb((conninfo + (conninfo.find('?') == std::string::npos ? "?" : "&") +
                             "connect_timeout=10")
                                .c_str());
    bool ok = PQstatus(c) == CONNECTION_OK;
    PQfinish(c);
    return ok;
  }
  static int PortOf(const std::string& conninfo) {
    size_t colon = conninfo.rfind(':');
    return std::stoi(conninfo.substr(colon + 1, conninfo.find('/', colon) - colon - 1));
  }

  static Daemon* d_;
};
Daemon* Undelete::d_ = nullptr;

TEST_F(Undelete, ADeletedBranchComesBackWithItsRowsOnTheSamePort) {
  testutil::Fork(d_, "gone", "production");
  const std::string url = d_->Connect("gone");
  ASSERT_FALSE(url.empty());
  {
    Pg pg(url);
    ASSERT_EQ(pg.TryExec("create table keep (v int); insert into keep values (42)"), "");
  }
  const int port = PortOf(url);

  auto del = d_->Call("DELETE", Path("gone"));
  ASSERT_EQ(del.status, 200) << del.body.dump();
  EXPECT_FALSE(CanLogIn(url)) << "the proxy let a login reach a deleted branch";
  EXPECT_EQ(d_->Call("GET", Path("gone")).status, 404);
  EXPECT_FALSE(Listed("gone"));

  auto deleted = Deleted();
  ASSERT_TRUE(deleted.count(Path("gone"))) << "not listed with show_deleted=true";
  const json& st = deleted[Path("gone")]["status"];
  EXPECT_EQ(st.value("current_state", ""), "DELETED");
  ASSERT_TRUE(st.contains("delete_time") && st.contains("purge_time")) << st.dump();
  // The project's history window is a day.
  std::string del_at = st.value("delete_time", ""), purge_at = st.value("purge_time", "");
  EXPECT_EQ(purge_at.substr(0, 10) > del_at.substr(0, 10), true) << del_at << " " << purge_at;
  ASSERT_EQ(st["endpoints"].size(), 1u) << st.dump();
  EXPECT_EQ(st["endpoints"][0].value("port", 0), port);

  auto back = d_->Call("POST", Path("gone") + ":undelete");
  ASSERT_EQ(back.status, 200) << back.body.dump();
  EXPECT_EQ(back.body["branch"].value("name", ""), Path("gone"));
  ASSERT_EQ(back.body["endpoints"].size(), 1u) << back.body.dump();
  EXPECT_EQ(back.body["endpoints"][0]["status"].value("port", 0), port);
  EXPECT_TRUE(Listed("gone"));
  EXPECT_FALSE(Deleted().count(Path("gone")));

  // The same connection string (same port, same token) reaches the same rows.
  Pg again(url);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.One("select v from keep"), "42");
  EXPECT_EQ(d_->Call("POST", Path("gone") + ":undelete").status, 404) << "undeleted twice";
}

TEST_F(Undelete, ATakenIdIsRefusedWithASentenceAndNewBranchIdWorks) {
  testutil::Fork(d_, "reuse", "production");
  testutil::ExecOn(d_, "reuse", "create table old (v int); insert into old values (1)");
  ASSERT_EQ(d_->Call("DELETE", Path("reuse")).status, 200);
  testutil::Fork(d_, "reuse", "production");  // a new branch takes the id

  auto refused = d_->Call("POST", Path("reuse") + ":undelete");
  EXPECT_EQ(refused.status, 409) << refused.body.dump();
  std::string msg = refused.body.value("message", "");
  EXPECT_NE(msg.find("taken again by a newer branch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("?new_branch_id="), std::string::npos) << msg;
  EXPECT_EQ(d_->Call("POST", Path("reuse") + ":undelete?new_branch_id=Bad_Id").status, 400);
  EXPECT_EQ(d_->Call("POST", Path("nosuch") + ":undelete").status, 404);

  auto back = d_->Call("POST", Path("reuse") + ":undelete?new_branch_id=reuse-old");
  ASSERT_EQ(back.status, 200) << back.body.dump();
  EXPECT_EQ(back.body["branch"].value("name", ""), Path("reuse-old"));
  EXPECT_EQ(testutil::OneOn(d_, "reuse-old", "select v from old"), "1");
  EXPECT_EQ(testutil::OneOn(d_, "reuse", "select count(*) from pg_tables where tablename='old'"),
            "0");
}

TEST_F(Undelete, ViewersListDevelopersUndeleteOnlyAdminsPurge) {
  testutil::Fork(d_, "acc", "production");
  const std::string viewer = Token("undel-viewer", "viewer");
  const std::string dev = Token("undel-dev", "developer");
  ASSERT_FALSE(viewer.empty());
  ASSERT_FALSE(dev.empty());
  EXPECT_EQ(d_->Call("DELETE", Path("acc"), json(), viewer).status, 403);
  ASSERT_EQ(d_->Call("DELETE", Path("acc"), json(), dev).status, 200);
  EXPECT_TRUE(Deleted(viewer).count(Path("acc")));
  EXPECT_EQ(d_->Call("POST", Path("acc") + ":undelete", json(), viewer).status, 403);
  EXPECT_EQ(d_->Call("DELETE", Path("acc") + "?purge=true", json(), dev).status, 403);
  EXPECT_TRUE(Deleted().count(Path("acc"))) << "a refused purge took the branch";
  EXPECT_EQ(d_->Call("POST", Path("acc") + ":undelete", json(), dev).status, 200);
  EXPECT_EQ(d_->Call("DELETE", Path("acc") + "?purge=maybe").status, 400);
  EXPECT_EQ(d_->Call("GET", "projects/default/branches?show_deleted=yes").status, 400);
}

TEST_F(Undelete, TheCliListsUndeletesAndPurges) {
  testutil::Fork(d_, "clidel", "production");
  auto del = testutil::RunArbor(d_->home(), "branch delete clidel");
  ASSERT_EQ(del.rc, 0) << del.err;
  EXPECT_NE(del.out.find("arbor branch undelete clidel"), std::string::npos) << del.out;
  auto list = testutil::RunArbor(d_->home(), "branch list --deleted");
  ASSERT_EQ(list.rc, 0) << list.err;
  EXPECT_NE(list.out.find("PURGE AT"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("clidel"), std::string::npos) << list.out;
  auto js = testutil::RunArbor(d_->home(), "branch list --deleted -o json");
  ASSERT_EQ(js.rc, 0) << js.err;
  json j = json::parse(js.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << js.out;
  bool found = false;
  for (const auto& b : j["branches"]) {
    found |= b.value("name", "") == Path("clidel") && b["status"].contains("purge_time");
  }
  EXPECT_TRUE(found) << js.out;
  auto undel = testutil::RunArbor(d_->home(), "branch undelete clidel --new-name clidel-back");
  ASSERT_EQ(undel.rc, 0) << undel.err;
  EXPECT_NE(undel.out.find("Undeleted branch " + Path("clidel-back")), std::string::npos)
      << undel.out;
  auto purge = testutil::RunArbor(d_->home(), "branch delete clidel-back --purge");
  ASSERT_EQ(purge.rc, 0) << purge.err;
  EXPECT_FALSE(Deleted().count(Path("clidel-back")));
  EXPECT_FALSE(Listed("clidel-back"));
  auto none = testutil::RunArbor(d_->home(), "branch undelete clidel-back");
  EXPECT_NE(none.rc, 0);
  EXPECT_NE(none.err.find("no deleted branch"), std::string::npos) << none.err;
}

TEST_F(Undelete, APurgeIsFinalAndFreesTheSpace) {
  testutil::Fork(d_, "big", "production");
  // About 40 MB of rows that compress poorly; the delete's shutdown checkpoint writes them.
  testutil::ExecOn(d_, "big",
                   "create table blob as select g, (select string_agg(md5(random()::text || g "
                   "|| x), '') from generate_series(1, 40) x) as pad "
                   "from generate_series(1, 30000) g");
  const std::string store = d_->home() + "/store";
  ASSERT_EQ(d_->Call("DELETE", Path("big")).status, 200);
  // Deleted, it still holds its space: its data is there for an undelete.
  auto deleted = Deleted();
  ASSERT_TRUE(deleted.count(Path("big")));
  EXPECT_GT(deleted[Path("big")]["status"].value("written_bytes", 0), 30'000'000)
      << deleted[Path("big")].dump();
  const uint64_t before = DiskBytes(store);

  auto purge = d_->Call("DELETE", Path("big") + "?purge=true");
  ASSERT_EQ(purge.status, 200) << purge.body.dump();
  EXPECT_FALSE(Deleted().count(Path("big")));
  EXPECT_EQ(d_->Call("POST", Path("big") + ":undelete").status, 404) << "a purge is final";
  // The compaction that frees the space runs on the store's own thread.
  uint64_t after = before;
  for (int i = 0; i < 60 && before - std::min(before, after) < 30'000'000; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    after = DiskBytes(store);
  }
  EXPECT_GE(before - std::min(before, after), 30'000'000u)
      << "store on disk: " << before << " bytes before the purge, " << after << " after";
}

}  // namespace
}  // namespace arbor
