#include "fs/fuse_ops.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/log.h"

namespace arbor::fs {
namespace {

using storage::Attr;
using storage::FileKind;

SessionContext& Ctx(fuse_req_t req) {
  return *static_cast<SessionContext*>(fuse_req_userdata(req));
}
FileSystem& Fs(fuse_req_t req) { return *Ctx(req).fs; }

// What a WRITE of `data` at `off` costs the compute's write budget: the bytes the store keeps
// of each block it touches (a block's trailing zeros are not stored, so the zero-filled pages
// of a new WAL segment or of a relation's extension cost next to nothing), plus a record's
// overhead per block.
uint64_t BudgetBytes(uint64_t off, std::span<const char> data) {
  constexpr uint64_t kPerBlock = 64;
  uint64_t cost = 0;
  for (size_t at = 0; at < data.size();) {
    const size_t n =
        std::min<size_t>(data.size() - at, storage::kBlockSize - (off + at) % storage::kBlockSize);
    cost += storage::StoredSize(data.subspan(at, n)) + kPerBlock;
    at += n;
  }
  return cost;
}

struct timespec ToTimespec(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = ns / 1'000'000'000;
  ts.tv_nsec = ns % 1'000'000'000;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1'000'000'000;
    --ts.tv_sec;
  }
  return ts;
}

int64_t ToNs(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct stat ToStat(InodeId ino, const Attr& a) {
  struct stat st {};
  st.st_ino = ino.value();
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blksize = storage::kBlockSize;
  st.st_blocks = static_cast<blkcnt_t>((a.size + storage::kBlockSize - 1) / storage::kBlockSize *
                                       (storage::kBlockSize / 512));
  st.st_atim = ToTimespec(a.atime_ns);
  st.st_mtim = ToTimespec(a.mtime_ns);
  st.st_ctim = ToTimespec(a.ctime_ns);
  return st;
}

fuse_entry_param ToEntryParam(fuse_req_t req, InodeId ino, const Attr& a) {
  fuse_entry_param e{};
  e.ino = ino.value();
  e.generation = 1;
  e.attr = ToStat(ino, a);
  e.attr_timeout = Ctx(req).options.attr_timeout_s;
  e.entry_timeout = Ctx(req).options.entry_timeout_s;
  return e;
}

void ReplyErr(fuse_req_t req, FsStatus s) { fuse_reply_err(req, ToErrno(s.code())); }

// Replies with a new entry; if the kernel did not take it (the request was interrupted),
// the lookup count it would have held is dropped again.
void ReplyEntry(fuse_req_t req, FsResult<Entry> e) {
  if (!e.ok()) return ReplyErr(req, e.status());
  fuse_entry_param p = ToEntryParam(req, e->ino, e->attr);
  if (fuse_reply_entry(req, &p) != 0) Fs(req).Forget(e->ino, 1);
}

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return Caller{c->uid, c->gid};
}

// Runs one callback body; an exception (which would be a bug, e.g. bad_alloc) becomes EIO
// and never crosses into libfuse.
template <typename F>
void Guard(fuse_req_t req, const char* op, F&& body) {
  try {
    body();
  } catch (const std::exception& ex) {
    log::error("arborfs: {}: unexpected exception: {}", op, ex.what());
    if (req) fuse_reply_err(req, EIO);
  } catch (...) {
    log::error("arborfs: {}: unexpected exception", op);
    if (req) fuse_reply_err(req, EIO);
  }
}

// ---- the operations ----

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* ctx = static_cast<SessionContext*>(userdata);
  if (ctx->options.writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  }
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  // We are the only writer: cached pages never go stale behind the kernel's back.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "lookup", [&] {
    auto e = Fs(req).Lookup(InodeId(parent), name);
    if (!e.ok() && e.status().code() == FsError::kNoEntry && Ctx(req).options.entry_timeout_s > 0) {
      // A negative entry the kernel may cache: names only appear through this mount.
      fuse_entry_param p{};
      p.ino = 0;
      p.entry_timeout = Ctx(req).options.entry_timeout_s;
      fuse_reply_entry(req, &p);
      return;
    }
    ReplyEntry(req, e);
  });
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Guard(nullptr, "forget", [&] { Fs(req).Forget(InodeId(ino), nlookup); });
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Guard(nullptr, "forget_multi", [&] {
    for (size_t i = 0; i < count; ++i) {
      Fs(req).Forget(InodeId(forgets[i].ino), forgets[i].nlookup);
    }
  });
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guard(req, "getattr", [&] {
    auto a = Fs(req).GetAttr(InodeId(ino));
    if (!a.ok()) return ReplyErr(req, a.status());
    struct stat st = ToStat(InodeId(ino), *a);
    fuse_reply_attr(req, &st, Ctx(req).options.attr_timeout_s);
  });
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Guard(req, "setattr", [&] {
    SetAttrRequest r;
    if (to_set & FUSE_SET_ATTR_MODE) r.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) r.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) r.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) {
      if (attr->st_size < 0) return fuse_reply_err(req, EINVAL), void();
      r.size = static_cast<uint64_t>(attr->st_size);
    }
    int64_t now = WallMicros() * 1000;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      r.atime_ns = now;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      r.atime_ns = ToNs(attr->st_atim);
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      r.mtime_ns = now;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      r.mtime_ns = ToNs(attr->st_mtim);
    }
    auto a = Fs(req).SetAttr(InodeId(ino), r);
    if (!a.ok()) return ReplyErr(req, a.status());
    struct stat st = ToStat(InodeId(ino), *a);
    fuse_reply_attr(req, &st, Ctx(req).options.attr_timeout_s);
  });
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  Guard(req, "readlink", [&] {
    auto t = Fs(req).Readlink(InodeId(ino));
    if (!t.ok()) return ReplyErr(req, t.status());
    fuse_reply_readlink(req, t->c_str());
  });
}

void OpMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) {
  // Device nodes, FIFOs and sockets have no place in a data directory.
  fuse_reply_err(req, EPERM);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Guard(req, "mkdir",
        [&] { ReplyEntry(req, Fs(req).Mkdir(InodeId(parent), name, mode, CallerOf(req))); });
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "unlink", [&] { ReplyErr(req, Fs(req).Unlink(InodeId(parent), name)); });
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "rmdir", [&] { ReplyErr(req, Fs(req).Rmdir(InodeId(parent), name)); });
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Guard(req, "symlink",
        [&] { ReplyEntry(req, Fs(req).Symlink(link, InodeId(parent), name, CallerOf(req))); });
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  Guard(req, "rename", [&] {
    ReplyErr(req, Fs(req).Rename(InodeId(parent), name, InodeId(newparent), newname, flags));
  });
}

void OpLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) {
  // Hard links are not supported (PostgreSQL 15 does not use them).
  fuse_reply_err(req, EPERM);
}

void SetOpenFlags(fuse_req_t req, fuse_file_info* fi) {
  fi->fh = 0;  // no descriptor or handle per open file
  fi->keep_cache = Ctx(req).options.keep_cache ? 1 : 0;
  fi->direct_io = 0;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "open", [&] {
    FsStatus s = Fs(req).Open(InodeId(ino), (fi->flags & O_TRUNC) != 0);
    if (!s.ok()) return ReplyErr(req, s);
    SetOpenFlags(req, fi);
    // An interrupted open gets no release: undo the open count now.
    if (fuse_reply_open(req, fi) != 0) Fs(req).Release(InodeId(ino));
  });
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Guard(req, "create", [&] {
    auto e = Fs(req).Create(InodeId(parent), name, mode, CallerOf(req), (fi->flags & O_EXCL) != 0,
                            (fi->flags & O_TRUNC) != 0);
    if (!e.ok()) return ReplyErr(req, e.status());
    SetOpenFlags(req, fi);
    fuse_entry_param p = ToEntryParam(req, e->ino, e->attr);
    if (fuse_reply_create(req, &p, fi) != 0) {
      Fs(req).Release(e->ino);
      Fs(req).Forget(e->ino, 1);
    }
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guard(req, "read", [&] {
    if (off < 0) return fuse_reply_err(req, EINVAL), void();
    auto data = Fs(req).Read(InodeId(ino), static_cast<uint64_t>(off), size);
    if (!data.ok()) return ReplyErr(req, data.status());
    fuse_reply_buf(req, data->data(), data->size());
  });
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info*) {
  Guard(req, "write", [&] {
    if (off < 0) return fuse_reply_err(req, EINVAL), void();
    // A discarded mount's postgres is gone; its dirty pages go nowhere (Mount::DiscardWrites).
    if (Ctx(req).discard_writes.load()) {
      return fuse_reply_write(req, size), void();
    }
    // The compute's write budget: the kernel's write-back of this mount waits, and the
    // writer behind it waits in the kernel's dirty-page throttling, not the store. Without
    // one (the compute alone, or its neighbours idle) the data is not scanned for its cost.
    if (RateLimiter& budget = Ctx(req).write_limiter; budget.rate() != 0) {
      (void)budget.Acquire(
          BudgetBytes(static_cast<uint64_t>(off), std::span<const char>(buf, size)));
    }
    auto n =
        Fs(req).Write(InodeId(ino), static_cast<uint64_t>(off), std::span<const char>(buf, size));
    if (!n.ok()) return ReplyErr(req, n.status());
    fuse_reply_write(req, *n);
  });
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // close() is not a durability point (as on a disk); fsync is.
  fuse_reply_err(req, 0);
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guard(req, "release", [&] {
    Fs(req).Release(InodeId(ino));
    fuse_reply_err(req, 0);
  });
}

void OpFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  Ctx(req).fsyncs.fetch_add(1, std::memory_order_relaxed);
  // After Mount::DiscardWrites no fsync succeeds: none may promise data that was dropped (a
  // postgres still running would PANIC rather than acknowledge a commit).
  if (Ctx(req).discard_writes.load()) {
    return fuse_reply_err(req, EIO), void();
  }
  Guard(req, "fsync", [&] { ReplyErr(req, Fs(req).Sync()); });
}

