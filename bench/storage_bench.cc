// storage_bench: the store's four benchmarks from issue 2, each run side by side with its
// baseline in one process, plus a compression comparison. Prints medians and ratios; these
// are measurements, not tests, and the program fails only if the store returns an error.
//
//   storage_bench [--dir DIR] [--quick] [--only NAME[,NAME...]] [--keep] [--pgdata PGDATA]
//
// NAME is one of: branch, read, write_sync, seq_write, compression, changes.
// Everything is written under a fresh directory (inside DIR, or inside $TMPDIR or /var/tmp
// when they are on a real disk) and removed at the end unless --keep is given.

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/status.h"
#include "storage/store.h"

namespace arbor::bench {
namespace {

namespace fs = std::filesystem;
using storage::Attr;
using storage::ChangeSet;
using storage::FileKind;
using storage::kBlockSize;
using storage::Mutation;
using storage::Store;

constexpr int64_t kDayUs = 86'400'000'000;
constexpr long kTmpfsMagic = 0x01021994;

// A benchmark that cannot go on (the store or the OS returned an error). Caught in main,
// which removes the working directory and exits non-zero.
struct BenchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void Fail(const std::string& what) { throw BenchFailure(what); }

void Must(const Status& s, const std::string& what) {
  if (!s.ok()) Fail(what + ": " + s.ToString());
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) Fail(what + ": " + r.status().ToString());
  return std::move(r).value();
}

void MustSys(bool ok, const std::string& what) {
  if (!ok) Fail(what + ": " + std::strerror(errno));
}

// ---- measuring ----

double Micros(int64_t ns) { return static_cast<double>(ns) / 1000.0; }

struct Stats {
  size_t n = 0;
  double median = 0, p99 = 0, max = 0;
};

Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  s.p99 = v[std::min(v.size() - 1, static_cast<size_t>(static_cast<double>(v.size()) * 0.99))];
  s.max = v.back();
  return s;
}

double Median(std::vector<double> v) { return Summarize(std::move(v)).median; }

// This process's counters from /proc/self/io. write_bytes counts bytes this process (all of
// its threads, RocksDB's flush and compaction threads included) caused to be sent to the
// block layer, charged when a page cache page is dirtied; cancelled_write_bytes counts dirty
// pages that were dropped (a file deleted or truncated before writeback).
struct Io {
  uint64_t read_bytes = 0, write_bytes = 0, cancelled = 0;
  uint64_t NetWritten() const { return write_bytes - std::min(write_bytes, cancelled); }
};

Io ReadIo() {
  std::ifstream in("/proc/self/io");
  if (!in) Fail("cannot read /proc/self/io (a kernel without task I/O accounting?)");
  Io io;
  std::string name;
  uint64_t value;
  while (in >> name >> value) {
    if (name == "read_bytes:") io.read_bytes = value;
    if (name == "write_bytes:") io.write_bytes = value;
    if (name == "cancelled_write_bytes:") io.cancelled = value;
  }
  return io;
}

double CpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// What one thread did during a call: CPU time and context switches. A slow call with little
// CPU time either waited in the store (voluntary switches: a lock, a disk read) or was
// preempted by other work on the machine (involuntary switches).
struct ThreadClock {
  int64_t cpu_ns = 0;
  long voluntary = 0, involuntary = 0;
};

ThreadClock ReadThreadClock() {
  ThreadClock c;
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  c.cpu_ns = ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
  rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  c.voluntary = ru.ru_nvcsw;
  c.involuntary = ru.ru_nivcsw;
  return c;
}

struct SlowCalls {
  int n = 0, preempted = 0, waited = 0;
  std::vector<double> cpu_us;
  void Add(const ThreadClock& a, const ThreadClock& b) {
    ++n;
    preempted += b.involuntary > a.involuntary;
    waited += b.voluntary > a.voluntary;
    cpu_us.push_back(Micros(b.cpu_ns - a.cpu_ns));
  }
  std::string Describe() const {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "%d; median on-CPU time %.0f us; %d preempted by the scheduler, %d waited "
                  "(lock or I/O)",
                  n, Median(cpu_us), preempted, waited);
    return buf;
  }
};

double g_settle_quiet_s = 2.0;  // 1 s under --quick

// Waits until RocksDB's background work (flushes, compactions) has settled: no bytes written
// by this process and under 5% of a core used for g_settle_quiet_s. Returns the seconds waited.
double Settle(double max_s = 120.0) {
  const double quiet_s = g_settle_quiet_s;
  int64_t start = MonoNanos();
  int64_t quiet_since = start;
  uint64_t last_bytes = ReadIo().write_bytes;
  double last_cpu = CpuSeconds();
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    int64_t now = MonoNanos();
    uint64_t bytes = ReadIo().write_bytes;
    double cpu = CpuSeconds();
    bool busy = bytes != last_bytes || (cpu - last_cpu) > 0.05 * 0.25;
    last_bytes = bytes;
    last_cpu = cpu;
    if (busy) quiet_since = now;
    if (static_cast<double>(now - quiet_since) / 1e9 >= quiet_s) break;
    if (static_cast<double>(now - start) / 1e9 >= max_s) {
      std::printf("  (background work still running after %.0f s; measuring anyway)\n", max_s);
      break;
    }
  }
  return static_cast<double>(MonoNanos() - start) / 1e9;
}

// Drops this file's clean pages from the OS page cache, so the next read goes to the disk.
// Touches only our own files; the machine is shared, so we never drop the whole cache.
void EvictFromPageCache(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;  // a file RocksDB just deleted
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// ---- data ----

uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() { return SplitMix(&s_); }
  uint64_t Below(uint64_t n) { return Next() % n; }

 private:
  uint64_t s_;
};

enum class Fill { kRandom, kPgLike, kPgData };

const char* FillName(Fill f) {
  return f == Fill::kRandom ? "random" : f == Fill::kPgLike ? "pg-like" : "pgdata";
}

// Real PostgreSQL pages for Fill::kPgData, loaded by LoadPgPages (--pgdata).
std::vector<char> g_pg_pages;

// Loads up to `max_bytes` of 8 KiB pages from the relation files under `dir/base` (or `dir`),
// sampling evenly across all of them so that tables and indexes keep their proportions.
void LoadPgPages(const fs::path& dir, uint64_t max_bytes) {
  fs::path base = fs::exists(dir / "base") ? dir / "base" : dir;
  std::vector<std::pair<fs::path, uint64_t>> files;  // path, pages
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(base)) {
    if (!e.is_regular_file() || e.file_size() == 0 || e.file_size() % kBlockSize) continue;
    files.emplace_back(e.path(), e.file_size() / kBlockSize);
    total += e.file_size() / kBlockSize;
  }
  if (total == 0) Fail("no PostgreSQL relation files under " + base.string());
  uint64_t want = std::min<uint64_t>(total, max_bytes / kBlockSize);
  g_pg_pages.resize(want * kBlockSize);
  uint64_t taken = 0, index = 0;
  for (const auto& [path, pages] : files) {
    std::ifstream in(path, std::ios::binary);
    for (uint64_t p = 0; p < pages && taken < want; ++p, ++index) {
      if (index * want / total != taken) continue;  // every (total/want)-th page
      in.seekg(static_cast<std::streamoff>(p * kBlockSize));
      in.read(g_pg_pages.data() + taken * kBlockSize, kBlockSize);
      if (!in) Fail("reading " + path.string());
      ++taken;
    }
  }
  g_pg_pages.resize(taken * kBlockSize);
}

