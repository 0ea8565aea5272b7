// Real PostgreSQL 15 on a host directory: the supervisor starts, watches and stops it.
#include "compute/supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace arbor::compute {
namespace {

namespace fs = std::filesystem;

class ComputeTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "arbor-compute-test-XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
    chmod(root_.c_str(), 0711);  // the compute user must reach its directories
    auto u = ComputeUser();
    ASSERT_TRUE(u.ok()) << u.status().ToString();
    user_ = *u;
    // Below the kernel's ephemeral range (32768+), where outgoing connections take ports.
    port_ = static_cast<uint16_t>(15000 + getpid() % 5000);
  }
  void TearDown() override {
    sup_.reset();  // stops and reaps every compute, even after a failed assertion
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  ComputeSpec Spec(const std::string& pgdata) {
    ComputeSpec s;
    s.id = "projects/t/branches/b/endpoints/primary";
    s.pgdata = pgdata;
    s.port = port_;
    s.socket_dir = root_ + "/sock";
    s.log_file = root_ + "/postgres.log";
    s.shared_buffers = "16MB";
    s.max_connections = 20;
    return s;
  }

  // Runs a query through the private unix socket; returns trimmed output or "ERROR".
  std::string Sql(const std::string& q, const std::string& extra = "") {
    std::string cmd = std::string(kPgBin) + "/psql -X -At -h " + root_ + "/sock -p " +
                      std::to_string(port_) + " -U postgres -d postgres " + extra + " -c \"" + q +
                      "\" 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[256];
    while (fgets(buf, sizeof buf, p)) out += buf;
    int rc = pclose(p);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return rc == 0 ? out : "ERROR";
  }

  std::string Tcp(const std::string& password) {
    std::string cmd = "PGPASSWORD='" + password + "' " + std::string(kPgBin) +
                      "/psql -X -At -h 127.0.0.1 -p " + std::to_string(port_) +
                      " -U postgres -d postgres -c 'select 42' 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[256];
    while (fgets(buf, sizeof buf, p)) out += buf;
    int rc = pclose(p);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return rc == 0 ? out : "ERROR";
  }

  std::string root_;
  OsUser user_;
  uint16_t port_ = 0;
  std::unique_ptr<Supervisor> sup_;
};

TEST_F(ComputeTest, StartsAsComputeUserServesAndStopsCleanly) {
  std::string pgdata = root_ + "/pgdata";
  const std::string password = "s3cret-Pa55word-never-logged";
  ASSERT_TRUE(InitDb(user_, pgdata, password, root_ + "/initdb.log").ok())
      << TailOf(root_ + "/initdb.log", 20);
  sup_ = std::make_unique<Supervisor>(user_);
  ComputeSpec spec = Spec(pgdata);
  Status st = sup_->Start(spec, std::chrono::seconds(30));
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(sup_->State(spec.id), ComputeState::kRunning);

  EXPECT_EQ(Sql("select current_setting('max_connections')"), "20");
  EXPECT_EQ(Sql("select current_setting('shared_buffers')"), "16MB");
  // The server runs as the compute user (postgres when we are root).
  EXPECT_EQ(Sql("select pg_read_file('postmaster.pid') is not null"), "t");
  pid_t pid = *sup_->Pid(spec.id);
  struct stat proc;
  ASSERT_EQ(stat(("/proc/" + std::to_string(pid)).c_str(), &proc), 0);
  EXPECT_EQ(proc.st_uid, user_.uid);
  // TCP needs the generated password; a wrong one is refused.
  EXPECT_EQ(Tcp(password), "42");
  EXPECT_EQ(Tcp("wrong"), "ERROR");
  // The password is in no log.
  std::ifstream a(root_ + "/initdb.log"), b(spec.log_file);
  std::string logs((std::istreambuf_iterator<char>(a)), {});
  logs.append((std::istreambuf_iterator<char>(b)), {});
  EXPECT_EQ(logs.find(password), std::string::npos);

  // A checkpoint through the private socket (branching at the head uses it).
  std::string before = Sql("select checkpoint_lsn from pg_control_checkpoint()");
  Sql("create table cp(x int)");
  EXPECT_TRUE(sup_->Checkpoint(spec.id).ok());
  EXPECT_NE(Sql("select checkpoint_lsn from pg_control_checkpoint()"), before);

  ASSERT_TRUE(sup_->Stop(spec.id, std::chrono::seconds(30)).ok());
  EXPECT_EQ(sup_->Checkpoint(spec.id).code(), Code::kNotFound);
  EXPECT_EQ(kill(pid, 0), -1);   // the postmaster is gone
  EXPECT_EQ(kill(-pid, 0), -1);  // and so is every process of its tree
  EXPECT_EQ(sup_->State(spec.id), ComputeState::kStopped);
  EXPECT_FALSE(fs::exists(pgdata + "/postmaster.pid"));
}