// A directory stream: the entries as of opendir, so that readdir offsets stay stable.
struct DirHandle {
  InodeId self;
  InodeId parent;
  std::vector<storage::DirEntry> entries;
};

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "opendir", [&] {
    auto entries = Fs(req).ReadDir(InodeId(ino));
    if (!entries.ok()) return ReplyErr(req, entries.status());
    auto h = std::make_unique<DirHandle>();
    h->self = InodeId(ino);
    h->parent = Fs(req).ParentOf(InodeId(ino));
    h->entries = std::move(entries).value();
    fi->fh = reinterpret_cast<uint64_t>(h.get());
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) == 0) h.release();
  });
}

mode_t KindBits(FileKind k) {
  switch (k) {
    case FileKind::kDirectory:
      return S_IFDIR;
    case FileKind::kSymlink:
      return S_IFLNK;
    case FileKind::kRegular:
      break;
  }
  return S_IFREG;
}

void DoReaddir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  auto* h = reinterpret_cast<DirHandle*>(fi->fh);
  if (!h) return fuse_reply_err(req, EBADF), void();
  std::string buf(size, '\0');
  size_t used = 0;
  size_t total = h->entries.size() + 2;
  for (size_t i = off < 0 ? 0 : static_cast<size_t>(off); i < total; ++i) {
    std::string name;
    InodeId ino;
    mode_t type;
    if (i < 2) {
      name = i == 0 ? "." : "..";
      ino = i == 0 ? h->self : h->parent;
      type = S_IFDIR;
    } else {
      const auto& e = h->entries[i - 2];
      name = e.name;
      ino = e.ino;
      type = KindBits(e.kind);
    }
    size_t need;
    if (!plus) {
      struct stat st {};
      st.st_ino = ino.value();
      st.st_mode = type;
      need = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st,
                               static_cast<off_t>(i + 1));
    } else if (i < 2) {
      // "." and ".." carry no lookup count.
      fuse_entry_param p{};
      p.attr.st_ino = ino.value();
      p.attr.st_mode = type;
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &p,
                                    static_cast<off_t>(i + 1));
    } else {
      auto a = Fs(req).LookupInode(ino);
      if (!a.ok()) continue;  // removed since opendir
      fuse_entry_param p = ToEntryParam(req, ino, *a);
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &p,
                                    static_cast<off_t>(i + 1));
      if (need > size - used) Fs(req).Forget(ino, 1);  // not sent: no count
    }
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, "readdir", [&] { DoReaddir(req, size, off, fi, false); });
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, "readdirplus", [&] { DoReaddir(req, size, off, fi, true); });
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  Guard(req, "fsyncdir", [&] { ReplyErr(req, Fs(req).Sync()); });
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Guard(req, "statfs", [&] {
    auto st = Fs(req).StatFs(Ctx(req).options.store_path);
    if (!st.ok()) return ReplyErr(req, st.status());
    fuse_reply_statfs(req, &*st);
  });
}

void OpAccess(fuse_req_t req, fuse_ino_t ino, int) {
  // Permissions are checked by the kernel (default_permissions); only existence is ours.
  Guard(req, "access", [&] { ReplyErr(req, Fs(req).GetAttr(InodeId(ino)).status()); });
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info*) {
  Guard(req, "fallocate", [&] {
    if (offset < 0 || length <= 0) return fuse_reply_err(req, EINVAL), void();
    ReplyErr(req, Fs(req).Fallocate(InodeId(ino), mode, static_cast<uint64_t>(offset),
                                    static_cast<uint64_t>(length)));
  });
}

fuse_lowlevel_ops MakeOps() {
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
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.symlink = OpSymlink;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.access = OpAccess;
  ops.fallocate = OpFallocate;
  return ops;
}

}  // namespace

int ToErrno(FsError e) {
  switch (e) {
    case FsError::kOk:
      return 0;
    case FsError::kNoEntry:
      return ENOENT;
    case FsError::kExists:
      return EEXIST;
    case FsError::kNotEmpty:
      return ENOTEMPTY;
    case FsError::kIsDir:
      return EISDIR;
    case FsError::kNotDir:
      return ENOTDIR;
    case FsError::kNameTooLong:
      return ENAMETOOLONG;
    case FsError::kInvalid:
      return EINVAL;
    case FsError::kNotPermitted:
      return EPERM;
    case FsError::kNotSupported:
      return EOPNOTSUPP;
    case FsError::kNoSpace:
      return ENOSPC;
    case FsError::kIO:
      return EIO;
  }
  return EIO;
}

const fuse_lowlevel_ops& Operations() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace arbor::fs