// The content of block `block` of file `ino`: a pure function, so reads can be checked.
// kRandom is incompressible. kPgLike imitates a heap page of pgbench_accounts: a page header,
// line pointers, and 61 tuples of (header, aid, bid, abalance, 84-byte blank filler).
void FillBlock(Fill fill, uint64_t ino, uint64_t block, char* out) {
  uint64_t state = (ino << 40) ^ block ^ 0x5eedull;
  if (fill == Fill::kPgData) {
    uint64_t n = g_pg_pages.size() / kBlockSize;
    std::memcpy(out, g_pg_pages.data() + (block % n) * kBlockSize, kBlockSize);
    return;
  }
  if (fill == Fill::kRandom) {
    for (uint32_t i = 0; i < kBlockSize; i += 8) {
      uint64_t v = SplitMix(&state);
      std::memcpy(out + i, &v, 8);
    }
    return;
  }
  std::memset(out, 0, kBlockSize);
  uint64_t lsn = SplitMix(&state);
  std::memcpy(out, &lsn, 8);
  constexpr int kTuples = 61, kTupleLen = 121, kAligned = 128;
  uint16_t lower = 24 + 4 * kTuples, upper = kBlockSize - kTuples * kAligned;
  std::memcpy(out + 12, &lower, 2);
  std::memcpy(out + 14, &upper, 2);
  uint32_t xmin = 1000 + static_cast<uint32_t>(SplitMix(&state) % 100000);
  for (int t = 0; t < kTuples; ++t) {
    uint32_t off = kBlockSize - (t + 1) * kAligned;
    uint32_t lp = off | (1u << 15) | (static_cast<uint32_t>(kTupleLen) << 17);
    std::memcpy(out + 24 + 4 * t, &lp, 4);
    char* tup = out + off;
    uint32_t x = xmin + static_cast<uint32_t>(t);
    std::memcpy(tup, &x, 4);  // t_xmin
    uint32_t blk = static_cast<uint32_t>(block);
    std::memcpy(tup + 12, &blk, 4);  // t_ctid
    tup[22] = 24;                    // t_hoff
    uint32_t aid = static_cast<uint32_t>(block * kTuples + t + 1);
    uint32_t bid = aid / 100000 + 1;
    int32_t abalance =
        (SplitMix(&state) % 4 == 0) ? static_cast<int32_t>(SplitMix(&state) % 10000) : 0;
    std::memcpy(tup + 24, &aid, 4);
    std::memcpy(tup + 28, &bid, 4);
    std::memcpy(tup + 32, &abalance, 4);
    tup[36] = static_cast<char>((84 + 1) << 1 | 1);  // 1-byte varlena header
    std::memset(tup + 37, ' ', 84);
  }
}

std::string Bytes(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30) && n % (1ull << 30) == 0) {
    std::snprintf(buf, sizeof buf, "%" PRIu64 "GB", n >> 30);
  } else if (n >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%" PRIu64 "MB", n >> 20);
  } else {
    std::snprintf(buf, sizeof buf, "%" PRIu64 "KB", n >> 10);
  }
  return buf;
}

double MiB(uint64_t n) { return static_cast<double>(n) / (1 << 20); }

// ---- the store ----

struct StoreConfig {
  uint64_t block_cache_bytes = Store::Options().block_cache_bytes;
  std::string compression = Store::Options().compression;
  bool change_index = Store::Options().change_index;
};

std::unique_ptr<Store> OpenStore(const fs::path& path, const StoreConfig& cfg) {
  Store::Options o;
  o.path = path.string();
  o.block_cache_bytes = cfg.block_cache_bytes;
  o.compression = cfg.compression;
  o.change_index = cfg.change_index;
  // The GC pass scans every version; left on it would land in the middle of a timing at a
  // random moment. Its cost is measured once on its own (see the branch benchmark).
  o.background_gc = false;
  return Must(Store::Open(o), "opening the store at " + path.string());
}

// Closes and reopens a store. RocksDB flushes the memtables of a reopened database while it
// replays the WAL, so afterwards every key is in an SST file, as in a long-running store.
void Reopen(std::unique_ptr<Store>* store, const fs::path& path, const StoreConfig& cfg) {
  store->reset();
  *store = OpenStore(path, cfg);
}

// Creates an empty regular file named `name` in the root directory of `tl`.
InodeId CreateFile(Store* store, TimelineId tl, const std::string& name) {
  InodeId ino = Must(store->AllocateInode(), "allocating an inode");
  Attr a;
  a.kind = FileKind::kRegular;
  a.mode = S_IFREG | 0600;
  Mutation m;
  m.PutAttr(ino, a);
  m.PutDirent(kRootInode, name, ino, FileKind::kRegular);
  Must(store->Apply(tl, std::move(m)), "creating a file");
  return ino;
}

void SetSize(Store* store, TimelineId tl, InodeId ino, uint64_t size) {
  Attr a;
  a.kind = FileKind::kRegular;
  a.mode = S_IFREG | 0600;
  a.size = size;
  Mutation m;
  m.PutAttr(ino, a);
  Must(store->Apply(tl, std::move(m)), "setting a file's size");
}

Seq PutBlock(Store* store, TimelineId tl, InodeId ino, uint64_t block, const char* data) {
  Mutation m;
  m.PutBlock(ino, block, std::span<const char>(data, kBlockSize));
  return Must(store->Apply(tl, std::move(m)), "writing a block");
}

// Writes `files` files of `blocks_per_file` blocks each into `tl`, one Apply per 8 KiB block
// as arborfs does for Postgres's page writes, then syncs. Returns the inodes.
std::vector<InodeId> WriteDataSet(Store* store, TimelineId tl, int files, uint64_t blocks_per_file,
                                  Fill fill) {
  std::vector<InodeId> inodes;
  std::vector<char> buf(kBlockSize);
  for (int f = 0; f < files; ++f) {
    InodeId ino = CreateFile(store, tl, "rel" + std::to_string(f));
    for (uint64_t b = 0; b < blocks_per_file; ++b) {
      FillBlock(fill, ino.value(), b, buf.data());
      PutBlock(store, tl, ino, b, buf.data());
    }
    SetSize(store, tl, ino, blocks_per_file * kBlockSize);
    inodes.push_back(ino);
  }
  Must(store->Sync(tl), "syncing");
  return inodes;
}

// ---- plain files (the baselines) ----

