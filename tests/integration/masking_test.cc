// Masked branches (spec.masking, `arbor branch create --mask`) against the real daemon, real
// postgres, libpq and the arbor CLI: a masked branch shows no raw value in any row, the same
// input gives the same mask in every table (references still join), masked emails stay
// unique, fixed, null, hash, name and sql rules all apply, the parent is untouched, and no
// way into the history before the masking point is open (a pinned endpoint, `arbor psql
// B@TIME`, restore); a reset masks the parent's state again before anyone connects. A rule on a missing column, or one a strategy cannot fill, refuses
// the create and leaves no branch; a rule's SQL gets no superuser power.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>

#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::CliRun;
using testutil::Daemon;
using testutil::json;
using testutil::Pg;

class Masking : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    d_ = Daemon::Start("mask").release();
    Pg prod(d_->Connect("production"));
    ASSERT_EQ(prod.TryExec(
                  "create table users (id int primary key, email text unique not null, name text,"
                  " ssn varchar(11), note text, phone text, age int not null);"
                  "create table orders (id int primary key,"
                  " email text not null references users (email), amount int);"
                  "insert into users select g, 'person' || g || '@corp.example', 'Real Name ' || g,"
                  " lpad(g::text, 3, '0') || '-12-3456', 'secret note ' || g, '+1555000' || g,"
                  " 20 + g % 50 from generate_series(1, 200) g;"
                  "insert into orders select g, 'person' || (g % 200 + 1) || '@corp.example', g"
                  " from generate_series(1, 400) g;"),
              "");
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static CliRun Arbor(const std::string& args) { return testutil::RunArbor(d_->home(), args); }
  static std::string File(const std::string& name, const std::string& text) {
    std::string path = d_->home() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  static std::set<std::string> Branches() {
    auto a = d_->Call("GET", "projects/default/branches");
    EXPECT_EQ(a.status, 200) << a.body.dump();
    std::set<std::string> out;
    for (const auto& b : a.body["branches"]) out.insert(b.value("name", ""));
    return out;
  }
  static testutil::HttpAnswer CreateMasked(const std::string& id, const json& rules) {
    return d_->Call("POST", "projects/default/branches?branch_id=" + id,
                    {{"spec",
                      {{"source_branch", "projects/default/branches/production"},
                       {"no_expiry", true},
                       {"masking", rules}}}});
  }

  static Daemon* d_;
};
Daemon* Masking::d_ = nullptr;

