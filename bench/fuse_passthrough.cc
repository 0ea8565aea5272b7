// A FUSE file system that passes every operation through to a directory on the host: the
// cost of FUSE alone, with no store behind it. bench/fs_pgbench.sh runs PostgreSQL on it next
// to native and arborfs, so the gap between native and arborfs splits into what FUSE itself
// costs on this kernel and what the store adds.
//
// It mounts with arborfs's options: libfuse3 low-level API, multi-threaded (up to 16
// threads), writeback cache, keep_cache, one-hour entry and attribute timeouts,
// default_permissions, 1 MiB requests. New files are owned by the caller, as on arborfs.
// A benchmark and test tool only: it keeps one O_PATH descriptor per known inode.
//
// With --quota BYTES it is a disk of that size, which an ordinary user can mount (through
// fusermount3) and fill: the integration tests put the store on one to meet a full disk
// without root (tests/testutil/fs_harness.h, QuotaFs). Space used is what the host charges
// for the files below SOURCE_DIR (st_blocks, once per inode), freed when a file's last link
// goes; statfs reports the quota and what is left of it; a write or fallocate that needs more
// than is left, and a create, mknod, symlink or mkdir when nothing is left, fail with ENOSPC.
// The writeback cache is off then, so that ENOSPC comes back from write(2) itself, as on a
// local disk, rather than from a later fsync.
//
// Two switches vary its FUSE settings for measurements (bench/fuse_copy_bench.sh):
// --max-write BYTES sets conn->max_write (default 1 MiB, as arborfs; libfuse derives the
// max_pages it asks for from it), and
// --write-stats prints to stderr how many WRITE requests arrived and how large they were, on
// SIGUSR1 and at unmount.
//
// Usage: fuse_passthrough [--quota BYTES] [--max-write BYTES] [--write-stats] SOURCE_DIR
//        MOUNTPOINT   (prints "mounted" once serving; unmounts on SIGTERM or SIGINT)

#define FUSE_USE_VERSION 312
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr double kTimeout = 3600;

struct Inode {
  int fd = -1;  // O_PATH
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t nlookup = 0;  // guarded by g_mu
};

std::mutex g_mu;
std::map<std::pair<dev_t, ino_t>, Inode*> g_inodes;
Inode g_root;

Inode* In(fuse_ino_t ino) {
  return ino == FUSE_ROOT_ID ? &g_root : reinterpret_cast<Inode*>(static_cast<uintptr_t>(ino));
}

unsigned g_max_write = 1 << 20;

// --write-stats: WRITE requests by size, in powers of two (bucket k: sizes in (2^(k-1), 2^k]).
bool g_write_stats = false;
std::atomic<uint64_t> g_writes[32];
std::atomic<uint64_t> g_write_bytes{0};

void CountWrite(size_t size) {
  if (!g_write_stats) return;
  int k = 0;
  while (k < 31 && (size_t{1} << k) < size) ++k;
  g_writes[k].fetch_add(1, std::memory_order_relaxed);
  g_write_bytes.fetch_add(size, std::memory_order_relaxed);
}

void PrintWriteStats() {
  uint64_t n = 0;
  for (auto& c : g_writes) n += c.load();
  std::fprintf(stderr, "write-stats: %llu WRITE requests, %llu bytes, mean %llu bytes\n",
               static_cast<unsigned long long>(n),
               static_cast<unsigned long long>(g_write_bytes.load()),
               static_cast<unsigned long long>(n ? g_write_bytes.load() / n : 0));
  for (int k = 0; k < 32; ++k) {
    if (uint64_t c = g_writes[k].load()) {
      std::fprintf(stderr, "write-stats: <= %llu bytes: %llu\n", 1ULL << k,
                   static_cast<unsigned long long>(c));
    }
  }
}

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// ---- the quota (--quota) ----
// Every operation that can change the space used holds the lock returned by SpaceLock(),
// measures what the host charges before and after, and adds the difference to g_used; one
// that needs space checks first. Without a quota nothing is locked or measured.

constexpr int64_t kBlock = 4096;

uint64_t g_quota = 0;  // bytes; 0: no quota
std::mutex g_space_mu;
int64_t g_used = 0;  // guarded by g_space_mu

