#pragma once

// Harness for the arborfs integration tests: a private temp dir, a real `arbor debug mount`
// process, and a real postgres on the mount as the compute user. Every object cleans up in
// its destructor (postgres is killed before its mount is removed), even after a failed
// assertion.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "compute/supervisor.h"

namespace arbor::testutil {

// A directory made with mkdtemp under $TMPDIR (or /tmp), removed recursively at the end
// (never through a live mount: mounts inside are detached first).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "arbor-it");
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that nothing listens on right now.
uint16_t FreePort();

// `arbor debug mount` as a child process serving a timeline at a mount point.
class MountProcess {
 public:
  // Starts it (creating a root owned by `uid`:`gid` when `timeline` is 0) and waits until it
  // reports the mount. Fails the test (ADD_FAILURE) and returns nullptr on error.
  static std::unique_ptr<MountProcess> Start(const std::string& store, const std::string& mnt,
                                             uint64_t timeline, uint32_t uid, uint32_t gid,
                                             const std::vector<std::string>& extra = {});
  // SIGTERM and wait (clean unmount); then, whatever happened, no mount is left.
  ~MountProcess();
  // SIGTERM: the process unmounts and exits; true if it exited 0 with no mount left.
  bool Stop();
  // kill -9: the mount is left stale (stat gives ENOTCONN) until cleared.
  void Kill9();
  uint64_t timeline() const { return timeline_; }
  pid_t pid() const { return pid_; }
  const std::string& mountpoint() const { return mnt_; }

 private:
  pid_t pid_ = -1;
  uint64_t timeline_ = 0;
  std::string mnt_;
  std::string log_;
};

// The arbor binary under test (set by the build).
std::string ArborBinary();

// Removes the mount at `path` lazily (it goes once nothing uses it): umount2(MNT_DETACH) as
// root, `fusermount3 -u -z` otherwise. True on success.
bool DetachMount(const std::string& path);

// A small disk that any user can mount and fill: bench/fuse_passthrough with a quota, a FUSE
// file system over a private directory (through fusermount3 when not root). statfs reports
// `quota_bytes` of size; a write or fallocate that needs more than is left, and a create or
// mkdir when nothing is left, fail with ENOSPC; deleting a file gives its space back at once.
// Not thread-safe; owns the file system's process and its mount.
class QuotaFs {
 public:
  // Mounts `backing` (created if missing) at `mnt` (created if missing) and waits until it
  // serves. Fails the test (ADD_FAILURE) and returns nullptr on error.
  static std::unique_ptr<QuotaFs> Start(const std::string& backing, const std::string& mnt,
                                        uint64_t quota_bytes);
  // SIGTERM and wait (the process unmounts, lazily if busy); then, whatever happened, no
  // mount is left. REQUIRES: nothing that must finish cleanly still writes to it.
  ~QuotaFs();
  const std::string& mountpoint() const { return mnt_; }

 private:
  pid_t pid_ = -1;
  std::string mnt_;
  std::string log_;
};

// A postgres on a data directory, run by the compute user through compute::Supervisor.
class Postgres {
 public:
  // REQUIRES: `dir` is a private scratch directory (socket dir and logs go there).
  Postgres(std::string pgdata, std::string dir);
  ~Postgres();
  // initdb (the data directory becomes 0700, owned by the compute user).
  void InitDb();
  void Start();
  void Stop();
  // kill -9 of the whole postmaster tree (it leads its own process group).
  void Kill9();
  // Runs psql -At -c `sql` against database postgres; returns its stdout. Fails the test
  // if psql fails unless `may_fail`.
  std::string Psql(const std::string& sql, bool may_fail = false);
  // Runs a client binary from the Postgres bin dir (pgbench, pg_amcheck ...) with the
  // connection arguments added; returns its exit code; output goes to `out` if given.
  int Run(const std::string& tool, const std::vector<std::string>& args,
          std::string* out = nullptr);
  // pg_amcheck --all (heap and btree, with parent checks); "" when clean.
  std::string AmCheck();
  std::string ConnInfo() const;
  const std::string& log_file() const { return log_; }
  const compute::OsUser& user() const { return user_; }
  uint16_t port() const { return port_; }

 private:
  compute::OsUser user_;
  std::unique_ptr<compute::Supervisor> sup_;
  std::string pgdata_, dir_, sock_, log_;
  uint16_t port_ = 0;
  int seq_ = 0;
};

// A client that inserts numbered rows, one autocommit transaction each, and records every id
// whose COMMIT was acknowledged. Ids are consecutive, so "all acknowledged rows survived"
// means: every id in 1..acknowledged() is in the table.
class AckWriter {
 public:
  // REQUIRES: the table exists: CREATE TABLE acks (id bigint primary key, pad text)
  explicit AckWriter(std::string conninfo, int64_t first_id = 1);
  ~AckWriter();
  void Start();
  // Waits until the thread ends (it ends on the first error, e.g. the server died).
  void Join();
  int64_t acknowledged() const { return last_acked_.load(); }

 private:
  std::string conninfo_;
  int64_t next_;
  std::atomic<int64_t> last_acked_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace arbor::testutil
