#include "storage/wal_file.h"

#include <fcntl.h>
#include <rocksdb/file_system.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "common/log.h"

namespace arbor::storage {
namespace {

using rocksdb::FileOptions;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;

constexpr char kFill = '\xff';
constexpr size_t kChunk = 1 << 20;
constexpr const char* kSpareTmp = "ARBOR-WAL-SPARE.tmp";

IOStatus FromErrno(const std::string& what, int err) {
  if (err == ENOSPC || err == EDQUOT) return IOStatus::NoSpace(what, std::strerror(err));
  return IOStatus::IOError(what, std::strerror(err));
}

// RocksDB names its WAL files NNNNNN.log.
bool IsWalName(const std::string& fname) {
  size_t slash = fname.rfind('/');
  std::string base = slash == std::string::npos ? fname : fname.substr(slash + 1);
  if (base.size() <= 4 || base.compare(base.size() - 4, 4, ".log") != 0) return false;
  for (size_t i = 0; i + 4 < base.size(); ++i) {
    if (base[i] < '0' || base[i] > '9') return false;
  }
  return true;
}

IOStatus FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FromErrno("open " + dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  return rc == 0 ? IOStatus::OK() : FromErrno("fsync " + dir, err);
}

// One WAL file, shared by its writer and the file system (which cuts it when the next WAL
// is created).
struct WalState {
  std::string path;
  int fd = -1;
  std::atomic<uint64_t> size{0};         // bytes the log wrote
  std::atomic<bool> synced_once{false};  // the first Sync also made the name durable
  std::mutex mu;
  bool cut = false;          // guarded by mu: truncated to `size`
  bool cut_durable = false;  // guarded by mu: and fsynced since

  ~WalState() {
    if (fd >= 0) ::close(fd);
  }

  // Cuts the fill off the end; with `durable`, also fsyncs, so the cut survives a machine
  // crash. Idempotent.
  IOStatus Cut(bool durable) {
    std::lock_guard l(mu);
    if (!cut) {
      if (::ftruncate(fd, static_cast<off_t>(size.load())) != 0) {
        return FromErrno("truncate " + path, errno);
      }
      cut = true;
    }
    if (durable && !cut_durable) {
      if (::fsync(fd) != 0) return FromErrno("fsync " + path, errno);
      cut_durable = true;
    }
    return IOStatus::OK();
  }
};

class WalFile : public FSWritableFile {
 public:
  WalFile(std::shared_ptr<WalState> st, std::string dir, const FileOptions& opts)
      : FSWritableFile(opts), st_(std::move(st)), dir_(std::move(dir)) {}

  IOStatus Append(const rocksdb::Slice& data, const IOOptions&, IODebugContext*) override {
    const char* p = data.data();
    size_t left = data.size();
    uint64_t off = st_->size.load();
    while (left > 0) {
      ssize_t n = ::pwrite(st_->fd, p, left, static_cast<off_t>(off));
      if (n < 0) {
        if (errno == EINTR) continue;
        return FromErrno("write " + st_->path, errno);
      }
      p += n;
      left -= static_cast<size_t>(n);
      off += static_cast<uint64_t>(n);
      st_->size.store(off);
    }
    return IOStatus::OK();
  }

  IOStatus Truncate(uint64_t size, const IOOptions&, IODebugContext*) override {
    if (::ftruncate(st_->fd, static_cast<off_t>(size)) != 0) {
      return FromErrno("truncate " + st_->path, errno);
    }
    st_->size.store(size);
    return IOStatus::OK();
  }

  // Not fsynced: a newer WAL, if any, cut this one durably already, and the newest WAL may
  // end in fill (recovery stops there, as at any torn tail).
  IOStatus Close(const IOOptions&, IODebugContext*) override { return st_->Cut(false); }

  IOStatus Flush(const IOOptions&, IODebugContext*) override { return IOStatus::OK(); }

  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    if (!st_->synced_once.load()) return Fsync(o, dbg);
    if (::fdatasync(st_->fd) != 0) return FromErrno("fdatasync " + st_->path, errno);
    return IOStatus::OK();
  }

  IOStatus Fsync(const IOOptions&, IODebugContext*) override {
    if (::fsync(st_->fd) != 0) return FromErrno("fsync " + st_->path, errno);
    if (!st_->synced_once.load()) {
      IOStatus s = FsyncDir(dir_);
      if (!s.ok()) return s;
      st_->synced_once.store(true);
    }
    return IOStatus::OK();
  }

  bool IsSyncThreadSafe() const override { return true; }

  uint64_t GetFileSize(const IOOptions&, IODebugContext*) override { return st_->size.load(); }

