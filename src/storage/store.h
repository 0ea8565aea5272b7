#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"

namespace arbor::storage {

// Every file's data is cut into blocks of this size; a block is the unit of copy-on-write.
inline constexpr uint32_t kBlockSize = 8192;

// How many bytes of `block` (or of a part of one) the store keeps: trailing zeros are implied,
// not stored, so a zero-filled block keeps none.
size_t StoredSize(std::span<const char> block);

enum class FileKind : uint8_t { kRegular = 1, kDirectory = 2, kSymlink = 3 };

// The attributes of one inode, stored as one versioned key.
struct Attr {
  FileKind kind = FileKind::kRegular;
  uint32_t mode = 0;  // permission bits and S_IFMT type bits, as in st_mode
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 1;
  uint64_t size = 0;  // bytes; for a symlink, the target's length
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  std::string symlink_target;  // only for kSymlink

  bool operator==(const Attr&) const = default;
};

// One name in a directory.
struct DirEntry {
  std::string name;
  InodeId ino;
  FileKind kind = FileKind::kRegular;

  bool operator==(const DirEntry&) const = default;
};

enum class TimelineState : uint8_t { kActive = 1, kDeleted = 2 };

// What the store records about a timeline.
struct TimelineInfo {
  TimelineId id;
  TimelineId parent;  // 0 for a root
  Seq fork_seq;       // the parent's state this timeline starts from; 0 for a root
  Seq create_seq;     // the seq its creation took
  int64_t create_time_us = 0;
  int64_t fork_time_us = 0;       // wall time of fork_seq (== create time for a branch at head)
  int64_t history_window_us = 0;  // set on roots; descendants use their root's
  TimelineState state = TimelineState::kActive;
  TimelineId root;  // the root of its tree (itself for a root)
};

// A change of one catalog key (the control plane's records), written in the same atomic
// batch as the timeline change it describes. nullopt deletes the key.
struct MetaWrite {
  std::string key;
  std::optional<std::string> value;
};
using MetaWrites = std::vector<MetaWrite>;

// Space accounting of one timeline, at its head.
struct Usage {
  uint64_t logical_size_bytes = 0;  // sum of the sizes of the regular files it can see
  uint64_t written_bytes = 0;       // bytes of keys and values it wrote since its fork
};

// RocksDB's counters since the store opened (Store::Stats), for metrics.
struct StoreStats {
  uint64_t disk_bytes = 0;                // live SST, blob and log files
  uint64_t user_bytes_written = 0;        // keys and values the store wrote (batches)
  uint64_t flush_bytes_written = 0;       // written by memtable flushes
  uint64_t compaction_bytes_written = 0;  // written by compactions
  uint64_t compaction_bytes_read = 0;
  uint64_t flushes = 0;
  uint64_t compactions = 0;
  uint64_t block_cache_hits = 0;
  uint64_t block_cache_misses = 0;
};

// What one child's fork point alone keeps on its parent timeline (Store::ExclusiveSizes).
struct ExclusiveSize {
  uint64_t bytes = 0;     // keys and values, as written (before RocksDB's compression)
  uint64_t versions = 0;  // how many versions
};

// One block of one file.
struct BlockRef {
  InodeId ino;
  uint64_t block = 0;
  auto operator<=>(const BlockRef&) const = default;
};

// What may differ between two read points of one tree (Store::Changes).
struct ChangeSet {
  std::vector<BlockRef> blocks;  // sorted, unique
  std::vector<InodeId> attrs;    // inodes whose attribute record was written; sorted, unique
  // The lowest common ancestor point of the two reads: its timeline and seq.
  TimelineId ancestor;
  Seq ancestor_seq;
};

// A set of key changes applied atomically, under one seq, to one timeline.
// A value type built by one thread; not thread-safe.
class Mutation {
 public:
  void PutAttr(InodeId ino, const Attr& attr);
  // The inode no longer exists from this seq on (its blocks should be zeroed too; see
  // Store::AddTruncate).
  void DeleteAttr(InodeId ino);
  void PutDirent(InodeId dir, std::string_view name, InodeId child, FileKind kind);
  void DeleteDirent(InodeId dir, std::string_view name);
  // REQUIRES: data.size() <= kBlockSize. A shorter block reads back zero-padded.
  void PutBlock(InodeId ino, uint64_t block, std::span<const char> data);
  // The block reads as zeros from this seq on.
  void ZeroBlock(InodeId ino, uint64_t block);
  // Records that, from this mutation on, the timeline's PostgreSQL WAL reaches `end` (the
  // end of a write to a pg_wal segment). Feeds Store::SeqAtLsn.
  void MarkWalEnd(Lsn end) { wal_end_ = std::max(wal_end_, end); }