class PlainFile {
 public:
  PlainFile(const fs::path& path, int flags) : path_(path) {
    fd_ = ::open(path.c_str(), flags | O_CREAT, 0600);
    MustSys(fd_ >= 0, "open " + path.string());
  }
  ~PlainFile() {
    if (fd_ >= 0) ::close(fd_);
    std::error_code ec;
    fs::remove(path_, ec);
  }
  void Write(const char* data, uint64_t offset) {
    MustSys(::pwrite(fd_, data, kBlockSize, static_cast<off_t>(offset)) ==
                static_cast<ssize_t>(kBlockSize),
            "pwrite " + path_.string());
  }
  void DataSync() { MustSys(::fdatasync(fd_) == 0, "fdatasync " + path_.string()); }
  // Writes real bytes over the whole file and fsyncs, so later overwrites change no
  // metadata (no block allocation, no unwritten-extent conversion, no size change).
  void Preallocate(uint64_t bytes) {
    std::vector<char> buf(kBlockSize, 'x');
    for (uint64_t off = 0; off < bytes; off += kBlockSize) Write(buf.data(), off);
    MustSys(::fsync(fd_) == 0, "fsync " + path_.string());
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

// ---- the benchmarks ----

struct Config {
  fs::path work;  // our fresh directory, removed at the end
  bool quick = false;
  std::set<std::string> only;
  std::string pgdata;  // --pgdata: a PostgreSQL data directory for the compression benchmark
  bool keep = false;   // --keep: leave every file in place, for inspection
  bool Wants(const std::string& name) const { return only.empty() || only.count(name); }
  void Remove(const fs::path& p) const {
    std::error_code ec;
    if (!keep) fs::remove_all(p, ec);
  }
};

struct Summary {
  std::vector<std::string> lines;
  std::vector<std::string> notes;
};

void Section(const char* title) {
  std::printf("\n== %s ==\n", title);
  std::fflush(stdout);
}

// 1. Branch creation with a small and a large parent; targets: ratio ~1 and < 1 ms each.
// 2. Random 8 KiB read at the head of the root vs on a branch 10 levels below it.
// Both use the same large store, so the 1 GB data set is written once.
void BenchBranchAndRead(const Config& cfg, Summary* sum) {
  const uint64_t small_bytes = cfg.quick ? (2ull << 20) : (10ull << 20);
  const uint64_t large_bytes = cfg.quick ? (32ull << 20) : (1ull << 30);
  const int large_files = cfg.quick ? 4 : 16;
  const bool run_branch = cfg.Wants("branch"), run_read = cfg.Wants("read");

  Section("setup: data sets for branch_create and read_8k");
  StoreConfig scfg;
  fs::path small_path = cfg.work / "branch_small", large_path = cfg.work / "branch_large";
  auto small = OpenStore(small_path, scfg);
  auto large = OpenStore(large_path, scfg);
  TimelineId small_root = Must(small->CreateRoot(kDayUs), "CreateRoot");
  TimelineId large_root = Must(large->CreateRoot(kDayUs), "CreateRoot");
  WriteDataSet(small.get(), small_root, 1, small_bytes / kBlockSize, Fill::kRandom);
  Reopen(&small, small_path, scfg);
  Settle();
  Io io0 = ReadIo();
  int64_t t0 = MonoNanos();
  std::vector<InodeId> large_files_ino = WriteDataSet(
      large.get(), large_root, large_files, large_bytes / large_files / kBlockSize, Fill::kRandom);
  double load_s = static_cast<double>(MonoNanos() - t0) / 1e9;
  std::printf(
      "  wrote %s (%d files, random bytes, one Apply per 8 KiB block) in %.1f s: %.0f MB/s\n",
      Bytes(large_bytes).c_str(), large_files, load_s, MiB(large_bytes) / load_s);
  Reopen(&large, large_path, scfg);
  double settle_s = Settle();
  Io io1 = ReadIo();
  std::printf("  reopened the stores (flushes the memtables) and waited %.1f s for compactions\n",
              settle_s);
  std::printf(
      "  info: the %s load's write-amp (see seq_write_8k): %.2f, net %.2f\n",
      Bytes(large_bytes).c_str(),
      static_cast<double>(io1.write_bytes - io0.write_bytes) / static_cast<double>(large_bytes),
      static_cast<double>(io1.NetWritten() - io0.NetWritten()) / static_cast<double>(large_bytes));
  std::printf("  disk: %s store %.1f MB, %s store %.1f MB\n", Bytes(small_bytes).c_str(),
              MiB(small->DiskBytes()), Bytes(large_bytes).c_str(), MiB(large->DiskBytes()));

  if (run_branch) {
    Section("branch_create: Branch(parent, Head()) on a small vs a large parent");
    const int rounds = cfg.quick ? 4 : 20, per_round = cfg.quick ? 10 : 50;
    std::vector<double> lat_small, lat_large;
    SlowCalls slow;
    // Alternate which store goes first, so drift on the machine hits both alike.
    for (int r = 0; r < rounds; ++r) {
      for (int side = 0; side < 2; ++side) {
        bool is_large = (r + side) % 2 == 1;
        Store* s = is_large ? large.get() : small.get();
        TimelineId parent = is_large ? large_root : small_root;
        auto& out = is_large ? lat_large : lat_small;
        for (int i = 0; i < per_round; ++i) {
          ThreadClock before = ReadThreadClock();
          int64_t a = MonoNanos();
          Result<TimelineId> child = s->Branch(parent, s->Head());
          int64_t b = MonoNanos();
          ThreadClock after = ReadThreadClock();
          Must(std::move(child), "Branch");
          out.push_back(Micros(b - a));
          if (Micros(b - a) >= 1000) slow.Add(before, after);
        }
      }
    }
    Stats ss = Summarize(lat_small), sl = Summarize(lat_large);
    auto under = [](const std::vector<double>& v) {
      return 100.0 *
             static_cast<double>(
                 std::count_if(v.begin(), v.end(), [](double us) { return us < 1000; })) /
             static_cast<double>(v.size());
    };
    std::printf(
        "  %-6s parent: n=%zu median %.1f us  p99 %.1f us  max %.1f us  under 1 ms: %.1f%%\n",
        Bytes(small_bytes).c_str(), ss.n, ss.median, ss.p99, ss.max, under(lat_small));
    std::printf(
        "  %-6s parent: n=%zu median %.1f us  p99 %.1f us  max %.1f us  under 1 ms: %.1f%%\n",
        Bytes(large_bytes).c_str(), sl.n, sl.median, sl.p99, sl.max, under(lat_large));
    if (slow.n) std::printf("  calls over 1 ms: %s\n", slow.Describe().c_str());
    // A branch is durable only after the next Sync; time that too, since a user's "branch
    // create" has to make it durable before it answers.
    std::vector<double> with_sync;
    for (int i = 0; i < (cfg.quick ? 10 : 100); ++i) {
      int64_t a = MonoNanos();
      TimelineId c = Must(large->Branch(large_root, large->Head()), "Branch");
      Must(large->Sync(c), "Sync");
      with_sync.push_back(Micros(MonoNanos() - a));
    }
    std::printf("  info: Branch + Sync on the %s parent: median %.1f us\n",
                Bytes(large_bytes).c_str(), Median(with_sync));
    // Branch computes the parent's history horizon first; time that part alone.
    for (Store* s : {small.get(), large.get()}) {
      TimelineId root = s == small.get() ? small_root : large_root;
      std::vector<double> h;
      for (int i = 0; i < (cfg.quick ? 20 : 200); ++i) {
        int64_t a = MonoNanos();
        Must(s->Horizon(root), "Horizon");
        h.push_back(Micros(MonoNanos() - a));
      }
      std::printf("  info: Horizon(parent) alone on the %s parent: median %.1f us\n",
                  Bytes(s == small.get() ? small_bytes : large_bytes).c_str(), Median(h));
    }
    char line[256];
    std::snprintf(line, sizeof line,
                  "branch_create   %s %.1fus  %s %.1fus  ratio %.2f  max %.0fus  %s  "
                  "(target ~1, <1ms each)",
                  Bytes(small_bytes).c_str(), ss.median, Bytes(large_bytes).c_str(), sl.median,
                  sl.median / ss.median, std::max(ss.max, sl.max),
                  slow.n == 0 ? "all <1ms" : ("over 1ms: " + slow.Describe()).c_str());
    sum->lines.push_back(line);
  }
  small.reset();

  if (run_read) {
    Section("read_8k: random 8 KiB ReadBlock at the head vs on a branch 10 levels deep");
    // A block cache much smaller than the data set, so most reads miss it, as they would on a
    // database larger than the cache; the OS page cache still holds the SST files unless a
    // batch evicts them (the "cold" variant).
    StoreConfig rcfg = scfg;
    rcfg.block_cache_bytes = cfg.quick ? (4ull << 20) : (64ull << 20);
    Reopen(&large, large_path, rcfg);
    TimelineId deep = large_root;
    for (int d = 0; d < 10; ++d) deep = Must(large->Branch(deep, large->Head()), "Branch");
    Must(large->Sync(deep), "Sync");
    const uint64_t blocks_per_file = large_bytes / large_files / kBlockSize;
    std::printf("  data: %s of random blocks in the root; block cache %s (data/cache = %.0fx)\n",
                Bytes(large_bytes).c_str(), Bytes(rcfg.block_cache_bytes).c_str(),
                static_cast<double>(large_bytes) / static_cast<double>(rcfg.block_cache_bytes));

    // Correctness first: the deep branch must see the root's bytes.
    std::vector<char> got(kBlockSize), want(kBlockSize);
    Rng check(7);
    int bad = 0;
    for (int i = 0; i < 200; ++i) {
      InodeId ino = large_files_ino[check.Below(large_files_ino.size())];
      uint64_t b = check.Below(blocks_per_file);
      FillBlock(Fill::kRandom, ino.value(), b, want.data());
      for (TimelineId tl : {large_root, deep}) {
        Must(large->ReadBlock(tl, kSeqMax, ino, b, std::span<char>(got)), "ReadBlock");
        if (got != want) ++bad;
      }
    }
    if (bad) std::printf("  STORE BUG: %d of 400 checked reads returned wrong bytes\n", bad);

    // Returns the bytes read from the disk (page-cache misses) per read, per side.
    auto run = [&](bool cold, int batches, int per_batch, std::vector<double>* head,
                   std::vector<double>* deep_lat) {
      Rng rng_head(11), rng_deep(13);  // different blocks on each side: no shared cache hits
      uint64_t disk_read[2] = {0, 0};
      for (int r = 0; r < batches; ++r) {
        for (int side = 0; side < 2; ++side) {
          bool is_deep = (r + side) % 2 == 1;
          Rng& rng = is_deep ? rng_deep : rng_head;
          TimelineId tl = is_deep ? deep : large_root;
          if (cold) EvictFromPageCache(large_path);
          uint64_t rb = ReadIo().read_bytes;
          for (int i = 0; i < per_batch; ++i) {
            InodeId ino = large_files_ino[rng.Below(large_files_ino.size())];
            uint64_t b = rng.Below(blocks_per_file);
            int64_t a = MonoNanos();
            Status s = large->ReadBlock(tl, kSeqMax, ino, b, std::span<char>(got));
            int64_t e = MonoNanos();
            Must(s, "ReadBlock");
            (is_deep ? deep_lat : head)->push_back(Micros(e - a));
          }
          disk_read[is_deep] += ReadIo().read_bytes - rb;
        }
      }
      double n = static_cast<double>(batches) * per_batch;
      return std::make_pair(static_cast<double>(disk_read[0]) / n / 1024,
                            static_cast<double>(disk_read[1]) / n / 1024);
    };
    std::vector<double> warm_head, warm_deep, cold_head, cold_deep;
    auto wkb = run(false, cfg.quick ? 4 : 20, cfg.quick ? 250 : 1000, &warm_head, &warm_deep);
    auto ckb = run(true, cfg.quick ? 4 : 16, cfg.quick ? 25 : 100, &cold_head, &cold_deep);
    Stats wh = Summarize(warm_head), wd = Summarize(warm_deep);
    Stats ch = Summarize(cold_head), cd = Summarize(cold_deep);
    std::printf(
        "  page cache warm: head n=%zu median %.1f us p99 %.1f | depth10 median %.1f us "
        "p99 %.1f | ratio %.2f | disk KiB/read %.1f, %.1f\n",
        wh.n, wh.median, wh.p99, wd.median, wd.p99, wd.median / wh.median, wkb.first, wkb.second);
    std::printf(
        "  page cache cold: head n=%zu median %.1f us p99 %.1f | depth10 median %.1f us "
        "p99 %.1f | ratio %.2f | disk KiB/read %.1f, %.1f\n",
        ch.n, ch.median, ch.p99, cd.median, cd.p99, cd.median / ch.median, ckb.first, ckb.second);
    std::printf(
        "  (cold: before each batch of %d reads the store's files are dropped from the OS\n"
        "   page cache with posix_fadvise(DONTNEED); the block cache keeps what it holds.\n"
        "   disk KiB/read is /proc/self/io read_bytes per read: what missed every cache)\n",
        cfg.quick ? 25 : 100);
    char line[256];
    std::snprintf(line, sizeof line,
                  "read_8k         head %.1fus  depth10 %.1fus  ratio %.2f  (target <= 2; "
                  "%s data, %s block cache, OS cache warm)",
                  wh.median, wd.median, wd.median / wh.median, Bytes(large_bytes).c_str(),
                  Bytes(rcfg.block_cache_bytes).c_str());
    sum->lines.push_back(line);
    std::snprintf(line, sizeof line,
                  "read_8k_cold    head %.1fus  depth10 %.1fus  ratio %.2f  (target <= 2; "
                  "OS page cache dropped per batch)",
                  ch.median, cd.median, cd.median / ch.median);
    sum->lines.push_back(line);
  }

  if (run_branch) {
    // The GC pass is off during the timings; measure one here, on the large store with its
    // branches, so its cost is on record (with a one-day window it has nothing to drop).
    EvictFromPageCache(large_path);
    int64_t a = MonoNanos();
    double cpu0 = CpuSeconds();
    uint64_t rb0 = ReadIo().read_bytes;
    uint64_t dropped = Must(large->RunGc(), "RunGc");
    double gc_cpu = CpuSeconds() - cpu0;
    uint64_t gc_read = ReadIo().read_bytes - rb0;
    std::printf(
        "\n  info: one RunGc() pass over the %s store (OS cache dropped first): %.2f s, "
        "%.2f s CPU, %.0f MB read from disk, %" PRIu64 " versions dropped\n",
        Bytes(large_bytes).c_str(), static_cast<double>(MonoNanos() - a) / 1e9, gc_cpu,
        MiB(gc_read), dropped);
  }
  large.reset();
  cfg.Remove(small_path);
  cfg.Remove(large_path);
}

// Sizes of the RocksDB write-ahead logs in a store directory, newest last ("*.log").
std::string WalFiles(const fs::path& dir) {
  std::vector<std::pair<std::string, uint64_t>> logs;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".log") logs.emplace_back(e.path().filename(), e.file_size());
  }
  std::sort(logs.begin(), logs.end());
  std::string out;
  for (const auto& [name, size] : logs) out += " " + name + "=" + Bytes(size);
  return out.empty() ? " none" : out;
}

