#include "storage/store.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>

#include "common/clock.h"
#include "common/log.h"
#include "storage/crc32c.h"
#include "storage/keys.h"
#include "storage/wal_file.h"

namespace arbor::storage {

namespace {

namespace fs = std::filesystem;
using rocksdb::Slice;

constexpr std::string_view kSeqFloorKey = "m:seq_floor";
constexpr const char* kIndexFamily = "index";
constexpr std::string_view kNextTimelineKey = "m:next_tl";
constexpr uint64_t kInodeReserve = 4096;
constexpr size_t kGcBatch = 512;
// GC reads at most this many bytes per second of keys and values, so a pass over a large
// store never competes with foreground I/O for the disk.
constexpr uint64_t kGcScanBytesPerSec = 64ull << 20;
constexpr uint64_t kGcScanSlice = 1ull << 20;
// Values of at least this many bytes (file blocks; attributes and names are far smaller) are
// kept in blob files.
constexpr uint64_t kMinBlobSize = 512;
// Apply reuses its write batch's buffer up to this size.
constexpr size_t kMaxKeptBatch = 4u << 20;

// The prefix of a versioned key is everything but its 8-byte version suffix, so that a
// prefix Bloom filter answers "does this timeline hold any version of this key?".
class VersionStrip : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "arbor.VersionStrip.v1"; }
  Slice Transform(const Slice& key) const override { return Slice(key.data(), key.size() - 8); }
  bool InDomain(const Slice& key) const override {
    return key.size() > 10 && key[0] == keys::kData;
  }
};

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  std::string msg = std::string(what) + ": " + s.ToString();
  if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kSpaceLimit) {
    return Status::ResourceExhausted(msg);
  }
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsNotFound()) return Status::NotFound(msg);
  return Status::IOError(msg);
}

bool HasPrefix(Slice key, std::string_view prefix) {
  return key.size() >= prefix.size() && std::memcmp(key.data(), prefix.data(), prefix.size()) == 0;
}

// A history window as people write it: "24h", "90m", "3600s"...
std::string WindowText(int64_t us) {
  if (us % 3'600'000'000 == 0) return std::to_string(us / 3'600'000'000) + "h";
  if (us % 60'000'000 == 0) return std::to_string(us / 60'000'000) + "m";
  if (us % 1'000'000 == 0) return std::to_string(us / 1'000'000) + "s";
  return std::to_string(us) + "us";
}

std::string Successor(std::string prefix) {
  // The smallest key greater than every key that starts with `prefix`.
  while (!prefix.empty() && static_cast<uint8_t>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<uint8_t>(prefix.back()) + 1);
  return prefix;
}

}  // namespace

// One level of a read's walk up the ancestry: read `tl` at min(at, cap).
struct Level {
  TimelineId tl;
  Seq cap;
};
using Chain = std::vector<Level>;

// The GC floor of a root's tree (docs/storage-format.md, "GC floor"). GC may have dropped
// versions that a state of the tree before `time_us` needs; every state at or after it is
// whole. `seq` is the root's horizon at that time. The floor only rises, and it is durable
// before GC drops anything below it, so a window raised later cannot offer what is gone.
struct GcFloor {
  int64_t time_us = 0;
  Seq seq;
};

// Value of keys::GcFloorKey: i64 time_us · u64 seq, little-endian.
std::string EncodeGcFloor(const GcFloor& f) {
  std::string v(16, '\0');
  uint64_t seq = f.seq.value();
  std::memcpy(v.data(), &f.time_us, 8);
  std::memcpy(v.data() + 8, &seq, 8);
  return v;
}

Result<GcFloor> DecodeGcFloor(std::string_view v) {
  if (v.size() != 16) return Status::Corruption("malformed GC floor record");
  GcFloor f;
  uint64_t seq;
  std::memcpy(&f.time_us, v.data(), 8);
  std::memcpy(&seq, v.data() + 8, 8);
  f.seq = Seq(seq);
  return f;
}

struct Node {
  TimelineInfo info;
  std::shared_ptr<const Chain> chain;  // this timeline first, then its ancestors
  std::vector<TimelineId> children;
  std::optional<GcFloor> gc_floor;  // roots only; none until GC first ran on the tree
};

namespace {

// One version of one key, as GC sees it (newest first in a group).
struct GcVersion {
  std::string key;
  uint64_t seq = 0;
  bool tombstone = false;
  uint64_t bytes = 0;  // key and value
};

// Which versions of one key GC keeps, given the timeline's horizon and its children's fork
// points (sorted). Both GC and ExclusiveSizes decide with this one function, so what a child
// is said to hold exclusively is exactly what GC frees once it is gone:
//   * a read at s >= horizon needs, per key, the newest version <= s;
//   * a child forked at f needs the newest version <= f.
// So version v_i (newest first) survives iff i == 0, or v_{i-1} > horizon, or some fork point
// f has v_i <= f < v_{i-1}. On a root, a tombstone with nothing older kept reads exactly like
// absence, so it goes too.
std::vector<bool> GcKeeps(const std::vector<GcVersion>& group, uint64_t horizon,
                          const std::vector<uint64_t>& forks, bool is_root) {
  auto fork_in = [&](uint64_t lo, uint64_t hi) {  // any fork f with lo <= f < hi
    auto it = std::lower_bound(forks.begin(), forks.end(), lo);
    return it != forks.end() && *it < hi;
  };
  std::vector<bool> keep(group.size(), false);
  if (group.empty()) return keep;
  keep[0] = true;
  for (size_t i = 1; i < group.size(); ++i) {
    uint64_t newer = group[i - 1].seq;
    keep[i] = newer > horizon || fork_in(group[i].seq, newer);
  }
  if (is_root) {
    // Trailing tombstones with nothing kept beneath them read like absence.
    for (size_t i = group.size(); i-- > 0;) {
      if (!keep[i]) continue;
      if (!group[i].tombstone) break;
      bool older_kept = false;
      for (size_t j = i + 1; j < group.size(); ++j) older_kept |= keep[j];
      if (older_kept) break;
      keep[i] = false;
    }
  }
  return keep;
}

}  // namespace

// Counts RocksDB's completed flushes and compactions (Store::Stats). Thread-safe.
class JobCounter final : public rocksdb::EventListener {
 public:
  void OnFlushCompleted(rocksdb::DB*, const rocksdb::FlushJobInfo&) override {
    flushes.fetch_add(1);
  }
  void OnCompactionCompleted(rocksdb::DB*, const rocksdb::CompactionJobInfo&) override {
    compactions.fetch_add(1);
  }
  std::atomic<uint64_t> flushes{0}, compactions{0};
};

class Store::Impl {
 public:
  Options options;
  // Tickers only (no timers or histograms: a read pays one relaxed add per ticker it moves).
  std::shared_ptr<rocksdb::Statistics> statistics;
  std::shared_ptr<JobCounter> jobs;
  std::unique_ptr<rocksdb::Env> env;  // the WAL file system (wal_file.h); outlives db
  std::unique_ptr<rocksdb::DB> db;
  // The time index, WAL marks and written-bytes counters live in their own column family:
  // mixed into the data's key range they made every flushed file overlap every other one,
  // and compaction rewrote all data (write-amp 4.4 instead of 2.0 on a 1 GB load). Both
  // families share the WAL, so one batch still changes both atomically.
  rocksdb::ColumnFamilyHandle* index = nullptr;
  std::shared_ptr<rocksdb::Cache> cache;

  mutable std::shared_mutex tl_mu;  // guards nodes
  std::map<TimelineId, Node> nodes;

  std::mutex write_mu;  // serializes seq assignment with the RocksDB write
  std::atomic<uint64_t> last_seq{0};
  int64_t last_time_us = 0;                // guarded by write_mu
  uint64_t next_timeline = 1;              // guarded by write_mu
  std::map<TimelineId, uint64_t> written;  // guarded by write_mu
  // Logical sizes, keyed by the timeline's written-bytes counter when they were computed: a
  // timeline that has not written since has the same size (its ancestry up to its fork point
  // never changes), so listing many idle branches costs no scans.
  std::map<TimelineId, std::pair<uint64_t, uint64_t>> size_cache;  // guarded by write_mu
  // ExclusiveSizes' answers, valid while the parent's written-bytes counter, its children's
  // fork points and its horizon are the same.
  struct ExclusiveCache {
    uint64_t written = 0;
    std::vector<std::pair<uint64_t, TimelineId>> forks;
    uint64_t horizon = 0;
    std::map<TimelineId, ExclusiveSize> sizes;
  };
  std::map<TimelineId, ExclusiveCache> exclusive_cache;  // guarded by write_mu
  bool needs_resume = false;                             // guarded by write_mu
  rocksdb::WriteBatch apply_batch;                       // guarded by write_mu
  std::atomic<int64_t> clock_override{0};

  std::mutex sync_mu;
  uint64_t synced_seq = 0;  // guarded by sync_mu

  // The first seq from which every mutation has a change record (m:change_index_from);
  // set at open. kSeqMax when the store runs without the change index.
  uint64_t change_index_from = 0;

  std::mutex ino_mu;
  uint64_t next_ino = 2;  // guarded by ino_mu
  uint64_t reserved_ino = 2;

  std::mutex gc_mu;
  std::condition_variable gc_cv;
  // What the last GC pass of each timeline saw. A version becomes droppable only when the
  // horizon passes a newer version of its key, or when a fork point that needed it goes.
  // So a timeline that wrote nothing in (last horizon, new horizon] and kept its children
  // has nothing new to drop, and its pass is skipped.
  struct GcMark {
    Seq horizon;
    std::vector<uint64_t> forks;
  };
  std::map<TimelineId, GcMark> gc_marks;  // guarded by gc_mu
  bool stopping = false;
  std::thread gc_thread;

  // Deleted timelines whose key range is compacted away on `compact_thread`, without
  // write_mu: compacting a large timeline takes seconds, and every Apply needs write_mu.
  std::mutex compact_mu;
  std::condition_variable compact_cv;
  std::deque<TimelineId> to_compact;  // guarded by compact_mu
  bool compacting = false;            // guarded by compact_mu
  bool compact_stopping = false;      // guarded by compact_mu
  std::atomic<bool> compact_cancel{false};
  std::thread compact_thread;                    // started by the first DeleteTimeline
  std::function<void(TimelineId)> compact_hook;  // guarded by compact_mu; for tests

  ~Impl() {
    {
      std::lock_guard l(gc_mu);
      stopping = true;
    }
    gc_cv.notify_all();
    if (gc_thread.joinable()) gc_thread.join();
    {
      // Pending ranges are left to RocksDB's own compactions; a running one is cut short.
      std::lock_guard l(compact_mu);
      compact_stopping = true;
      compact_cancel = true;
    }
    compact_cv.notify_all();
    if (compact_thread.joinable()) compact_thread.join();
    if (db) {
      rocksdb::Status s = db->SyncWAL();
      if (!s.ok()) log::warn("store: final WAL sync failed: {}", s.ToString());
      if (index) db->DestroyColumnFamilyHandle(index);
      s = db->Close();
      if (!s.ok()) log::warn("store: close failed: {}", s.ToString());
    }
  }

  int64_t Now() const {
    int64_t o = clock_override.load();
    return o ? o : WallMicros();
  }

  // ---- ancestry ----

  Result<std::shared_ptr<const Chain>> ChainOf(TimelineId tl) const {
    std::shared_lock l(tl_mu);
    auto it = nodes.find(tl);
    if (it == nodes.end()) return Status::NotFound("timeline " + tl.ToString() + " does not exist");
    return it->second.chain;
  }

