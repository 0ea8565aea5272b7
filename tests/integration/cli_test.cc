// The arbor CLI end to end: the real binary against the real daemon, in both output modes,
// checking what a user sees (the output, the one-line errors, the exit codes).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::json;
using testutil::Pg;

using testutil::CliRun;

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
    return testutil::RunArbor(daemon_->home(), args, env);
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

// `arbor up` and `arbor down` themselves, as a user runs them: a daemon in the background,
// in a data directory of its own (named on the command line, so that its processes can be
// found and killed if the test fails).
class UpDownTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/arbor-updown-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    home_ = tmpl;
    // Apart from the ranges testutil::Daemon gives (20000 and up), below the ephemeral ones.
    lo_ = 12000 + (getpid() % 200) * 40;
  }
  void TearDown() override {
    (void)Run("down");
    // Whatever a failed test left: the daemon, computes, mounts.
    std::string runtime = RuntimeDir();
    for (pid_t pid : PidsNaming(home_)) kill(pid, SIGKILL);
    for (pid_t pid : PidsNaming(runtime + "/mnt/")) kill(pid, SIGKILL);
    for (const auto& m : MountsOf(runtime)) {
      std::string cmd =
          "umount -l '" + m + "' 2>/dev/null || fusermount3 -u -z '" + m + "' 2>/dev/null";
      (void)std::system(cmd.c_str());
    }
    std::error_code ec;
    std::filesystem::remove_all(home_, ec);
  }

  // `arbor VERB --data-dir HOME ARGS`; for up, with ports of its own.
  CliRun Run(const std::string& verb, const std::string& args = "") {
    std::string ports =
        verb != "up"
            ? ""
            : " --api-listen 127.0.0.1:0 --proxy-listen 127.0.0.1:" + std::to_string(lo_) +
                  " --endpoint-ports " + std::to_string(lo_ + 1) + "-" + std::to_string(lo_ + 39);
    return testutil::RunShell(
        std::string(ARBOR_BINARY) + " " + verb + " --data-dir '" + home_ + "'" + ports + " " + args,
        home_ + ".err");
  }

  std::string RuntimeDir() {
    std::ifstream in(home_ + "/runtime-dir");
    std::string dir;
    std::getline(in, dir);
    return dir.empty() ? home_ : dir;
  }
  static std::vector<std::string> MountsOf(const std::string& dir) {
    std::ifstream in("/proc/mounts");
    std::string dev, point, rest;
    std::vector<std::string> found;
    while (in >> dev >> point && std::getline(in, rest)) {
      if (point.rfind(dir + "/", 0) == 0) found.push_back(point);
    }
    return found;
  }
  // Processes (other than this one) whose command line names `text`: the daemon, or a
  // compute of its runtime directory.
  static std::vector<pid_t> PidsNaming(const std::string& text) {
    std::vector<pid_t> pids;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
      pid_t pid = static_cast<pid_t>(std::atoi(e.path().filename().c_str()));
      if (pid <= 0 || pid == getpid()) continue;
      std::ifstream in(e.path() / "cmdline");
      std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      if (cmdline.find(text) != std::string::npos) pids.push_back(pid);
    }
    return pids;
  }
  static int ProcessesNaming(const std::string& text) {
    return static_cast<int>(PidsNaming(text).size());
  }

  std::string home_;
  int lo_ = 0;
};

// A daemon that does not answer SIGTERM (stopped here) is killed with its computes, and
// `arbor down` still returns within its bound, leaving no mount and no process.
TEST_F(UpDownTest, DownIsBoundedWhenTheDaemonDoesNotStop) {
  CliRun up = Run("up");
  ASSERT_EQ(up.rc, 0) << up.err;
  std::string runtime = RuntimeDir();
  ASSERT_FALSE(MountsOf(runtime).empty()) << "production's compute is not mounted";
  pid_t pid = 0;
  std::ifstream(home_ + "/arbor.lock") >> pid;
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  auto t0 = std::chrono::steady_clock::now();
  CliRun down = Run("down");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(down.rc, 0) << down.err;
  EXPECT_LE(secs, 30) << "arbor down took " << secs << " s";
  EXPECT_NE(down.err.find("did not stop within 20 s; killing it"), std::string::npos) << down.err;
  EXPECT_NE(down.out.find("Arbor stopped"), std::string::npos) << down.out;
  EXPECT_TRUE(MountsOf(runtime).empty());
  EXPECT_EQ(ProcessesNaming(runtime + "/mnt/"), 0) << "a compute is left";
  EXPECT_EQ(ProcessesNaming(home_), 0) << "the daemon is left";
  // The next start serves again.
  up = Run("up");
  EXPECT_EQ(up.rc, 0) << up.err;
  EXPECT_EQ(Run("down").rc, 0);
}

// A start that does not become ready in time is stopped, with what it started, and says why.
TEST_F(UpDownTest, AStartThatIsNotReadyInTimeStopsWhatItStarted) {
  auto t0 = std::chrono::steady_clock::now();
  CliRun up = Run("up", "--start-timeout 1");  // a first start runs initdb: several seconds
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(up.rc, 1) << up.out;
  EXPECT_LE(secs, 20);
  EXPECT_NE(up.err.find("did not become ready within 1 s (--start-timeout): "), std::string::npos)
      << up.err;
  EXPECT_TRUE(MountsOf(RuntimeDir()).empty());
  EXPECT_EQ(ProcessesNaming(RuntimeDir() + "/mnt/"), 0) << "a compute is left";
  EXPECT_EQ(ProcessesNaming(home_), 0) << "the daemon is left";
  // Its data directory is not damaged: the next start completes it.
  up = Run("up");
  EXPECT_EQ(up.rc, 0) << up.err;
  EXPECT_EQ(Run("down").rc, 0);
}

}  // namespace
}  // namespace arbor
