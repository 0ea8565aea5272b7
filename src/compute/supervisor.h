#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "compute/cgroups.h"

struct pg_conn;  // libpq's PGconn

namespace arbor::compute {

// Debian's PostgreSQL 15 binaries. A patched Postgres is never used.
inline constexpr std::string_view kPgBin = "/usr/lib/postgresql/15/bin";
// The superuser role InitDb creates: Arbor's own, reached only over a compute's private
// socket by peer authentication (the daemon's OS user), never by a client.
inline constexpr const char* kSuperuser = "postgres";
// The project's ordinary login role: owns the database `postgres`, has CREATEDB and
// CREATEROLE, is not a superuser. Tokens and connection strings log in as it by default.
inline constexpr const char* kOwnerRole = "owner";

// The OS user computes run as: `postgres` when Arbor runs as root (Postgres refuses root),
// the invoking user otherwise.
struct OsUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};
[[nodiscard]] Result<OsUser> ComputeUser();

// What one compute needs to start. Every setting is passed on the postgres command line, so
// nothing in PGDATA has to be edited (a branch inherits its parent's files as they are).
struct ComputeSpec {
  std::string id;          // the endpoint's name; the key of this compute
  std::string pgdata;      // the data directory (an arborfs mount in production)
  uint16_t port = 0;       // the port number (TCP, and the socket's name .s.PGSQL.<port>)
  std::string socket_dir;  // private unix socket directory (created 0700 for the user)
  // TCP addresses postgres listens on; empty: the private unix socket only (Arbor's computes,
  // which are reached through the proxy).
  std::string listen_addresses = "127.0.0.1";
  // The superuser's password, for Checkpoint when the socket asks for one (empty: none).
  std::string password;
  std::string log_file;  // postgres's stdout and stderr go here (appended)
  std::string shared_buffers = "128MB";
  int max_connections = 100;
  std::vector<std::pair<std::string, std::string>> settings;  // extra -c name=value
  // The control group its process tree runs in (a directory name, such as the endpoint's
  // uid), with these limits; empty, or a supervisor without Cgroups: unlimited.
  std::string cgroup;
  Limits limits;
  // RLIMIT_AS of each of its processes (0: none), so that a backend over its share gets
  // PostgreSQL's "out of memory" error from a failed allocation instead of the OOM killer.
  uint64_t address_space_limit_bytes = 0;
};

enum class ComputeState { kStopped, kRunning, kCrashed };

// Starts, watches and stops postgres process trees; the only code in Arbor that does.
// Thread-safe. Owns every postmaster it started: they are stopped when it is destroyed.
// Its lock guards only its table of computes: a start's wait for postgres to accept
// connections and a stop's wait for it to exit run without it, so the state of one compute
// never waits for the start or stop of another. A compute being started or stopped keeps its
// id, directory and port reserved until that call returns.
// The methods the engine uses are virtual so that tests of the engine can fake computes.
class Supervisor {
 public:
  explicit Supervisor(OsUser user, std::string pg_bin = std::string(kPgBin));
  virtual ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts postgres for `spec` and returns once it accepts connections. A postmaster.pid
  // left in PGDATA (a branch of a running parent carries its parent's) is removed first,
  // unless this supervisor runs a compute on that directory. AlreadyExists if `spec.id`
  // is running; FailedPrecondition if it is being started or stopped, or another compute
  // has its directory or port; Unavailable (with the log's last lines) if postgres exits or
  // is not ready within `timeout`, in which case nothing is left running.
  [[nodiscard]] virtual Status Start(const ComputeSpec& spec, std::chrono::milliseconds timeout);
  // Fast shutdown (SIGINT); after `timeout`, immediate (SIGQUIT); then SIGKILL to the whole
  // process tree. A zero `timeout` shuts down immediately at once (no checkpoint: for a
  // compute whose files are thrown away after). Every process is reaped before it returns. NotFound
  // if unknown; FailedPrecondition if it is being started or stopped by another call.
  [[nodiscard]] virtual Status Stop(const std::string& id, std::chrono::milliseconds timeout);
  // Runs CHECKPOINT on a running compute (through its private socket, as the compute user),
  // so that a branch taken right after starts with almost no WAL to replay. With
  // `min_wal_bytes`, only if its WAL has moved at least that far past the last checkpoint's
  // redo point (a branch then replays at most that much). With `pace_cpus` > 0 and the
  // compute in a cgroup v1 group, its checkpointer process is held to that much CPU (at most
  // the compute's own limit) while the CHECKPOINT runs (Cgroups::Pace), so that its writes
  // reach the store in short bursts rather than all at once, and moved back after. NotFound if it
  // does not run; Internal if the checkpoint fails.
  [[nodiscard]] virtual Status Checkpoint(const std::string& id, uint64_t min_wal_bytes = 0,
                                          double pace_cpus = 0);
  // Runs `sql` in database `dbname` of a running compute as Arbor's superuser (peer
  // authentication over the private socket), and returns the rows of its last statement as
  // text (NULL as ""). NotFound if the compute does not run; Internal with PostgreSQL's
  // message if the statement fails.
  [[nodiscard]] virtual Result<std::vector<std::vector<std::string>>> Query(
      const std::string& id, const std::string& dbname, const std::string& sql);
  // Stop (if running or crashed), then Start with the same spec.
  [[nodiscard]] Status Restart(const std::string& id, std::chrono::milliseconds timeout);
  // kCrashed when the postmaster died without being asked to; it is reaped by this call.
  // kStopped while it is being started or stopped.
  virtual ComputeState State(const std::string& id);
  std::optional<pid_t> Pid(const std::string& id);
  // Stops every running compute (fast shutdown, bounded), reaping everything; computes being
  // started or stopped are left to the call doing it.
  void StopAll(std::chrono::milliseconds timeout);
  // compute::InitDb as this supervisor's user, with its binaries.
  [[nodiscard]] virtual Status InitDb(const std::string& pgdata, const std::string& password,
                                      const std::string& log_file);