std::unique_lock<std::mutex> SpaceLock() {
  return g_quota ? std::unique_lock(g_space_mu) : std::unique_lock<std::mutex>();
}

// What the host charges for a file: its blocks, or nothing once its last link is gone (so a
// write through a descriptor of an unlinked file is not counted: its space went at unlink).
int64_t Charge(const struct stat& st) {
  return st.st_nlink == 0 ? 0 : static_cast<int64_t>(st.st_blocks) * 512;
}

int64_t ChargeOfFd(int fd) {
  struct stat st;
  return fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? Charge(st) : 0;
}

int64_t ChargeAt(int dirfd, const char* name) {
  struct stat st;
  return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? Charge(st) : 0;
}

// What removing the last link of `name` gives back (nothing while other links remain).
int64_t FreedByRemoving(int dirfd, const char* name) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
  return S_ISDIR(st.st_mode) || st.st_nlink == 1 ? Charge(st) : 0;
}

// True if the bytes [off, off + len) of the file open at `fd` need more space than is left.
// The file is taken to hold its blocks from offset 0 on, so only what lies past them needs
// space (a write into a hole of a sparse file may be refused near the end: conservative).
// REQUIRES: the space lock is held.
bool WouldOverflow(int fd, uint64_t off, uint64_t len) {
  if (!g_quota || len == 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_nlink == 0) return false;
  uint64_t held = static_cast<uint64_t>(st.st_blocks) * 512;
  uint64_t end = off + len;
  if (end <= held) return false;
  uint64_t start = std::max(off, held) / kBlock * kBlock;
  uint64_t need = (end + kBlock - 1) / kBlock * kBlock - start;
  return g_used + static_cast<int64_t>(need) > static_cast<int64_t>(g_quota);
}

// True if nothing is left (new entries are refused, as on a full disk).
// REQUIRES: the space lock is held.
bool Full(int64_t need = 1) { return g_quota && g_used + need > static_cast<int64_t>(g_quota); }

// What the host charges for the entries below `root` (each inode once), at start.
int64_t UsedBelow(const char* root) {
  std::set<std::pair<dev_t, ino_t>> seen;
  int64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (lstat(it->path().c_str(), &st) == 0 && seen.insert({st.st_dev, st.st_ino}).second) {
      total += Charge(st);
    }
  }
  return total;
}

// Looks up `name` in `parent` and takes a lookup reference on the result.
int DoLookup(fuse_ino_t parent, const char* name, fuse_entry_param* e) {
  std::memset(e, 0, sizeof *e);
  int fd = openat(In(parent)->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    int err = errno;
    close(fd);
    return err;
  }
  std::lock_guard l(g_mu);
  auto key = std::make_pair(e->attr.st_dev, e->attr.st_ino);
  auto it = g_inodes.find(key);
  Inode* inode;
  if (it != g_inodes.end()) {
    inode = it->second;
    close(fd);
  } else {
    inode = new Inode;
    inode->fd = fd;
    inode->dev = key.first;
    inode->ino = key.second;
    g_inodes[key] = inode;
  }
  inode->nlookup++;
  e->ino = reinterpret_cast<uintptr_t>(inode);
  e->attr_timeout = kTimeout;
  e->entry_timeout = kTimeout;
  return 0;
}

void Forget(fuse_ino_t ino, uint64_t n) {
  if (ino == FUSE_ROOT_ID) return;
  Inode* inode = In(ino);
  std::lock_guard l(g_mu);
  inode->nlookup -= std::min(n, inode->nlookup);
  if (inode->nlookup == 0) {
    g_inodes.erase({inode->dev, inode->ino});
    close(inode->fd);
    delete inode;
  }
}

