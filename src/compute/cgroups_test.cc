// Cgroups over a fake cgroup file system in a temporary directory: which layout is detected,
// what is written where, and why nothing is enforced when nothing can be.
#include "compute/cgroups.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace arbor::compute {
namespace {

namespace fs = std::filesystem;

class CgroupsTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "arbor-cgroups-test-XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void Put(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(root_ + "/" + path).parent_path());
    std::ofstream(root_ + "/" + path) << text;
  }
  std::string Get(const std::string& path) {
    std::ifstream f(root_ + "/" + path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  // A v1 hierarchy's group directory holds the files the kernel would make in it.
  void V1Group(const std::string& dir) {
    for (const char* f :
         {"cgroup.procs", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares", "cpuacct.usage",
          "memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.usage_in_bytes"}) {
      Put(dir + "/" + f, "");
    }
  }
  std::string root_;
};

TEST_F(CgroupsTest, V1HierarchiesNestUnderTheDaemonsOwnGroups) {
  for (const char* c : {"cpu", "cpuacct", "memory"})
    Put(std::string("fs/") + c + "/cgroup.procs", "");
  Put("fs/memory/box/a/cgroup.procs", "");  // the daemon's own group
  Put("self", "4:memory:/box/a\n3:cpuacct:/\n2:cpu:/\n0::/\n");
  auto g = Cgroups::Detect("arbor-x", root_ + "/fs", root_ + "/self");
  ASSERT_EQ(g->version(), Cgroups::Version::kV1) << g->Describe();
  EXPECT_TRUE(fs::is_directory(root_ + "/fs/memory/box/a/arbor-x")) << "under the daemon's group";
  EXPECT_TRUE(fs::is_directory(root_ + "/fs/cpu/arbor-x"));
  // The kernel makes a group's files; the fake makes them as mkdir would.
  V1Group("fs/cpu/arbor-x/ep1");
  V1Group("fs/cpuacct/arbor-x/ep1");
  V1Group("fs/memory/box/a/arbor-x/ep1");
  Limits l{0.25, 50, 512ull << 20, 384ull << 20};
  ASSERT_TRUE(g->Create("ep1", l).ok());
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/cpu.cfs_quota_us"), "25000");
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/cpu.shares"), "512");
  EXPECT_EQ(Get("fs/memory/box/a/arbor-x/ep1/memory.limit_in_bytes"), std::to_string(512ull << 20));
  EXPECT_EQ(Get("fs/memory/box/a/arbor-x/ep1/memory.soft_limit_in_bytes"),
            std::to_string(384ull << 20));
  auto procs = g->ProcsFiles("ep1");
  ASSERT_EQ(procs.size(), 3u);
  EXPECT_EQ(procs[2], root_ + "/fs/memory/box/a/arbor-x/ep1/cgroup.procs");
  // Unlimited is -1 in v1.
  ASSERT_TRUE(g->Update("ep1", Limits{}).ok());
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/cpu.cfs_quota_us"), "-1");
  EXPECT_EQ(Get("fs/memory/box/a/arbor-x/ep1/memory.limit_in_bytes"), "-1");
  // Accounting: cpuacct.usage is in nanoseconds.
  Put("fs/cpuacct/arbor-x/ep1/cpuacct.usage", "2500000000\n");
  auto used = g->CpuUsageMicros("ep1");
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 2'500'000u);
  EXPECT_EQ(g->CpuUsageMicros("nosuch").status().code(), Code::kNotFound);

  // Pacing one process (the checkpointer): a child group in the cpu hierarchy only, 0.25
  // CPUs in 10 ms periods; then back into its own group, and the child gone.
  V1Group("fs/cpu/arbor-x/ep1/paced");
  ASSERT_TRUE(g->Pace("ep1", 4242, 0.25).ok());
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/paced/cpu.cfs_period_us"), "10000");
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/paced/cpu.cfs_quota_us"), "2500");
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/paced/cgroup.procs"), "4242");
  EXPECT_FALSE(fs::exists(root_ + "/fs/cpuacct/arbor-x/ep1/paced")) << "accounting unchanged";
  EXPECT_FALSE(fs::exists(root_ + "/fs/memory/box/a/arbor-x/ep1/paced"));
  // The kernel removes a group's files with it; the fake's must go first.
  for (const auto& f : fs::directory_iterator(root_ + "/fs/cpu/arbor-x/ep1/paced")) {
    fs::remove(f.path());
  }
  Put("fs/cpu/arbor-x/ep1/cgroup.procs", "");
  ASSERT_TRUE(g->Unpace("ep1", 4242).ok());
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/cgroup.procs"), "4242");
  EXPECT_FALSE(fs::exists(root_ + "/fs/cpu/arbor-x/ep1/paced"));
  // Never below a tenth of a CPU (the kernel's shortest quota is 1 ms).
  V1Group("fs/cpu/arbor-x/ep1/paced");
  ASSERT_TRUE(g->Pace("ep1", 4242, 0.01).ok());
  EXPECT_EQ(Get("fs/cpu/arbor-x/ep1/paced/cpu.cfs_quota_us"), "1000");
  // A paced group left behind (a daemon killed meanwhile) goes with its compute's group.
  for (const auto& f : fs::directory_iterator(root_ + "/fs/cpu/arbor-x/ep1/paced")) {
    fs::remove(f.path());
  }
  for (const char* c :
       {"fs/cpu/arbor-x/ep1", "fs/cpuacct/arbor-x/ep1", "fs/memory/box/a/arbor-x/ep1"}) {
    for (const auto& f : fs::directory_iterator(root_ + "/" + c)) {
      if (!fs::is_directory(f.path())) fs::remove(f.path());
    }
  }
  ASSERT_TRUE(g->Remove("ep1").ok());
  EXPECT_FALSE(fs::exists(root_ + "/fs/cpu/arbor-x/ep1"));
}