TEST_F(Masking, MaskedBranchShowsNoRawValueAndKeepsReferences) {
  std::string rules = File("rules.toml",
                           "# preview branches get no PII\n"
                           "[[rule]]\ncolumn = \"public.users.email\"\nwith = \"email\"\n"
                           "[[rule]]\ncolumn = \"public.orders.email\"\nwith = \"email\"\n"
                           "[[rule]]\ncolumn = \"public.users.name\"\nwith = \"name\"\n"
                           "[[rule]]\ncolumn = \"public.users.ssn\"\nwith = \"hash\"\n"
                           "[[rule]]\ncolumn = \"public.users.phone\"\nwith = \"null\"\n"
                           "[[rule]]\ncolumn = \"public.users.age\"\nfixed = 30\n"
                           "[[rule]]\ncolumn = \"public.users.note\"\nsql = \"'note ' || id\"\n");
  CliRun r = Arbor("branch create preview --from production --mask " + rules + " --no-expiry");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("masked at"), std::string::npos) << r.out;

  Pg pg(d_->Connect("preview"));
  // No raw value in any row of any masked column.
  EXPECT_EQ(pg.One("select count(*) from users where email like '%corp.example' or name like "
                   "'Real Name%' or ssn like '%-12-3456' or phone is not null or note like "
                   "'secret%' or age <> 30"),
            "0");
  EXPECT_EQ(pg.One("select count(*) from orders where email like '%corp.example'"), "0");
  EXPECT_EQ(pg.One("select count(*) from users"), "200");
  // Fake values that keep their format; emails stay unique.
  EXPECT_EQ(pg.One("select count(*) from users where email !~ '^u[0-9a-f]{20}@example\\.com$'"),
            "0");
  EXPECT_EQ(pg.One("select count(distinct email) from users"), "200");
  EXPECT_EQ(
      pg.One("select count(*) from users where name !~ '^[A-Z][a-z]+ [A-Z][a-z]+-[0-9a-f]{6}$'"),
      "0");
  EXPECT_EQ(pg.One("select count(distinct name) from users"), "200");
  EXPECT_EQ(pg.One("select count(*) from users where length(ssn) <> 11"), "0");  // varchar(11)
  EXPECT_EQ(pg.One("select count(*) from users where note <> 'note ' || id"), "0");
  // The same input gives the same mask: every order still finds its user.
  EXPECT_EQ(pg.One("select count(*) from orders o join users u using (email)"), "400");
  EXPECT_EQ(pg.One("select count(*) from orders o join users u using (email) "
                   "where o.id % 200 + 1 <> u.id"),
            "0");

  // The parent is untouched.
  Pg prod(d_->Connect("production"));
  EXPECT_EQ(prod.One("select count(*) from users where email like '%corp.example'"), "200");

  // The branch shows its rules and its masking point, never its key.
  auto got = d_->Call("GET", "projects/default/branches/preview");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["spec"]["masking"].size(), 7u) << got.body.dump();
  EXPECT_EQ(got.body["spec"]["masking"][5]["with"]["fixed"], "30");
  ASSERT_TRUE(got.body["status"].contains("masked_time")) << got.body.dump();
  EXPECT_EQ(got.body.dump().find("key"), std::string::npos) << got.body.dump();
  auto micros = [](const std::string& t) {
    std::tm tm{};
    strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    return static_cast<int64_t>(timegm(&tm)) * 1'000'000 + std::stoll(t.substr(20, 6));
  };
  const int64_t masked = micros(got.body["status"]["masked_time"]);
  // Just before the masking point, after the branch was made: the unmasked fork.
  std::string before = testutil::Rfc3339(masked - 1000);

  // Time travel before the masking point is refused, by the API and the CLI.
  auto pin = d_->Call(
      "POST", "projects/default/branches/preview/endpoints?endpoint_id=past",
      {{"spec", {{"endpoint_type", "ENDPOINT_TYPE_READ_ONLY"}, {"source_branch_time", before}}}});
  EXPECT_EQ(pin.status, 409) << pin.body.dump();
  EXPECT_NE(pin.body.dump().find("masking point"), std::string::npos) << pin.body.dump();
  r = Arbor("psql preview@" + before + " -- -tAc 'select email from users limit 1'");
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(r.out.find("corp.example"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("masking point"), std::string::npos) << r.err;
  auto restore = d_->Call("POST", "projects/default/branches/preview:restore",
                          {{"source_branch_time", before}});
  EXPECT_EQ(restore.status, 409) << restore.body.dump();
  EXPECT_EQ(Branches().count("projects/default/branches/preview"), 1u);

  // A reset takes the parent's state and masks it again, with the same rules and key, before
  // any client reaches it: the branch's own change is gone, no raw value is back, the same
  // input gives the same mask as before, and the masking point moves to after the reset.
  const std::string mask1 = pg.One("select email from users where id = 1");
  ASSERT_EQ(pg.TryExec("update users set note = 'changed on the branch' where id = 1"), "");
  auto reset = d_->Call("POST", "projects/default/branches/preview:reset", json::object());
  ASSERT_EQ(reset.status, 200) << reset.body.dump();
  ASSERT_TRUE(reset.body["status"].contains("masked_time")) << reset.body.dump();
  const int64_t remasked = micros(reset.body["status"]["masked_time"]);
  EXPECT_GT(remasked, masked);
  {
    Pg again(d_->Connect("preview"));
    EXPECT_EQ(again.One("select note from users where id = 1"), "note 1");
    EXPECT_EQ(again.One("select email from users where id = 1"), mask1);
    EXPECT_EQ(again.One("select count(*) from users where email like '%corp.example' or name "
                        "like 'Real Name%' or ssn like '%-12-3456' or phone is not null or note "
                        "like 'secret%' or age <> 30"),
              "0");
    EXPECT_EQ(again.One("select count(*) from users"), "200");
  }
  // Just before the new masking point (the reset's raw fork): refused as well.
  r = Arbor("psql preview@" + testutil::Rfc3339(remasked - 1000) +
            " -- -tAc 'select email from users limit 1'");
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(r.out.find("corp.example"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("masking point"), std::string::npos) << r.err;

  // After the masking point the past is open, and masked.
  r = Arbor("psql preview@" + testutil::Rfc3339(testutil::NowMicros()) +
            " -- -tAc \"select count(*) from users where email like '%corp.example'\"");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "0\n");

  // A branch of the masked branch is masked too.
  auto child = d_->Call(
      "POST", "projects/default/branches?branch_id=preview-child",
      {{"spec", {{"source_branch", "projects/default/branches/preview"}, {"no_expiry", true}}}});
  ASSERT_EQ(child.status, 200) << child.body.dump();
  EXPECT_TRUE(child.body["status"].contains("masked_time"));
  Pg c(d_->Connect("preview-child"));
  EXPECT_EQ(c.One("select count(*) from users where email like '%corp.example'"), "0");
}

