// Differential POSIX test: the same seeded random operations run on an arborfs mount (a real
// `arbor debug mount` process) and on a directory of the host file system. Every result
// (return value, errno, bytes read, stat fields) and the final trees must be identical.

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "testutil/fs_harness.h"

#ifndef ARBOR_DIFF_SEEDS
#define ARBOR_DIFF_SEEDS 10
#endif
#ifndef ARBOR_DIFF_OPS
#define ARBOR_DIFF_OPS 2500
#endif

namespace arbor::testutil {
namespace {

std::string Res(long r) {
  return r < 0 ? "err " + std::string(strerrorname_np(errno)) : "ok " + std::to_string(r);
}

std::string StatLine(const struct stat& st, bool with_mtime) {
  std::string s = "mode " + std::to_string(st.st_mode) + " nlink " + std::to_string(st.st_nlink);
  if (!S_ISDIR(st.st_mode)) s += " size " + std::to_string(st.st_size);
  if (with_mtime) {
    s += " mtime " + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  }
  return s;
}

std::string ReadWhole(const std::string& path) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return "<open " + std::string(strerrorname_np(errno)) + ">";
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
  close(fd);
  return out;
}

// A description of every file under `root`: type, mode, links, size, contents, targets.
void Walk(const std::string& root, const std::string& rel,
          std::map<std::string, std::string>* out) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = opendir(dir.c_str());
  if (!d) {
    (*out)[rel] = "<opendir failed>";
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  for (const auto& n : names) {
    std::string r = rel.empty() ? n : rel + "/" + n;
    std::string p = root + "/" + r;
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) {
      (*out)[r] = "<lstat failed>";
      continue;
    }
    std::string desc = StatLine(st, false);
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t k = readlink(p.c_str(), buf, sizeof buf);
      desc += " -> " + std::string(buf, k > 0 ? k : 0);
    } else if (S_ISREG(st.st_mode)) {
      desc += " data " + std::to_string(std::hash<std::string>()(ReadWhole(p)));
    }
    (*out)[r] = desc;
    if (S_ISDIR(st.st_mode)) Walk(root, r, out);
  }
}

class Differential {
 public:
  Differential(std::string a, std::string h, uint64_t seed) : a_(a), h_(h), rng_(seed) {}
  ~Differential() {
    for (auto& f : fds_) {
      close(f.a);
      close(f.h);
    }
  }