  // Builds the chain of `info` from its parent's. REQUIRES: tl_mu held.
  std::shared_ptr<const Chain> MakeChain(const TimelineInfo& info) const {
    auto chain = std::make_shared<Chain>();
    chain->push_back({info.id, kSeqMax});
    if (info.parent.value() != 0) {
      const Chain& up = *nodes.at(info.parent).chain;
      for (const Level& l : up) chain->push_back({l.tl, std::min(l.cap, info.fork_seq)});
    }
    return chain;
  }

  void AddNode(const TimelineInfo& info) {  // REQUIRES: tl_mu held exclusively
    Node n{info, MakeChain(info), {}, std::nullopt};
    nodes[info.id] = std::move(n);
    if (info.parent.value() != 0) nodes.at(info.parent).children.push_back(info.id);
  }

  // ---- versioned point reads ----

  // Calls `on_value` with the newest visible version's value (tag byte included) of the key
  // whose unversioned form is `prefix_of(tl)`; returns false via `found` if none.
  template <typename PrefixFn, typename OnValue>
  Status FindVersion(const Chain& chain, Seq at, PrefixFn prefix_of, OnValue on_value,
                     bool* found) const {
    rocksdb::ReadOptions ro;
    ro.prefix_same_as_start = true;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    std::string key;
    for (const Level& level : chain) {
      key = prefix_of(level.tl);
      size_t plen = key.size();
      keys::AppendVersion(&key, std::min(at, level.cap));
      it->Seek(key);
      if (it->Valid()) {
        Slice k = it->key();
        if (k.size() == plen + 8 && std::memcmp(k.data(), key.data(), plen) == 0) {
          *found = true;
          on_value(it->value());
          return Status::Ok();
        }
      } else if (!it->status().ok()) {
        return FromRocks(it->status(), "read");
      }
    }
    *found = false;
    return Status::Ok();
  }

  // Visits, in key order, every distinct key under `prefix_of(tl)` that is visible at `at`
  // along the chain, with the value of its newest visible version. Closer timelines shadow
  // farther ones. `suffix_from` narrows each level's scan to keys >= prefix + suffix_from.
  // With `tags_only`, each value is cut to its tag byte (present or tombstone): enough for
  // truncation, which would otherwise hold every block of a large file in memory.
  template <typename PrefixFn>
  Status MergeScan(const Chain& chain, Seq at, PrefixFn prefix_of, std::string_view suffix_from,
                   std::map<std::string, std::string>* out, bool tags_only = false) const {
    std::map<std::string, std::string> decided;  // unversioned suffix -> value
    for (const Level& level : chain) {
      Seq s = std::min(at, level.cap);
      std::string prefix = prefix_of(level.tl);
      std::string upper = Successor(prefix);
      rocksdb::ReadOptions ro;
      ro.total_order_seek = true;
      Slice upper_slice(upper);
      ro.iterate_upper_bound = &upper_slice;
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
      // Each key may have many versions (every write to a file adds an attribute version), so
      // the scan jumps: to a key's newest visible version, and past its older ones.
      it->Seek(prefix + std::string(suffix_from));
      while (it->Valid()) {
        Slice k = it->key();
        if (k.size() < prefix.size() + 8) {
          it->Next();
          continue;
        }
        std::string unversioned(k.data(), k.size() - 8);
        if (keys::VersionOf(std::string_view(k.data(), k.size())) > s) {
          std::string target = unversioned;
          keys::AppendVersion(&target, s);  // sorts after this version: always progress
          it->Seek(target);
          continue;
        }
        Slice v = it->value();
        decided.try_emplace(
            unversioned.substr(prefix.size()),
            tags_only ? std::string(v.data(), std::min<size_t>(v.size(), 1)) : v.ToString());
        it->Next();
        if (it->Valid() && it->key().size() == unversioned.size() + 8 &&
            std::memcmp(it->key().data(), unversioned.data(), unversioned.size()) == 0) {
          it->Seek(Successor(unversioned));
        }
      }
      if (!it->status().ok()) return FromRocks(it->status(), "scan");
    }
    *out = std::move(decided);
    return Status::Ok();
  }

  // ---- time index ----

  // The last seq of `tl`'s own time index with time <= t, or 0 if none.
  Result<Seq> LastSeqAtOrBefore(TimelineId tl, int64_t t, Seq from = Seq(0)) const {
    std::string prefix = keys::KindPrefix(tl, keys::Kind::kTime);
    rocksdb::ReadOptions ro;
    ro.total_order_seek = true;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, index));
    auto entry_at_or_after = [&](uint64_t seq, uint64_t* found_seq, int64_t* time) -> bool {
      it->Seek(keys::TimeKey(tl, Seq(seq)));
      if (!it->Valid() || !HasPrefix(it->key(), prefix) || it->value().size() != 8) return false;
      *found_seq = keys::GetBE64(std::string_view(it->key().data() + prefix.size(), 8));
      std::memcpy(time, it->value().data(), 8);
      return true;
    };
    // Only seqs in [from, head] can hold entries of this timeline.
    uint64_t lo = from.value(), hi = std::max<uint64_t>(last_seq.load(), lo), best = 0;
    uint64_t fs;
    int64_t ft;
    // Binary search over seq: time is non-decreasing in seq.
    while (lo <= hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (!entry_at_or_after(mid, &fs, &ft)) {
        if (mid == 0) break;
        hi = mid - 1;
        continue;
      }
      if (ft <= t) {
        best = fs;
        lo = fs + 1;
      } else {
        if (mid == 0) break;
        hi = mid - 1;
      }
    }
    if (!it->status().ok()) return FromRocks(it->status(), "time index");
    return Seq(best);
  }

  // What bounds the history of a tree: its root's window and GC floor.
  struct Retention {
    int64_t window_us = 0;
    std::optional<GcFloor> floor;
    // States before this time may be gone at `now`: now - window, or the floor if later.
    int64_t Cutoff(int64_t now) const {
      int64_t c = now - window_us;
      return floor ? std::max(c, floor->time_us) : c;
    }
  };

  Result<Retention> RetentionOf(const TimelineInfo& info) const {
    std::shared_lock l(tl_mu);
    auto it = nodes.find(info.root);
    if (it == nodes.end()) {
      return Status::NotFound("timeline " + info.id.ToString() + " does not exist");
    }
    return Retention{it->second.info.history_window_us, it->second.gc_floor};
  }

  // The oldest readable seq of `info`'s timeline when states before `cutoff` may be gone: its
  // state as of `cutoff`, and on a root never below the floor's seq.
  Result<Seq> HorizonAt(const TimelineInfo& info, int64_t cutoff,
                        const std::optional<GcFloor>& floor) const {
    Seq start = info.parent.value() ? info.fork_seq : info.create_seq;
    ARBOR_ASSIGN_OR_RETURN(Seq last, LastSeqAtOrBefore(info.id, cutoff, start));
    Seq horizon = std::max(start, last);
    if (floor && info.parent.value() == 0) horizon = std::max(horizon, floor->seq);
    return horizon;
  }

  // The earliest time at which `info`'s timeline can still be read or branched from.
  static int64_t EarliestTime(const TimelineInfo& info, const Retention& r, int64_t now) {
    return std::max(info.create_time_us, r.Cutoff(now));
  }

  // "the earliest time still available, T (history window 24h)": how every refusal of the
  // past names what is left.
  static std::string EarliestText(const TimelineInfo& info, const Retention& r, int64_t now) {
    int64_t earliest = EarliestTime(info, r, now);
    std::string text = "the earliest time still available, " + FormatRfc3339(earliest) +
                       " (history window " + WindowText(r.window_us);
    if (r.floor && earliest == r.floor->time_us && earliest > now - r.window_us) {
      text += "; older history has already been collected";
    }
    return text + ")";
  }

  Result<TimelineInfo> Info(TimelineId tl) const {
    std::shared_lock l(tl_mu);
    auto it = nodes.find(tl);
    if (it == nodes.end()) return Status::NotFound("timeline " + tl.ToString() + " does not exist");
    return it->second.info;
  }

  // ---- writes ----

  Status WriteLocked(rocksdb::WriteBatch* batch, bool sync) {  // REQUIRES: write_mu held
    if (needs_resume) {
      rocksdb::Status rs = db->Resume();
      // Busy: RocksDB is still recovering from the full disk; to a writer it is still full.
      if (rs.IsBusy()) return Status::ResourceExhausted("the disk was full; still recovering");
      if (!rs.ok()) return FromRocks(rs, "store is read-only after an earlier error");
      needs_resume = false;
    }
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    rocksdb::Status s = db->Write(wo, batch);
    if (!s.ok()) {
      needs_resume = true;
      return FromRocks(s, "write");
    }
    return Status::Ok();
  }

  // Takes the next seq and its wall time. REQUIRES: write_mu held.
  std::pair<Seq, int64_t> NextSeqLocked() {
    int64_t now = std::max(Now(), last_time_us);
    return {Seq(last_seq.load() + 1), now};
  }
  void CommitSeqLocked(Seq seq, int64_t now) {
    last_time_us = now;
    last_seq.store(seq.value());
  }

  static void AddMeta(const MetaWrites& meta, rocksdb::WriteBatch* batch) {
    for (const MetaWrite& w : meta) {
      std::string key = std::string(keys::kCatalogPrefix) + w.key;
      if (w.value) {
        batch->Put(key, *w.value);
      } else {
        batch->Delete(key);
      }
    }
  }

  Status PersistTimeline(const TimelineInfo& info, rocksdb::WriteBatch* batch) {
    batch->Put(keys::TimelineRecordKey(info.id), keys::EncodeTimeline(info));
    return Status::Ok();
  }

  // ---- GC ----

  // Raises the GC floor of `root`'s tree to now - window, durably, unless it is already
  // there; returns the tree's retention with that floor. GC drops nothing below the floor it
  // returns, so no crash leaves versions dropped under a lower persisted floor.
  Result<Retention> RaiseFloor(TimelineId root, int64_t now);
  Result<uint64_t> GcTimeline(const TimelineInfo& info, int64_t now);
  void GcLoop();
  // Queues the range of deleted timeline `id` for compaction.
  void ScheduleCompaction(TimelineId id);
  void CompactLoop();
};