 private:
  std::shared_ptr<WalState> st_;
  std::string dir_;
};

class WalFileSystem : public rocksdb::FileSystemWrapper {
 public:
  WalFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base, std::string dir, uint64_t prefill)
      : FileSystemWrapper(base),
        dir_(std::move(dir)),
        spare_(dir_ + "/" + kWalSpareName),
        tmp_(dir_ + "/" + kSpareTmp),
        prefill_(prefill) {}

  ~WalFileSystem() override {
    {
      std::lock_guard l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (filler_.joinable()) filler_.join();
  }

  const char* Name() const override { return "ArborWalFileSystem"; }

  IOStatus NewWritableFile(const std::string& fname, const FileOptions& opts,
                           std::unique_ptr<FSWritableFile>* result, IODebugContext* dbg) override {
    if (!IsWalName(fname)) return target()->NewWritableFile(fname, opts, result, dbg);
    StartFiller();
    // Only the newest WAL may end in fill: seal the previous one before this one gets a
    // record.
    std::shared_ptr<WalState> prev;
    {
      std::lock_guard l(mu_);
      prev = last_;
    }
    if (prev) {
      IOStatus s = prev->Cut(/*durable=*/true);
      if (!s.ok()) return s;
    }
    bool took = false;
    {
      std::lock_guard l(mu_);
      if (spare_ready_) {
        spare_ready_ = false;
        took = ::rename(spare_.c_str(), fname.c_str()) == 0;
        if (!took) log::warn("store: could not use the spare WAL file: {}", std::strerror(errno));
      }
    }
    cv_.notify_all();
    int fd = took ? ::open(fname.c_str(), O_WRONLY | O_CLOEXEC)
                  : ::open(fname.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return FromErrno("open " + fname, errno);
    auto st = std::make_shared<WalState>();
    st->path = fname;
    st->fd = fd;
    {
      std::lock_guard l(mu_);
      last_ = st;
    }
    *result = std::make_unique<WalFile>(std::move(st), dir_, opts);
    return IOStatus::OK();
  }

 private:
  // Starts keeping a spare when RocksDB creates its first WAL file, not before: opening a
  // directory that turns out not to be an Arbor store must leave nothing in it.
  void StartFiller() {
    std::lock_guard l(mu_);
    if (prefill_ == 0 || filler_.joinable()) return;
    ::unlink(tmp_.c_str());
    struct stat st {};
    if (::stat(spare_.c_str(), &st) == 0) {
      // Only ever made complete (filled, fsynced, then renamed), so its size tells.
      if (static_cast<uint64_t>(st.st_size) == prefill_) {
        spare_ready_ = true;
      } else {
        ::unlink(spare_.c_str());
      }
    }
    filler_ = std::thread([this] { FillLoop(); });
  }

  // Keeps one spare ready. Skips (and retries later) when the disk is short of space, so the
  // spare never turns a nearly full disk into a full one.
  void FillLoop() {
    std::vector<char> chunk(kChunk, kFill);
    std::unique_lock l(mu_);
    while (!stopping_) {
      if (spare_ready_) {
        cv_.wait(l, [&] { return stopping_ || !spare_ready_; });
        continue;
      }
      l.unlock();
      bool ok = MakeSpare(chunk);
      l.lock();
      if (ok) {
        spare_ready_ = true;
      } else {
        cv_.wait_for(l, std::chrono::seconds(5), [&] { return stopping_; });
      }
    }
  }

  bool MakeSpare(const std::vector<char>& chunk) {
    struct statvfs vfs {};
    if (::statvfs(dir_.c_str(), &vfs) != 0 ||
        static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize < 8 * prefill_ + (256ull << 20)) {
      return false;
    }
    int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    bool ok = true;
    for (uint64_t off = 0; ok && off < prefill_; off += kChunk) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, prefill_ - off));
      ok = ::pwrite(fd, chunk.data(), n, static_cast<off_t>(off)) == static_cast<ssize_t>(n);
      // Start writeback as we go, so the final fsync does not stall other syncs on the disk.
      if (ok) ::sync_file_range(fd, static_cast<off_t>(off), n, SYNC_FILE_RANGE_WRITE);
      std::lock_guard l(mu_);
      if (stopping_) ok = false;
    }
    ok = ok && ::fsync(fd) == 0;
    ::close(fd);
    ok = ok && ::rename(tmp_.c_str(), spare_.c_str()) == 0 && FsyncDir(dir_).ok();
    if (!ok) ::unlink(tmp_.c_str());
    return ok;
  }

  const std::string dir_;
  const std::string spare_;
  const std::string tmp_;
  const uint64_t prefill_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool spare_ready_ = false;        // guarded by mu_
  bool stopping_ = false;           // guarded by mu_
  std::shared_ptr<WalState> last_;  // guarded by mu_: the newest WAL file
  std::thread filler_;
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewWalFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                      std::string dir, uint64_t prefill_bytes) {
  return std::make_shared<WalFileSystem>(base, std::move(dir), prefill_bytes);
}

}  // namespace arbor::storage