TEST_F(Masking, SameInputSameMaskWithinABranchOnly) {
  json rules = json::array({{{"column", "public.users.email"}, {"with", "email"}}});
  auto a = CreateMasked("mask-a", rules);
  ASSERT_EQ(a.status, 200) << a.body.dump();
  Pg pa(d_->Connect("mask-a"));
  std::string first = pa.One("select email from users where id = 7");
  EXPECT_NE(first.find("@example.com"), std::string::npos) << first;
  // Another branch has another key: the same input gives another mask there, so masks cannot
  // be matched across branches.
  auto b = CreateMasked("mask-b", rules);
  ASSERT_EQ(b.status, 200) << b.body.dump();
  Pg pb(d_->Connect("mask-b"));
  EXPECT_NE(pb.One("select email from users where id = 7"), first);
}

TEST_F(Masking, BadRulesRefuseTheCreateAndLeaveNoBranch) {
  struct Case {
    json rules;
    int status;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {json::array({{{"column", "public.users.email"}, {"with", "email"}},
                         {{"column", "public.users.emial"}, {"with", "hash"}}}),
            400, "public.users.emial does not exist"},
           {json::array({{{"column", "public.users.age"}, {"with", "hash"}}}), 400, "is integer"},
           {json::array({{{"column", "public.users.email"}, {"with", "null"}}}), 400, "NOT NULL"},
           {json::array({{{"column", "users.email"}, {"with", "email"}}}), 400,
            "schema.table.column"},
           {json::array({{{"column", "public.users.note"}, {"with", {{"sql", "nosuchfn(note)"}}}}}),
            400, "nosuchfn"},
       }) {
    auto a = CreateMasked("bad", c.rules);
    EXPECT_EQ(a.status, c.status) << a.body.dump();
    EXPECT_NE(a.body.dump().find(c.says), std::string::npos) << a.body.dump();
    EXPECT_EQ(Branches().count("projects/default/branches/bad"), 0u) << c.rules.dump();
  }
  // The CLI names the file's line.
  std::string rules = File("bad.toml", "[[rule]]\ncolumn = \"public.users.email\"\nwith = md5\n");
  CliRun r = Arbor("branch create bad --mask " + rules + " --no-expiry");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("bad.toml:3:"), std::string::npos) << r.err;
  EXPECT_EQ(Branches().count("projects/default/branches/bad"), 0u);
}

TEST_F(Masking, RuleSqlGetsNoSuperuserPower) {
  for (const char* expr : {
           "pg_read_file('/etc/passwd')",
           "set_config('role', 'postgres', true) || pg_read_file('/etc/passwd')",
           "set_config('session_authorization', 'postgres', true) || note",
           "pg_stat_file('base')::text",
       }) {
    auto a = CreateMasked(
        "evil", json::array({{{"column", "public.users.note"}, {"with", {{"sql", expr}}}}}));
    EXPECT_EQ(a.status, 400) << expr << ": " << a.body.dump();
    EXPECT_NE(a.body.dump().find("permission denied"), std::string::npos)
        << expr << ": " << a.body.dump();
    EXPECT_EQ(Branches().count("projects/default/branches/evil"), 0u);
  }
  // The temporary role the rules ran as is gone from the parent and any masked branch.
  Pg prod(d_->Connect("production"));
  EXPECT_EQ(prod.One("select count(*) from pg_roles where rolname = 'arbor_masking'"), "0");
}

}  // namespace
}  // namespace arbor