// ---------------------------------------------------------------------------------------

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  std::error_code ec;
  bool exists = fs::exists(options.path, ec);
  bool has_current = exists && fs::exists(fs::path(options.path) / "CURRENT", ec);
  if (exists && !fs::is_directory(options.path, ec)) {
    return Status::Corruption(options.path + " is not a directory, so it is not an Arbor store");
  }
  if (exists && !has_current && !fs::is_empty(options.path, ec)) {
    return Status::Corruption(options.path +
                              " is not an Arbor store (it is a non-empty directory without one)");
  }
  if (!has_current && !options.create_if_missing) {
    return Status::NotFound("no Arbor store at " + options.path);
  }

  rocksdb::Options ro;
  ro.create_if_missing = !has_current;
  ro.error_if_exists = false;
  ro.prefix_extractor = std::make_shared<VersionStrip>();
  ro.memtable_prefix_bloom_size_ratio = 0.05;
  ro.max_background_jobs = 2;
  ro.bytes_per_sync = 1 << 20;
  ro.wal_bytes_per_sync = 0;
  // RocksDB's own WAL recycling would make Sync an overwrite, but it allows that only with
  // kSkipAnyCorruptedRecords, which may skip a corrupt record in the middle of the log and so
  // leave a hole. Point-in-time recovery (a prefix) is what the crash-image rule needs; the
  // overwrite comes instead from pre-written WAL files (wal_file.h), whose fill reads as the
  // end of the log.
  // Every RocksDB checksum goes through storage/crc32c.cc (this reference also links it in).
  log::debug("store: crc32c in {}", crc32c::Implementation());
  impl->env = rocksdb::NewCompositeEnv(
      NewWalFileSystem(rocksdb::FileSystem::Default(), options.path, options.wal_prefill_bytes));
  ro.env = impl->env.get();
  ro.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  ro.create_missing_column_families = true;
  ro.level_compaction_dynamic_level_bytes = true;
  ro.write_buffer_size = options.write_buffer_bytes;
  ro.max_write_buffer_number = 3;
  ro.max_total_wal_size = 256 << 20;
  ro.paranoid_checks = true;
  ro.sst_file_manager.reset(rocksdb::NewSstFileManager(rocksdb::Env::Default()));
  impl->statistics = rocksdb::CreateDBStatistics();
  impl->statistics->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);
  ro.statistics = impl->statistics;
  impl->jobs = std::make_shared<JobCounter>();
  ro.listeners.push_back(impl->jobs);
  rocksdb::CompressionType comp;
  if (options.compression == "none") {
    comp = rocksdb::kNoCompression;
  } else if (options.compression == "lz4") {
    comp = rocksdb::kLZ4Compression;
  } else if (options.compression == "zstd") {
    comp = rocksdb::kZSTD;
  } else {
    return Status::InvalidArgument("unknown compression '" + options.compression +
                                   "' (use none, lz4 or zstd)");
  }
  ro.compression = comp;
  ro.bottommost_compression = comp;
  impl->cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  // Memtables are charged to the block cache, so the cache bounds the store's memory.
  ro.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
      std::min<uint64_t>(options.block_cache_bytes / 2, 128ull << 20), impl->cache);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = impl->cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = false;
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.block_size = 16 << 10;
  ro.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  // Block values live in blob files (RocksDB's integrated BlobDB): a flush writes each value
  // once, compressed, and compaction then moves only keys and blob references instead of
  // rewriting every 8 KiB page at every level. Blob files whose blobs have mostly been
  // deleted (GC of old versions, truncation, deleted timelines) are rewritten by compaction.
  // Measured on `pgbench -i -s 50`: compaction and flush bytes halved (docs/storage-format.md).
  ro.enable_blob_files = true;
  ro.min_blob_size = kMinBlobSize;
  ro.blob_file_size = 64ull << 20;
  ro.blob_compression_type = comp;
  ro.enable_blob_garbage_collection = true;
  ro.blob_garbage_collection_age_cutoff = 0.25;
  // No blob cache: file blocks are cached above the store by the kernel's page cache of the
  // mount (keep_cache), and below it by the OS page cache of the blob files. A blob cache
  // inside the block cache filled it with copies of those pages and took the server's RSS
  // past the cache + 100 MB bound under TPC-B (377 MB with a 256 MB cache).
  rocksdb::ColumnFamilyOptions index_opts;
  index_opts.compression = comp;
  index_opts.write_buffer_size = 8 << 20;
  index_opts.level_compaction_dynamic_level_bytes = true;
  rocksdb::BlockBasedTableOptions index_table;
  index_table.block_cache = impl->cache;
  index_table.cache_index_and_filter_blocks = true;
  index_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(index_table));

  rocksdb::Status s;
  if (has_current) {
    // Only an Arbor store has the index family; anything else is refused without a write.
    std::vector<std::string> families;
    s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(ro), options.path, &families);
    if (!s.ok()) {
      if (s.IsCorruption() || s.IsIOError()) {
        return Status::Corruption("the store at " + options.path + " is damaged: " + s.ToString());
      }
      return FromRocks(s, "opening the store at " + options.path);
    }
    if (std::find(families.begin(), families.end(), std::string(kIndexFamily)) == families.end()) {
      rocksdb::DB* peek = nullptr;
      rocksdb::Options plain;
      s = rocksdb::DB::OpenForReadOnly(plain, options.path, &peek);
      std::string v;
      if (s.ok()) s = peek->Get(rocksdb::ReadOptions(), std::string(keys::kFormatKey), &v);
      delete peek;
      std::string magic = std::string(keys::kMagic) + ":";
      if (s.ok() && v.rfind(magic, 0) == 0 && v.substr(magic.size()) != "1") {
        return Status::FailedPrecondition("the store at " + options.path + " has format version " +
                                          v.substr(magic.size()) + "; this build reads version " +
                                          std::to_string(keys::kFormatVersion));
      }
      return Status::Corruption(options.path + " is a RocksDB database but not an Arbor store");
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(ro)},
      {kIndexFamily, index_opts}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::Open(rocksdb::DBOptions(ro), options.path, cfs, &handles, &raw);
  if (!s.ok()) {
    if (s.IsCorruption()) {
      return Status::Corruption("the store at " + options.path + " is damaged: " + s.ToString());
    }
    return FromRocks(s, "opening the store at " + options.path);
  }
  impl->db.reset(raw);
  raw->DestroyColumnFamilyHandle(handles[0]);  // the default family is db->DefaultColumnFamily()
  impl->index = handles[1];
  rocksdb::DB* db = impl->db.get();
  // Recovery replayed the WALs into memtables; flushing them retires those WALs, so a WAL
  // that ends in fill (wal_file.h) is never replayed again ahead of a newer one.
  {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    s = db->Flush(fo, {db->DefaultColumnFamily(), impl->index});
    if (!s.ok()) return FromRocks(s, "flushing the recovered log of the store at " + options.path);
  }

  // Format version.
  std::string v;
  s = db->Get(rocksdb::ReadOptions(), std::string(keys::kFormatKey), &v);
  if (s.IsNotFound()) {
    std::unique_ptr<rocksdb::Iterator> any(db->NewIterator(rocksdb::ReadOptions()));
    any->SeekToFirst();
    if (any->Valid()) {
      return Status::Corruption(options.path + " is a RocksDB database but not an Arbor store");
    }
    std::string f(keys::kMagic);
    f.push_back(':');
    f += std::to_string(keys::kFormatVersion);
    rocksdb::WriteBatch batch;
    batch.Put(std::string(keys::kFormatKey), f);
    if (options.change_index) {
      // A new store has a change record for every mutation.
      uint64_t zero = 0;
      batch.Put(std::string(keys::kChangeIndexFromKey),
                Slice(reinterpret_cast<const char*>(&zero), 8));
    }
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ARBOR_RETURN_IF_ERROR(FromRocks(db->Write(wo, &batch), "format"));
  } else if (!s.ok()) {
    return FromRocks(s, "reading the format version");
  } else {
    std::string magic = std::string(keys::kMagic) + ":";
    if (v.rfind(magic, 0) != 0) {
      return Status::Corruption(options.path + " has a malformed format record");
    }
    std::string ver = v.substr(magic.size());
    if (ver != std::to_string(keys::kFormatVersion)) {
      return Status::FailedPrecondition("the store at " + options.path + " has format version " +
                                        ver + "; this build reads version " +
                                        std::to_string(keys::kFormatVersion));
    }
  }

  // Counters and timelines.
  uint64_t max_seq = 0;
  auto read_u64 = [&](std::string_view key, uint64_t* out) -> Status {
    std::string val;
    rocksdb::Status gs = db->Get(rocksdb::ReadOptions(), std::string(key), &val);
    if (gs.IsNotFound()) return Status::Ok();
    if (!gs.ok()) return FromRocks(gs, "reading counters");
    if (val.size() != 8) return Status::Corruption("malformed counter " + std::string(key));
    std::memcpy(out, val.data(), 8);
    return Status::Ok();
  };
  ARBOR_RETURN_IF_ERROR(read_u64(kSeqFloorKey, &max_seq));
  ARBOR_RETURN_IF_ERROR(read_u64(keys::kNextInodeKey, &impl->reserved_ino));
  impl->reserved_ino = std::max<uint64_t>(impl->reserved_ino, 2);
  impl->next_ino = impl->reserved_ino;
  ARBOR_RETURN_IF_ERROR(read_u64(kNextTimelineKey, &impl->next_timeline));
  impl->next_timeline = std::max<uint64_t>(impl->next_timeline, 1);

  std::vector<TimelineInfo> infos;
  {
    rocksdb::ReadOptions rdo;
    rdo.total_order_seek = true;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rdo));
    for (it->Seek(std::string(keys::kTimelinePrefix));
         it->Valid() && HasPrefix(it->key(), keys::kTimelinePrefix); it->Next()) {
      auto info = keys::DecodeTimeline(std::string_view(it->value().data(), it->value().size()));
      if (!info.ok()) return info.status();
      infos.push_back(*info);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading timelines");
  }
  // Parents have smaller ids than their children, so id order builds chains top-down.
  std::sort(infos.begin(), infos.end(),
            [](const TimelineInfo& a, const TimelineInfo& b) { return a.id < b.id; });
  {
    std::unique_lock l(impl->tl_mu);
    for (const TimelineInfo& info : infos) {
      if (info.parent.value() != 0 && !impl->nodes.count(info.parent)) {
        return Status::Corruption("timeline " + info.id.ToString() + " has a missing parent " +
                                  info.parent.ToString());
      }
      impl->AddNode(info);
      max_seq = std::max(max_seq, info.create_seq.value());
      impl->next_timeline = std::max(impl->next_timeline, info.id.value() + 1);
    }
    rocksdb::ReadOptions rdo;
    rdo.total_order_seek = true;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rdo));
    for (it->Seek(std::string(keys::kGcFloorPrefix));
         it->Valid() && HasPrefix(it->key(), keys::kGcFloorPrefix); it->Next()) {
      if (it->key().size() != keys::kGcFloorPrefix.size() + 8) {
        return Status::Corruption("malformed GC floor key");
      }
      TimelineId root(
          keys::GetBE64(std::string_view(it->key().data() + keys::kGcFloorPrefix.size(), 8)));
      ARBOR_ASSIGN_OR_RETURN(
          GcFloor floor, DecodeGcFloor(std::string_view(it->value().data(), it->value().size())));
      auto node = impl->nodes.find(root);
      if (node != impl->nodes.end() && node->second.info.parent.value() == 0) {
        node->second.gc_floor = floor;
      }
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading GC floors");
  }
  std::optional<uint64_t> index_from;
  {
    std::string val;
    s = db->Get(rocksdb::ReadOptions(), std::string(keys::kChangeIndexFromKey), &val);
    if (s.ok()) {
      if (val.size() != 8) return Status::Corruption("malformed change index record");
      std::memcpy(&index_from.emplace(), val.data(), 8);
    } else if (!s.IsNotFound()) {
      return FromRocks(s, "reading the change index record");
    }
  }
  // A build from before the change index wrote to this store after its last mutation with a
  // change record: every mutation has a time entry, and this build writes a change record
  // with the same seq, which GC never drops from a timeline's newest mutation.
  bool unindexed_writes = false;
  rocksdb::ReadOptions rdo;
  rdo.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rdo, impl->index));
  for (const TimelineInfo& info : infos) {
    std::string prefix = keys::KindPrefix(info.id, keys::Kind::kTime);
    it->SeekForPrev(Successor(prefix));
    if (it->Valid() && HasPrefix(it->key(), prefix) && it->key().size() == prefix.size() + 8) {
      uint64_t newest = keys::GetBE64(std::string_view(it->key().data() + prefix.size(), 8));
      max_seq = std::max(max_seq, newest);
      if (index_from && newest >= *index_from) {
        std::string c;
        rocksdb::Status cs =
            db->Get(rocksdb::ReadOptions(), impl->index, keys::ChangeKey(info.id, Seq(newest)), &c);
        if (cs.IsNotFound()) {
          unindexed_writes = true;
        } else if (!cs.ok()) {
          return FromRocks(cs, "reading the change index");
        }
      }
      int64_t t;
      if (it->value().size() == 8) {
        std::memcpy(&t, it->value().data(), 8);
        impl->last_time_us = std::max(impl->last_time_us, t);
      }
    }
    std::string w;
    rocksdb::Status ws =
        db->Get(rocksdb::ReadOptions(), impl->index, keys::WrittenKey(info.id), &w);
    if (ws.ok() && w.size() == 8) {
      uint64_t n;
      std::memcpy(&n, w.data(), 8);
      impl->written[info.id] = n;
    }
  }
  impl->last_seq.store(max_seq);
  impl->synced_seq = max_seq;

  // Change index: complete from m:change_index_from. Without the key (a store an older build
  // created) or after an older build wrote, it is complete only from the next seq on.
  if (!options.change_index) {
    impl->change_index_from = kSeqMax.value();
  } else if (index_from && !unindexed_writes) {
    impl->change_index_from = *index_from;
  } else {
    uint64_t from = max_seq + 1;
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ARBOR_RETURN_IF_ERROR(FromRocks(db->Put(wo, std::string(keys::kChangeIndexFromKey),
                                            Slice(reinterpret_cast<const char*>(&from), 8)),
                                    "change index"));
    impl->change_index_from = from;
    log::info(
        "store: {}; the change index covers seqs from {} on",
        index_from ? "an older build wrote to this store" : "this store predates the change index",
        from);
  }

  // A store whose GC ran before floors were recorded has none. What that GC left says where
  // it was: a timeline's time index starts with its creation, and GC dropped the entries
  // below the horizon it used, so a first entry past the creation is a horizon, and its time
  // is at or below the cutoff that GC used.
  for (const TimelineInfo& root : infos) {
    if (root.parent.value() != 0 || impl->nodes.at(root.id).gc_floor) continue;
    std::optional<int64_t> floor_time;
    for (const TimelineInfo& info : infos) {
      if (info.root != root.id) continue;
      std::string prefix = keys::KindPrefix(info.id, keys::Kind::kTime);
      it->Seek(prefix);
      if (!it->Valid() || !HasPrefix(it->key(), prefix) || it->key().size() != prefix.size() + 8 ||
          it->value().size() != 8) {
        continue;
      }
      if (keys::GetBE64(std::string_view(it->key().data() + prefix.size(), 8)) <=
          info.create_seq.value()) {
        continue;
      }
      int64_t t;
      std::memcpy(&t, it->value().data(), 8);
      floor_time = std::max(floor_time.value_or(t), t);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading the time index");
    if (!floor_time) continue;
    ARBOR_ASSIGN_OR_RETURN(Seq seq, impl->HorizonAt(root, *floor_time, std::nullopt));
    GcFloor floor{*floor_time, seq};
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ARBOR_RETURN_IF_ERROR(
        FromRocks(db->Put(wo, keys::GcFloorKey(root.id), EncodeGcFloor(floor)), "GC floor"));
    impl->nodes.at(root.id).gc_floor = floor;
    log::info(
        "store: timeline {}: history before {} was collected before this version; "
        "recorded it as the GC floor",
        root.id.value(), FormatRfc3339(*floor_time));
  }

  if (options.background_gc) impl->gc_thread = std::thread([p = impl.get()] { p->GcLoop(); });
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

// ---- timelines ----

Result<TimelineId> Store::CreateRoot(int64_t history_window_us, uint32_t uid, uint32_t gid) {
  if (history_window_us <= 0) return Status::InvalidArgument("history window must be positive");
  Impl& im = *impl_;
  std::lock_guard l(im.write_mu);
  auto [seq, now] = im.NextSeqLocked();
  TimelineInfo info;
  info.id = TimelineId(im.next_timeline);
  info.create_seq = seq;
  info.create_time_us = now;
  info.fork_time_us = now;
  info.history_window_us = history_window_us;
  info.root = info.id;
  rocksdb::WriteBatch batch;
  ARBOR_RETURN_IF_ERROR(im.PersistTimeline(info, &batch));
  uint64_t next = im.next_timeline + 1;
  batch.Put(std::string(kNextTimelineKey), Slice(reinterpret_cast<const char*>(&next), 8));
  Attr root;
  root.kind = FileKind::kDirectory;
  root.mode = S_IFDIR | 0755;
  root.uid = uid;
  root.gid = gid;
  root.nlink = 2;
  root.atime_ns = root.mtime_ns = root.ctime_ns = now * 1000;
  std::string key = keys::AttrPrefix(info.id, kRootInode);
  keys::AppendVersion(&key, seq);
  batch.Put(key, keys::EncodeAttr(root));
  batch.Put(im.index, keys::TimeKey(info.id, seq), Slice(reinterpret_cast<const char*>(&now), 8));
  if (im.options.change_index) {
    std::vector<keys::ChangeEntry> changed = {keys::AttrChange(kRootInode)};
    batch.Put(im.index, keys::ChangeKey(info.id, seq), keys::EncodeChanges(&changed));
  }
  ARBOR_RETURN_IF_ERROR(im.WriteLocked(&batch, true));
  im.next_timeline = next;
  im.CommitSeqLocked(seq, now);
  std::unique_lock tl(im.tl_mu);
  im.AddNode(info);
  return info.id;
}

Result<TimelineId> Store::Branch(TimelineId parent, Seq at,
                                 const std::function<MetaWrites(TimelineId)>& meta) {
  Impl& im = *impl_;
  // Checked and forked under write_mu, under which GC raises a floor: this branch is either
  // made before a raise (and GC, reading fork points after it, keeps what it needs) or it
  // is checked against the raised floor.
  std::lock_guard l(im.write_mu);
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo pinfo, im.Info(parent));
  ARBOR_ASSIGN_OR_RETURN(Impl::Retention retention, im.RetentionOf(pinfo));
  int64_t checked_at = im.Now();
  ARBOR_ASSIGN_OR_RETURN(Seq horizon,
                         im.HorizonAt(pinfo, retention.Cutoff(checked_at), retention.floor));
  Seq head(im.last_seq.load());
  if (at > head) {
    return Status::OutOfRange("seq " + at.ToString() + " is past the head of the store (" +
                              head.ToString() + "); branch at a seq in [" + horizon.ToString() +
                              ", " + head.ToString() + "]");
  }
  if (at < horizon) {
    return Status::OutOfRange(
        "seq " + at.ToString() + " is before the history horizon of timeline " + parent.ToString() +
        ", its state at " + Impl::EarliestText(pinfo, retention, checked_at) +
        "; branch at a seq in [" + horizon.ToString() + ", " + head.ToString() + "]");
  }
  {
    std::shared_lock tl(im.tl_mu);
    if (!im.nodes.count(parent)) {
      return Status::NotFound("timeline " + parent.ToString() + " does not exist");
    }
  }
  auto [seq, now] = im.NextSeqLocked();
  TimelineInfo info;
  info.id = TimelineId(im.next_timeline);
  info.parent = parent;
  info.fork_seq = at;
  info.create_seq = seq;
  info.create_time_us = now;
  info.root = pinfo.root;
  // The fork's wall time: the time of the parent's last change at or before `at`.
  {
    std::string prefix = keys::KindPrefix(parent, keys::Kind::kTime);
    rocksdb::ReadOptions rdo;
    rdo.total_order_seek = true;
    std::unique_ptr<rocksdb::Iterator> it(im.db->NewIterator(rdo, im.index));
    it->SeekForPrev(keys::TimeKey(parent, at));
    info.fork_time_us = pinfo.fork_time_us;
    if (it->Valid() && HasPrefix(it->key(), prefix) && it->value().size() == 8) {
      std::memcpy(&info.fork_time_us, it->value().data(), 8);
    }
  }
  rocksdb::WriteBatch batch;
  ARBOR_RETURN_IF_ERROR(im.PersistTimeline(info, &batch));
  uint64_t next = im.next_timeline + 1;
  batch.Put(std::string(kNextTimelineKey), Slice(reinterpret_cast<const char*>(&next), 8));
  batch.Put(im.index, keys::TimeKey(info.id, seq), Slice(reinterpret_cast<const char*>(&now), 8));
  if (im.options.change_index) {
    // Empty, but every time entry has its change record (see Open).
    std::vector<keys::ChangeEntry> none;
    batch.Put(im.index, keys::ChangeKey(info.id, seq), keys::EncodeChanges(&none));
  }
  MetaWrites writes = meta ? meta(info.id) : MetaWrites();
  Impl::AddMeta(writes, &batch);
  ARBOR_RETURN_IF_ERROR(im.WriteLocked(&batch, !writes.empty()));
  im.next_timeline = next;
  im.CommitSeqLocked(seq, now);
  std::unique_lock tl(im.tl_mu);
  im.AddNode(info);
  return info.id;
}