  bool empty() const { return ops_.empty() && wal_end_.value() == 0; }
  size_t size() const { return ops_.size(); }

 private:
  friend class Store;
  enum class Op : uint8_t { kPutAttr, kDelAttr, kPutDirent, kDelDirent, kPutBlock, kZeroBlock };
  struct Entry {
    Op op;
    InodeId ino;         // inode, or directory for dirents
    uint64_t block = 0;  // block number, for blocks
    InodeId child;       // for kPutDirent
    FileKind kind = FileKind::kRegular;
    std::string name;  // dirent name
    std::string data;  // block bytes, or encoded attr
  };
  std::vector<Entry> ops_;
  Lsn wal_end_;
};

// The versioned, copy-on-write store of file trees; one timeline per branch, on RocksDB.
//
// Every mutation gets a store-wide, strictly increasing Seq. A read of key K at
// (timeline T, seq S) takes the newest version of K on T with seq <= S; failing that it
// continues on T's parent at min(S, fork_seq(T)), up to the root, where absence means
// "absent". Reads at kSeqMax read the head.
//
// Thread-safe: any number of threads may read and mutate any timelines at once. The caller
// (arborfs) is responsible for allowing one writer per timeline's file tree, so that
// read-modify-write of attributes is not racy at the file level.
class Store {
 public:
  struct Options {
    std::string path;                           // directory holding the RocksDB files
    bool create_if_missing = true;              // create an empty store if `path` has none
    uint64_t block_cache_bytes = 256ull << 20;  // RocksDB block cache
    bool background_gc = true;                  // run the throttled GC thread
    int64_t gc_interval_ms = 600'000;           // time between background GC passes
    // RocksDB block compression: "none", "lz4" or "zstd" (see docs/storage-format.md for
    // the measurements behind the default).
    std::string compression = "lz4";
    // Size of the pre-written spare each new WAL file takes, so that a Sync overwrites
    // instead of appending (src/storage/wal_file.h); 0 appends. A little more than the WAL
    // one full memtable writes (at most about 31 MiB with 32 MiB memtables, measured under
    // `pgbench -i`): every byte of fill is written to disk, and a 64 MiB spare made the
    // fill 45 % of what a bulk load wrote (docs/storage-format.md, "WAL files").
    uint64_t wal_prefill_bytes = 36ull << 20;
    // RocksDB memtable size; each full memtable also starts a new WAL file. Tests lower it.
    uint64_t write_buffer_bytes = 32ull << 20;
    // Write the change index that Changes reads (docs/storage-format.md, "Change index").
    // false behaves like a build from before it, for tests and benchmarks: no change records
    // are written or collected, and Changes fails.
    bool change_index = true;
  };