  const OsUser& user() const { return user_; }
  // Computes started after this run in control groups of `cgroups` (not owned; it must
  // outlive the supervisor). nullptr: unlimited.
  void SetCgroups(Cgroups* cgroups) { cgroups_ = cgroups; }
  Cgroups* cgroups() const { return cgroups_; }
  // CPU time a running compute's group has used (its own accounting), in microseconds.
  // NotFound if it does not run; FailedPrecondition if it runs in no group.
  [[nodiscard]] Result<uint64_t> CpuUsageMicros(const std::string& id);
  // Changes the limits of a running compute in place (autoscaling). NotFound if it does not
  // run; a compute in no group only records them.
  [[nodiscard]] virtual Status Resize(const std::string& id, const Limits& limits);

 private:
  enum class Phase { kStarting, kRunning, kStopping };
  struct Running {
    ComputeSpec spec;
    pid_t pid = -1;
    bool exited = false;
    // Checkpoint's connection, kept open: a SCRAM login costs milliseconds of PBKDF2, and
    // the branch-creation path checkpoints the parent each time.
    std::shared_ptr<pg_conn> admin;
    Phase phase = Phase::kRunning;  // kStarting and kStopping: a call works on it unlocked
    int paced = 0;         // Checkpoint calls that pace its checkpointer now (the first moves it)
    pid_t paced_pid = -1;  // the checkpointer they moved, which the last moves back
  };
  // The pid of the checkpointer of the compute whose postmaster is `postmaster`, asked on
  // `conn` and checked against /proc (a child of that postmaster); -1 if not found.
  static pid_t CheckpointerPid(pg_conn* conn, pid_t postmaster);
  // Spawns postgres and waits until it is ready; stops it again on failure. No lock held.
  Status Launch(const ComputeSpec& spec, std::chrono::milliseconds timeout, pid_t* pid);
  // Fast, then immediate shutdown of `pid`'s tree; reaps it. No lock held.
  static void StopProcess(const std::string& id, pid_t pid, bool exited,
                          std::chrono::milliseconds timeout);

  // Removes a stopped compute's group, waiting briefly for its last processes to exit.
  void RemoveGroup(const ComputeSpec& spec);

  OsUser user_;
  std::string pg_bin_;
  Cgroups* cgroups_ = nullptr;
  std::mutex mu_;
  std::map<std::string, Running> computes_;  // guarded by mu_
  // Serializes the pacing's group moves (Checkpoint), so that one call's move back never
  // undoes another's move. Taken before mu_; never held across a CHECKPOINT.
  std::mutex pace_mu_;
};

// Runs initdb on an empty `pgdata` as `user`, with the superuser `postgres` and `password`.
// The password reaches initdb through a 0600 file that is removed afterwards, never on a
// command line or in a log. Local (unix socket) connections are trusted: the socket lives in
// a private 0700 directory; TCP connections need the password (scram-sha-256).
[[nodiscard]] Status InitDb(const OsUser& user, const std::string& pgdata,
                            const std::string& password, const std::string& log_file,
                            const std::string& pg_bin = std::string(kPgBin));

// Runs `argv` as `user` with stdout+stderr appended to `log_file`; returns its exit status.
[[nodiscard]] Result<int> RunAs(const OsUser& user, const std::vector<std::string>& argv,
                                const std::string& log_file);

// The last `lines` lines of a file, for error messages.
std::string TailOf(const std::string& path, int lines);

}  // namespace arbor::compute