Status Store::DeleteTimeline(TimelineId id, const MetaWrites& meta) {
  Impl& im = *impl_;
  std::lock_guard l(im.write_mu);
  bool is_root;
  {
    std::shared_lock tl(im.tl_mu);
    auto it = im.nodes.find(id);
    if (it == im.nodes.end())
      return Status::NotFound("timeline " + id.ToString() + " does not exist");
    is_root = it->second.info.parent.value() == 0;
    if (!it->second.children.empty()) {
      std::string kids;
      for (TimelineId c : it->second.children) kids += (kids.empty() ? "" : ", ") + c.ToString();
      return Status::FailedPrecondition("timeline " + id.ToString() + " has children (" + kids +
                                        "); delete them first");
    }
  }
  rocksdb::WriteBatch batch;
  batch.DeleteRange(keys::TimelinePrefix(id), keys::TimelinePrefix(TimelineId(id.value() + 1)));
  batch.DeleteRange(im.index, keys::TimelinePrefix(id),
                    keys::TimelinePrefix(TimelineId(id.value() + 1)));
  batch.Delete(keys::TimelineRecordKey(id));
  if (is_root) batch.Delete(keys::GcFloorKey(id));
  uint64_t floor = im.last_seq.load();
  batch.Put(std::string(kSeqFloorKey), Slice(reinterpret_cast<const char*>(&floor), 8));
  Impl::AddMeta(meta, &batch);
  ARBOR_RETURN_IF_ERROR(im.WriteLocked(&batch, true));
  im.written.erase(id);
  im.size_cache.erase(id);
  im.exclusive_cache.erase(id);
  {
    std::unique_lock tl(im.tl_mu);
    TimelineId parent = im.nodes.at(id).info.parent;
    im.nodes.erase(id);
    if (parent.value() != 0) {
      auto& kids = im.nodes.at(parent).children;
      kids.erase(std::remove(kids.begin(), kids.end(), id), kids.end());
    }
  }
  // Free the space soon rather than at the next natural compaction of that range, but not
  // under write_mu: the compaction of a large timeline takes seconds.
  im.ScheduleCompaction(id);
  return Status::Ok();
}

void Store::Impl::ScheduleCompaction(TimelineId id) {
  std::lock_guard l(compact_mu);
  if (compact_stopping) return;
  to_compact.push_back(id);
  if (!compact_thread.joinable()) compact_thread = std::thread([this] { CompactLoop(); });
  compact_cv.notify_all();
}

