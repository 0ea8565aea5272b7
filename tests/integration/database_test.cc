// Databases of a branch (projects/P/branches/B/databases/D) against the real daemon, real
// postgres and libpq: a database made through the API takes connections and rows, lives on its
// branch only (a later child has it, the parent does not), is not dropped under a connected
// session unless forced, and the API's token roles and protected branches decide who may
// make and drop one.

#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "testutil/branches.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

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

class Databases : public testing::Test {
 protected:
  static void SetUpTestSuite() { d_ = Daemon::Start("db").release(); }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static std::string Path(const std::string& branch, const std::string& rest = "") {
    return "projects/default/branches/" + branch + "/databases" + rest;
  }
  // A request with `token` (the admin's when empty); path under /api/2.0/postgres/.
  static testutil::HttpAnswer As(const std::string& token, const std::string& method,
                                 const std::string& path, const json& body = json()) {
    return d_->Call(method, path, body, token);
  }
  static testutil::HttpAnswer Create(const std::string& branch, const json& db,
                                     const std::string& token = "") {
    return As(token, "POST", Path(branch), {{"database", db}});
  }
  static std::set<std::string> Names(const std::string& branch) {
    auto a = d_->Call("GET", Path(branch));
    EXPECT_EQ(a.status, 200) << a.body.dump();
    std::set<std::string> out;
    for (const auto& d : a.body["databases"]) out.insert(d.value("name", ""));
    return out;
  }
  static void MakeBranch(const std::string& id, const std::string& parent = "production") {
    testutil::Fork(d_, id, parent);
  }
  // The branch's connection string for database `db`, as owner.
  static std::string ConnectTo(const std::string& branch, const std::string& db) {
    std::string url = d_->Connect(branch);
    size_t at = url.find("/postgres");
    EXPECT_NE(at, std::string::npos) << url;
    if (at == std::string::npos) return url;
    return url.replace(at, 9, "/" + db);
  }
  static std::string Token(const std::string& name, const std::string& role,
                           const std::string& project = "default") {
    json body{{"name", name}, {"role", role}};
    if (!project.empty()) body["project"] = project;
    httplib::Client cli(Slurp(d_->home() + "/api"));
    httplib::Headers h{{"Authorization", "Bearer " + Slurp(d_->home() + "/admin-token")}};
    auto r = cli.Post("/api/2.0/tokens", h, body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
    if (!r) return "";
    return json::parse(r->body).value("token", "");
  }

  static Daemon* d_;
};
Daemon* Databases::d_ = nullptr;

TEST_F(Databases, ADatabaseTakesRowsAndLivesOnItsBranchAndLaterChildren) {
  MakeBranch("shopdev");
  auto made = Create("shopdev", {{"name", "shop"}});
  ASSERT_EQ(made.status, 200) << made.body.dump();
  EXPECT_EQ(made.body["database"].value("name", ""), "shop");
  EXPECT_EQ(made.body["database"].value("owner_name", ""), "owner");
  EXPECT_EQ(made.body["database"].value("branch", ""), "projects/default/branches/shopdev");

  {
    Pg pg(ConnectTo("shopdev", "shop"));
    ASSERT_TRUE(pg.ok());
    EXPECT_EQ(pg.One("select current_database()"), "shop");
    ASSERT_EQ(pg.TryExec("create table orders (id int); insert into orders values (7)"), "");
  }

  auto names = Names("shopdev");
  EXPECT_TRUE(names.count("shop") && names.count("postgres")) << testing::PrintToString(names);
  EXPECT_FALSE(names.count("template0") || names.count("template1"));
  auto got = d_->Call("GET", Path("shopdev", "/shop"));
  ASSERT_EQ(got.status, 200) << got.body.dump();
  EXPECT_EQ(got.body["database"].value("owner_name", ""), "owner");
  EXPECT_EQ(Create("shopdev", {{"name", "shop"}}).status, 409) << "made twice";

  // The parent does not see it.
  EXPECT_FALSE(Names("production").count("shop"));
  EXPECT_EQ(d_->Call("GET", Path("production", "/shop")).status, 404);

  // A child made afterwards has it, with its rows.
  MakeBranch("shopchild", "shopdev");
  EXPECT_TRUE(Names("shopchild").count("shop"));
  Pg child(ConnectTo("shopchild", "shop"));
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(child.One("select sum(id) from orders"), "7");
}

TEST_F(Databases, DeletingUnderAConnectedSessionNeedsForce) {
  MakeBranch("dropdev");
  ASSERT_EQ(Create("dropdev", {{"name", "busy"}}).status, 200);
  Pg session(ConnectTo("dropdev", "busy"));
  ASSERT_TRUE(session.ok());
  EXPECT_EQ(session.One("select 1"), "1");

  auto refused = d_->Call("DELETE", Path("dropdev", "/busy"));
  EXPECT_EQ(refused.status, 409) << refused.body.dump();
  EXPECT_NE(refused.body.value("message", "").find("open connections"), std::string::npos)
      << refused.body.dump();
  EXPECT_TRUE(Names("dropdev").count("busy"));

  auto forced = d_->Call("DELETE", Path("dropdev", "/busy?force=true"));
  EXPECT_EQ(forced.status, 200) << forced.body.dump();
  EXPECT_FALSE(Names("dropdev").count("busy"));
  EXPECT_EQ(d_->Call("GET", Path("dropdev", "/busy")).status, 404);
  EXPECT_EQ(d_->Call("DELETE", Path("dropdev", "/busy")).status, 404);

  // Without a session, no force is needed.
  ASSERT_EQ(Create("dropdev", {{"name", "idle"}}).status, 200);
  EXPECT_EQ(d_->Call("DELETE", Path("dropdev", "/idle")).status, 200);

  // The default database stays.
  auto pg = d_->Call("DELETE", Path("dropdev", "/postgres?force=true"));
  EXPECT_EQ(pg.status, 409) << pg.body.dump();
  EXPECT_NE(pg.body.value("message", "").find("default database"), std::string::npos);
  EXPECT_TRUE(Names("dropdev").count("postgres"));
}

TEST_F(Databases, NamesAreValidatedAndQuoted) {
  MakeBranch("namedev");
  for (const json& bad :
       {json{{"name", ""}}, json{{"name", std::string(64, 'a')}},
        json{{"name", std::string("a\0b", 3)}}, json{{"name", "a/b"}},
        json{{"owner_name", "owner"}}, json{{"name", 7}}, json{{"name", "x"}, {"owner", "owner"}},
        json{{"name", "x"}, {"owner_name", "nosuchrole"}},
        json{{"name", "x"}, {"owner_name", "postgres"}}}) {
    auto a = Create("namedev", bad);
    EXPECT_EQ(a.status, 400) << bad.dump() << " -> " << a.body.dump();
  }
  EXPECT_EQ(d_->Call("POST", Path("namedev"), json{{"name", "x"}}).status, 400) << "no wrapper";
  EXPECT_FALSE(Names("namedev").count("x"));

  // Quotes, spaces and SQL in a name stay a name.
  const std::string odd = "we\"ird' db; drop database postgres; --";
  ASSERT_EQ(Create("namedev", {{"name", odd}}).status, 200);
  const std::string max(63, 'z');
  ASSERT_EQ(Create("namedev", {{"name", max}}).status, 200);
  auto names = Names("namedev");
  EXPECT_TRUE(names.count(odd) && names.count(max) && names.count("postgres"));

  // Owned by another role of the branch.
  auto role =
      d_->Call("POST", "projects/default/branches/namedev/roles?role_id=app", json::object());
  ASSERT_EQ(role.status, 200) << role.body.dump();
  auto owned = Create("namedev", {{"name", "appdb"}, {"owner_name", "app"}});
  ASSERT_EQ(owned.status, 200) << owned.body.dump();
  EXPECT_EQ(owned.body["database"].value("owner_name", ""), "app");
  Pg pg(ConnectTo("namedev", "appdb"));
  EXPECT_EQ(pg.One("select pg_get_userbyid(datdba) from pg_database where datname = 'appdb'"),
            "app");
}

TEST_F(Databases, TokenRolesAndProtectedBranchesDecide) {
  MakeBranch("accdev");
  MakeBranch("accprod");
  auto protect =
      d_->Call("PATCH", "projects/default/branches/accprod?update_mask=spec.is_protected",
               {{"spec", {{"is_protected", true}}}});
  ASSERT_EQ(protect.status, 200) << protect.body.dump();
  ASSERT_EQ(Create("accprod", {{"name", "kept"}}).status, 200);

  const std::string viewer = Token("db-viewer", "viewer");
  const std::string dev = Token("db-dev", "developer");
  ASSERT_FALSE(viewer.empty());
  ASSERT_FALSE(dev.empty());

  // A viewer reads, and makes nothing.
  EXPECT_EQ(As(viewer, "GET", Path("accdev")).status, 200);
  EXPECT_EQ(As(viewer, "GET", Path("accprod", "/kept")).status, 200);
  EXPECT_EQ(Create("accdev", {{"name", "v"}}, viewer).status, 403);
  EXPECT_EQ(As(viewer, "DELETE", Path("accprod", "/kept")).status, 403);

  // A developer makes and drops on an unprotected branch, and drops nothing on a protected one.
  EXPECT_EQ(Create("accdev", {{"name", "devdb"}}, dev).status, 200);
  EXPECT_EQ(As(dev, "DELETE", Path("accdev", "/devdb")).status, 200);
  auto denied = As(dev, "DELETE", Path("accprod", "/kept"));
  EXPECT_EQ(denied.status, 403) << denied.body.dump();
  EXPECT_NE(denied.body.value("message", "").find("protected"), std::string::npos);
  EXPECT_TRUE(Names("accprod").count("kept"));
  EXPECT_EQ(As("", "DELETE", Path("accprod", "/kept")).status, 200) << "the admin may";

  // A forged token, and a token of another project, reach nothing.
  EXPECT_EQ(As("forged-" + dev.substr(0, 8), "GET", Path("accdev")).status, 401);
  ASSERT_EQ(d_->Call("POST", "projects?project_id=dbother", json::object()).status, 200);
  const std::string other = Token("db-other", "admin", "dbother");
  EXPECT_EQ(As(other, "GET", Path("accdev")).status, 403);
  EXPECT_EQ(Create("accdev", {{"name", "o"}}, other).status, 403);
}

TEST_F(Databases, TheCliMirrorsTheApi) {
  MakeBranch("clidev");
  auto made = testutil::RunArbor(d_->home(), "database create clidb --branch clidev -o json");
  ASSERT_EQ(made.rc, 0) << made.err;
  EXPECT_EQ(json::parse(made.out)["database"].value("name", ""), "clidb");
  auto list = testutil::RunArbor(d_->home(), "database list --branch clidev");
  ASSERT_EQ(list.rc, 0) << list.err;
  EXPECT_NE(list.out.find("clidb"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("template1"), std::string::npos) << list.out;

  Pg session(ConnectTo("clidev", "clidb"));
  ASSERT_TRUE(session.ok());
  auto refused = testutil::RunArbor(d_->home(), "database delete clidb --branch clidev");
  EXPECT_EQ(refused.rc, 1) << refused.out;
  EXPECT_NE(refused.err.find("open connections"), std::string::npos) << refused.err;
  auto forced = testutil::RunArbor(d_->home(), "database delete clidb --branch clidev --force");
  EXPECT_EQ(forced.rc, 0) << forced.err;
  auto json_list = testutil::RunArbor(d_->home(), "database list --branch clidev -o json");
  ASSERT_EQ(json_list.rc, 0) << json_list.err;
  EXPECT_EQ(json_list.out.find("clidb"), std::string::npos) << json_list.out;

  // Without --branch: the project's default branch.
  auto def = testutil::RunArbor(d_->home(), "database list -o json");
  ASSERT_EQ(def.rc, 0) << def.err;
  EXPECT_NE(def.out.find("projects/default/branches/production"), std::string::npos) << def.out;
  auto bad = testutil::RunArbor(d_->home(), "database create " + std::string(64, 'a'));
  EXPECT_EQ(bad.rc, 1) << bad.err;
}

}  // namespace
}  // namespace arbor
