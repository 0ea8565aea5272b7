// The arbor CLI end to end: the real binary against the real daemon, in both output modes,
// checking what a user sees (the output, the one-line errors, the exit codes).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::json;
using testutil::Pg;

struct CliRun {
  int rc = -1;
  std::string out, err;
};

class CliTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = Daemon::Start("cli").release(); }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  // Runs `arbor ARGS` with the daemon's ARBOR_HOME; `env` is prepended to the command.
  static CliRun Arbor(const std::string& args, const std::string& env = "") {
    std::string err_file = daemon_->home() + "/cli.err";
    std::string cmd = "ARBOR_HOME='" + daemon_->home() + "' " + env + " " + ARBOR_BINARY + " " +
                      args + " 2>'" + err_file + "'";
    CliRun r;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int status = pclose(p);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream in(err_file);
    std::stringstream ss;
    ss << in.rdbuf();
    r.err = ss.str();
    return r;
  }

  static Daemon* daemon_;
};
Daemon* CliTest::daemon_ = nullptr;

TEST_F(CliTest, StatusInBothModes) {
  CliRun table = Arbor("status");
  EXPECT_EQ(table.rc, 0) << table.err;
  EXPECT_NE(table.out.find("production"), std::string::npos) << table.out;
  CliRun j = Arbor("-o json status");
  EXPECT_EQ(j.rc, 0) << j.err;
  json parsed = json::parse(j.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << j.out;
  EXPECT_EQ(parsed.dump().find("\"pid\"") != std::string::npos, true) << j.out;
}

TEST_F(CliTest, BranchLifecycleThroughTheCli) {
  Pg(daemon_->Connect("production"))
      .Query("create table cli_t(x int); insert into cli_t values (1)");

  CliRun created = Arbor("branch create cli-dev --ttl 1h");
  EXPECT_EQ(created.rc, 0) << created.err;
  EXPECT_NE(created.out.find("Created branch projects/default/branches/cli-dev"), std::string::npos)
      << created.out;

  CliRun list = Arbor("branch list");
  EXPECT_EQ(list.rc, 0) << list.err;
  EXPECT_NE(list.out.find("cli-dev"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("└──"), std::string::npos) << "drawn as a tree:\n" << list.out;
  CliRun list_json = Arbor("-o json branch list");
  EXPECT_EQ(list_json.rc, 0);
  EXPECT_NE(list_json.out.find("projects/default/branches/cli-dev"), std::string::npos);
  EXPECT_FALSE(json::parse(list_json.out, nullptr, false).is_discarded()) << list_json.out;

  CliRun get = Arbor("-o json branch get cli-dev");
  EXPECT_EQ(get.rc, 0);
  json b = json::parse(get.out, nullptr, false);
  ASSERT_FALSE(b.is_discarded()) << get.out;
  EXPECT_EQ(b["name"], "projects/default/branches/cli-dev");
  EXPECT_EQ(b["spec"]["ttl"], "3600s");

  // The URL works with a real client, and psql runs through the CLI.
  CliRun cs = Arbor("connection-string cli-dev");
  EXPECT_EQ(cs.rc, 0) << cs.err;
  std::string url = cs.out.substr(0, cs.out.find('\n'));
  EXPECT_EQ(Pg(url).One("select count(*) from cli_t"), "1");
  CliRun psql =
      Arbor("psql cli-dev -- -Atc 'insert into cli_t values (2); select count(*) from cli_t'");
  EXPECT_EQ(psql.rc, 0) << psql.err;
  EXPECT_NE(psql.out.find("2"), std::string::npos) << psql.out;

  CliRun reset = Arbor("branch reset cli-dev");
  EXPECT_EQ(reset.rc, 0) << reset.err;
  EXPECT_EQ(Pg(url).One("select count(*) from cli_t"), "1");  // the parent's state again

  CliRun stop = Arbor("endpoint stop cli-dev");
  EXPECT_EQ(stop.rc, 0) << stop.err;
  CliRun eps = Arbor("-o json endpoint list cli-dev");
  EXPECT_NE(eps.out.find("IDLE"), std::string::npos) << eps.out;

  CliRun del = Arbor("branch delete cli-dev");
  EXPECT_EQ(del.rc, 0) << del.err;
  EXPECT_EQ(Arbor("branch get cli-dev").rc, 1);
  Pg(daemon_->Connect("production")).Query("drop table cli_t");
}

TEST_F(CliTest, SeedCompatibleVerbs) {
  CliRun c = Arbor(
      "postgres create-branch projects/default seed-b --json "
      "'{\"spec\": {\"no_expiry\": true}}'");
  EXPECT_EQ(c.rc, 0) << c.err;
  EXPECT_FALSE(json::parse(c.out, nullptr, false).is_discarded()) << c.out;
  CliRun l = Arbor("postgres list-branches projects/default");
  EXPECT_EQ(l.rc, 0);
  EXPECT_NE(l.out.find("projects/default/branches/seed-b"), std::string::npos);
  CliRun g = Arbor("postgres get-branch projects/default/branches/seed-b");
  EXPECT_EQ(g.rc, 0);
  CliRun d = Arbor("postgres delete-branch projects/default/branches/seed-b");
  EXPECT_EQ(d.rc, 0) << d.err;
  // Without an expiry: the API's message, on one line, and a refusal exit code.
  CliRun none = Arbor("postgres create-branch projects/default seed-c --json '{\"spec\": {}}'");
  EXPECT_EQ(none.rc, 1);
  EXPECT_NE(none.err.find("Expiration must be specified"), std::string::npos) << none.err;
}

TEST_F(CliTest, ErrorsAreOneLineWithTheRightExitCode) {
  CliRun no_expiry = Arbor("branch create nothing-set");
  EXPECT_EQ(no_expiry.rc, 1);
  EXPECT_EQ(no_expiry.err.rfind("arbor: ", 0), 0u) << no_expiry.err;
  EXPECT_EQ(std::count(no_expiry.err.begin(), no_expiry.err.end(), '\n'), 1) << no_expiry.err;
  CliRun both = Arbor("branch create both --ttl 1h --no-expiry");
  EXPECT_EQ(both.rc, 2) << both.err;
  CliRun bad_name = Arbor("branch create Bad_Name --ttl 1h");
  EXPECT_NE(bad_name.rc, 0);
  EXPECT_NE(bad_name.err.find("Bad_Name"), std::string::npos) << bad_name.err;
  CliRun unreachable = Arbor("branch list", "ARBOR_API=http://127.0.0.1:1");
  EXPECT_EQ(unreachable.rc, 3) << unreachable.err;
  EXPECT_NE(unreachable.err.find("arbor up"), std::string::npos) << unreachable.err;
}

TEST_F(CliTest, ProjectDefaultTtlAppliesToCreate) {
  CliRun upd = Arbor("project update --default-ttl 2h");
  EXPECT_EQ(upd.rc, 0) << upd.err;
  CliRun c = Arbor("-o json branch create with-default");
  EXPECT_EQ(c.rc, 0) << c.err;
  json b = json::parse(c.out, nullptr, false);
  ASSERT_FALSE(b.is_discarded()) << c.out;
  EXPECT_EQ(b["spec"]["ttl"], "7200s");
  EXPECT_EQ(Arbor("branch delete with-default").rc, 0);
}

}  // namespace
}  // namespace arbor