void Store::Impl::CompactLoop() {
  std::unique_lock l(compact_mu);
  while (true) {
    compact_cv.wait(l, [this] { return compact_stopping || !to_compact.empty(); });
    if (compact_stopping) break;
    TimelineId id = to_compact.front();
    to_compact.pop_front();
    compacting = true;
    std::function<void(TimelineId)> hook = compact_hook;
    l.unlock();
    if (hook) hook(id);
    // A timeline's keys, in both families, lie in [prefix(id), prefix(id + 1)).
    std::string begin = keys::TimelinePrefix(id);
    std::string end = keys::TimelinePrefix(TimelineId(id.value() + 1));
    Slice b(begin), e(end);
    rocksdb::CompactRangeOptions cro;
    cro.exclusive_manual_compaction = false;
    cro.canceled = &compact_cancel;
    rocksdb::Status cs = db->CompactRange(cro, &b, &e);
    if (cs.ok()) cs = db->CompactRange(cro, index, &b, &e);
    if (!cs.ok() && !compact_cancel.load()) {
      log::warn("store: compacting deleted timeline {}: {}", id.value(), cs.ToString());
    }
    l.lock();
    compacting = false;
    compact_cv.notify_all();
  }
}

void Store::WaitForCompactions() {
  Impl& im = *impl_;
  std::unique_lock l(im.compact_mu);
  im.compact_cv.wait(
      l, [&im] { return im.compact_stopping || (im.to_compact.empty() && !im.compacting); });
}

void Store::SetCompactionHookForTesting(std::function<void(TimelineId)> hook) {
  std::lock_guard l(impl_->compact_mu);
  impl_->compact_hook = std::move(hook);
}

Status Store::WriteMeta(const MetaWrites& meta) {
  Impl& im = *impl_;
  std::lock_guard l(im.write_mu);
  rocksdb::WriteBatch batch;
  Impl::AddMeta(meta, &batch);
  return im.WriteLocked(&batch, true);
}

Result<std::vector<std::pair<std::string, std::string>>> Store::ScanMeta(
    std::string_view prefix) const {
  std::string full = std::string(keys::kCatalogPrefix) + std::string(prefix);
  rocksdb::ReadOptions ro;
  ro.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro));
  std::vector<std::pair<std::string, std::string>> out;
  for (it->Seek(full); it->Valid() && HasPrefix(it->key(), full); it->Next()) {
    out.emplace_back(it->key().ToString().substr(keys::kCatalogPrefix.size()),
                     it->value().ToString());
  }
  if (!it->status().ok()) return FromRocks(it->status(), "catalog scan");
  return out;
}

Result<TimelineInfo> Store::GetTimeline(TimelineId id) const { return impl_->Info(id); }

std::vector<TimelineInfo> Store::ListTimelines() const {
  std::shared_lock l(impl_->tl_mu);
  std::vector<TimelineInfo> out;
  for (const auto& [id, node] : impl_->nodes) out.push_back(node.info);
  return out;
}

Status Store::SetHistoryWindow(TimelineId root, int64_t history_window_us) {
  if (history_window_us <= 0) return Status::InvalidArgument("history window must be positive");
  Impl& im = *impl_;
  std::lock_guard l(im.write_mu);
  TimelineInfo info;
  {
    std::shared_lock tl(im.tl_mu);
    auto it = im.nodes.find(root);
    if (it == im.nodes.end())
      return Status::NotFound("timeline " + root.ToString() + " does not exist");
    if (it->second.info.parent.value() != 0) {
      return Status::InvalidArgument("timeline " + root.ToString() +
                                     " is not a root; its history window is its root's");
    }
    info = it->second.info;
  }
  info.history_window_us = history_window_us;
  rocksdb::WriteBatch batch;
  ARBOR_RETURN_IF_ERROR(im.PersistTimeline(info, &batch));
  ARBOR_RETURN_IF_ERROR(im.WriteLocked(&batch, true));
  std::unique_lock tl(im.tl_mu);
  im.nodes.at(root).info.history_window_us = history_window_us;
  return Status::Ok();
}

Seq Store::Head() const { return Seq(impl_->last_seq.load()); }

// ---- mutations ----

Result<Seq> Store::Apply(TimelineId timeline, Mutation&& m) {
  Impl& im = *impl_;
  {
    std::shared_lock tl(im.tl_mu);
    if (!im.nodes.count(timeline)) {
      return Status::NotFound("timeline " + timeline.ToString() + " does not exist");
    }
  }
  for (const Mutation::Entry& e : m.ops_) {
    if (e.op == Mutation::Op::kPutDirent || e.op == Mutation::Op::kDelDirent) {
      if (e.name.empty() || e.name.size() > 255 || e.name.find('/') != std::string::npos ||
          e.name.find('\0') != std::string::npos || e.name == "." || e.name == "..") {
        return Status::InvalidArgument("invalid file name");
      }
    }
  }
  // Keys are built before taking the lock; only their version suffix depends on the seq.
  struct Built {
    std::string key;
    const std::string* value;
  };
  std::vector<Built> built;
  built.reserve(m.ops_.size());
  static const std::string kTomb(1, keys::kTombstone);
  std::vector<std::string> dirent_values;
  dirent_values.reserve(m.ops_.size());
  std::vector<keys::ChangeEntry> changed;
  uint64_t bytes = 0;
  for (const Mutation::Entry& e : m.ops_) {
    switch (e.op) {
      case Mutation::Op::kPutAttr:
      case Mutation::Op::kDelAttr:
        changed.push_back(keys::AttrChange(e.ino));
        break;
      case Mutation::Op::kPutBlock:
      case Mutation::Op::kZeroBlock:
        changed.push_back(keys::BlockChange(e.ino, e.block));
        break;
      default:
        break;
    }
    switch (e.op) {
      case Mutation::Op::kPutAttr:
        built.push_back({keys::AttrPrefix(timeline, e.ino), &e.data});
        break;
      case Mutation::Op::kDelAttr:
        built.push_back({keys::AttrPrefix(timeline, e.ino), &kTomb});
        break;
      case Mutation::Op::kPutDirent:
        dirent_values.push_back(keys::EncodeDirent(e.child, e.kind));
        built.push_back({keys::DirentPrefix(timeline, e.ino, e.name), &dirent_values.back()});
        break;
      case Mutation::Op::kDelDirent:
        built.push_back({keys::DirentPrefix(timeline, e.ino, e.name), &kTomb});
        break;
      case Mutation::Op::kPutBlock:
        built.push_back({keys::BlockPrefix(timeline, e.ino, e.block), &e.data});
        break;
      case Mutation::Op::kZeroBlock:
        built.push_back({keys::BlockPrefix(timeline, e.ino, e.block), &kTomb});
        break;
    }
    bytes += built.back().key.size() + 8 + built.back().value->size();
  }
  std::string change_record;
  if (im.options.change_index) change_record = keys::EncodeChanges(&changed);

  std::lock_guard l(im.write_mu);
  {
    std::shared_lock tl(im.tl_mu);  // a concurrent delete may have won
    if (!im.nodes.count(timeline)) {
      return Status::NotFound("timeline " + timeline.ToString() + " does not exist");
    }
  }
  auto [seq, now] = im.NextSeqLocked();
  // One batch, reused under write_mu: a fresh one of a 1 MiB write is an mmap'd buffer that
  // is page-faulted in and unmapped again on every call (measured: ~5% of the CPU of a load).
  rocksdb::WriteBatch& batch = im.apply_batch;
  batch.Clear();
  for (Built& b : built) {
    keys::AppendVersion(&b.key, seq);
    batch.Put(b.key, *b.value);
  }
  batch.Put(im.index, keys::TimeKey(timeline, seq), Slice(reinterpret_cast<const char*>(&now), 8));
  if (im.options.change_index) batch.Put(im.index, keys::ChangeKey(timeline, seq), change_record);
  if (m.wal_end_.value() != 0) {
    batch.Put(im.index, keys::WalKey(timeline, m.wal_end_),
              Slice(reinterpret_cast<const char*>(&seq), sizeof seq));
  }
  uint64_t total = im.written[timeline] + bytes;
  batch.Put(im.index, keys::WrittenKey(timeline), Slice(reinterpret_cast<const char*>(&total), 8));
  Status ws = im.WriteLocked(&batch, false);
  if (batch.GetDataSize() > kMaxKeptBatch) batch = rocksdb::WriteBatch();
  ARBOR_RETURN_IF_ERROR(ws);
  im.written[timeline] = total;
  im.CommitSeqLocked(seq, now);
  return seq;
}

Status Store::Sync(TimelineId timeline) {
  Impl& im = *impl_;
  {
    std::shared_lock tl(im.tl_mu);
    if (!im.nodes.count(timeline)) {
      return Status::NotFound("timeline " + timeline.ToString() + " does not exist");
    }
  }
  // One WAL serves every timeline, so syncing it covers this timeline's earlier mutations.
  // Concurrent callers share one fsync: whoever syncs covers everything applied before it.
  uint64_t target = im.last_seq.load();
  std::lock_guard l(im.sync_mu);
  if (im.synced_seq >= target) return Status::Ok();
  uint64_t covering = im.last_seq.load();
  rocksdb::Status s = im.db->SyncWAL();
  if (!s.ok()) return FromRocks(s, "sync");
  im.synced_seq = covering;
  return Status::Ok();
}

Status Store::AddTruncate(TimelineId timeline, InodeId ino, uint64_t old_size, uint64_t new_size,
                          Mutation* m) {
  if (new_size >= old_size) return Status::Ok();
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  uint64_t first_whole = (new_size + kBlockSize - 1) / kBlockSize;
  if (new_size % kBlockSize != 0) {
    std::string buf(kBlockSize, '\0');
    uint64_t b = new_size / kBlockSize;
    ARBOR_RETURN_IF_ERROR(ReadBlock(timeline, kSeqMax, ino, b, std::span<char>(buf)));
    std::memset(buf.data() + new_size % kBlockSize, 0, kBlockSize - new_size % kBlockSize);
    m->PutBlock(ino, b, std::span<const char>(buf));
  }
  std::string from;
  keys::PutBE64(&from, first_whole);
  std::map<std::string, std::string> visible;
  ARBOR_RETURN_IF_ERROR(impl_->MergeScan(
      *chain, kSeqMax, [&](TimelineId t) { return keys::BlockInodePrefix(t, ino); }, from, &visible,
      /*tags_only=*/true));
  for (const auto& [suffix, value] : visible) {
    if (suffix.size() != 8) continue;
    uint64_t b = keys::GetBE64(suffix);
    if (b < first_whole) continue;
    if (!value.empty() && value[0] == keys::kPresent) m->ZeroBlock(ino, b);
  }
  return Status::Ok();
}

Result<InodeId> Store::AllocateInode() {
  Impl& im = *impl_;
  std::lock_guard l(im.ino_mu);
  if (im.next_ino >= im.reserved_ino) {
    uint64_t reserve = im.next_ino + kInodeReserve;
    rocksdb::WriteOptions wo;
    wo.sync = true;  // a reservation must be durable before any id in it is handed out
    rocksdb::Status s = im.db->Put(wo, std::string(keys::kNextInodeKey),
                                   Slice(reinterpret_cast<const char*>(&reserve), 8));
    if (!s.ok()) return FromRocks(s, "reserving inode ids");
    im.reserved_ino = reserve;
  }
  return InodeId(im.next_ino++);
}

// ---- reads ----

Result<std::optional<Attr>> Store::GetAttr(TimelineId timeline, Seq at, InodeId ino) const {
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  bool found = false;
  std::string value;
  ARBOR_RETURN_IF_ERROR(impl_->FindVersion(
      *chain, at, [&](TimelineId t) { return keys::AttrPrefix(t, ino); },
      [&](Slice v) { value.assign(v.data(), v.size()); }, &found));
  if (!found || value.empty() || value[0] == keys::kTombstone) return std::optional<Attr>();
  ARBOR_ASSIGN_OR_RETURN(Attr a, keys::DecodeAttr(value));
  return std::optional<Attr>(std::move(a));
}

