// Arbor started by an ordinary user: no root anywhere. Mounts go through fusermount3, the
// computes run as that same user, and branches work as they do for root.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::Pg;

// The real uid of a process, from /proc.
uid_t UidOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "Uid:") {
      uid_t uid;
      in >> uid;
      return uid;
    }
  }
  return static_cast<uid_t>(-1);
}

TEST(NonRoot, AnOrdinaryUsersDaemonServesBranches) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "the suite already runs as an ordinary user: every other integration test "
                    "covers this path";
  }
  // Debian's udev rule makes /dev/fuse 0666 so that ordinary users can mount (libfuse opens
  // it before handing the mount to fusermount3); containers often leave it 0600. Then the
  // daemon gets a private /dev/fuse in a mount namespace of its own (testutil::Daemon): the
  // system's device is never changed, even by a test that fails.
  struct stat fuse_dev;
  ASSERT_EQ(stat("/dev/fuse", &fuse_dev), 0) << "no /dev/fuse";

  // The postgres user exists wherever Debian's postgresql-15 is installed.
  struct passwd* pw = getpwnam("postgres");
  ASSERT_NE(pw, nullptr);
  auto d = Daemon::Start("nonroot", "postgres");
  ASSERT_NE(d, nullptr);
  ASSERT_GT(d->pid(), 0) << "the daemon did not start";
  EXPECT_EQ(UidOf(d->pid()), pw->pw_uid) << "the daemon must not run as root";
  // It cannot write the host's control groups: its computes run unlimited, and it says why
  // (a delegated cgroup v2 subtree would let it; this host has none for this user).
  auto status = d->Call("GET", "status");
  ASSERT_EQ(status.status, 200) << status.body.dump();
  const std::string limits = status.body.value("compute_limits", "");
  EXPECT_EQ(limits.rfind("none: ", 0), 0u) << limits;
  EXPECT_GT(limits.size(), 6u) << "no reason given";

  auto a = d->Call("POST", "projects/default/branches?branch_id=feature",
                   {{"spec", {{"ttl", "3600s"}}}});
  ASSERT_EQ(a.status, 200) << a.body.dump();
  {
    Pg prod(d->Connect("production"));
    ASSERT_TRUE(prod.ok());
    // Clients log in as owner, not a superuser (where the compute keeps its data is checked
    // below, from the process table, since owner may not read data_directory).
    EXPECT_EQ(prod.One("show is_superuser"), "off");
    Pg feature(d->Connect("feature"));
    ASSERT_TRUE(feature.ok());
    feature.Query("create table only_here(x int); insert into only_here values (7)");
    EXPECT_EQ(feature.One("select x from only_here"), "7");
    EXPECT_EQ(prod.One("select count(*) from pg_tables where tablename = 'only_here'"), "0");
  }
  // Its computes run as the same user.
  auto st = d->Call("GET", "projects/default/branches/feature/endpoints/primary");
  ASSERT_EQ(st.status, 200);
  EXPECT_EQ(st.body["status"].value("current_state", ""), "ACTIVE");
  FILE* p = popen("pgrep -u postgres -f 'postgres -D .*arbor-nonroot' | head -1", "r");
  char buf[32] = {0};
  ASSERT_NE(fgets(buf, sizeof buf, p), nullptr) << "no compute runs as postgres";
  pclose(p);
  // Deleting the branch stops its compute and removes its mount, as for root.
  a = d->Call("DELETE", "projects/default/branches/feature");
  EXPECT_EQ(a.status, 200) << a.body.dump();
  // The daemon's view of the mounts (its own namespace when it has a private /dev/fuse).
  std::ifstream mounts("/proc/" + std::to_string(d->pid()) + "/mounts");
  std::string line;
  int ours = 0;
  while (std::getline(mounts, line)) {
    if (line.find(d->home() + "/mnt/") != std::string::npos) ++ours;
  }
  EXPECT_EQ(ours, 1) << "only production's mount should remain";

  // Nothing outside the test's directories changed.
  struct stat after;
  ASSERT_EQ(stat("/dev/fuse", &after), 0);
  EXPECT_EQ(after.st_mode, fuse_dev.st_mode) << "the test changed /dev/fuse";
}

}  // namespace
}  // namespace arbor