// 3. One 8 KiB write made durable: Apply(PutBlock) + Sync vs pwrite + fdatasync on a
// preallocated file, at random offsets. Target ratio <= 1.5.
//
// Two stores: a fresh one, whose WAL grows with every write (each fdatasync must also
// persist the new file size, unless it took a pre-written spare: src/storage/wal_file.h), and
// a "steady" one that has written enough to have switched WAL files several times, as a
// long-running store has. An appending plain file is the fresh store's peer.
void BenchWriteSync(const Config& cfg, Summary* sum) {
  Section("write_sync_8k: Apply(one PutBlock) + Sync vs pwrite 8 KiB + fdatasync");
  const uint64_t file_bytes = 64ull << 20, blocks = file_bytes / kBlockSize;
  const uint64_t prefill = 192ull << 20;  // six 32 MB memtables
  const int batches = cfg.quick ? 4 : 40, per_batch = cfg.quick ? 10 : 40;
  PlainFile prealloc(cfg.work / "plain_prealloc", O_RDWR);
  prealloc.Preallocate(file_bytes);
  PlainFile append(cfg.work / "plain_append", O_RDWR | O_TRUNC);
  uint64_t append_off = 0;
  StoreConfig scfg;
  struct Side {
    fs::path path;
    std::unique_ptr<Store> store;
    TimelineId tl;
    InodeId ino;
  };
  Side fresh{cfg.work / "write_sync_fresh", nullptr, {}, {}};
  Side steady{cfg.work / "write_sync_steady", nullptr, {}, {}};
  for (Side* s : {&fresh, &steady}) {
    s->store = OpenStore(s->path, scfg);
    s->tl = Must(s->store->CreateRoot(kDayUs), "CreateRoot");
    s->ino = CreateFile(s->store.get(), s->tl, "rel");
    SetSize(s->store.get(), s->tl, s->ino, file_bytes);
    Must(s->store->Sync(s->tl), "Sync");
  }
  {
    std::vector<char> buf(kBlockSize);
    InodeId other = CreateFile(steady.store.get(), steady.tl, "prefill");
    for (uint64_t b = 0; b < prefill / kBlockSize; ++b) {
      FillBlock(Fill::kRandom, other.value(), b, buf.data());
      PutBlock(steady.store.get(), steady.tl, other, b, buf.data());
    }
    Must(steady.store->Sync(steady.tl), "Sync");
    Settle();
  }
  std::printf("  steady store: wrote %s first; WAL files before:%s\n", Bytes(prefill).c_str(),
              WalFiles(steady.path).c_str());

  std::vector<char> buf(kBlockSize);
  FillBlock(Fill::kRandom, 99, 0, buf.data());
  Rng rng(5);
  std::vector<double> lat[4];  // prealloc file, steady store, append file, fresh store
  for (int r = 0; r < batches; ++r) {
    for (int k = 0; k < 4; ++k) {
      int which = (r + k) % 4;  // rotate the order
      for (int i = 0; i < per_batch; ++i) {
        uint64_t b = rng.Below(blocks);
        std::memcpy(buf.data(), &b, 8);  // every write differs
        int64_t a = MonoNanos();
        if (which == 0) {
          prealloc.Write(buf.data(), b * kBlockSize);
          prealloc.DataSync();
        } else if (which == 2) {
          append.Write(buf.data(), append_off);
          append_off += kBlockSize;
          append.DataSync();
        } else {
          Side& s = which == 1 ? steady : fresh;
          PutBlock(s.store.get(), s.tl, s.ino, b, buf.data());
          Must(s.store->Sync(s.tl), "Sync");
        }
        lat[which].push_back(Micros(MonoNanos() - a));
      }
    }
  }
  std::printf("  steady store: WAL files after:%s\n", WalFiles(steady.path).c_str());
  std::printf("  fresh store:  WAL files after:%s\n", WalFiles(fresh.path).c_str());
  Stats sf = Summarize(lat[0]), ss = Summarize(lat[1]), sp = Summarize(lat[2]),
        sn = Summarize(lat[3]);
  std::printf("  file, preallocated (overwrite):  n=%zu median %.1f us  p99 %.1f us\n", sf.n,
              sf.median, sf.p99);
  std::printf("  arbor, steady store:             n=%zu median %.1f us  p99 %.1f us  ratio %.2f\n",
              ss.n, ss.median, ss.p99, ss.median / sf.median);
  std::printf("  file, appending (grows):         n=%zu median %.1f us  p99 %.1f us\n", sp.n,
              sp.median, sp.p99);
  std::printf(
      "  arbor, fresh store (WAL grows):  n=%zu median %.1f us  p99 %.1f us  ratio %.2f "
      "(vs appending file %.2f)\n",
      sn.n, sn.median, sn.p99, sn.median / sf.median, sn.median / sp.median);
  char line[256];
  std::snprintf(line, sizeof line,
                "write_sync_8k   file %.1fus  arbor %.1fus  ratio %.2f  (target <= 1.5; "
                "steady store)",
                sf.median, ss.median, ss.median / sf.median);
  sum->lines.push_back(line);
  std::snprintf(line, sizeof line,
                "write_sync_8k   file %.1fus  arbor %.1fus  ratio %.2f  (fresh store, growing "
                "WAL; vs appending file %.2f)",
                sf.median, sn.median, sn.median / sf.median, sn.median / sp.median);
  sum->lines.push_back(line);
  for (Side* s : {&fresh, &steady}) {
    s->store.reset();
    cfg.Remove(s->path);
  }
}