Result<std::optional<DirEntry>> Store::Lookup(TimelineId timeline, Seq at, InodeId dir,
                                              std::string_view name) const {
  if (name.empty() || name.find('\0') != std::string_view::npos) {
    return std::optional<DirEntry>();
  }
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  bool found = false;
  std::string value;
  ARBOR_RETURN_IF_ERROR(impl_->FindVersion(
      *chain, at, [&](TimelineId t) { return keys::DirentPrefix(t, dir, name); },
      [&](Slice v) { value.assign(v.data(), v.size()); }, &found));
  if (!found || value.empty() || value[0] == keys::kTombstone) return std::optional<DirEntry>();
  ARBOR_ASSIGN_OR_RETURN(DirEntry e, keys::DecodeDirent(name, value));
  return std::optional<DirEntry>(std::move(e));
}

Result<std::vector<std::pair<InodeId, Attr>>> Store::ListAttrs(TimelineId timeline, Seq at) const {
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  std::map<std::string, std::string> visible;
  ARBOR_RETURN_IF_ERROR(impl_->MergeScan(
      *chain, at, [&](TimelineId t) { return keys::KindPrefix(t, keys::Kind::kAttr); }, "",
      &visible));
  std::vector<std::pair<InodeId, Attr>> out;
  for (const auto& [suffix, value] : visible) {
    if (value.empty() || value[0] == keys::kTombstone) continue;
    if (suffix.size() != 8) return Status::Corruption("malformed attribute key");
    ARBOR_ASSIGN_OR_RETURN(Attr a, keys::DecodeAttr(value));
    out.emplace_back(InodeId(keys::GetBE64(suffix)), std::move(a));
  }
  return out;
}

Result<std::vector<DirEntry>> Store::ReadDir(TimelineId timeline, Seq at, InodeId dir) const {
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  std::map<std::string, std::string> visible;
  ARBOR_RETURN_IF_ERROR(impl_->MergeScan(
      *chain, at, [&](TimelineId t) { return keys::DirPrefix(t, dir); }, "", &visible));
  std::vector<DirEntry> out;
  for (const auto& [suffix, value] : visible) {
    if (value.empty() || value[0] == keys::kTombstone) continue;
    if (suffix.empty() || suffix.back() != '\0') return Status::Corruption("malformed dirent key");
    ARBOR_ASSIGN_OR_RETURN(
        DirEntry e,
        keys::DecodeDirent(std::string_view(suffix).substr(0, suffix.size() - 1), value));
    out.push_back(std::move(e));
  }
  return out;
}

Status Store::ReadBlock(TimelineId timeline, Seq at, InodeId ino, uint64_t block,
                        std::span<char> out) const {
  if (out.size() != kBlockSize) return Status::InvalidArgument("block buffer must be 8 KiB");
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  bool found = false;
  size_t n = 0;
  Status bad;
  ARBOR_RETURN_IF_ERROR(impl_->FindVersion(
      *chain, at, [&](TimelineId t) { return keys::BlockPrefix(t, ino, block); },
      [&](Slice v) {
        if (v.empty() || v[0] == keys::kTombstone) return;
        if (v.size() > kBlockSize + 1) {
          bad = Status::Corruption("block value longer than a block");
          return;
        }
        n = v.size() - 1;
        std::memcpy(out.data(), v.data() + 1, n);
      },
      &found));
  ARBOR_RETURN_IF_ERROR(bad);
  std::memset(out.data() + n, 0, kBlockSize - n);
  return Status::Ok();
}

Result<std::string> Store::ReadFile(TimelineId timeline, Seq at, InodeId ino, uint64_t offset,
                                    uint64_t len) const {
  ARBOR_ASSIGN_OR_RETURN(auto attr, GetAttr(timeline, at, ino));
  if (!attr) return Status::NotFound("inode " + ino.ToString() + " does not exist");
  if (offset >= attr->size) return std::string();
  len = std::min(len, attr->size - offset);
  std::string out(len, '\0');
  std::string buf(kBlockSize, '\0');
  uint64_t pos = offset;
  while (pos < offset + len) {
    uint64_t b = pos / kBlockSize, in = pos % kBlockSize;
    uint64_t n = std::min<uint64_t>(kBlockSize - in, offset + len - pos);
    ARBOR_RETURN_IF_ERROR(ReadBlock(timeline, at, ino, b, std::span<char>(buf)));
    std::memcpy(out.data() + (pos - offset), buf.data() + in, n);
    pos += n;
  }
  return out;
}

// ---- changes ----

Result<ChangeSet> Store::Changes(TimelineId a, Seq a_at, TimelineId b, Seq b_at) const {
  const Impl& im = *impl_;
  if (!im.options.change_index) {
    return Status::FailedPrecondition("the store was opened without its change index");
  }
  // The snapshot is taken before anything is checked. GC raises the floor (and reads the fork
  // points) before it drops or folds a change record, so a drop this snapshot sees happened
  // under a floor that the horizon checks below see too, and a timeline deleted after the
  // chains were read still has its records in the snapshot.
  struct Snap {
    rocksdb::DB* db;
    const rocksdb::Snapshot* s;
    ~Snap() { db->ReleaseSnapshot(s); }
  } snap{im.db.get(), im.db->GetSnapshot()};

  ARBOR_ASSIGN_OR_RETURN(auto chain_a, im.ChainOf(a));
  ARBOR_ASSIGN_OR_RETURN(auto chain_b, im.ChainOf(b));
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info_a, im.Info(a));
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info_b, im.Info(b));
  if (info_a.root != info_b.root) {
    return Status::InvalidArgument("timelines " + a.ToString() + " and " + b.ToString() +
                                   " have no common ancestor (their roots are " +
                                   info_a.root.ToString() + " and " + info_b.root.ToString() + ")");
  }
  // Below the horizon GC may have folded the records a range needs (docs, "Change index").
  for (const auto& [tl, at] : {std::pair{a, a_at}, std::pair{b, b_at}}) {
    ARBOR_ASSIGN_OR_RETURN(Seq h, Horizon(tl));
    if (at < h) {
      return Status::OutOfRange("seq " + at.ToString() +
                                " is before the history horizon of timeline " + tl.ToString() +
                                " (seq " + h.ToString() + ")");
    }
  }

  // The deepest timeline on both paths: chains run from the timeline up to its root.
  size_t la = 0, lb = 0;
  bool met = false;
  for (; la < chain_a->size() && !met; ++la) {
    for (lb = 0; lb < chain_b->size(); ++lb) {
      if ((*chain_a)[la].tl == (*chain_b)[lb].tl) {
        met = true;
        break;
      }
    }
    if (met) break;
  }
  if (!met) return Status::Corruption("timelines of one root share no ancestor");
  Seq sa = std::min(a_at, (*chain_a)[la].cap), sb = std::min(b_at, (*chain_b)[lb].cap);
  ChangeSet out;
  out.ancestor = (*chain_a)[la].tl;
  out.ancestor_seq = std::min(sa, sb);

  // The seq ranges (lo, hi] of change records to read.
  struct Range {
    TimelineId tl;
    Seq lo, hi;
  };
  std::vector<Range> ranges;
  auto below = [&](const Chain& chain, size_t upto, Seq at) -> Status {
    // Every key of a timeline below the ancestor has a seq above its creation.
    for (size_t i = 0; i < upto; ++i) {
      ARBOR_ASSIGN_OR_RETURN(TimelineInfo info, im.Info(chain[i].tl));
      ranges.push_back({chain[i].tl, info.create_seq, std::min(at, chain[i].cap)});
    }
    return Status::Ok();
  };
  ARBOR_RETURN_IF_ERROR(below(*chain_a, la, a_at));
  ARBOR_RETURN_IF_ERROR(below(*chain_b, lb, b_at));
  ranges.push_back({out.ancestor, out.ancestor_seq, std::max(sa, sb)});

  rocksdb::ReadOptions ro;
  ro.snapshot = snap.s;
  ro.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(im.db->NewIterator(ro, im.index));
  std::vector<keys::ChangeEntry> entries;
  for (const Range& r : ranges) {
    if (r.lo >= r.hi) continue;
    if (r.lo.value() + 1 < im.change_index_from) {
      return Status::FailedPrecondition(
          "the change index of this store starts at seq " + std::to_string(im.change_index_from) +
          " (writes before it were made by an older build), and the changes of timeline " +
          r.tl.ToString() + " after seq " + r.lo.ToString() + " are needed; compare in full");
    }
    std::string prefix = keys::KindPrefix(r.tl, keys::Kind::kChange);
    for (it->Seek(keys::ChangeKey(r.tl, Seq(r.lo.value() + 1)));
         it->Valid() && HasPrefix(it->key(), prefix); it->Next()) {
      if (it->key().size() != prefix.size() + 8) continue;
      if (keys::GetBE64(std::string_view(it->key().data() + prefix.size(), 8)) > r.hi.value()) {
        break;
      }
      ARBOR_RETURN_IF_ERROR(
          keys::DecodeChanges(std::string_view(it->value().data(), it->value().size()), &entries));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "change index");
  }
  std::sort(entries.begin(), entries.end());
  entries.erase(std::unique(entries.begin(), entries.end()), entries.end());
  for (const keys::ChangeEntry& e : entries) {
    if (e.code == 0) {
      out.attrs.push_back(InodeId(e.ino));
    } else {
      out.blocks.push_back({InodeId(e.ino), e.code - 1});
    }
  }
  return out;
}

// ---- time ----

Result<std::pair<int64_t, int64_t>> Store::TimeRange(TimelineId timeline) const {
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info, impl_->Info(timeline));
  ARBOR_ASSIGN_OR_RETURN(Impl::Retention r, impl_->RetentionOf(info));
  int64_t now = impl_->Now();
  return std::make_pair(Impl::EarliestTime(info, r, now), now);
}

Result<Seq> Store::SeqAtTime(TimelineId timeline, int64_t time_us) const {
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info, impl_->Info(timeline));
  ARBOR_ASSIGN_OR_RETURN(Impl::Retention r, impl_->RetentionOf(info));
  int64_t now = impl_->Now();
  int64_t earliest = Impl::EarliestTime(info, r, now);
  std::string range =
      "; the allowed range is " + FormatRfc3339(earliest) + " to " + FormatRfc3339(now);
  if (time_us < earliest) {
    return Status::OutOfRange("time " + FormatRfc3339(time_us) + " is before " +
                              Impl::EarliestText(info, r, now) + range);
  }
  if (time_us > now) {
    return Status::OutOfRange("time " + FormatRfc3339(time_us) +
                              " is outside the history of timeline " + timeline.ToString() + range);
  }
  Seq start = info.parent.value() ? info.fork_seq : info.create_seq;
  ARBOR_ASSIGN_OR_RETURN(Seq s, impl_->LastSeqAtOrBefore(timeline, time_us, start));
  return std::max(s, start);
}

Result<int64_t> Store::TimeOfSeq(TimelineId timeline, Seq seq) const {
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info, impl_->Info(timeline));
  if (info.parent.value() && seq == info.fork_seq) return info.fork_time_us;
  std::string v;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->index, keys::TimeKey(timeline, seq), &v);
  if (s.IsNotFound()) {
    return Status::NotFound("timeline " + timeline.ToString() + " has no change at seq " +
                            seq.ToString());
  }
  if (!s.ok()) return FromRocks(s, "time index");
  if (v.size() != 8) return Status::Corruption("malformed time index entry");
  int64_t t;
  std::memcpy(&t, v.data(), 8);
  return t;
}

