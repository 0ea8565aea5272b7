#pragma once

#include <sys/statvfs.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "storage/store.h"

namespace arbor::fs {

// The POSIX outcomes an operation can have. The FUSE adapter turns them into errno values in
// exactly one place (fuse_ops.cc); the store's Status is turned into one of these in exactly
// one place (FromStore).
enum class FsError {
  kOk = 0,
  kNoEntry,       // ENOENT
  kExists,        // EEXIST
  kNotEmpty,      // ENOTEMPTY
  kIsDir,         // EISDIR
  kNotDir,        // ENOTDIR
  kNameTooLong,   // ENAMETOOLONG
  kInvalid,       // EINVAL
  kNotPermitted,  // EPERM
  kNotSupported,  // EOPNOTSUPP
  kNoSpace,       // ENOSPC
  kIO,            // EIO
};

// Ok or an FsError. Value type.
class [[nodiscard]] FsStatus {
 public:
  FsStatus() = default;
  FsStatus(FsError code) : code_(code) {}  // NOLINT: implicit by design
  bool ok() const { return code_ == FsError::kOk; }
  FsError code() const { return code_; }

 private:
  FsError code_ = FsError::kOk;
};

// Either a value or a non-Ok FsStatus.
template <typename T>
class [[nodiscard]] FsResult {
 public:
  FsResult(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  FsResult(FsError e) : v_(FsStatus(e)) {}     // NOLINT: implicit by design
  FsResult(FsStatus s) : v_(s) {}              // NOLINT: implicit by design
  bool ok() const { return std::holds_alternative<T>(v_); }
  FsStatus status() const { return ok() ? FsStatus() : std::get<FsStatus>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& value() const& { return std::get<T>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, FsStatus> v_;
};

// Maps a store failure onto a POSIX outcome (ResourceExhausted is ENOSPC, the rest EIO) and
// logs it: this is where store errors are handled.
FsStatus FromStore(const Status& s, std::string_view what);

// Who issued a request (from fuse_req_ctx): the owner of what it creates.
struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// An inode the kernel now knows about (its lookup count was raised by one).
struct Entry {
  InodeId ino;
  storage::Attr attr;
};

// What a setattr changes; unset fields stay as they are.
struct SetAttrRequest {
  std::optional<uint32_t> mode;  // permission bits only
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  std::optional<int64_t> atime_ns;  // already resolved from UTIME_NOW by the caller
  std::optional<int64_t> mtime_ns;
};

inline constexpr size_t kNameMax = 255;
inline constexpr size_t kSymlinkMax = 4095;

// The work of arborfs: every operation on one timeline's file tree, in terms of the store,
// without any FUSE type. The FUSE adapter (fuse_ops.cc) calls it and sends the replies.
//
// It keeps an inode table: the attributes of every inode the kernel holds (lookup count > 0)
// or that is open, so getattr never touches the store. It is the only writer of the timeline
// while it lives, so the cached attributes are the truth.
//
// An inode whose last name is removed while the kernel still knows it (open, or not yet
// forgotten) stays in the store with nlink 0, readable and writable, until the last release
// and forget; then its data is truncated to 0 and its attributes deleted in one mutation.
//
// Thread-safe. Mutations are serialized by an exclusive lock on the tree; reads (lookup,
// getattr, read, readdir, readlink) run in parallel under a shared lock.
class FileSystem {
 public:
  // REQUIRES: `store` outlives this object and `timeline` exists.
  FileSystem(storage::Store* store, TimelineId timeline);
  // Frees inodes that were waiting for their last close or forget.
  ~FileSystem();
  FileSystem(const FileSystem&) = delete;
  FileSystem& operator=(const FileSystem&) = delete;

  TimelineId timeline() const { return timeline_; }

  // Raises the lookup count of the found inode. kNoEntry if absent; kNotDir if `parent` is
  // not a directory.
  FsResult<Entry> Lookup(InodeId parent, std::string_view name);
  // Drops `n` kernel references; frees an unlinked inode when nothing references it.
  void Forget(InodeId ino, uint64_t n);
  FsResult<storage::Attr> GetAttr(InodeId ino);
  // chmod, chown, truncate (shrinking zeroes the tail through Store::AddTruncate) and
  // utimens. ctime becomes now. kIsDir when truncating a directory.
  FsResult<storage::Attr> SetAttr(InodeId ino, const SetAttrRequest& req);

  // Creates and opens a regular file (lookup count and open count raised). kExists if the
  // name exists and `exclusive`; otherwise an existing file is opened (and truncated when
  // `truncate`); kIsDir if the name is a directory.
  FsResult<Entry> Create(InodeId parent, std::string_view name, uint32_t mode, const Caller& caller,
                         bool exclusive, bool truncate);
  // Opens an existing inode (raises its open count); `truncate` empties it first.
  FsStatus Open(InodeId ino, bool truncate);
  // Drops one open count; frees an unlinked inode when nothing references it.
  void Release(InodeId ino);
  // Up to `size` bytes at `offset`, fewer at the end of the file.
  FsResult<std::string> Read(InodeId ino, uint64_t offset, size_t size);
  // Writes `data` at `offset` in one store mutation (blocks and attributes); partial blocks
  // are read-modify-written. Returns the bytes written.
  FsResult<size_t> Write(InodeId ino, uint64_t offset, std::span<const char> data);
  // Makes every earlier mutation of the timeline durable (fsync, fdatasync, fsyncdir).
  FsStatus Sync();
  // mode 0 extends the size to offset+len when larger; other modes are kNotSupported.
  FsStatus Fallocate(InodeId ino, int mode, uint64_t offset, uint64_t len);

  FsResult<Entry> Mkdir(InodeId parent, std::string_view name, uint32_t mode, const Caller& caller);
  // kNotEmpty if the directory has entries; kNotDir if the name is not a directory.
  FsStatus Rmdir(InodeId parent, std::string_view name);
  // kIsDir if the name is a directory.
  FsStatus Unlink(InodeId parent, std::string_view name);
  // Atomic: the new name appears and the old one disappears (and a replaced target is
  // removed) in one store mutation. `flags` is 0 or RENAME_NOREPLACE (kExists when the target
  // exists); RENAME_EXCHANGE and other flags are kInvalid.
  FsStatus Rename(InodeId parent, std::string_view name, InodeId new_parent,
                  std::string_view new_name, unsigned flags);
  FsResult<Entry> Symlink(std::string_view target, InodeId parent, std::string_view name,
                          const Caller& caller);
  FsResult<std::string> Readlink(InodeId ino);
  // Every entry of a directory, sorted by name (without "." and "..").
  FsResult<std::vector<storage::DirEntry>> ReadDir(InodeId dir);
  // The parent of a directory the kernel knows (itself for the root).
  InodeId ParentOf(InodeId dir);
  // Raises the lookup count of an inode handed to the kernel by readdirplus.
  FsResult<storage::Attr> LookupInode(InodeId ino);
  // Free space and sizes of the file system that holds the store at `store_path`.
  FsResult<struct statvfs> StatFs(const std::string& store_path);

  // Frees every regular file of the timeline that has no name left (nlink 0): files that
  // were unlinked while open and whose server died before the last close. Call before the
  // kernel knows any inode (at mount). Returns how many were freed; each is one mutation.
  FsResult<size_t> ReclaimOrphans();

  // A regular file the kernel holds a reference to (lookup count > 0), if there is one and
  // the table is not busy: Unmount sends a notification about it to wake its serving
  // threads. Never blocks.
  std::optional<InodeId> AnyKnownFile();

  // For tests: how many inodes the table holds.
  size_t TableSizeForTesting();

 private:
  struct Node {
    storage::Attr attr;
    uint64_t nlookup = 0;
    uint32_t nopen = 0;
    InodeId parent;      // directories: their parent, for ".."
    bool freed = false;  // its store keys are gone (rmdir'd directory still referenced)
  };

  // REQUIRES: tree_mu_ held (either mode). Loads into the table when absent.
  FsResult<Node*> NodeLocked(InodeId ino);
  FsResult<storage::Attr> AttrLocked(InodeId ino);
  // Adds to `m` the removal of one name of `ino`; frees it now, or leaves it with nlink 0
  // when the kernel still references it. REQUIRES: tree_mu_ held exclusively.
  FsStatus DropLinkLocked(InodeId ino, storage::Attr* attr, storage::Mutation* m, bool* free_now);
  // Truncates to 0 and deletes the attributes of an unreferenced, unlinked inode.
  void FreeIfUnreferencedLocked(InodeId ino);
  FsResult<Entry> MakeNodeLocked(InodeId parent, std::string_view name, storage::Attr attr);
  FsStatus ApplyLocked(storage::Mutation&& m, std::string_view what);
  FsStatus TruncateLocked(InodeId ino, Node* node, uint64_t size, int64_t now);

  storage::Store* const store_;
  const TimelineId timeline_;
  // Exclusive for mutations, shared for reads: the store and the table agree under it.
  std::shared_mutex tree_mu_;
  // Guards nodes_ (the map and counters) for readers holding tree_mu_ shared.
  std::mutex table_mu_;
  std::unordered_map<InodeId, Node> nodes_;
  // The last write failed for lack of space and none has succeeded since.
  bool disk_full_ = false;  // guarded by tree_mu_ (exclusive)
};

}  // namespace arbor::fs