struct SeqResult {
  double seconds = 0;         // writes + the final sync
  uint64_t gross_during = 0;  // bytes written into files while writing and syncing
  uint64_t gross_total = 0;   // ... plus the flush on reopen and the compactions after it
  uint64_t net_total = 0;     // gross_total less the dirty pages of files deleted unwritten
  uint64_t disk_bytes = 0;    // the store's files after everything settled
  double settle_s = 0;
  double cpu_s = 0;  // CPU time of the whole process (foreground + RocksDB threads)
};

// Writes `bytes` sequentially as 8 KiB blocks of one file in a fresh store, one Apply per
// block and one Sync at the end; then closes and reopens the store (RocksDB flushes the
// memtables on reopen) and waits for compactions, to count every byte the data will cost.
SeqResult ArborSeqWrite(const fs::path& path, const StoreConfig& scfg, uint64_t bytes, Fill fill,
                        std::unique_ptr<Store>* keep_open) {
  auto store = OpenStore(path, scfg);
  TimelineId tl = Must(store->CreateRoot(kDayUs), "CreateRoot");
  InodeId ino = CreateFile(store.get(), tl, "rel");
  Must(store->Sync(tl), "Sync");
  // Generate the data first, so the timing holds only the store's work.
  std::vector<char> data(bytes);
  for (uint64_t b = 0; b < bytes / kBlockSize; ++b) {
    FillBlock(fill, ino.value(), b, data.data() + b * kBlockSize);
  }
  SeqResult r;
  Io io0 = ReadIo();
  double cpu0 = CpuSeconds();
  int64_t a = MonoNanos();
  for (uint64_t b = 0; b < bytes / kBlockSize; ++b) {
    PutBlock(store.get(), tl, ino, b, data.data() + b * kBlockSize);
  }
  Must(store->Sync(tl), "Sync");
  r.seconds = static_cast<double>(MonoNanos() - a) / 1e9;
  r.gross_during = ReadIo().write_bytes - io0.write_bytes;
  SetSize(store.get(), tl, ino, bytes);
  Reopen(&store, path, scfg);
  r.settle_s = Settle();
  r.cpu_s = CpuSeconds() - cpu0;
  Io io1 = ReadIo();
  r.gross_total = io1.write_bytes - io0.write_bytes;
  r.net_total = io1.NetWritten() - io0.NetWritten();
  r.disk_bytes = store->DiskBytes();
  if (keep_open) *keep_open = std::move(store);
  return r;
}

