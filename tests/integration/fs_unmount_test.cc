// Unmount ends in bounded time however the mount is left: with files held open in it, and
// when the unmount itself fails (here: the mount point was moved away, as an ordinary user's
// unmount fails without /etc/mtab). Each case used to wait for the FUSE threads with no bound
// when the fusectl file system was not mounted.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "fs/arborfs.h"
#include "storage/store.h"
#include "testutil/fs_harness.h"

namespace arbor {
namespace {

using testutil::TempDir;

// Well above Unmount's own bound (about 15 s), far below "forever".
constexpr double kBoundS = 20;

// Removes a mount a failed test left, whoever we are.
void ForceUnmount(const std::string& path) {
  if (!fs::IsMountPoint(path)) return;
  if (umount2(path.c_str(), MNT_DETACH) != 0) {
    std::string cmd = "fusermount3 -u -z '" + path + "' 2>/dev/null";
    (void)std::system(cmd.c_str());
  }
}

// Whether fusectl is mounted: the last resort of Unmount mounts it (as root). The privilege-
// free steps before it must be enough here, and a test changes nothing outside its directory.
bool FusectlMounted() { return fs::IsMountPoint("/sys/fs/fuse/connections"); }

class ArborfsUnmount : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_EQ(FusectlMounted(), fusectl_before_) << "Unmount needed fusectl";
  }

  void SetUp() override {
    storage::Store::Options so;
    so.path = dir_ / "store";
    auto store = storage::Store::Open(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    auto tl = store_->CreateRoot(3600LL * 1'000'000, getuid(), getgid());
    ASSERT_TRUE(tl.ok()) << tl.status().ToString();
    timeline_ = *tl;
  }

  std::unique_ptr<fs::Mount> MountAt(const std::string& path) {
    fs::MountOptions o;
    o.store_path = dir_ / "store";
    auto m = fs::Mount::Start(store_.get(), timeline_, path, o);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? std::move(m).value() : nullptr;
  }

  // Unmount's outcome and how long it took, in seconds.
  static std::pair<Status, double> TimedUnmount(fs::Mount& m) {
    auto t0 = std::chrono::steady_clock::now();
    Status st = m.Unmount();
    return {st, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
  }

  bool fusectl_before_ = FusectlMounted();
  TempDir dir_{"arbor-unmount"};
  std::unique_ptr<storage::Store> store_;
  TimelineId timeline_{0};
};

TEST_F(ArborfsUnmount, IsBoundedWhileAFileIsHeldOpen) {
  std::string mnt = dir_ / "mnt";
  auto m = MountAt(mnt);
  ASSERT_NE(m, nullptr);
  int fd = open((mnt + "/held").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "x", 1), 1);
  // The lazy unmount detaches the mount, but the open file keeps its connection serving.
  auto [st, secs] = TimedUnmount(*m);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_LT(secs, kBoundS);
  EXPECT_FALSE(fs::IsMountPoint(mnt));
  // The file is cut off as after a crash: nothing serves it any more.
  EXPECT_NE(fsync(fd), 0);
  close(fd);
  ForceUnmount(mnt);
}

TEST_F(ArborfsUnmount, IsBoundedWhenTheUnmountFails) {
  ASSERT_EQ(mkdir((dir_ / "a").c_str(), 0755), 0);
  auto m = MountAt(dir_ / "a/mnt");
  ASSERT_NE(m, nullptr);
  {
    std::FILE* f = std::fopen((dir_ / "a/mnt/file").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  // The mount moves with its parent: unmounting the path it was mounted at now fails.
  ASSERT_EQ(rename((dir_ / "a").c_str(), (dir_ / "b").c_str()), 0);
  std::string moved = dir_ / "b/mnt";
  ASSERT_TRUE(fs::IsMountPoint(moved));
  auto [st, secs] = TimedUnmount(*m);
  EXPECT_LT(secs, kBoundS);
  // It was found where it went (by its FUSE connection) and detached there, dead.
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(fs::IsMountPoint(moved));
  ForceUnmount(moved);
}

// A compute stopped at once for a reset or a delete has its mount discard writes first
// (Engine::RunStops): the kernel's dirty pages, which its exiting processes would write back,
// go nowhere. What was fsynced before stays; no fsync after it succeeds, so nothing dropped
// is ever reported durable.
TEST_F(ArborfsUnmount, DiscardedWritesNeverReachTheStoreAndNoFsyncClaimsThem) {
  std::string mnt = dir_ / "mnt";
  auto m = MountAt(mnt);
  ASSERT_NE(m, nullptr);
  const std::string kept(1 << 20, 'k');
  {
    int fd = open((mnt + "/kept").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, kept.data(), kept.size()), static_cast<ssize_t>(kept.size()));
    ASSERT_EQ(fsync(fd), 0);
    close(fd);
  }
  // Pages left dirty (not fsynced) before the discard, as a compute leaves them when it is
  // stopped, and more written after it.
  const std::string dropped(4 << 20, 'd');
  int fd = open((mnt + "/dropped").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, dropped.data(), dropped.size()), static_cast<ssize_t>(dropped.size()));
  const uint64_t before = store_->WrittenBytes(timeline_);
  m->DiscardWrites();
  ASSERT_EQ(pwrite(fd, dropped.data(), dropped.size(), static_cast<off_t>(dropped.size())),
            static_cast<ssize_t>(dropped.size()));
  const int rc = fsync(fd);
  const int err = errno;
  EXPECT_NE(rc, 0) << "an fsync after the discard claimed dropped data durable";
  EXPECT_EQ(err, EIO);
  close(fd);  // writes the dirty pages back: dropped
  auto [st, secs] = TimedUnmount(*m);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_LT(store_->WrittenBytes(timeline_) - before, 256u << 10)
      << "the discarded file's dirty pages reached the store";

  // Mounted again, the file fsynced before the discard reads back whole.
  m = MountAt(mnt);
  ASSERT_NE(m, nullptr);
  std::string back(kept.size(), '\0');
  int rd = open((mnt + "/kept").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(rd, 0);
  EXPECT_EQ(read(rd, back.data(), back.size()), static_cast<ssize_t>(back.size()));
  close(rd);
  EXPECT_TRUE(back == kept) << "the fsynced file changed";
  EXPECT_TRUE(m->Unmount().ok());
  ForceUnmount(mnt);
}

}  // namespace
}  // namespace arbor
