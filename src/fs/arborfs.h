#pragma once

#include <memory>
#include <string>

#include "common/ids.h"
#include "common/status.h"
#include "storage/store.h"

namespace arbor::fs {

// How a timeline is mounted. The kernel-caching defaults are the measured choices recorded in
// docs/fs-caching.md; the switches exist so that the benchmark can measure them again.
struct MountOptions {
  // Directory of the store, for statfs (the free space of the disk holding it).
  std::string store_path;
  // The kernel buffers writes and sends them later, merged into large requests (FUSE
  // writeback cache). fsync and close still send every dirty page first, so what an fsync
  // covers is unchanged; docs/fs-writeback.md explains why the crash-image rule still holds.
  bool writeback_cache = true;
  // Page cache survives open() (safe: this mount is the only writer of its timeline).
  bool keep_cache = true;
  // How long the kernel may trust a name lookup (also negative ones) and attributes.
  double entry_timeout_s = 3600;
  double attr_timeout_s = 3600;
  // Upper bound of FUSE worker threads.
  int max_threads = 16;
};

// One timeline of a store mounted at a directory through FUSE (libfuse3 low-level API).
// Serves requests on its own threads from Start until Unmount or destruction.
// Thread-safe; owns its FUSE session and threads. The store must outlive it.
class Mount {
 public:
  // Clears a stale mount left at `mountpoint` by a killed process (see ClearStaleMount),
  // mounts (`default_permissions,allow_other`) and starts serving. FailedPrecondition if
  // something live is mounted there already; Unavailable if the kernel refuses the mount.
  [[nodiscard]] static Result<std::unique_ptr<Mount>> Start(storage::Store* store,
                                                            TimelineId timeline,
                                                            const std::string& mountpoint,
                                                            const MountOptions& options);
  // Unmounts (if still mounted) and stops the threads.
  ~Mount();
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  // Unmounts and ends the serving threads, within about 15 s whatever the environment:
  // the mount is detached at once even while files in it are open (their next I/O fails, as
  // after a crash), and if the threads do not end they are woken, then the FUSE connection
  // is aborted. Needs no /etc/mtab as root. IOError if a dead mount stays attached (an
  // ordinary user's fusermount3 cannot unmount without /etc/mtab) or if a request is stuck
  // in the file system (its threads are then left running). Idempotent.
  [[nodiscard]] Status Unmount();
  const std::string& mountpoint() const { return mountpoint_; }

  // Limits the bytes per second that WRITE requests bring into the store (0: unlimited, the
  // default). A request over the budget sleeps on its serving thread; the kernel keeps the
  // pages dirty meanwhile and throttles the writer. Reads, fsync and metadata are not
  // limited. Takes effect for the next request.
  void SetWriteRate(uint64_t bytes_per_s);
  // How long WRITE requests have slept for the budget, in nanoseconds, since the mount.
  uint64_t WriteThrottledNanos() const;
  // How many fsync requests of files it has received since the mount: a PostgreSQL that
  // commits (or checkpoints) sends them, an idle one does not.
  uint64_t Fsyncs() const;
  // From now on WRITE requests succeed without reaching the store, and every fsync of a file
  // fails (EIO), so nothing dropped is ever reported durable. The file data the kernel holds
  // dirty, which it writes back as the compute's processes close their files and at the
  // unmount, is dropped, as a power cut would drop it. For a compute stopped at once, whose
  // state is thrown away or starts again only as after a crash: what it fsynced is in the
  // store, and the rest PostgreSQL redoes from its WAL. Metadata changes still reach the
  // store.
  void DiscardWrites();

  class Impl;

 private:
  explicit Mount(std::unique_ptr<Impl> impl, std::string mountpoint);
  std::unique_ptr<Impl> impl_;
  std::string mountpoint_;
};

// Detects a mount left at `mountpoint` by a process that died (stat fails with ENOTCONN) and
// removes it: umount2(MNT_DETACH) as root, `fusermount3 -u -z` otherwise. Creates the
// directory if it is missing. Ok if `mountpoint` is now a plain directory; FailedPrecondition
// if a live FUSE file system is mounted there; IOError if clearing failed.
[[nodiscard]] Status ClearStaleMount(const std::string& mountpoint);

// True if `path` is currently a mount point (per /proc/self/mountinfo).
bool IsMountPoint(const std::string& path);

}  // namespace arbor::fs