SeqResult FileSeqWrite(const fs::path& path, uint64_t bytes, Fill fill) {
  std::vector<char> data(bytes);
  for (uint64_t b = 0; b < bytes / kBlockSize; ++b) {
    FillBlock(fill, 1, b, data.data() + b * kBlockSize);
  }
  SeqResult r;
  PlainFile f(path, O_RDWR | O_TRUNC);
  Io io0 = ReadIo();
  double cpu0 = CpuSeconds();
  int64_t a = MonoNanos();
  for (uint64_t b = 0; b < bytes / kBlockSize; ++b) {
    f.Write(data.data() + b * kBlockSize, b * kBlockSize);
  }
  f.DataSync();
  r.seconds = static_cast<double>(MonoNanos() - a) / 1e9;
  r.cpu_s = CpuSeconds() - cpu0;
  Io io1 = ReadIo();
  r.gross_during = r.gross_total = io1.write_bytes - io0.write_bytes;
  r.net_total = io1.NetWritten() - io0.NetWritten();
  r.disk_bytes = bytes;
  return r;
}

// 4. Sequential 8 KiB writes, one sync at the end: throughput ratio and write amplification.
void BenchSeqWrite(const Config& cfg, Summary* sum) {
  Section("seq_write_8k: sequential 8 KiB writes, one sync at the end");
  const uint64_t bytes = cfg.quick ? (8ull << 20) : (256ull << 20);
  const int rounds = cfg.quick ? 1 : 5;
  StoreConfig scfg;
  std::printf("  %s per run, random (incompressible) bytes, store compression '%s', %d rounds\n",
              Bytes(bytes).c_str(), scfg.compression.c_str(), rounds);
  std::printf(
      "  amp = bytes written into files per byte written (WAL + flush + compaction);\n"
      "  net = what reached the block layer (less WAL pages deleted before writeback)\n");
  std::vector<double> mbs_file, mbs_arbor, amp_file, amp_arbor, amp_during, net_arbor, space;
  // Process CPU seconds per GB written (all threads, through settling): unlike MB/s, this
  // hardly moves when other work on the machine competes for the CPUs.
  std::vector<double> cpu_per_gb, file_cpu_per_gb;
  const double b = static_cast<double>(bytes);
  for (int r = 0; r < rounds; ++r) {
    for (int side = 0; side < 2; ++side) {
      bool arbor = (r + side) % 2 == 1;
      if (arbor) {
        fs::path path = cfg.work / ("seq_store" + std::to_string(r));
        SeqResult res = ArborSeqWrite(path, scfg, bytes, Fill::kRandom, nullptr);
        cfg.Remove(path);
        mbs_arbor.push_back(MiB(bytes) / res.seconds);
        amp_arbor.push_back(static_cast<double>(res.gross_total) / b);
        amp_during.push_back(static_cast<double>(res.gross_during) / b);
        net_arbor.push_back(static_cast<double>(res.net_total) / b);
        space.push_back(static_cast<double>(res.disk_bytes) / b);
        cpu_per_gb.push_back(res.cpu_s / (b / (1 << 30)));
        std::printf(
            "  round %d arbor: %.2f s  %4.0f MB/s  amp %.2f (%.2f by the final Sync)  "
            "net %.2f  on disk %.2fx  cpu %.1f s/GB  (settled in %.1f s)\n",
            r, res.seconds, mbs_arbor.back(), amp_arbor.back(), amp_during.back(), net_arbor.back(),
            space.back(), cpu_per_gb.back(), res.settle_s);
      } else {
        SeqResult res = FileSeqWrite(cfg.work / "seq_plain", bytes, Fill::kRandom);
        mbs_file.push_back(MiB(bytes) / res.seconds);
        amp_file.push_back(static_cast<double>(res.gross_total) / b);
        file_cpu_per_gb.push_back(res.cpu_s / (b / (1 << 30)));
        std::printf("  round %d file:  %.2f s  %4.0f MB/s  amp %.2f  cpu %.1f s/GB\n", r,
                    res.seconds, mbs_file.back(), amp_file.back(), file_cpu_per_gb.back());
      }
      std::fflush(stdout);
    }
  }
  double f = Median(mbs_file), a = Median(mbs_arbor);
  std::printf(
      "  median: file %.0f MB/s, arbor %.0f MB/s, ratio arbor/file %.2f; write-amp "
      "arbor %.2f, net %.2f (file %.2f); cpu s/GB arbor %.1f, file %.1f\n",
      f, a, a / f, Median(amp_arbor), Median(net_arbor), Median(amp_file), Median(cpu_per_gb),
      Median(file_cpu_per_gb));
  char line[256];
  std::snprintf(line, sizeof line,
                "seq_write_8k    file %.0fMB/s  arbor %.0fMB/s  ratio %.2f  write-amp %.2f "
                "(net %.2f; file %.2f)",
                f, a, a / f, Median(amp_arbor), Median(net_arbor), Median(amp_file));
  sum->lines.push_back(line);
}