  // Opens (or creates) a store. Corruption if `path` holds something that is not a store;
  // FailedPrecondition if it holds a store of an unknown format version; IOError otherwise.
  [[nodiscard]] static Result<std::unique_ptr<Store>> Open(const Options& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // ---- timelines ----

  // Creates a root timeline with an empty root directory (kRootInode, mode 0755 owned by
  // `uid`:`gid`). `history_window_us` is the point-in-time window of it and its
  // descendants. InvalidArgument if the window is not positive.
  [[nodiscard]] Result<TimelineId> CreateRoot(int64_t history_window_us, uint32_t uid = 0,
                                              uint32_t gid = 0);
  // Creates a child of `parent` that shares every version of `parent` as of `at`; copies
  // nothing (O(1)). `meta(child)` gives catalog changes written atomically with the new
  // timeline; when there are any, the write is synced before Branch returns, otherwise the
  // timeline is durable after the next Sync. NotFound if `parent` does not exist;
  // OutOfRange if `at` is past the store's head or before the parent's horizon (see Horizon;
  // the message gives the range and the earliest time still available).
  [[nodiscard]] Result<TimelineId> Branch(
      TimelineId parent, Seq at, const std::function<MetaWrites(TimelineId)>& meta = nullptr);
  // Deletes a timeline with a range delete, applying `meta` in the same atomic, synced write,
  // and returns. Its space is freed afterwards by a compaction of its range on a background
  // thread, which holds no lock that mutations of other timelines wait on
  // (WaitForCompactions). NotFound if absent; FailedPrecondition while it has children.
  [[nodiscard]] Status DeleteTimeline(TimelineId id, const MetaWrites& meta = {});
  // Returns once the ranges of every timeline deleted before the call are compacted (or the
  // store is closing). For tests and benchmarks; nothing needs it for correctness.
  void WaitForCompactions();
  // Applies catalog changes alone, atomically and durably.
  [[nodiscard]] Status WriteMeta(const MetaWrites& meta);
  // Every catalog key starting with `prefix`, in key order, with its value.
  [[nodiscard]] Result<std::vector<std::pair<std::string, std::string>>> ScanMeta(
      std::string_view prefix) const;
  [[nodiscard]] Result<TimelineInfo> GetTimeline(TimelineId id) const;
  std::vector<TimelineInfo> ListTimelines() const;
  // Changes the history window of a root (and so of its tree). InvalidArgument if not a root.
  // Raising it brings back nothing GC has collected: the tree's GC floor, the latest cutoff
  // any GC pass used (kept in the store, never lowered), still bounds every read of the past.
  [[nodiscard]] Status SetHistoryWindow(TimelineId root, int64_t history_window_us);

  // The newest seq the store has applied. Every mutation that returned before this call has
  // a seq <= Head(); a branch at Head() sees all of them.
  Seq Head() const;

  // ---- mutations ----

  // Applies `m` atomically to `timeline` under a new seq and returns that seq. The mutation
  // is visible to readers at once, and durable after a later Sync. NotFound if the timeline
  // does not exist; ResourceExhausted if the disk is full; IOError otherwise. On failure
  // nothing of `m` is applied.
  [[nodiscard]] Result<Seq> Apply(TimelineId timeline, Mutation&& m);
  // Returns only when every mutation of `timeline` applied before the call is durable.
  [[nodiscard]] Status Sync(TimelineId timeline);
  // Adds to `m` what truncating `ino` from `old_size` to `new_size` bytes needs: the tail of
  // the new last block is zeroed, and every block past it that holds data becomes zeros.
  // Does nothing when new_size >= old_size. Reads the head of `timeline`.
  [[nodiscard]] Status AddTruncate(TimelineId timeline, InodeId ino, uint64_t old_size,
                                   uint64_t new_size, Mutation* m);
  // A new inode id, never handed out before by this store.
  [[nodiscard]] Result<InodeId> AllocateInode();

  // ---- reads ----

  // nullopt if the inode does not exist at (timeline, at).
  [[nodiscard]] Result<std::optional<Attr>> GetAttr(TimelineId timeline, Seq at, InodeId ino) const;
  // nullopt if `name` is not in `dir`.
  [[nodiscard]] Result<std::optional<DirEntry>> Lookup(TimelineId timeline, Seq at, InodeId dir,
                                                       std::string_view name) const;
  // Every inode that exists at (timeline, at) with its attributes, in inode order.
  [[nodiscard]] Result<std::vector<std::pair<InodeId, Attr>>> ListAttrs(TimelineId timeline,
                                                                        Seq at) const;
  // Every entry of `dir`, sorted by name.
  [[nodiscard]] Result<std::vector<DirEntry>> ReadDir(TimelineId timeline, Seq at,
                                                      InodeId dir) const;
  // Fills `out` (REQUIRES: out.size() == kBlockSize) with block `block` of `ino`; zeros if
  // it was never written or was zeroed.
  [[nodiscard]] Status ReadBlock(TimelineId timeline, Seq at, InodeId ino, uint64_t block,
                                 std::span<char> out) const;
  // Reads up to `len` bytes at `offset`, clamped to the file's size. NotFound if no inode.
  [[nodiscard]] Result<std::string> ReadFile(TimelineId timeline, Seq at, InodeId ino,
                                             uint64_t offset, uint64_t len) const;

  // The blocks and attribute records that may differ between the read at (a, a_at) and the
  // read at (b, b_at), at a cost proportional to what was written on the two ancestry paths
  // since their common ancestor point, not to the size of the files.
  //
  // The ancestor point: the deepest timeline L on both ancestry paths, at min(sa, sb), where
  // sa and sb are the seqs at which the two reads read L (min(a_at, fork_seq) of the path's
  // timeline below L, or a_at if L is a). The result holds every block and attribute record
  // written on a's path after that point, up to the seq the read takes on each timeline of
  // the path, and the same for b. A superset: a block written and written back, or written
  // and then overwritten on a timeline below the history horizon, is included too. Blocks
  // that truncation or unlink cut are included (they are written as zeros); so are the inodes
  // whose attribute was written (created, deleted, resized or touched). Directory entries are
  // not reported. a == b compares two seqs of one timeline; a may be an ancestor of b.
  //
  // NotFound if a timeline does not exist; InvalidArgument if they belong to different trees;
  // OutOfRange if a_at or b_at is before its timeline's horizon (Horizon); FailedPrecondition
  // if part of the range was written before the change index existed (a store from an older
  // build, or one an older build wrote to): the caller must compare in full.
  [[nodiscard]] Result<ChangeSet> Changes(TimelineId a, Seq a_at, TimelineId b, Seq b_at) const;

  // ---- time ----

  // The last seq of `timeline` written at or before `time_us` (its fork seq if it wrote
  // nothing since). OutOfRange if `time_us` is in the future or before the earliest time
  // still available: the latest of the timeline's creation, now - history window and its
  // tree's GC floor (the message names that time and gives the allowed range).
  [[nodiscard]] Result<Seq> SeqAtTime(TimelineId timeline, int64_t time_us) const;
  // The wall time of a seq at which `timeline` changed (or its fork seq). NotFound if the
  // timeline recorded no such seq (or it has been dropped by GC).
  [[nodiscard]] Result<int64_t> TimeOfSeq(TimelineId timeline, Seq seq) const;
  // The first seq of `timeline` at which its WAL reached `lsn` (see Mutation::MarkWalEnd).
  // OutOfRange if the WAL has not reached it yet (the message says where it ends), or if it
  // reached it below the horizon (the message names the earliest time still available).
  [[nodiscard]] Result<Seq> SeqAtLsn(TimelineId timeline, Lsn lsn) const;
  // One write to a pg_wal segment (see Mutation::MarkWalEnd): the state at `seq` holds the
  // WAL up to `end`, written at `time_us`.
  struct WalPoint {
    Seq seq;
    Lsn end;
    int64_t time_us = 0;
  };
  // Every WAL write of `timeline` (and of its ancestors, up to each fork point) at a time in
  // [since_us, until_us] and at or above the horizon, oldest first. Consecutive points have no
  // WAL write between them, so no transaction commits between their states: they are the
  // states a bisection searches. OutOfRange as for SeqAtTime when `since_us` is before the
  // earliest time still available.
  [[nodiscard]] Result<std::vector<WalPoint>> WalPoints(TimelineId timeline, int64_t since_us,
                                                        int64_t until_us) const;
  // The oldest seq of `timeline` that can still be read or branched from: its state as of
  // now - history window, or as of its tree's GC floor if that is later (and on a root,
  // never below the floor's seq).
  [[nodiscard]] Result<Seq> Horizon(TimelineId timeline) const;
  // The allowed [oldest, newest] time range for SeqAtTime, in µs (see SeqAtTime).
  [[nodiscard]] Result<std::pair<int64_t, int64_t>> TimeRange(TimelineId timeline) const;

  // ---- space ----

  [[nodiscard]] Result<Usage> GetUsage(TimelineId timeline) const;
  // Usage's written_bytes alone: a counter read, no scan (the usage meter reads it often).
  uint64_t WrittenBytes(TimelineId timeline) const;

  // Runs one full GC pass now and returns the number of versions it dropped. Safe to call
  // while the store is in use. Each tree's GC floor is raised to now - window, and synced,
  // before anything below it is dropped.
  [[nodiscard]] Result<uint64_t> RunGc();
  // For each child of `parent`: the versions of `parent` that only that child's fork point
  // keeps, so that GC drops exactly these once the child is deleted (and nothing else
  // changed meanwhile). A version is kept only for fork point f when f is in its range
  // [its seq, the seq of the next version of its key), no other child is forked in that
  // range, and the range ends at or below the horizon; GC's own rule (GcKeeps in store.cc)
  // decides, so the two agree exactly. Two children forked at the same seq hold nothing
  // exclusively. NotFound if `parent` does not exist.
  // Cost: one scan of every version of `parent`'s keys (its data, not its ancestors'); the
  // answer is cached until `parent` writes, gains or loses a child, or its horizon moves.
  [[nodiscard]] Result<std::map<TimelineId, ExclusiveSize>> ExclusiveSizes(TimelineId parent) const;
  // Bytes the store occupies on disk (live SST and log files).
  uint64_t DiskBytes() const;
  // Counters of RocksDB's work and cache since the store opened. Cheap: counter reads and one
  // listing of the store's directory.
  StoreStats Stats() const;

  // For tests: overrides the wall clock the store stamps mutations with (µs); 0 restores it.
  void SetClockForTesting(int64_t now_us);
  // For tests: `hook(id)` runs on the compaction thread before each deleted timeline's range
  // is compacted (a test blocks in it to hold a compaction open); nullptr removes it.
  void SetCompactionHookForTesting(std::function<void(TimelineId)> hook);

  class Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace arbor::storage