  // One random operation on both sides; returns "" or a description of the difference.
  std::string Step() {
    int kind = Pick(100);
    std::string ra, rh, what;
    if (kind < 14) {
      std::string p = Path();
      int flags = std::vector<int>{O_RDONLY, O_WRONLY, O_RDWR}[Pick(3)];
      if (Pick(3) != 0) flags |= O_CREAT;
      if (Pick(4) == 0) flags |= O_EXCL;
      if (Pick(6) == 0) flags |= O_TRUNC;
      if (Pick(6) == 0) flags |= O_APPEND;
      mode_t mode = Pick(2) ? 0644 : 0600;
      what = "open " + p + " flags " + std::to_string(flags);
      int fa = open((a_ + p).c_str(), flags, mode);
      ra = fa >= 0 ? "ok" : Res(fa);
      int fh = open((h_ + p).c_str(), flags, mode);
      rh = fh >= 0 ? "ok" : Res(fh);
      if (fa >= 0 && fh >= 0) {
        fds_.push_back({fa, fh, flags});
        if (fds_.size() > 10) CloseSlot(0);
      } else {
        if (fa >= 0) close(fa);
        if (fh >= 0) close(fh);
      }
    } else if (kind < 20 && !fds_.empty()) {
      size_t i = Pick(fds_.size());
      what = "close";
      CloseSlot(i);
      ra = rh = "ok";
    } else if (kind < 40 && !fds_.empty()) {
      Fd& f = fds_[Pick(fds_.size())];
      std::string data(1 + Pick(Pick(4) == 0 ? 40000 : 9000), '\0');
      for (auto& c : data) c = static_cast<char>('a' + Pick(26));
      off_t off = Offset();
      what = "pwrite " + std::to_string(data.size()) + " at " + std::to_string(off);
      ra = Res(pwrite(f.a, data.data(), data.size(), off));
      rh = Res(pwrite(f.h, data.data(), data.size(), off));
    } else if (kind < 50 && !fds_.empty()) {
      Fd& f = fds_[Pick(fds_.size())];
      size_t len = 1 + Pick(30000);
      off_t off = Offset();
      what = "pread " + std::to_string(len) + " at " + std::to_string(off);
      std::string ba(len, '\0'), bh(len, '\0');
      ssize_t na = pread(f.a, ba.data(), len, off);
      ra = Res(na);
      ssize_t nh = pread(f.h, bh.data(), len, off);
      rh = Res(nh);
      if (na > 0) ra += " " + std::to_string(std::hash<std::string>()(ba.substr(0, na)));
      if (nh > 0) rh += " " + std::to_string(std::hash<std::string>()(bh.substr(0, nh)));
    } else if (kind < 55) {
      off_t size = Offset();
      if (!fds_.empty() && Pick(2)) {
        Fd& f = fds_[Pick(fds_.size())];
        what = "ftruncate " + std::to_string(size);
        ra = Res(ftruncate(f.a, size));
        rh = Res(ftruncate(f.h, size));
      } else {
        std::string p = Path();
        what = "truncate " + p + " " + std::to_string(size);
        ra = Res(truncate((a_ + p).c_str(), size));
        rh = Res(truncate((h_ + p).c_str(), size));
      }
    } else if (kind < 62) {
      std::string p = Path(), q = Path();
      unsigned flags = Pick(5) == 0 ? RENAME_NOREPLACE : 0;
      what = "rename " + p + " " + q + " " + std::to_string(flags);
      ra = Res(renameat2(AT_FDCWD, (a_ + p).c_str(), AT_FDCWD, (a_ + q).c_str(), flags));
      rh = Res(renameat2(AT_FDCWD, (h_ + p).c_str(), AT_FDCWD, (h_ + q).c_str(), flags));
    } else if (kind < 67) {
      std::string p = Path();
      what = "unlink " + p;
      ra = Res(unlink((a_ + p).c_str()));
      rh = Res(unlink((h_ + p).c_str()));
    } else if (kind < 73) {
      std::string p = Path(true);
      what = "mkdir " + p;
      ra = Res(mkdir((a_ + p).c_str(), 0755));
      rh = Res(mkdir((h_ + p).c_str(), 0755));
    } else if (kind < 77) {
      std::string p = Path(true);
      what = "rmdir " + p;
      ra = Res(rmdir((a_ + p).c_str()));
      rh = Res(rmdir((h_ + p).c_str()));
    } else if (kind < 80) {
      std::string p = Path();
      std::string target =
          std::vector<std::string>{"f0", "d0", "../f1", "nowhere", "d1/f2"}[Pick(5)];
      what = "symlink " + target + " " + p;
      ra = Res(symlink(target.c_str(), (a_ + p).c_str()));
      rh = Res(symlink(target.c_str(), (h_ + p).c_str()));
    } else if (kind < 82) {
      std::string p = Path();
      char ba[4096], bh[4096];
      what = "readlink " + p;
      ssize_t na = readlink((a_ + p).c_str(), ba, sizeof ba);
      ra = Res(na) + (na > 0 ? " " + std::string(ba, na) : "");
      ssize_t nh = readlink((h_ + p).c_str(), bh, sizeof bh);
      rh = Res(nh) + (nh > 0 ? " " + std::string(bh, nh) : "");
    } else if (kind < 85) {
      std::string p = Path();
      mode_t m = std::vector<mode_t>{0600, 0644, 0755, 0700, 0640}[Pick(5)];
      what = "chmod " + p;
      ra = Res(chmod((a_ + p).c_str(), m));
      rh = Res(chmod((h_ + p).c_str(), m));
    } else if (kind < 88) {
      std::string p = Path();
      struct timespec ts[2];
      ts[0].tv_sec = 1'600'000'000 + Pick(1000);
      ts[0].tv_nsec = Pick(3) == 0 ? UTIME_OMIT : Pick(1000000) * 1000;
      ts[1].tv_sec = 1'600'000'000 + Pick(1000);
      ts[1].tv_nsec = Pick(1000000) * 1000;
      what = "utimensat " + p;
      ra = Res(utimensat(AT_FDCWD, (a_ + p).c_str(), ts, 0));
      rh = Res(utimensat(AT_FDCWD, (h_ + p).c_str(), ts, 0));
      struct stat sa, sh;
      if (stat((a_ + p).c_str(), &sa) == 0) ra += " " + StatLine(sa, true);
      if (stat((h_ + p).c_str(), &sh) == 0) rh += " " + StatLine(sh, true);
    } else if (kind < 90 && !fds_.empty()) {
      Fd& f = fds_[Pick(fds_.size())];
      what = "fsync";
      ra = Res(Pick(2) ? fsync(f.a) : fdatasync(f.a));
      rh = Res(fsync(f.h));
    } else if (kind < 96) {
      std::string p = Path();
      struct stat sa, sh;
      what = "lstat " + p;
      int xa = lstat((a_ + p).c_str(), &sa);
      ra = Res(xa) + (xa == 0 ? " " + StatLine(sa, false) : "");
      int xh = lstat((h_ + p).c_str(), &sh);
      rh = Res(xh) + (xh == 0 ? " " + StatLine(sh, false) : "");
    } else if (!fds_.empty()) {
      Fd& f = fds_[Pick(fds_.size())];
      struct stat sa, sh;
      what = "fstat";
      int xa = fstat(f.a, &sa);
      ra = Res(xa) + (xa == 0 ? " " + StatLine(sa, false) : "");
      int xh = fstat(f.h, &sh);
      rh = Res(xh) + (xh == 0 ? " " + StatLine(sh, false) : "");
    } else {
      return "";
    }
    if (ra != rh) return what + ": arborfs '" + ra + "' vs host '" + rh + "'";
    ++(ra.rfind("ok", 0) == 0 ? succeeded_ : failed_);
    return "";
  }