// 6. The change index (Store::Changes): what it adds to every write, and what Changes costs on
// a large parent against the scan of the parent's block keys it replaces.
void BenchChanges(const Config& cfg, Summary* sum) {
  Section("changes: the change index's write cost, and Changes vs a key scan of the parent");
  // Write cost: the seq_write_8k load (one Apply per 8 KiB block, the worst case: one change
  // record per block) with the index and without it, alternating.
  const uint64_t bytes = cfg.quick ? (8ull << 20) : (128ull << 20);
  const int rounds = cfg.quick ? 1 : 2;
  std::vector<double> amp_on, amp_off, during_on, during_off, disk_on, disk_off, cpu_on, cpu_off;
  const double b = static_cast<double>(bytes);
  for (int r = 0; r < rounds; ++r) {
    for (int side = 0; side < 2; ++side) {
      bool on = (r + side) % 2 == 0;
      StoreConfig scfg;
      scfg.change_index = on;
      fs::path path = cfg.work / ("changes_write" + std::to_string(r) + (on ? "on" : "off"));
      SeqResult res = ArborSeqWrite(path, scfg, bytes, Fill::kRandom, nullptr);
      cfg.Remove(path);
      auto& amp = on ? amp_on : amp_off;
      auto& during = on ? during_on : during_off;
      auto& disk = on ? disk_on : disk_off;
      auto& cpu = on ? cpu_on : cpu_off;
      amp.push_back(static_cast<double>(res.gross_total) / b);
      during.push_back(static_cast<double>(res.gross_during) / b);
      disk.push_back(static_cast<double>(res.disk_bytes) / b);
      cpu.push_back(res.cpu_s / (b / (1 << 30)));
      std::printf(
          "  round %d index %-3s: %.2f s  amp %.4f (%.4f by the final Sync)  on disk %.4fx"
          "  cpu %.1f s/GB\n",
          r, on ? "on" : "off", res.seconds, amp.back(), during.back(), disk.back(), cpu.back());
      std::fflush(stdout);
    }
  }
  double wal_ratio = Median(during_on) / Median(during_off);
  double amp_ratio = Median(amp_on) / Median(amp_off);
  double disk_ratio = Median(disk_on) / Median(disk_off);
  std::printf(
      "  bytes written by the final Sync (WAL) on/off %.4f; all writes on/off %.4f; "
      "disk on/off %.4f; cpu s/GB on %.1f off %.1f\n",
      wal_ratio, amp_ratio, disk_ratio, Median(cpu_on), Median(cpu_off));

  // Changes on a large parent: a root of `data` bytes, a child, then `parent_writes` random
  // block writes on the root and a tenth of that on the child.
  const uint64_t data = cfg.quick ? (32ull << 20) : (1ull << 30);
  const int files = cfg.quick ? 4 : 16, parent_writes = 1000;
  const uint64_t blocks_per_file = data / kBlockSize / files;
  StoreConfig scfg;
  fs::path path = cfg.work / "changes_big";
  auto store = OpenStore(path, scfg);
  TimelineId root = Must(store->CreateRoot(kDayUs), "CreateRoot");
  std::printf("  writing %s into the parent...\n", Bytes(data).c_str());
  std::fflush(stdout);
  std::vector<InodeId> inodes =
      WriteDataSet(store.get(), root, files, blocks_per_file, Fill::kPgLike);
  TimelineId child = Must(store->Branch(root, store->Head()), "Branch");
  Rng rng(7);
  std::vector<char> buf(kBlockSize);
  for (int i = 0; i < parent_writes; ++i) {
    InodeId ino = inodes[rng.Below(inodes.size())];
    uint64_t blk = rng.Below(blocks_per_file);
    FillBlock(Fill::kPgLike, ino.value() + 1000, blk, buf.data());
    PutBlock(store.get(), i % 10 == 0 ? child : root, ino, blk, buf.data());
  }
  Must(store->Sync(root), "Sync");
  Reopen(&store, path, scfg);
  Settle();
  size_t found = 0;
  auto changes = [&] {
    ChangeSet cs = Must(store->Changes(child, kSeqMax, root, kSeqMax), "Changes");
    found = cs.blocks.size();
  };
  auto scan = [&] {
    // What option 2 would read: every block key of the parent (AddTruncate to 0 scans them
    // all; RocksDB 7.8's iterator loads each blob value with its key).
    for (InodeId ino : inodes) {
      Mutation m;
      Must(store->AddTruncate(root, ino, blocks_per_file * kBlockSize, 0, &m), "scan");
    }
  };
  auto time_once = [](const std::function<void()>& f) {
    int64_t a = MonoNanos();
    f();
    return static_cast<double>(MonoNanos() - a) / 1e6;
  };
  EvictFromPageCache(path);
  Reopen(&store, path, scfg);  // and an empty block cache
  double changes_cold = time_once(changes);
  std::vector<double> warm;
  for (int i = 0; i < 20; ++i) warm.push_back(time_once(changes));
  EvictFromPageCache(path);
  Reopen(&store, path, scfg);
  double scan_cold = time_once(scan);
  double scan_warm = time_once(scan);
  std::printf("  Changes(child, parent): %zu blocks, cold %.2f ms, warm median %.2f ms\n", found,
              changes_cold, Median(warm));
  std::printf("  key scan of the parent's %" PRIu64 " blocks: cold %.0f ms, warm %.0f ms\n",
              blocks_per_file * files, scan_cold, scan_warm);
  std::printf("  ratio scan/Changes: cold %.0fx, warm %.0fx\n", scan_cold / changes_cold,
              scan_warm / Median(warm));
  store.reset();
  cfg.Remove(path);
  char line[320];
  std::snprintf(line, sizeof line,
                "changes         write WAL bytes on/off %.4f, all writes %.4f, disk %.4f; "
                "Changes on a %s parent %.1f ms cold (%.2f warm) vs key scan %.0f ms cold "
                "(%.0f warm)",
                wal_ratio, amp_ratio, disk_ratio, Bytes(data).c_str(), changes_cold, Median(warm),
                scan_cold, scan_warm);
  sum->lines.push_back(line);
}