// Gives a new entry to the caller (the daemon runs as root), then replies with it.
void ReplyCreated(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_file_info* fi) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  fchownat(In(parent)->fd, name, ctx->uid, ctx->gid, AT_SYMLINK_NOFOLLOW);
  fuse_entry_param e;
  int err = DoLookup(parent, name, &e);
  if (err != 0) {
    if (fi) close(static_cast<int>(fi->fh));
    fuse_reply_err(req, err);
  } else if (fi) {
    fi->keep_cache = 1;
    fuse_reply_create(req, &e, fi);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void OpInit(void*, fuse_conn_info* conn) {
  if (!g_quota && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  }
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->max_write = g_max_write;
  conn->max_readahead = 1 << 20;
  if (g_write_stats) {
    std::fprintf(stderr, "init: proto 7.%u, max_write %u, writeback_cache %d\n", conn->proto_minor,
                 conn->max_write, (conn->want & FUSE_CAP_WRITEBACK_CACHE) ? 1 : 0);
  }
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e;
  int err = DoLookup(parent, name, &e);
  if (err == ENOENT) {
    std::memset(&e, 0, sizeof e);
    e.entry_timeout = kTimeout;
    fuse_reply_entry(req, &e);
  } else if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  Forget(ino, n);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st;
  if (fstatat(In(ino)->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_attr(req, &st, kTimeout);
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Inode* inode = In(ino);
  std::string path = ProcPath(inode->fd);
  int rc = 0;
  if (rc == 0 && (to_set & FUSE_SET_ATTR_MODE)) rc = chmod(path.c_str(), attr->st_mode);
  if (rc == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    rc = fchownat(inode->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  }
  if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
    // Growing leaves a hole (no space); shrinking gives space back.
    auto l = SpaceLock();
    int64_t before = g_quota ? ChargeOfFd(inode->fd) : 0;
    rc = fi ? ftruncate(static_cast<int>(fi->fh), attr->st_size)
            : truncate(path.c_str(), attr->st_size);
    if (g_quota) g_used += ChargeOfFd(inode->fd) - before;
  }
  if (rc == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
    timespec tv[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
      tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME)
      tv[0] = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
      tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME)
      tv[1] = attr->st_mtim;
    rc = fi ? futimens(static_cast<int>(fi->fh), tv) : utimensat(AT_FDCWD, path.c_str(), tv, 0);
  }
  if (rc != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  OpGetattr(req, ino, fi);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  char buf[PATH_MAX + 1];
  ssize_t n = readlinkat(In(ino)->fd, "", buf, sizeof buf - 1);
  if (n < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  buf[n] = 0;
  fuse_reply_readlink(req, buf);
}

// Makes a new entry with `make` (0 or an errno), charging it; refused when `need` bytes are
// not left.
template <typename Make>
int MakeEntry(fuse_ino_t parent, const char* name, int64_t need, Make make) {
  auto l = SpaceLock();
  if (Full(need)) return ENOSPC;
  int err = make();
  if (err == 0 && g_quota) g_used += ChargeAt(In(parent)->fd, name);
  return err;
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  int err = MakeEntry(parent, name, 1,
                      [&] { return mknodat(In(parent)->fd, name, mode, rdev) == 0 ? 0 : errno; });
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  ReplyCreated(req, parent, name, nullptr);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  int err = MakeEntry(parent, name, kBlock,
                      [&] { return mkdirat(In(parent)->fd, name, mode) == 0 ? 0 : errno; });
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  ReplyCreated(req, parent, name, nullptr);
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  int err = MakeEntry(parent, name, 1,
                      [&] { return symlinkat(link, In(parent)->fd, name) == 0 ? 0 : errno; });
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  ReplyCreated(req, parent, name, nullptr);
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  if (linkat(AT_FDCWD, ProcPath(In(ino)->fd).c_str(), In(parent)->fd, name, AT_SYMLINK_FOLLOW) !=
      0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_entry_param e;
  int err = DoLookup(parent, name, &e);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

// Removes `name` (a file, or a directory with AT_REMOVEDIR); its space is free at once.
int Remove(fuse_ino_t parent, const char* name, int flags) {
  auto l = SpaceLock();
  int64_t freed = g_quota ? FreedByRemoving(In(parent)->fd, name) : 0;
  if (unlinkat(In(parent)->fd, name, flags) != 0) return errno;
  g_used -= freed;
  return 0;
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Remove(parent, name, 0));
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Remove(parent, name, AT_REMOVEDIR));
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  auto l = SpaceLock();
  // A target that is replaced (not exchanged, and not the source itself) gives its space back.
  int64_t freed = 0;
  struct stat from, to;
  if (g_quota && !(flags & RENAME_EXCHANGE) &&
      fstatat(In(parent)->fd, name, &from, AT_SYMLINK_NOFOLLOW) == 0 &&
      fstatat(In(newparent)->fd, newname, &to, AT_SYMLINK_NOFOLLOW) == 0 &&
      (from.st_dev != to.st_dev || from.st_ino != to.st_ino)) {
    freed = FreedByRemoving(In(newparent)->fd, newname);
  }
  int rc = renameat2(In(parent)->fd, name, In(newparent)->fd, newname, flags);
  int err = rc == 0 ? 0 : errno;
  if (rc == 0) g_used -= freed;
  l = {};
  fuse_reply_err(req, err);
}

// With the writeback cache the kernel reads pages of files opened write-only, and it does
// appends itself, so the host file is opened read-write and without O_APPEND.
int OpenFlags(int flags) {
  if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  return (flags & ~(O_APPEND | O_NOFOLLOW)) | O_CLOEXEC;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int fd;
  {
    // O_TRUNC (atomic_o_trunc) gives the file's space back.
    std::unique_lock<std::mutex> l;
    if (fi->flags & O_TRUNC) l = SpaceLock();
    int64_t before = l ? ChargeOfFd(In(ino)->fd) : 0;
    fd = open(ProcPath(In(ino)->fd).c_str(), OpenFlags(fi->flags));
    if (fd < 0) {
      int err = errno;
      l = {};
      fuse_reply_err(req, err);
      return;
    }
    if (l) g_used += ChargeOfFd(fd) - before;
  }
  fi->fh = static_cast<uint64_t>(fd);
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  int fd = -1;
  int err = MakeEntry(parent, name, 1, [&] {
    // The name may exist already (O_CREAT without O_EXCL), and O_TRUNC free its space.
    int64_t before = g_quota ? ChargeAt(In(parent)->fd, name) : 0;
    fd = openat(In(parent)->fd, name, OpenFlags(fi->flags) | O_CREAT, mode);
    if (fd < 0) return errno;
    g_used -= before;  // MakeEntry charges what it holds now
    return 0;
  });
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = static_cast<uint64_t>(fd);
  ReplyCreated(req, parent, name, fi);
}

void OpRead(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  std::vector<char> buf(size);
  ssize_t n = pread(static_cast<int>(fi->fh), buf.data(), size, off);
  if (n < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
}

// Runs `op` (0 or an errno) on the open file `fd`, charging what it adds or gives back;
// refused with ENOSPC if the bytes [off, off + len) would not fit (len 0: no check).
template <typename Op>
int Grow(int fd, off_t off, off_t len, Op op) {
  auto l = SpaceLock();
  if (WouldOverflow(fd, static_cast<uint64_t>(off), static_cast<uint64_t>(len))) return ENOSPC;
  int64_t before = g_quota ? ChargeOfFd(fd) : 0;
  int err = op();
  if (g_quota) g_used += ChargeOfFd(fd) - before;
  return err;
}

void OpWrite(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  int fd = static_cast<int>(fi->fh);
  ssize_t n = -1;
  int err = Grow(fd, off, static_cast<off_t>(size), [&] {
    n = pwrite(fd, buf, size, off);
    return n < 0 ? errno : 0;
  });
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  CountWrite(size);
  fuse_reply_write(req, static_cast<size_t>(n));
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  close(static_cast<int>(fi->fh));
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  int fd = static_cast<int>(fi->fh);
  fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : errno);
}

struct Dir {
  DIR* dp = nullptr;
  off_t offset = 0;
};

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int fd = openat(In(ino)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* dp = fd < 0 ? nullptr : fdopendir(fd);
  if (!dp) {
    int err = errno;
    if (fd >= 0) close(fd);
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uintptr_t>(new Dir{dp, 0});
  fuse_reply_open(req, fi);
}

void OpReaddir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Dir* d = reinterpret_cast<Dir*>(static_cast<uintptr_t>(fi->fh));
  if (off != d->offset) {
    seekdir(d->dp, off);
    d->offset = off;
  }
  std::vector<char> buf(size);
  size_t used = 0;
  while (true) {
    errno = 0;
    dirent* ent = readdir(d->dp);
    if (!ent) break;
    struct stat st {};
    st.st_ino = ent->d_ino;
    st.st_mode = static_cast<mode_t>(ent->d_type) << 12;
    off_t next = telldir(d->dp);
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used, ent->d_name, &st, next);
    if (n > size - used) {
      seekdir(d->dp, d->offset);  // did not fit: give it again next time
      break;
    }
    used += n;
    d->offset = next;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Dir* d = reinterpret_cast<Dir*>(static_cast<uintptr_t>(fi->fh));
  closedir(d->dp);
  delete d;
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  int fd = dirfd(reinterpret_cast<Dir*>(static_cast<uintptr_t>(fi->fh))->dp);
  fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : errno);
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs sv;
  if (fstatvfs(In(ino)->fd, &sv) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  if (g_quota) {
    // A disk of the quota's size, with no more free than the host has.
    int64_t used;
    {
      std::lock_guard l(g_space_mu);
      used = g_used;
    }
    uint64_t host_free = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize / kBlock;
    uint64_t left = used < static_cast<int64_t>(g_quota) ? (g_quota - used) / kBlock : 0;
    sv.f_bsize = sv.f_frsize = kBlock;
    sv.f_blocks = g_quota / kBlock;
    sv.f_bfree = sv.f_bavail = std::min(left, host_free);
  }
  fuse_reply_statfs(req, &sv);
}

void OpFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info* fi) {
  int fd = static_cast<int>(fi->fh);
  bool frees = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE);
  fuse_reply_err(req, Grow(fd, off, frees ? 0 : len,
                           [&] { return fallocate(fd, mode, off, len) == 0 ? 0 : errno; }));
}

}  // namespace

int main(int argc, char** argv) {
  const char* prog = argv[0];
  auto usage = [prog] {
    std::fprintf(stderr,
                 "usage: %s [--quota BYTES] [--max-write BYTES] [--write-stats] SOURCE_DIR "
                 "MOUNTPOINT\n",
                 prog);
    return 2;
  };
  auto number = [prog](const char* flag, const char* arg, uint64_t* out) {
    char* end = nullptr;
    *out = std::strtoull(arg, &end, 10);
    if (*end != 0 || *out == 0) {
      std::fprintf(stderr, "%s: %s wants a number of bytes\n", prog, flag);
      return false;
    }
    return true;
  };
  while (argc > 1 && std::strncmp(argv[1], "--", 2) == 0) {
    if (std::strcmp(argv[1], "--write-stats") == 0) {
      g_write_stats = true;
      argv += 1;
      argc -= 1;
    } else if (argc > 2 && std::strcmp(argv[1], "--quota") == 0) {
      if (!number("--quota", argv[2], &g_quota)) return 2;
      argv += 2;
      argc -= 2;
    } else if (argc > 2 && std::strcmp(argv[1], "--max-write") == 0) {
      uint64_t v;
      if (!number("--max-write", argv[2], &v)) return 2;
      if (v < 4096 || v > (1u << 20)) {
        std::fprintf(stderr, "%s: --max-write wants 4096 to 1048576 bytes\n", prog);
        return 2;
      }
      g_max_write = static_cast<unsigned>(v);
      argv += 2;
      argc -= 2;
    } else {
      return usage();
    }
  }
  if (argc != 3) return usage();
  g_root.fd = open(argv[1], O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (g_root.fd < 0) {
    std::perror(argv[1]);
    return 1;
  }
  if (g_quota) g_used = UsedBelow(argv[1]);
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.symlink = OpSymlink;
  ops.link = OpLink;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.rename = OpRename;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.fallocate = OpFallocate;

  std::string opts = "default_permissions,fsname=passthrough";
  if (geteuid() == 0) opts += ",allow_other";
  char arg0[] = "fuse_passthrough";
  char dash_o[] = "-o";
  std::vector<char*> cargv = {arg0, dash_o, opts.data()};
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(cargv.size()), cargv.data());
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, nullptr);
  if (!se) return 1;
  if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[2]) != 0) {
    fuse_session_destroy(se);
    return 1;
  }
  if (g_write_stats) {
    // SIGUSR1 prints the counts so far, from a thread of its own (blocked in every other).
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
    std::thread([usr1] {
      int sig;
      while (sigwait(&usr1, &sig) == 0) PrintWriteStats();
    }).detach();
  }
  std::printf("mounted\n");
  std::fflush(stdout);
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_max_threads(cfg, 16);
  fuse_loop_cfg_set_idle_threads(cfg, 4);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  if (g_write_stats) PrintWriteStats();
  return rc == 0 ? 0 : 1;
}