TEST_F(ComputeTest, StalePidFileIsRemovedAndCrashIsDetectedAndRestarted) {
  std::string pgdata = root_ + "/pgdata";
  ASSERT_TRUE(InitDb(user_, pgdata, "pw", root_ + "/initdb.log").ok());
  // A branch of a running parent carries the parent's postmaster.pid, naming a live pid.
  {
    std::ofstream f(pgdata + "/postmaster.pid");
    f << getpid() << "\n" << pgdata << "\n1700000000\n" << port_ << "\n\n\n0 0\nready   \n";
  }
  sup_ = std::make_unique<Supervisor>(user_);
  ComputeSpec spec = Spec(pgdata);
  ASSERT_TRUE(sup_->Start(spec, std::chrono::seconds(30)).ok()) << TailOf(spec.log_file, 20);
  EXPECT_EQ(Sql("create table t(x int); insert into t values (7); select x from t", "-q"), "7");
  EXPECT_EQ(sup_->Start(spec, std::chrono::seconds(5)).code(), Code::kAlreadyExists);

  pid_t pid = *sup_->Pid(spec.id);
  kill(-pid, SIGKILL);  // the whole postgres tree dies
  for (int i = 0; i < 500 && sup_->State(spec.id) != ComputeState::kCrashed; ++i) usleep(10'000);
  EXPECT_EQ(sup_->State(spec.id), ComputeState::kCrashed);
  ASSERT_TRUE(sup_->Restart(spec.id, std::chrono::seconds(30)).ok()) << TailOf(spec.log_file, 20);
  EXPECT_EQ(Sql("select x from t"), "7");  // committed data survived crash recovery
}

TEST_F(ComputeTest, FailedStartReportsTheLogAndLeavesNothingRunning) {
  sup_ = std::make_unique<Supervisor>(user_);
  ComputeSpec spec = Spec(root_ + "/not-a-cluster");
  fs::create_directories(spec.pgdata);
  Status st = sup_->Start(spec, std::chrono::seconds(30));
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("exited during startup"), std::string::npos) << st.message();
  EXPECT_EQ(sup_->State(spec.id), ComputeState::kStopped);
  EXPECT_EQ(sup_->Stop(spec.id, std::chrono::seconds(1)).code(), Code::kNotFound);
}

// Limits from the kernel's control groups (cgroup v1 or v2, whichever this host has).
class LimitedComputeTest : public ComputeTest {
 protected:
  void SetUp() override {
    ComputeTest::SetUp();
    cgroups_ = Cgroups::Detect("arbor-compute-test-" + std::to_string(getpid()));
    if (cgroups_->version() == Cgroups::Version::kNone) {
      GTEST_SKIP() << "no writable control groups here: " << cgroups_->Describe();
    }
    pgdata_ = root_ + "/pgdata";
    ASSERT_TRUE(InitDb(user_, pgdata_, "pw", root_ + "/initdb.log").ok())
        << TailOf(root_ + "/initdb.log", 20);
    sup_ = std::make_unique<Supervisor>(user_);
    sup_->SetCgroups(cgroups_.get());
  }
  void TearDown() override {
    sup_.reset();  // stops the computes and removes their groups
    if (cgroups_) (void)cgroups_->RemoveParents();
    ComputeTest::TearDown();
  }
  // A CPU-bound query that a statement timeout ends after `seconds` of wall time.
  void Busy(int seconds) {
    std::string cmd = "PGOPTIONS='-c statement_timeout=" + std::to_string(seconds) + "s' " +
                      std::string(kPgBin) + "/psql -X -At -h " + root_ + "/sock -p " +
                      std::to_string(port_) +
                      " -U postgres -d postgres -c 'select count(*) from generate_series(1, "
                      "4000000000)' >/dev/null 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    pclose(p);
  }
  std::unique_ptr<Cgroups> cgroups_;
  std::string pgdata_;
};