Result<Seq> Store::SeqAtLsn(TimelineId timeline, Lsn lsn) const {
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info, impl_->Info(timeline));
  ARBOR_ASSIGN_OR_RETURN(Impl::Retention r, impl_->RetentionOf(info));
  int64_t now = impl_->Now();
  ARBOR_ASSIGN_OR_RETURN(Seq horizon, impl_->HorizonAt(info, r.Cutoff(now), r.floor));
  // WAL written on this timeline, and (up to each fork point) on its ancestors: a branch's
  // WAL continues its parent's.
  Lsn low{~uint64_t{0}}, high{0};
  rocksdb::ReadOptions ro;
  ro.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->index));
  std::optional<Seq> found;
  for (const Level& level : *chain) {
    std::string prefix = keys::KindPrefix(level.tl, keys::Kind::kWal);
    for (it->Seek(prefix); it->Valid() && HasPrefix(it->key(), prefix); it->Next()) {
      if (it->key().size() != prefix.size() + 8 || it->value().size() != 8) continue;
      Lsn end(keys::GetBE64(std::string_view(it->key().data() + prefix.size(), 8)));
      Seq seq;
      std::memcpy(&seq, it->value().data(), 8);
      if (seq > level.cap) continue;  // written on an ancestor after the fork
      low = std::min(low, end);
      high = std::max(high, end);
      if (end >= lsn && (!found || seq < *found)) found = seq;
    }
    if (!it->status().ok()) return FromRocks(it->status(), "wal index");
  }
  auto fmt = [](Lsn l) {
    char b[32];
    snprintf(b, sizeof b, "%X/%X", static_cast<unsigned>(l.value() >> 32),
             static_cast<unsigned>(l.value() & 0xffffffff));
    return std::string(b);
  };
  if (!found) {
    return Status::OutOfRange("the WAL of timeline " + timeline.ToString() + " has not reached " +
                              fmt(lsn) + (high.value() ? "; it ends at " + fmt(high) : ""));
  }
  if (*found < horizon) {
    return Status::OutOfRange("LSN " + fmt(lsn) + " was reached before " +
                              Impl::EarliestText(info, r, now));
  }
  return *found;
}

Result<std::vector<Store::WalPoint>> Store::WalPoints(TimelineId timeline, int64_t since_us,
                                                      int64_t until_us) const {
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info, impl_->Info(timeline));
  ARBOR_ASSIGN_OR_RETURN(Impl::Retention r, impl_->RetentionOf(info));
  int64_t now = impl_->Now();
  int64_t earliest = Impl::EarliestTime(info, r, now);
  if (since_us < earliest) {
    return Status::OutOfRange("time " + FormatRfc3339(since_us) + " is before " +
                              Impl::EarliestText(info, r, now) + "; the allowed range is " +
                              FormatRfc3339(earliest) + " to " + FormatRfc3339(now));
  }
  ARBOR_ASSIGN_OR_RETURN(Seq horizon, impl_->HorizonAt(info, r.Cutoff(now), r.floor));
  rocksdb::ReadOptions ro;
  ro.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->index));
  std::vector<WalPoint> out;
  for (const Level& level : *chain) {
    std::string prefix = keys::KindPrefix(level.tl, keys::Kind::kWal);
    std::vector<WalPoint> found;
    for (it->Seek(prefix); it->Valid() && HasPrefix(it->key(), prefix); it->Next()) {
      if (it->key().size() != prefix.size() + 8 || it->value().size() != 8) continue;
      WalPoint p;
      p.end = Lsn(keys::GetBE64(std::string_view(it->key().data() + prefix.size(), 8)));
      std::memcpy(&p.seq, it->value().data(), 8);
      if (p.seq > level.cap || p.seq < horizon) continue;
      found.push_back(p);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "wal index");
    for (WalPoint& p : found) {
      std::string v;
      rocksdb::Status s =
          impl_->db->Get(rocksdb::ReadOptions(), impl_->index, keys::TimeKey(level.tl, p.seq), &v);
      if (s.IsNotFound()) continue;  // below what GC keeps of the time index
      if (!s.ok()) return FromRocks(s, "time index");
      if (v.size() != 8) return Status::Corruption("malformed time index entry");
      std::memcpy(&p.time_us, v.data(), 8);
      if (p.time_us >= since_us && p.time_us <= until_us) out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end(), [](const WalPoint& a, const WalPoint& b) {
    return a.seq < b.seq || (a.seq == b.seq && a.end < b.end);
  });
  // One state per seq: a mutation that marked several ends holds the WAL up to the last.
  std::vector<WalPoint> unique;
  for (const WalPoint& p : out) {
    if (!unique.empty() && unique.back().seq == p.seq) {
      unique.back() = p;
    } else {
      unique.push_back(p);
    }
  }
  return unique;
}

Result<Seq> Store::Horizon(TimelineId timeline) const {
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info, impl_->Info(timeline));
  ARBOR_ASSIGN_OR_RETURN(Impl::Retention r, impl_->RetentionOf(info));
  return impl_->HorizonAt(info, r.Cutoff(impl_->Now()), r.floor);
}

// ---- space ----

uint64_t Store::WrittenBytes(TimelineId timeline) const {
  std::lock_guard l(impl_->write_mu);
  auto it = impl_->written.find(timeline);
  return it == impl_->written.end() ? 0 : it->second;
}

Result<Usage> Store::GetUsage(TimelineId timeline) const {
  ARBOR_ASSIGN_OR_RETURN(auto chain, impl_->ChainOf(timeline));
  Usage u;
  {
    u.written_bytes = WrittenBytes(timeline);
    std::lock_guard l(impl_->write_mu);
    auto cached = impl_->size_cache.find(timeline);
    if (cached != impl_->size_cache.end() && cached->second.first == u.written_bytes) {
      u.logical_size_bytes = cached->second.second;
      return u;
    }
  }
  std::map<std::string, std::string> attrs;
  ARBOR_RETURN_IF_ERROR(impl_->MergeScan(
      *chain, kSeqMax, [&](TimelineId t) { return keys::KindPrefix(t, keys::Kind::kAttr); }, "",
      &attrs));
  for (const auto& [suffix, value] : attrs) {
    if (value.empty() || value[0] == keys::kTombstone) continue;
    ARBOR_ASSIGN_OR_RETURN(Attr a, keys::DecodeAttr(value));
    if (a.kind == FileKind::kRegular) u.logical_size_bytes += a.size;
  }
  // Keyed by the counter read before the scan: a write during it makes the entry stale.
  std::lock_guard l(impl_->write_mu);
  impl_->size_cache[timeline] = {u.written_bytes, u.logical_size_bytes};
  return u;
}

Result<std::map<TimelineId, ExclusiveSize>> Store::ExclusiveSizes(TimelineId parent) const {
  Impl& im = *impl_;
  ARBOR_ASSIGN_OR_RETURN(TimelineInfo info, GetTimeline(parent));
  ARBOR_ASSIGN_OR_RETURN(Impl::Retention retention, im.RetentionOf(info));
  ARBOR_ASSIGN_OR_RETURN(Seq horizon,
                         im.HorizonAt(info, retention.Cutoff(im.Now()), retention.floor));
  std::vector<std::pair<uint64_t, TimelineId>> children;  // (fork seq, child), sorted
  {
    std::shared_lock l(im.tl_mu);
    auto it = im.nodes.find(parent);
    if (it == im.nodes.end()) {
      return Status::NotFound("timeline " + parent.ToString() + " does not exist");
    }
    for (TimelineId c : it->second.children) {
      children.emplace_back(im.nodes.at(c).info.fork_seq.value(), c);
    }
  }
  std::sort(children.begin(), children.end());
  uint64_t written = 0;
  {
    std::lock_guard l(im.write_mu);
    auto w = im.written.find(parent);
    written = w == im.written.end() ? 0 : w->second;
    auto c = im.exclusive_cache.find(parent);
    if (c != im.exclusive_cache.end() && c->second.written == written &&
        c->second.forks == children && c->second.horizon == horizon.value()) {
      return c->second.sizes;
    }
  }
  std::map<TimelineId, ExclusiveSize> sizes;
  for (const auto& [f, c] : children) sizes[c] = ExclusiveSize{};
  std::vector<uint64_t> forks;
  for (const auto& [f, c] : children) forks.push_back(f);
  bool is_root = info.parent.value() == 0;

  rocksdb::ReadOptions ro;
  ro.total_order_seek = true;
  ro.fill_cache = false;
  std::string prefix = keys::TimelinePrefix(parent);
  std::string upper = Successor(prefix);
  Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(im.db->NewIterator(ro));
  std::vector<GcVersion> group;
  std::string group_prefix;
  // For each fork point that alone keeps a version (one child there, and no other fork or
  // read at or above the horizon in the version's range), what GC would drop without it.
  auto decide = [&]() {
    if (group.size() < 2) {
      group.clear();
      return;
    }
    std::vector<bool> keep = GcKeeps(group, horizon.value(), forks, is_root);
    std::vector<uint64_t> candidates;
    for (size_t i = 1; i < group.size(); ++i) {
      uint64_t newer = group[i - 1].seq;
      if (newer > horizon.value()) continue;
      for (auto f = std::lower_bound(forks.begin(), forks.end(), group[i].seq);
           f != forks.end() && *f < newer; ++f) {
        candidates.push_back(*f);
      }
    }
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    for (uint64_t f : candidates) {
      auto first = std::lower_bound(forks.begin(), forks.end(), f);
      if (first + 1 != forks.end() && first[1] == f) continue;  // two children share it
      std::vector<uint64_t> without = forks;
      without.erase(without.begin() + (first - forks.begin()));
      std::vector<bool> keep_without = GcKeeps(group, horizon.value(), without, is_root);
      auto child =
          std::lower_bound(children.begin(), children.end(), std::make_pair(f, TimelineId(0)));
      ExclusiveSize& size = sizes[child->second];
      for (size_t i = 0; i < group.size(); ++i) {
        if (keep[i] && !keep_without[i]) {
          size.bytes += group[i].bytes;
          ++size.versions;
        }
      }
    }
    group.clear();
  };
  if (!forks.empty()) {
    for (it->Seek(prefix); it->Valid(); it->Next()) {
      Slice k = it->key();
      if (k.size() < prefix.size() + 9) continue;
      std::string_view unversioned(k.data(), k.size() - 8);
      if (unversioned != group_prefix) {
        decide();
        group_prefix.assign(unversioned);
      }
      Slice v = it->value();
      group.push_back({"", keys::VersionOf(std::string_view(k.data(), k.size())).value(),
                       v.empty() || v[0] == keys::kTombstone, k.size() + v.size()});
    }
    decide();
    if (!it->status().ok()) return FromRocks(it->status(), "exclusive size scan");
  }
  std::lock_guard l(im.write_mu);
  im.exclusive_cache[parent] = {written, children, horizon.value(), sizes};
  return sizes;
}

uint64_t Store::DiskBytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(impl_->options.path, ec)) {
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  }
  return total;
}

StoreStats Store::Stats() const {
  StoreStats s;
  s.disk_bytes = DiskBytes();
  const rocksdb::Statistics& st = *impl_->statistics;
  s.user_bytes_written = st.getTickerCount(rocksdb::BYTES_WRITTEN);
  s.flush_bytes_written = st.getTickerCount(rocksdb::FLUSH_WRITE_BYTES);
  s.compaction_bytes_written = st.getTickerCount(rocksdb::COMPACT_WRITE_BYTES);
  s.compaction_bytes_read = st.getTickerCount(rocksdb::COMPACT_READ_BYTES);
  s.block_cache_hits = st.getTickerCount(rocksdb::BLOCK_CACHE_HIT);
  s.block_cache_misses = st.getTickerCount(rocksdb::BLOCK_CACHE_MISS);
  s.flushes = impl_->jobs->flushes.load();
  s.compactions = impl_->jobs->compactions.load();
  return s;
}

