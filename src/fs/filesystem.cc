#include "fs/filesystem.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.h"
#include "common/log.h"
#include "fs/wal.h"

namespace arbor::fs {
namespace {

using storage::Attr;
using storage::FileKind;
using storage::kBlockSize;

int64_t NowNs() { return WallMicros() * 1000; }

bool BadName(std::string_view name) {
  return name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos;
}

}  // namespace

FsStatus FromStore(const Status& s, std::string_view what) {
  if (s.code() == Code::kResourceExhausted) {
    log::warn("arborfs: {}: no space: {}", what, s.ToString());
    return FsError::kNoSpace;
  }
  log::error("arborfs: {}: {}", what, s.ToString());
  return FsError::kIO;
}

FileSystem::FileSystem(storage::Store* store, TimelineId timeline)
    : store_(store), timeline_(timeline) {}

FileSystem::~FileSystem() {
  // The kernel is gone: every reference it held is dropped, so unlinked inodes are freed.
  std::unique_lock l(tree_mu_);
  std::vector<InodeId> orphans;
  for (auto& [ino, node] : nodes_) {
    if (node.attr.nlink == 0 && !node.freed) orphans.push_back(ino);
    node.nlookup = 0;
    node.nopen = 0;
  }
  for (InodeId ino : orphans) FreeIfUnreferencedLocked(ino);
}

FsResult<FileSystem::Node*> FileSystem::NodeLocked(InodeId ino) {
  {
    std::lock_guard t(table_mu_);
    auto it = nodes_.find(ino);
    if (it != nodes_.end()) return &it->second;
  }
  auto attr = store_->GetAttr(timeline_, kSeqMax, ino);
  if (!attr.ok()) return FromStore(attr.status(), "getattr");
  if (!attr->has_value()) return FsError::kNoEntry;
  std::lock_guard t(table_mu_);
  auto [it, inserted] = nodes_.try_emplace(ino);
  if (inserted) {
    it->second.attr = std::move(**attr);
    it->second.parent = ino == kRootInode ? kRootInode : InodeId();
  }
  return &it->second;
}

FsResult<Attr> FileSystem::AttrLocked(InodeId ino) {
  auto node = NodeLocked(ino);
  if (!node.ok()) return node.status();
  return (*node)->attr;
}

FsStatus FileSystem::ApplyLocked(storage::Mutation&& m, std::string_view what) {
  auto seq = store_->Apply(timeline_, std::move(m));
  if (seq.ok()) {
    disk_full_ = false;
    return FsStatus();
  }
  if (seq.status().code() == Code::kResourceExhausted) disk_full_ = true;
  if (disk_full_) {
    // After a full disk the store refuses writes (IOError) until it has recovered; to the
    // application that is still the disk being full.
    log::warn("arborfs: {}: no space: {}", what, seq.status().ToString());
    return FsError::kNoSpace;
  }
  return FromStore(seq.status(), what);
}

FsResult<Entry> FileSystem::Lookup(InodeId parent, std::string_view name) {
  if (name.size() > kNameMax) return FsError::kNameTooLong;
  std::shared_lock l(tree_mu_);
  auto pattr = AttrLocked(parent);
  if (!pattr.ok()) return pattr.status();
  if (pattr->kind != FileKind::kDirectory) return FsError::kNotDir;
  auto de = store_->Lookup(timeline_, kSeqMax, parent, name);
  if (!de.ok()) return FromStore(de.status(), "lookup");
  if (!de->has_value()) return FsError::kNoEntry;
  InodeId ino = (*de)->ino;
  auto node = NodeLocked(ino);
  if (!node.ok())
    return node.status().code() == FsError::kNoEntry ? FsStatus(FsError::kIO) : node.status();
  std::lock_guard t(table_mu_);
  Node* n = *node;
  ++n->nlookup;
  if (n->attr.kind == FileKind::kDirectory) n->parent = parent;
  return Entry{ino, n->attr};
}

FsResult<Attr> FileSystem::LookupInode(InodeId ino) {
  std::shared_lock l(tree_mu_);
  auto node = NodeLocked(ino);
  if (!node.ok()) return node.status();
  std::lock_guard t(table_mu_);
  ++(*node)->nlookup;
  return (*node)->attr;
}

void FileSystem::Forget(InodeId ino, uint64_t n) {
  std::unique_lock l(tree_mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  it->second.nlookup -= std::min(n, it->second.nlookup);
  FreeIfUnreferencedLocked(ino);
}

void FileSystem::Release(InodeId ino) {
  std::unique_lock l(tree_mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  if (it->second.nopen > 0) --it->second.nopen;
  FreeIfUnreferencedLocked(ino);
}

void FileSystem::FreeIfUnreferencedLocked(InodeId ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || ino == kRootInode) return;
  Node& node = it->second;
  if (node.nlookup > 0 || node.nopen > 0) return;
  if (node.attr.nlink == 0 && !node.freed) {
    storage::Mutation m;
    if (node.attr.kind == FileKind::kRegular) {
      Status s = store_->AddTruncate(timeline_, ino, node.attr.size, 0, &m);
      if (!s.ok()) {
        // Leaves an unreachable inode behind; it costs space but no data is wrong.
        (void)FromStore(s, "freeing an unlinked inode");
        nodes_.erase(it);
        return;
      }
    }
    m.DeleteAttr(ino);
    (void)ApplyLocked(std::move(m), "freeing an unlinked inode");
  }
  nodes_.erase(it);
}

FsResult<Attr> FileSystem::GetAttr(InodeId ino) {
  std::shared_lock l(tree_mu_);
  return AttrLocked(ino);
}

FsStatus FileSystem::TruncateLocked(InodeId ino, Node* node, uint64_t size, int64_t now) {
  Attr attr = node->attr;
  storage::Mutation m;
  Status s = store_->AddTruncate(timeline_, ino, attr.size, size, &m);
  if (!s.ok()) return FromStore(s, "truncate");
  attr.size = size;
  attr.mtime_ns = attr.ctime_ns = now;
  m.PutAttr(ino, attr);
  FsStatus st = ApplyLocked(std::move(m), "truncate");
  if (st.ok()) node->attr = attr;
  return st;
}

FsResult<Attr> FileSystem::SetAttr(InodeId ino, const SetAttrRequest& req) {
  std::unique_lock l(tree_mu_);
  auto node_or = NodeLocked(ino);
  if (!node_or.ok()) return node_or.status();
  Node* node = *node_or;
  int64_t now = NowNs();
  if (req.size) {
    if (node->attr.kind == FileKind::kDirectory) return FsError::kIsDir;
    if (node->attr.kind != FileKind::kRegular) return FsError::kInvalid;
  }
  Attr attr = node->attr;
  storage::Mutation m;
  if (req.size && *req.size != attr.size) {
    Status s = store_->AddTruncate(timeline_, ino, attr.size, *req.size, &m);
    if (!s.ok()) return FromStore(s, "truncate");
    attr.size = *req.size;
    attr.mtime_ns = now;
  }
  if (req.mode) attr.mode = (attr.mode & S_IFMT) | (*req.mode & 07777);
  if (req.uid) attr.uid = *req.uid;
  if (req.gid) attr.gid = *req.gid;
  if (req.atime_ns) attr.atime_ns = *req.atime_ns;
  if (req.mtime_ns) attr.mtime_ns = *req.mtime_ns;
  attr.ctime_ns = now;
  m.PutAttr(ino, attr);
  FsStatus st = ApplyLocked(std::move(m), "setattr");
  if (!st.ok()) return st;
  node->attr = attr;
  return attr;
}

FsResult<Entry> FileSystem::MakeNodeLocked(InodeId parent, std::string_view name, Attr attr) {
  if (name.size() > kNameMax) return FsError::kNameTooLong;
  if (BadName(name)) return FsError::kInvalid;
  auto pnode_or = NodeLocked(parent);
  if (!pnode_or.ok()) return pnode_or.status();
  Node* pnode = *pnode_or;
  if (pnode->attr.kind != FileKind::kDirectory) return FsError::kNotDir;
  if (pnode->attr.nlink == 0) return FsError::kNoEntry;  // removed directory
  auto de = store_->Lookup(timeline_, kSeqMax, parent, name);
  if (!de.ok()) return FromStore(de.status(), "lookup");
  if (de->has_value()) return FsError::kExists;
  auto ino = store_->AllocateInode();
  if (!ino.ok()) return FromStore(ino.status(), "allocating an inode");
  int64_t now = NowNs();
  attr.atime_ns = attr.mtime_ns = attr.ctime_ns = now;
  if (pnode->attr.mode & S_ISGID) {
    attr.gid = pnode->attr.gid;
    if (attr.kind == FileKind::kDirectory) attr.mode |= S_ISGID;
  }
  Attr pattr = pnode->attr;
  pattr.mtime_ns = pattr.ctime_ns = now;
  if (attr.kind == FileKind::kDirectory) ++pattr.nlink;
  storage::Mutation m;
  m.PutAttr(*ino, attr);
  m.PutDirent(parent, name, *ino, attr.kind);
  m.PutAttr(parent, pattr);
  FsStatus st = ApplyLocked(std::move(m), "create");
  if (!st.ok()) return st;
  pnode->attr = pattr;
  std::lock_guard t(table_mu_);
  Node& n = nodes_[*ino];
  n.attr = attr;
  n.nlookup = 1;
  n.parent = parent;
  return Entry{*ino, attr};
}

FsResult<Entry> FileSystem::Create(InodeId parent, std::string_view name, uint32_t mode,
                                   const Caller& caller, bool exclusive, bool truncate) {
  std::unique_lock l(tree_mu_);
  if (name.size() > kNameMax) return FsError::kNameTooLong;
  auto existing = store_->Lookup(timeline_, kSeqMax, parent, name);
  if (!existing.ok()) return FromStore(existing.status(), "lookup");
  if (existing->has_value()) {
    if (exclusive) return FsError::kExists;
    InodeId ino = (*existing)->ino;
    auto node_or = NodeLocked(ino);
    if (!node_or.ok()) return node_or.status();
    Node* node = *node_or;
    if (node->attr.kind == FileKind::kDirectory) return FsError::kIsDir;
    if (truncate && node->attr.size > 0) {
      FsStatus st = TruncateLocked(ino, node, 0, NowNs());
      if (!st.ok()) return st;
    }
    std::lock_guard t(table_mu_);
    ++node->nlookup;
    ++node->nopen;
    return Entry{ino, node->attr};
  }
  Attr attr;
  attr.kind = FileKind::kRegular;
  attr.mode = S_IFREG | (mode & 07777);
  attr.uid = caller.uid;
  attr.gid = caller.gid;
  attr.nlink = 1;
  auto e = MakeNodeLocked(parent, name, attr);
  if (!e.ok()) return e;
  std::lock_guard t(table_mu_);
  ++nodes_[e->ino].nopen;
  return e;
}

FsStatus FileSystem::Open(InodeId ino, bool truncate) {
  std::unique_lock l(tree_mu_);
  auto node_or = NodeLocked(ino);
  if (!node_or.ok()) return node_or.status();
  Node* node = *node_or;
  if (truncate && node->attr.kind == FileKind::kRegular && node->attr.size > 0) {
    FsStatus st = TruncateLocked(ino, node, 0, NowNs());
    if (!st.ok()) return st;
  }
  std::lock_guard t(table_mu_);
  ++node->nopen;
  return FsStatus();
}

FsResult<std::string> FileSystem::Read(InodeId ino, uint64_t offset, size_t size) {
  std::shared_lock l(tree_mu_);
  auto attr = AttrLocked(ino);
  if (!attr.ok()) return attr.status();
  if (attr->kind == FileKind::kDirectory) return FsError::kIsDir;
  if (offset >= attr->size || size == 0) return std::string();
  uint64_t end = std::min<uint64_t>(attr->size, offset + size);
  std::string out(end - offset, '\0');
  uint64_t first = offset / kBlockSize, last = (end - 1) / kBlockSize;
  std::string buf;
  for (uint64_t b = first; b <= last; ++b) {
    uint64_t bstart = b * kBlockSize;
    uint64_t from = std::max(offset, bstart), to = std::min(end, bstart + kBlockSize);
    char* dst = out.data() + (from - offset);
    if (from == bstart && to == bstart + kBlockSize) {
      Status s = store_->ReadBlock(timeline_, kSeqMax, ino, b, std::span<char>(dst, kBlockSize));
      if (!s.ok()) return FromStore(s, "read");
    } else {
      buf.resize(kBlockSize);
      Status s = store_->ReadBlock(timeline_, kSeqMax, ino, b, std::span<char>(buf));
      if (!s.ok()) return FromStore(s, "read");
      std::memcpy(dst, buf.data() + (from - bstart), to - from);
    }
  }
  return out;
}

FsResult<size_t> FileSystem::Write(InodeId ino, uint64_t offset, std::span<const char> data) {
  if (data.empty()) return size_t{0};
  std::unique_lock l(tree_mu_);
  auto node_or = NodeLocked(ino);
  if (!node_or.ok()) return node_or.status();
  Node* node = *node_or;
  if (node->attr.kind == FileKind::kDirectory) return FsError::kIsDir;
  if (node->attr.kind != FileKind::kRegular) return FsError::kInvalid;
  Attr attr = node->attr;
  uint64_t end = offset + data.size();
  if (end < offset) return FsError::kInvalid;  // overflow
  storage::Mutation m;
  std::string buf;
  for (uint64_t b = offset / kBlockSize; b * kBlockSize < end; ++b) {
    uint64_t bstart = b * kBlockSize;
    uint64_t from = std::max(offset, bstart), to = std::min(end, bstart + kBlockSize);
    const char* src = data.data() + (from - offset);
    if (from == bstart && to == bstart + kBlockSize) {
      m.PutBlock(ino, b, std::span<const char>(src, kBlockSize));
      continue;
    }
    // A partial block: the bytes around the write come from the stored block, which holds
    // zeros past the file's size (truncation zeroes what it cuts).
    uint64_t valid = attr.size > bstart ? std::min<uint64_t>(attr.size - bstart, kBlockSize) : 0;
    uint64_t len = std::max(valid, to - bstart);
    buf.assign(kBlockSize, '\0');
    if (valid > 0 && (from > bstart || to - bstart < valid)) {
      Status s = store_->ReadBlock(timeline_, kSeqMax, ino, b, std::span<char>(buf));
      if (!s.ok()) return FromStore(s, "read for write");
    }
    std::memcpy(buf.data() + (from - bstart), src, to - from);
    m.PutBlock(ino, b, std::span<const char>(buf.data(), len));
  }
  int64_t now = NowNs();
  attr.size = std::max(attr.size, end);
  attr.mtime_ns = attr.ctime_ns = now;
  m.PutAttr(ino, attr);
  // WAL writes are tagged with the LSN they reach, for branches at an LSN.
  if (auto wal_end = WalEndOfWrite(offset, data)) m.MarkWalEnd(Lsn(*wal_end));
  FsStatus st = ApplyLocked(std::move(m), "write");
  if (!st.ok()) return st;
  node->attr = attr;
  return data.size();
}

FsStatus FileSystem::Sync() {
  Status s = store_->Sync(timeline_);
  if (!s.ok()) return FromStore(s, "sync");
  return FsStatus();
}

FsStatus FileSystem::Fallocate(InodeId ino, int mode, uint64_t offset, uint64_t len) {
  if (mode != 0) return FsError::kNotSupported;
  if (len == 0) return FsError::kInvalid;
  std::unique_lock l(tree_mu_);
  auto node_or = NodeLocked(ino);
  if (!node_or.ok()) return node_or.status();
  Node* node = *node_or;
  if (node->attr.kind != FileKind::kRegular) return FsError::kNotSupported;
  uint64_t end = offset + len;
  if (end < offset) return FsError::kInvalid;
  if (end <= node->attr.size) return FsStatus();
  // Blocks past the size already read as zeros; only the size grows.
  Attr attr = node->attr;
  attr.size = end;
  attr.ctime_ns = NowNs();
  storage::Mutation m;
  m.PutAttr(ino, attr);
  FsStatus st = ApplyLocked(std::move(m), "fallocate");
  if (st.ok()) node->attr = attr;
  return st;
}

FsResult<Entry> FileSystem::Mkdir(InodeId parent, std::string_view name, uint32_t mode,
                                  const Caller& caller) {
  std::unique_lock l(tree_mu_);
  Attr attr;
  attr.kind = FileKind::kDirectory;
  attr.mode = S_IFDIR | (mode & 07777);
  attr.uid = caller.uid;
  attr.gid = caller.gid;
  attr.nlink = 2;
  return MakeNodeLocked(parent, name, attr);
}

FsResult<Entry> FileSystem::Symlink(std::string_view target, InodeId parent, std::string_view name,
                                    const Caller& caller) {
  if (target.size() > kSymlinkMax) return FsError::kNameTooLong;
  if (target.empty()) return FsError::kNoEntry;
  std::unique_lock l(tree_mu_);
  Attr attr;
  attr.kind = FileKind::kSymlink;
  attr.mode = S_IFLNK | 0777;
  attr.uid = caller.uid;
  attr.gid = caller.gid;
  attr.nlink = 1;
  attr.size = target.size();
  attr.symlink_target = std::string(target);
  return MakeNodeLocked(parent, name, attr);
}

FsResult<std::string> FileSystem::Readlink(InodeId ino) {
  std::shared_lock l(tree_mu_);
  auto attr = AttrLocked(ino);
  if (!attr.ok()) return attr.status();
  if (attr->kind != FileKind::kSymlink) return FsError::kInvalid;
  return attr->symlink_target;
}

FsStatus FileSystem::DropLinkLocked(InodeId ino, Attr* attr, storage::Mutation* m, bool* free_now) {
  // A directory loses its name and its "." together; anything else loses one link.
  attr->nlink = attr->kind == FileKind::kDirectory ? 0 : attr->nlink - 1;
  attr->ctime_ns = NowNs();
  *free_now = false;
  if (attr->nlink > 0) {
    m->PutAttr(ino, *attr);
    return FsStatus();
  }
  bool referenced = false;
  {
    std::lock_guard t(table_mu_);
    auto it = nodes_.find(ino);
    referenced = it != nodes_.end() && (it->second.nlookup > 0 || it->second.nopen > 0);
  }
  if (referenced && attr->kind == FileKind::kRegular) {
    // Still open or known to the kernel: keep its data until the last release and forget.
    m->PutAttr(ino, *attr);
    return FsStatus();
  }
  if (attr->kind == FileKind::kRegular) {
    Status s = store_->AddTruncate(timeline_, ino, attr->size, 0, m);
    if (!s.ok()) return FromStore(s, "unlink");
  }
  m->DeleteAttr(ino);
  *free_now = true;
  return FsStatus();
}

FsStatus FileSystem::Unlink(InodeId parent, std::string_view name) {
  if (name.size() > kNameMax) return FsError::kNameTooLong;
  std::unique_lock l(tree_mu_);
  auto pnode_or = NodeLocked(parent);
  if (!pnode_or.ok()) return pnode_or.status();
  Node* pnode = *pnode_or;
  if (pnode->attr.kind != FileKind::kDirectory) return FsError::kNotDir;
  auto de = store_->Lookup(timeline_, kSeqMax, parent, name);
  if (!de.ok()) return FromStore(de.status(), "lookup");
  if (!de->has_value()) return FsError::kNoEntry;
  if ((*de)->kind == FileKind::kDirectory) return FsError::kIsDir;
  InodeId ino = (*de)->ino;
  auto node_or = NodeLocked(ino);
  if (!node_or.ok()) return node_or.status();
  Node* node = *node_or;
  int64_t now = NowNs();
  Attr attr = node->attr, pattr = pnode->attr;
  pattr.mtime_ns = pattr.ctime_ns = now;
  storage::Mutation m;
  m.DeleteDirent(parent, name);
  m.PutAttr(parent, pattr);
  bool free_now = false;
  FsStatus st = DropLinkLocked(ino, &attr, &m, &free_now);
  if (!st.ok()) return st;
  st = ApplyLocked(std::move(m), "unlink");
  if (!st.ok()) return st;
  pnode->attr = pattr;
  node->attr = attr;
  if (free_now) node->freed = true;
  FreeIfUnreferencedLocked(ino);
  return FsStatus();
}

FsStatus FileSystem::Rmdir(InodeId parent, std::string_view name) {
  if (name.size() > kNameMax) return FsError::kNameTooLong;
  if (name == ".") return FsError::kInvalid;
  if (name == "..") return FsError::kNotEmpty;
  std::unique_lock l(tree_mu_);
  auto pnode_or = NodeLocked(parent);
  if (!pnode_or.ok()) return pnode_or.status();
  Node* pnode = *pnode_or;
  if (pnode->attr.kind != FileKind::kDirectory) return FsError::kNotDir;
  auto de = store_->Lookup(timeline_, kSeqMax, parent, name);
  if (!de.ok()) return FromStore(de.status(), "lookup");
  if (!de->has_value()) return FsError::kNoEntry;
  if ((*de)->kind != FileKind::kDirectory) return FsError::kNotDir;
  InodeId ino = (*de)->ino;
  auto children = store_->ReadDir(timeline_, kSeqMax, ino);
  if (!children.ok()) return FromStore(children.status(), "readdir");
  if (!children->empty()) return FsError::kNotEmpty;
  auto node_or = NodeLocked(ino);
  if (!node_or.ok()) return node_or.status();
  Node* node = *node_or;
  int64_t now = NowNs();
  Attr attr = node->attr, pattr = pnode->attr;
  pattr.mtime_ns = pattr.ctime_ns = now;
  if (pattr.nlink > 2) --pattr.nlink;
  storage::Mutation m;
  m.DeleteDirent(parent, name);
  m.PutAttr(parent, pattr);
  bool free_now = false;
  FsStatus st = DropLinkLocked(ino, &attr, &m, &free_now);
  if (!st.ok()) return st;
  st = ApplyLocked(std::move(m), "rmdir");
  if (!st.ok()) return st;
  pnode->attr = pattr;
  node->attr = attr;
  node->freed = true;
  FreeIfUnreferencedLocked(ino);
  return FsStatus();
}

FsStatus FileSystem::Rename(InodeId parent, std::string_view name, InodeId new_parent,
                            std::string_view new_name, unsigned flags) {
  if (flags & ~unsigned{RENAME_NOREPLACE}) return FsError::kInvalid;
  if (name.size() > kNameMax || new_name.size() > kNameMax) return FsError::kNameTooLong;
  if (BadName(name) || BadName(new_name)) return FsError::kInvalid;
  std::unique_lock l(tree_mu_);
  auto pnode_or = NodeLocked(parent);
  if (!pnode_or.ok()) return pnode_or.status();
  auto npnode_or = NodeLocked(new_parent);
  if (!npnode_or.ok()) return npnode_or.status();
  Node* pnode = *pnode_or;
  Node* npnode = *npnode_or;
  if (pnode->attr.kind != FileKind::kDirectory || npnode->attr.kind != FileKind::kDirectory) {
    return FsError::kNotDir;
  }
  auto src = store_->Lookup(timeline_, kSeqMax, parent, name);
  if (!src.ok()) return FromStore(src.status(), "lookup");
  if (!src->has_value()) return FsError::kNoEntry;
  auto dst = store_->Lookup(timeline_, kSeqMax, new_parent, new_name);
  if (!dst.ok()) return FromStore(dst.status(), "lookup");
  const storage::DirEntry& s = **src;
  bool src_dir = s.kind == FileKind::kDirectory;
  if (dst->has_value()) {
    if (flags & RENAME_NOREPLACE) return FsError::kExists;
    const storage::DirEntry& d = **dst;
    if (d.ino == s.ino) return FsStatus();  // the same file: nothing to do
    bool dst_dir = d.kind == FileKind::kDirectory;
    if (src_dir && !dst_dir) return FsError::kNotDir;
    if (!src_dir && dst_dir) return FsError::kIsDir;
    if (dst_dir) {
      auto children = store_->ReadDir(timeline_, kSeqMax, d.ino);
      if (!children.ok()) return FromStore(children.status(), "readdir");
      if (!children->empty()) return FsError::kNotEmpty;
    }
  }
  auto snode_or = NodeLocked(s.ino);
  if (!snode_or.ok()) return snode_or.status();
  Node* snode = *snode_or;
  int64_t now = NowNs();
  Attr pattr = pnode->attr;
  pattr.mtime_ns = pattr.ctime_ns = now;
  Attr sattr = snode->attr;
  sattr.ctime_ns = now;
  storage::Mutation m;
  m.DeleteDirent(parent, name);
  m.PutDirent(new_parent, new_name, s.ino, s.kind);
  m.PutAttr(s.ino, sattr);
  // Directory link counts: a moved directory's ".." leaves `parent` for `new_parent`; a
  // replaced directory's ".." leaves `new_parent`.
  int parent_delta = 0, new_parent_delta = 0;
  if (src_dir && parent != new_parent) {
    --parent_delta;
    ++new_parent_delta;
  }
  Node* dnode = nullptr;
  Attr dattr;
  bool free_dst = false;
  if (dst->has_value()) {
    const storage::DirEntry& d = **dst;
    auto dnode_or = NodeLocked(d.ino);
    if (!dnode_or.ok()) return dnode_or.status();
    dnode = *dnode_or;
    dattr = dnode->attr;
    if (d.kind == FileKind::kDirectory) --new_parent_delta;
    FsStatus st = DropLinkLocked(d.ino, &dattr, &m, &free_dst);
    if (!st.ok()) return st;
  }
  Attr npattr;
  if (parent == new_parent) {
    pattr.nlink += parent_delta + new_parent_delta;
    m.PutAttr(parent, pattr);
  } else {
    npattr = npnode->attr;
    npattr.mtime_ns = npattr.ctime_ns = now;
    pattr.nlink += parent_delta;
    npattr.nlink += new_parent_delta;
    m.PutAttr(parent, pattr);
    m.PutAttr(new_parent, npattr);
  }
  FsStatus st = ApplyLocked(std::move(m), "rename");
  if (!st.ok()) return st;
  pnode->attr = pattr;
  if (parent != new_parent) npnode->attr = npattr;
  snode->attr = sattr;
  if (src_dir) snode->parent = new_parent;
  if (dnode) {
    dnode->attr = dattr;
    if (free_dst) dnode->freed = true;
    FreeIfUnreferencedLocked((*dst)->ino);
  }
  return FsStatus();
}

FsResult<std::vector<storage::DirEntry>> FileSystem::ReadDir(InodeId dir) {
  std::shared_lock l(tree_mu_);
  auto attr = AttrLocked(dir);
  if (!attr.ok()) return attr.status();
  if (attr->kind != FileKind::kDirectory) return FsError::kNotDir;
  if (attr->nlink == 0) return std::vector<storage::DirEntry>();
  auto entries = store_->ReadDir(timeline_, kSeqMax, dir);
  if (!entries.ok()) return FromStore(entries.status(), "readdir");
  return std::move(entries).value();
}

InodeId FileSystem::ParentOf(InodeId dir) {
  std::lock_guard t(table_mu_);
  auto it = nodes_.find(dir);
  if (it == nodes_.end() || it->second.parent.value() == 0) return dir;
  return it->second.parent;
}

FsResult<struct statvfs> FileSystem::StatFs(const std::string& store_path) {
  struct statvfs st {};
  if (statvfs(store_path.c_str(), &st) != 0) {
    log::error("arborfs: statvfs {}: {}", store_path, std::strerror(errno));
    return FsError::kIO;
  }
  st.f_namemax = kNameMax;
  return st;
}

FsResult<size_t> FileSystem::ReclaimOrphans() {
  std::unique_lock l(tree_mu_);
  auto attrs = store_->ListAttrs(timeline_, kSeqMax);
  if (!attrs.ok()) return FromStore(attrs.status(), "listing inodes");
  size_t freed = 0;
  for (const auto& [ino, attr] : *attrs) {
    if (attr.kind != FileKind::kRegular || attr.nlink != 0) continue;
    {
      std::lock_guard t(table_mu_);
      auto it = nodes_.find(ino);
      if (it != nodes_.end() && (it->second.nlookup > 0 || it->second.nopen > 0)) continue;
    }
    storage::Mutation m;
    Status s = store_->AddTruncate(timeline_, ino, attr.size, 0, &m);
    if (!s.ok()) return FromStore(s, "freeing an orphaned inode");
    m.DeleteAttr(ino);
    FsStatus st = ApplyLocked(std::move(m), "freeing an orphaned inode");
    if (!st.ok()) return st;
    {
      std::lock_guard t(table_mu_);
      nodes_.erase(ino);
    }
    ++freed;
  }
  return freed;
}

std::optional<InodeId> FileSystem::AnyKnownFile() {
  std::unique_lock t(table_mu_, std::try_to_lock);
  if (!t.owns_lock()) return std::nullopt;
  for (const auto& [ino, node] : nodes_) {
    if (node.nlookup > 0 && !node.freed && S_ISREG(node.attr.mode)) return ino;
  }
  return std::nullopt;
}

size_t FileSystem::TableSizeForTesting() {
  std::lock_guard t(table_mu_);
  return nodes_.size();
}

}  // namespace arbor::fs