  // How many compared operations succeeded and failed (with the same errno on both sides).
  int succeeded() const { return succeeded_; }
  int failed() const { return failed_; }

  void CloseAll() {
    while (!fds_.empty()) CloseSlot(0);
  }

 private:
  struct Fd {
    int a, h, flags;
  };
  size_t Pick(size_t n) { return n == 0 ? 0 : rng_() % n; }
  void CloseSlot(size_t i) {
    close(fds_[i].a);
    close(fds_[i].h);
    fds_.erase(fds_.begin() + static_cast<long>(i));
  }
  // Offsets cluster around 8 KiB block edges.
  off_t Offset() {
    if (Pick(4) == 0) return static_cast<off_t>(Pick(50000));
    long edge = static_cast<long>(Pick(6)) * 8192 + static_cast<long>(Pick(200)) - 100;
    return std::max(0L, edge);
  }
  // A path relative to the roots: up to two directory levels and a leaf; sometimes too long.
  std::string Path(bool dir_leaf = false) {
    if (Pick(200) == 0) return "/" + std::string(256, 'n');
    std::string p;
    for (size_t depth = Pick(3); depth > 0; --depth) p += "/d" + std::to_string(Pick(3));
    if (dir_leaf || Pick(4) == 0) return p + "/d" + std::to_string(Pick(3));
    return p + "/f" + std::to_string(Pick(5));
  }

  std::string a_, h_;
  std::mt19937_64 rng_;
  std::vector<Fd> fds_;
  int succeeded_ = 0, failed_ = 0;
};

TEST(ArborfsDifferential, RandomOperationsMatchTheHost) {
  TempDir dir("arborfs-diff");
  uint32_t uid = geteuid(), gid = getegid();
  // The daemon's mount options: the writeback cache is on there.
  auto mount = MountProcess::Start(dir / "store", dir / "mnt", 0, uid, gid, {"--writeback-cache"});
  ASSERT_NE(mount, nullptr);
  std::string host = dir / "host";
  ASSERT_EQ(mkdir(host.c_str(), 0755), 0);
  for (uint64_t seed = 1; seed <= ARBOR_DIFF_SEEDS; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::string sub = "/s" + std::to_string(seed);
    std::string a = dir / "mnt" + sub, h = host + sub;
    ASSERT_EQ(mkdir(a.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(h.c_str(), 0755), 0);
    Differential d(a, h, seed);
    for (int i = 0; i < ARBOR_DIFF_OPS; ++i) {
      std::string diff = d.Step();
      ASSERT_EQ(diff, "") << "step " << i;
    }
    d.CloseAll();
    // Both outcomes are exercised: most operations succeed, many fail with an errno.
    EXPECT_GT(d.succeeded(), ARBOR_DIFF_OPS / 3);
    EXPECT_GT(d.failed(), ARBOR_DIFF_OPS / 20);
    std::map<std::string, std::string> ta, th;
    Walk(a, "", &ta);
    Walk(h, "", &th);
    EXPECT_EQ(ta, th);
    std::printf("seed %llu: %d ok, %d errors, %zu files\n", static_cast<unsigned long long>(seed),
                d.succeeded(), d.failed(), ta.size());
    EXPECT_GT(ta.size(), 3u) << "the random operations built almost nothing";
  }
  // The tree survives an unmount and a mount of the same timeline.
  std::map<std::string, std::string> before, after;
  Walk(dir / "mnt", "", &before);
  uint64_t tl = mount->timeline();
  EXPECT_TRUE(mount->Stop());
  mount.reset();
  mount = MountProcess::Start(dir / "store", dir / "mnt", tl, uid, gid, {"--writeback-cache"});
  ASSERT_NE(mount, nullptr);
  Walk(dir / "mnt", "", &after);
  EXPECT_EQ(before, after);
}

}  // namespace
}  // namespace arbor::testutil