// The issue asks to measure RocksDB's lz4 and zstd: the same sequential load per codec and
// data kind, then random reads of it, interleaved across the three codecs' stores.
void BenchCompression(const Config& cfg, Summary* sum) {
  Section("compression: Store::Options::compression on sequential writes and random reads");
  const uint64_t bytes = cfg.quick ? (4ull << 20) : (128ull << 20);
  const int batches = cfg.quick ? 4 : 20, per_batch = cfg.quick ? 50 : 250;
  std::vector<Fill> fills = {Fill::kPgLike, Fill::kRandom};
  if (!cfg.pgdata.empty()) {
    LoadPgPages(cfg.pgdata, bytes);
    fills.insert(fills.begin(), Fill::kPgData);
    std::printf("  pgdata: %s of pages sampled from %s\n", Bytes(g_pg_pages.size()).c_str(),
                cfg.pgdata.c_str());
  }
  std::printf(
      "  %s per store; reads: %d random ReadBlock per codec after reopen, in batches\n"
      "  alternating between the codecs (block cache cold at first, OS cache warm)\n",
      Bytes(bytes).c_str(), batches * per_batch);
  std::printf(
      "  write = throughput of the writes and Sync; cpu s = process CPU time from the\n"
      "  first write until compactions settled (compression runs in flush/compaction).\n"
      "  Compare codecs within one data kind: the kinds run one after another, so machine\n"
      "  noise differs between them.\n");
  std::printf("  %-8s %-5s %9s %6s %6s %6s %10s %10s %9s\n", "data", "codec", "write", "cpu s",
              "amp", "net", "disk/data", "read p50", "read p99");
  const char* codecs[] = {"none", "lz4", "zstd"};
  for (Fill fill : fills) {
    struct Run {
      fs::path path;
      std::unique_ptr<Store> store;
      SeqResult res;
      TimelineId tl;
      InodeId ino;
      std::vector<double> lat;
      int bad = 0;
    } runs[3];
    for (int c = 0; c < 3; ++c) {
      StoreConfig scfg;
      scfg.compression = codecs[c];
      Run& r = runs[c];
      r.path = cfg.work / ("comp_" + scfg.compression);
      r.res = ArborSeqWrite(r.path, scfg, bytes, fill, &r.store);
      r.tl = r.store->ListTimelines().front().id;
      auto found = Must(r.store->Lookup(r.tl, kSeqMax, kRootInode, "rel"), "Lookup");
      if (!found) Fail("the file written by the compression benchmark is missing");
      r.ino = found->ino;
    }
    std::vector<char> got(kBlockSize), want(kBlockSize);
    Rng rng(17);
    for (int bt = 0; bt < batches; ++bt) {
      for (int k = 0; k < 3; ++k) {
        Run& r = runs[(bt + k) % 3];
        for (int i = 0; i < per_batch; ++i) {
          uint64_t b = rng.Below(bytes / kBlockSize);
          int64_t a = MonoNanos();
          Must(r.store->ReadBlock(r.tl, kSeqMax, r.ino, b, std::span<char>(got)), "ReadBlock");
          r.lat.push_back(Micros(MonoNanos() - a));
          FillBlock(fill, r.ino.value(), b, want.data());
          if (got != want) ++r.bad;
        }
      }
    }
    for (int c = 0; c < 3; ++c) {
      Run& r = runs[c];
      r.store.reset();
      cfg.Remove(r.path);
      Stats s = Summarize(r.lat);
      double b = static_cast<double>(bytes);
      std::printf("  %-8s %-5s %5.0fMB/s %6.2f %6.2f %6.2f %9.2fx %8.1fus %7.1fus%s\n",
                  FillName(fill), codecs[c], MiB(bytes) / r.res.seconds, r.res.cpu_s,
                  static_cast<double>(r.res.gross_total) / b,
                  static_cast<double>(r.res.net_total) / b,
                  static_cast<double>(r.res.disk_bytes) / b, s.median, s.p99,
                  r.bad ? "  STORE BUG: wrong bytes read" : "");
    }
    std::fflush(stdout);
  }
  sum->notes.push_back(
      "compression: see the table above (pg-like = synthetic pgbench_accounts heap pages;"
      " pgdata = pages of the --pgdata directory)");
}

// ---- the working directory ----

bool IsTmpfs(const fs::path& p) {
  struct statfs st;
  return ::statfs(p.c_str(), &st) == 0 && static_cast<long>(st.f_type) == kTmpfsMagic;
}

fs::path MakeWorkDir(const std::string& requested) {
  fs::path parent;
  if (!requested.empty()) {
    parent = requested;
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (IsTmpfs(parent)) {
      std::printf("warning: %s is tmpfs; the figures will not reflect a disk\n", parent.c_str());
    }
  } else {
    const char* t = std::getenv("TMPDIR");
    parent = (t && *t && !IsTmpfs(t)) ? fs::path(t) : fs::path("/var/tmp");
    if (IsTmpfs(parent)) Fail("both $TMPDIR and /var/tmp are tmpfs; pass --dir on a real disk");
  }
  std::string templ = (parent / "arbor-storage-bench-XXXXXX").string();
  MustSys(::mkdtemp(templ.data()) != nullptr, "mkdtemp in " + parent.string());
  return templ;
}

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--dir DIR] [--quick] [--only NAME[,NAME...]] [--keep]\n"
               "       [--pgdata PGDATA]  (real PostgreSQL pages for the compression table)\n"
               "  NAME: branch, read, write_sync, seq_write, compression\n",
               argv0);
  return 2;
}

int Main(int argc, char** argv) {
  Config cfg;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a.rfind("--dir=", 0) == 0) {
      dir = a.substr(6);
    } else if (a == "--quick") {
      cfg.quick = true;
      g_settle_quiet_s = 1.0;
    } else if (a == "--pgdata" && i + 1 < argc) {
      cfg.pgdata = argv[++i];
    } else if (a == "--keep") {
      cfg.keep = true;
    } else if (a == "--only" && i + 1 < argc) {
      std::stringstream ss(argv[++i]);
      for (std::string n; std::getline(ss, n, ',');) cfg.only.insert(n);
    } else {
      return Usage(argv[0]);
    }
  }
  for (const std::string& n : cfg.only) {
    static const std::set<std::string> kNames = {"branch",    "read",        "write_sync",
                                                 "seq_write", "compression", "changes"};
    if (!kNames.count(n)) return Usage(argv[0]);
  }

  int rc = 0;
  try {
    cfg.work = MakeWorkDir(dir);
  } catch (const BenchFailure& e) {
    std::fprintf(stderr, "storage_bench: %s\n", e.what());
    return 1;
  }
  std::printf("storage_bench%s: working in %s (removed at the end%s)\n",
              cfg.quick ? " --quick" : "", cfg.work.c_str(), cfg.keep ? ": no, --keep" : "");
  std::printf("%u CPUs; medians over interleaved batches (baseline and arbor alternate)\n",
              std::thread::hardware_concurrency());
  std::fflush(stdout);
  Summary sum;
  int64_t start = MonoNanos();
  try {
    if (cfg.Wants("branch") || cfg.Wants("read")) BenchBranchAndRead(cfg, &sum);
    if (cfg.Wants("write_sync")) BenchWriteSync(cfg, &sum);
    if (cfg.Wants("seq_write")) BenchSeqWrite(cfg, &sum);
    if (cfg.Wants("compression")) BenchCompression(cfg, &sum);
    if (cfg.Wants("changes")) BenchChanges(cfg, &sum);
  } catch (const BenchFailure& e) {
    std::fprintf(stderr, "storage_bench: %s\n", e.what());
    rc = 1;
  }
  cfg.Remove(cfg.work);
  if (rc != 0) return rc;

  std::printf("\n== summary (%s, %.0f s) ==\n",
              cfg.quick ? "--quick: sizes shrunk, not the "
                          "real figures"
                        : "full run",
              static_cast<double>(MonoNanos() - start) / 1e9);
  for (const std::string& l : sum.lines) std::printf("%s\n", l.c_str());
  std::printf(
      "\nmethod:\n"
      "  - latencies are medians of per-call times; baseline and arbor run in alternating\n"
      "    batches in one process, so machine noise falls on both.\n"
      "  - write-amp = bytes written into files per byte written, from /proc/self/io\n"
      "    write_bytes: what this process (all threads, RocksDB's flush and compaction threads\n"
      "    included) dirtied in the page cache, counted from the first write through the final\n"
      "    Sync, a close and reopen (RocksDB flushes the memtables while reopening) and until\n"
      "    flushes and compactions have been quiet for %.0f s. A page dirtied twice before\n"
      "    writeback counts once; the plain file's 1.00 shows the floor. net subtracts\n"
      "    cancelled_write_bytes: pages of files deleted before writeback (WAL files after a\n"
      "    flush) that never reached the disk; with one Sync per write they would.\n"
      "  - the store runs with its default options except background GC, which is off during\n"
      "    the timings (one RunGc pass is timed separately).\n",
      g_settle_quiet_s);
  for (const std::string& n : sum.notes) std::printf("  - %s\n", n.c_str());
  return 0;
}

}  // namespace
}  // namespace arbor::bench

int main(int argc, char** argv) { return arbor::bench::Main(argc, argv); }