void Store::SetClockForTesting(int64_t now_us) { impl_->clock_override.store(now_us); }

// ---- GC ----

Result<Store::Impl::Retention> Store::Impl::RaiseFloor(TimelineId root, int64_t now) {
  std::lock_guard l(write_mu);
  TimelineInfo rinfo;
  Retention r;
  {
    std::shared_lock tl(tl_mu);
    auto it = nodes.find(root);
    if (it == nodes.end()) {
      return Status::NotFound("timeline " + root.ToString() + " does not exist");
    }
    rinfo = it->second.info;
    r = Retention{rinfo.history_window_us, it->second.gc_floor};
  }
  int64_t cutoff = now - r.window_us;
  if (r.floor && r.floor->time_us >= cutoff) return r;
  ARBOR_ASSIGN_OR_RETURN(Seq seq, HorizonAt(rinfo, cutoff, r.floor));
  GcFloor next{cutoff, seq};
  // Synced on its own, ahead of every delete GC then makes: a delete that survives a crash
  // was written after it, so the floor survives too.
  rocksdb::WriteBatch batch;
  batch.Put(keys::GcFloorKey(root), EncodeGcFloor(next));
  ARBOR_RETURN_IF_ERROR(WriteLocked(&batch, /*sync=*/true));
  {
    std::unique_lock tl(tl_mu);
    auto it = nodes.find(root);
    if (it != nodes.end()) it->second.gc_floor = next;
  }
  r.floor = next;
  return r;
}

// Drops the versions of one timeline that no legal read can reach (GcKeeps says which).
Result<uint64_t> Store::Impl::GcTimeline(const TimelineInfo& info, int64_t now) {
  // The floor first; the fork points after it (see Branch).
  ARBOR_ASSIGN_OR_RETURN(Retention retention, RaiseFloor(info.root, now));
  int64_t cutoff = retention.Cutoff(now);  // == the floor's time
  ARBOR_ASSIGN_OR_RETURN(Seq horizon, HorizonAt(info, cutoff, retention.floor));
  std::vector<uint64_t> forks;
  {
    std::shared_lock l(tl_mu);
    auto it = nodes.find(info.id);
    if (it == nodes.end()) return uint64_t{0};
    for (TimelineId c : it->second.children) forks.push_back(nodes.at(c).info.fork_seq.value());
  }
  std::sort(forks.begin(), forks.end());
  {
    std::lock_guard l(gc_mu);
    auto mark = gc_marks.find(info.id);
    if (mark != gc_marks.end() && mark->second.forks == forks) {
      if (horizon <= mark->second.horizon) return uint64_t{0};
      // Any change of this timeline with a seq in (last horizon, horizon]?
      rocksdb::ReadOptions ro;
      ro.total_order_seek = true;
      std::unique_ptr<rocksdb::Iterator> t(db->NewIterator(ro, index));
      std::string prefix = keys::KindPrefix(info.id, keys::Kind::kTime);
      t->Seek(keys::TimeKey(info.id, Seq(mark->second.horizon.value() + 1)));
      bool changed =
          t->Valid() && HasPrefix(t->key(), prefix) && t->key().size() == prefix.size() + 8 &&
          keys::GetBE64(std::string_view(t->key().data() + prefix.size(), 8)) <= horizon.value();
      if (!changed && t->status().ok()) {
        mark->second.horizon = horizon;
        return uint64_t{0};
      }
    }
  }
  bool is_root = info.parent.value() == 0;

  rocksdb::ReadOptions ro;
  ro.total_order_seek = true;
  ro.fill_cache = false;
  std::string prefix = keys::TimelinePrefix(info.id);
  std::string upper = Successor(prefix);
  Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));

  uint64_t dropped = 0;
  rocksdb::WriteBatch batch;
  auto flush = [&]() -> Status {
    if (batch.Count() == 0) return Status::Ok();
    rocksdb::WriteOptions wo;
    wo.low_pri = true;  // yields to foreground writes when compaction falls behind
    rocksdb::Status s = db->Write(wo, &batch);
    batch.Clear();
    if (!s.ok()) return FromRocks(s, "gc");
    // Throttle: GC never takes more than a sliver of the disk.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return Status::Ok();
  };

  std::vector<GcVersion> group;
  std::string group_prefix;
  auto decide = [&]() {
    if (group.empty()) return;
    std::vector<bool> keep = GcKeeps(group, horizon.value(), forks, is_root);
    for (size_t i = 0; i < group.size(); ++i) {
      if (!keep[i]) {
        batch.Delete(group[i].key);
        ++dropped;
      }
    }
    group.clear();
  };

  uint64_t scanned = 0;
  auto throttle = [&](Slice k, Slice v) {
    scanned += k.size() + v.size();
    if (scanned >= kGcScanSlice) {
      scanned = 0;
      std::this_thread::sleep_for(
          std::chrono::microseconds(1'000'000 * kGcScanSlice / kGcScanBytesPerSec));
    }
    std::lock_guard l(gc_mu);
    return !stopping;
  };
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    Slice k = it->key();
    if (k.size() < prefix.size() + 9) continue;
    std::string_view unversioned(k.data(), k.size() - 8);
    if (unversioned != group_prefix) {
      decide();
      group_prefix.assign(unversioned);
    }
    Slice v = it->value();
    group.push_back({k.ToString(), keys::VersionOf(std::string_view(k.data(), k.size())).value(),
                     v.empty() || v[0] == keys::kTombstone, k.size() + v.size()});
    if (batch.Count() >= kGcBatch) ARBOR_RETURN_IF_ERROR(flush());
    if (!throttle(k, v)) break;
  }
  decide();
  if (!it->status().ok()) return FromRocks(it->status(), "gc scan");

  // The index family: time entries below the horizon answer no legal question any more.
  // Of the WAL marks below it only the last is kept: it tells an LSN before the horizon
  // (refused) from one after it.
  //
  // Change records (docs/storage-format.md, "Change index"): Changes reads this timeline's
  // records in ranges (lo, hi] whose ends are legal read points: its creation (a child), a
  // fork point, or a seq >= the horizon. With the points up to the horizon as bounds B, no
  // range starts or ends strictly inside (B_k, B_k+1], so the records there fold into one at
  // B_k+1 (the union), and records below B_0 are in no range and go.
  std::vector<uint64_t> bounds;
  if (!is_root) bounds.push_back(info.create_seq.value());
  for (uint64_t f : forks) {
    if (f < horizon.value()) bounds.push_back(f);
  }
  bounds.push_back(horizon.value());
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  size_t group_at = 0;  // the group's records lie in (bounds[group_at - 1], bounds[group_at]]
  std::vector<std::string> group_keys;
  std::vector<keys::ChangeEntry> group_entries;
  Status group_bad;
  auto fold = [&]() -> Status {
    if (group_keys.size() >= 2 && group_bad.ok()) {
      // The union and the deletes in one batch: a crash keeps either the records or the fold.
      rocksdb::WriteBatch fb;
      std::string target = keys::ChangeKey(info.id, Seq(bounds[group_at]));
      fb.Put(index, target, keys::EncodeChanges(&group_entries));
      for (const std::string& k : group_keys) {
        if (k == target) continue;
        fb.Delete(index, k);
        ++dropped;
      }
      rocksdb::WriteOptions wo;
      wo.low_pri = true;
      rocksdb::Status s = db->Write(wo, &fb);
      if (!s.ok()) return FromRocks(s, "gc");
    } else if (!group_bad.ok()) {
      log::warn("store gc: timeline {}: not folding change records: {}", info.id.value(),
                group_bad.ToString());
    }
    group_keys.clear();
    group_entries.clear();
    group_bad = Status::Ok();
    return Status::Ok();
  };
  const bool fold_changes = options.change_index;
  std::unique_ptr<rocksdb::Iterator> ix(db->NewIterator(ro, index));
  std::string last_old_wal;
  const char time_kind = static_cast<char>(keys::Kind::kTime);
  const char wal_kind = static_cast<char>(keys::Kind::kWal);
  const char change_kind = static_cast<char>(keys::Kind::kChange);
  for (ix->Seek(prefix); ix->Valid(); ix->Next()) {
    Slice k = ix->key();
    if (k.size() != prefix.size() + 9) continue;
    char kind = k[prefix.size()];
    if (kind == change_kind && fold_changes) {
      uint64_t seq = keys::GetBE64(std::string_view(k.data() + prefix.size() + 1, 8));
      if (seq < bounds.front()) {
        batch.Delete(index, k);
        ++dropped;
      } else if (seq > bounds.front() && seq <= bounds.back()) {
        size_t at = std::lower_bound(bounds.begin(), bounds.end(), seq) - bounds.begin();
        if (at != group_at) {
          ARBOR_RETURN_IF_ERROR(fold());
          group_at = at;
        }
        group_keys.push_back(k.ToString());
        if (group_bad.ok()) {
          group_bad = keys::DecodeChanges(std::string_view(ix->value().data(), ix->value().size()),
                                          &group_entries);
        }
      }
    } else if (kind == time_kind) {
      if (keys::GetBE64(std::string_view(k.data() + prefix.size() + 1, 8)) < horizon.value()) {
        batch.Delete(index, k);
        ++dropped;
      }
    } else if (kind == wal_kind && ix->value().size() == 8) {
      Seq seq;
      std::memcpy(&seq, ix->value().data(), 8);
      if (seq < horizon) {
        if (!last_old_wal.empty()) {
          batch.Delete(index, last_old_wal);
          ++dropped;
        }
        last_old_wal = k.ToString();
      }
    }
    if (batch.Count() >= kGcBatch) ARBOR_RETURN_IF_ERROR(flush());
    if (!throttle(k, ix->value())) break;
  }
  if (!ix->status().ok()) return FromRocks(ix->status(), "gc index scan");
  ARBOR_RETURN_IF_ERROR(fold());
  ARBOR_RETURN_IF_ERROR(flush());
  {
    std::lock_guard l(gc_mu);
    if (!stopping) gc_marks[info.id] = GcMark{horizon, forks};
  }
  return dropped;
}

Result<uint64_t> Store::RunGc() {
  uint64_t dropped = 0;
  int64_t now = impl_->Now();
  for (const TimelineInfo& info : ListTimelines()) {
    auto r = impl_->GcTimeline(info, now);
    if (!r.ok()) {
      if (r.status().code() == Code::kNotFound) continue;  // deleted meanwhile
      return r.status();
    }
    dropped += *r;
  }
  return dropped;
}

void Store::Impl::GcLoop() {
  std::unique_lock l(gc_mu);
  while (!stopping) {
    gc_cv.wait_for(l, std::chrono::milliseconds(options.gc_interval_ms));
    if (stopping) break;
    l.unlock();
    int64_t now = Now();
    std::vector<TimelineInfo> infos;
    {
      std::shared_lock tl(tl_mu);
      for (const auto& [id, node] : nodes) infos.push_back(node.info);
    }
    uint64_t dropped = 0;
    for (const TimelineInfo& info : infos) {
      auto r = GcTimeline(info, now);
      if (r.ok()) {
        dropped += *r;
      } else if (r.status().code() != Code::kNotFound) {
        log::warn("store gc: timeline {}: {}", info.id.value(), r.status().ToString());
      }
    }
    if (dropped) log::debug("store gc: dropped {} versions", dropped);
    l.lock();
  }
}

}  // namespace arbor::storage