TEST_F(CgroupsTest, V2NeedsCpuAndMemoryDelegated) {
  Put("fs/cgroup.controllers", "cpuset cpu io memory pids\n");
  Put("fs/cgroup.subtree_control", "");
  Put("fs/arbor-y/cgroup.subtree_control", "");  // as the kernel makes it in a new group
  Put("self", "0::/\n");
  auto g = Cgroups::Detect("arbor-y", root_ + "/fs", root_ + "/self");
  ASSERT_EQ(g->version(), Cgroups::Version::kV2) << g->Describe();
  EXPECT_EQ(Get("fs/cgroup.subtree_control"), "+cpu +memory");
  for (const char* f : {"cpu.max", "cpu.weight", "memory.max", "memory.high", "cgroup.procs"}) {
    Put(std::string("fs/arbor-y/ep2/") + f, "");
  }
  ASSERT_TRUE(g->Create("ep2", Limits{2, 800, 4ull << 30, 3ull << 30}).ok());
  EXPECT_EQ(Get("fs/arbor-y/ep2/cpu.max"), "200000 100000");
  EXPECT_EQ(Get("fs/arbor-y/ep2/cpu.weight"), "800");
  EXPECT_EQ(Get("fs/arbor-y/ep2/memory.max"), std::to_string(4ull << 30));
  EXPECT_EQ(Get("fs/arbor-y/ep2/memory.high"), std::to_string(3ull << 30));
  Put("fs/arbor-y/ep2/cpu.stat", "usage_usec 1234\nuser_usec 1000\nnr_throttled 7\n");
  EXPECT_EQ(*g->CpuUsageMicros("ep2"), 1234u);
  EXPECT_EQ(*g->ThrottledPeriods("ep2"), 7u);

  // No pacing of one process under v2: a group with processes can have no child group with
  // controllers. Nothing is made.
  EXPECT_EQ(g->Pace("ep2", 77, 0.25).code(), Code::kFailedPrecondition);
  EXPECT_FALSE(fs::exists(root_ + "/fs/arbor-y/ep2.paced"));
  EXPECT_FALSE(fs::exists(root_ + "/fs/arbor-y/ep2/paced"));
}

TEST_F(CgroupsTest, HybridWithoutV2ControllersFallsBackToV1OrSaysWhyNot) {
  // v2 only at unified/ with no cpu or memory there (they are v1's), and no v1 memory.
  Put("fs/unified/cgroup.controllers", "hugetlb\n");
  Put("fs/cpu/cgroup.procs", "");
  Put("self", "2:cpu:/\n0::/\n");
  auto g = Cgroups::Detect("arbor-z", root_ + "/fs", root_ + "/self");
  EXPECT_EQ(g->version(), Cgroups::Version::kNone);
  std::string why = g->Describe();
  EXPECT_NE(why.find("none:"), std::string::npos) << why;
  EXPECT_NE(why.find("no cpu and memory controllers"), std::string::npos) << why;
  EXPECT_NE(why.find("no cpuacct hierarchy"), std::string::npos) << why;
  // Nothing is enforced and nothing fails.
  EXPECT_TRUE(g->Create("ep", Limits{1, 100, 1 << 30, 0}).ok());
  EXPECT_TRUE(g->ProcsFiles("ep").empty());
  EXPECT_EQ(g->CpuUsageMicros("ep").status().code(), Code::kFailedPrecondition);
}

TEST_F(CgroupsTest, NoCgroupFileSystemAtAll) {
  Put("self", "");
  auto g = Cgroups::Detect("arbor", root_ + "/missing", root_ + "/self");
  EXPECT_EQ(g->version(), Cgroups::Version::kNone);
  EXPECT_NE(g->Describe().find("none:"), std::string::npos);
}

}  // namespace
}  // namespace arbor::compute
