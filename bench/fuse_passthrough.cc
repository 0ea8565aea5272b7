// A FUSE file system that passes every operation through to a directory on the host: the
// cost of FUSE alone, with no store behind it. bench/fs_pgbench.sh runs PostgreSQL on it next
// to native and arborfs, so the gap between native and arborfs splits into what FUSE itself
// costs on this kernel and what the store adds.
//
// It mounts with arborfs's options: libfuse3 low-level API, multi-threaded (up to 16
// threads), writeback cache, keep_cache, one-hour entry and attribute timeouts,
// default_permissions, 1 MiB requests. New files are owned by the caller, as on arborfs.
// A benchmark tool only: it keeps one O_PATH descriptor per known inode.
//
// Usage: fuse_passthrough SOURCE_DIR MOUNTPOINT   (prints "mounted" once serving; unmounts
// on SIGTERM or SIGINT)

#define FUSE_USE_VERSION 312
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
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

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

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
  if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
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
    rc = fi ? ftruncate(static_cast<int>(fi->fh), attr->st_size)
            : truncate(path.c_str(), attr->st_size);
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

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  if (mknodat(In(parent)->fd, name, mode, rdev) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  ReplyCreated(req, parent, name, nullptr);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (mkdirat(In(parent)->fd, name, mode) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  ReplyCreated(req, parent, name, nullptr);
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  if (symlinkat(link, In(parent)->fd, name) != 0) {
    fuse_reply_err(req, errno);
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

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, unlinkat(In(parent)->fd, name, 0) == 0 ? 0 : errno);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, unlinkat(In(parent)->fd, name, AT_REMOVEDIR) == 0 ? 0 : errno);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  int rc = renameat2(In(parent)->fd, name, In(newparent)->fd, newname, flags);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

// With the writeback cache the kernel reads pages of files opened write-only, and it does
// appends itself, so the host file is opened read-write and without O_APPEND.
int OpenFlags(int flags) {
  if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  return (flags & ~(O_APPEND | O_NOFOLLOW)) | O_CLOEXEC;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int fd = open(ProcPath(In(ino)->fd).c_str(), OpenFlags(fi->flags));
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fi->fh = static_cast<uint64_t>(fd);
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  int fd = openat(In(parent)->fd, name, OpenFlags(fi->flags) | O_CREAT, mode);
  if (fd < 0) {
    fuse_reply_err(req, errno);
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

void OpWrite(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  ssize_t n = pwrite(static_cast<int>(fi->fh), buf, size, off);
  if (n < 0) {
    fuse_reply_err(req, errno);
    return;
  }
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
  fuse_reply_statfs(req, &sv);
}

void OpFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info* fi) {
  fuse_reply_err(req, fallocate(static_cast<int>(fi->fh), mode, off, len) == 0 ? 0 : errno);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOURCE_DIR MOUNTPOINT\n", argv[0]);
    return 2;
  }
  g_root.fd = open(argv[1], O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (g_root.fd < 0) {
    std::perror(argv[1]);
    return 1;
  }
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
  return rc == 0 ? 0 : 1;
}