// A compute that fails to start leaves no control group behind (its daemon's parent group
// could not be removed at shutdown otherwise).
TEST_F(LimitedComputeTest, AFailedStartLeavesNoControlGroup) {
  ComputeSpec spec = Spec(root_ + "/not-a-cluster");
  fs::create_directories(spec.pgdata);
  spec.cgroup = "failing";
  spec.limits.cpus = 0.5;
  Status st = sup_->Start(spec, std::chrono::seconds(30));
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  for (const std::string& procs : cgroups_->ProcsFiles("failing")) {
    EXPECT_FALSE(fs::exists(fs::path(procs).parent_path())) << procs;
  }
}

TEST_F(LimitedComputeTest, AQuarterCoreComputeUsesAQuarterOfACore) {
  ComputeSpec spec = Spec(pgdata_);
  spec.cgroup = "quarter";
  spec.limits = Limits{0.25, 25, 0, 0};
  ASSERT_TRUE(sup_->Start(spec, std::chrono::seconds(60)).ok());
  // Every process of the tree is in the group: the postmaster and its children.
  pid_t pid = *sup_->Pid(spec.id);
  std::ifstream cg("/proc/" + std::to_string(pid) + "/cgroup");
  std::string groups((std::istreambuf_iterator<char>(cg)), {});
  EXPECT_NE(groups.find("/quarter"), std::string::npos) << groups;

  auto before = sup_->CpuUsageMicros(spec.id);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  auto t0 = std::chrono::steady_clock::now();
  // CPU-bound for 5 s of wall time (the statement timeout ends it).
  Busy(5);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto after = sup_->CpuUsageMicros(spec.id);
  ASSERT_TRUE(after.ok());
  double cores = (*after - *before) / 1e6 / wall;
  // A quarter of a core, as the group's own accounting measures it (unlimited, the query
  // would take a whole core).
  EXPECT_GT(wall, 4.5);
  EXPECT_GT(cores, 0.15) << "used " << cores << " cores over " << wall << " s";
  EXPECT_LT(cores, 0.40) << "used " << cores << " cores over " << wall << " s";
  // And it was the limit that held it there, not other load on the machine.
  auto throttled = cgroups_->ThrottledPeriods("quarter");
  ASSERT_TRUE(throttled.ok()) << throttled.status().ToString();
  EXPECT_GT(*throttled, 10u);

  // Raised live (autoscaling): the same query now gets more.
  ASSERT_TRUE(sup_->Resize(spec.id, Limits{1, 100, 0, 0}).ok());
  before = sup_->CpuUsageMicros(spec.id);
  t0 = std::chrono::steady_clock::now();
  Busy(3);
  wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  after = sup_->CpuUsageMicros(spec.id);
  cores = (*after - *before) / 1e6 / wall;
  // Above what a quarter-core quota lets through at all (the machine may be busy, so not
  // necessarily a whole core).
  EXPECT_GT(cores, 0.30) << "after raising the limit to 1 core: " << cores;

  ASSERT_TRUE(sup_->Stop(spec.id, std::chrono::seconds(30)).ok());
  EXPECT_EQ(cgroups_->CpuUsageMicros("quarter").status().code(), Code::kNotFound)
      << "the group is removed with its compute";
}

TEST_F(LimitedComputeTest, AQueryOverTheMemoryLimitGetsOutOfMemoryAndThePostmasterLives) {
  ComputeSpec spec = Spec(pgdata_);
  spec.cgroup = "small";
  spec.limits = Limits{0, 100, 768ull << 20, 640ull << 20};
  spec.address_space_limit_bytes = 768ull << 20;
  ASSERT_TRUE(sup_->Start(spec, std::chrono::seconds(60)).ok());
  pid_t pid = *sup_->Pid(spec.id);
  // A sort of ~1.5 GB in memory (work_mem lets it try): the allocation fails inside the
  // backend, which reports PostgreSQL's own error.
  std::string cmd = std::string(kPgBin) + "/psql -X -At -h " + root_ + "/sock -p " +
                    std::to_string(port_) +
                    " -U postgres -d postgres -c \"set work_mem = '4GB'; select count(*) from "
                    "(select g::text || repeat('x', 40) as s from generate_series(1, 20000000) g "
                    "order by 1 desc) t\" 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  EXPECT_NE(out.find("out of memory"), std::string::npos) << out;
  // The postmaster lives and serves.
  EXPECT_EQ(kill(pid, 0), 0);
  EXPECT_EQ(sup_->State(spec.id), ComputeState::kRunning);
  EXPECT_EQ(Sql("select 1"), "1");
}

}  // namespace
}  // namespace arbor::compute
