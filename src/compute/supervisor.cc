#include "compute/supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "common/log.h"
#include "common/proc.h"

namespace arbor::compute {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// Everything the child needs, prepared before fork: after fork only async-signal-safe calls.
struct Exec {
  std::vector<std::string> args;
  std::vector<char*> argv;
  uint64_t address_space_limit = 0;    // RLIMIT_AS of the child; 0: unchanged
  std::vector<std::string> extra_env;  // NAME=value added to the daemon's environment
  std::vector<std::string> env;
  std::vector<char*> envp;
  void Seal() {
    argv.clear();
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    env.clear();
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    for (const std::string& e : extra_env) env.push_back(e);
    envp.clear();
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
};

// Forks a child in its own session (so its whole tree is one process group), with stdout
// and stderr on `log_fd`, running as `user` when we are root. The child joins the control
// groups whose cgroup.procs files are open as `join_fds` before anything else (so its whole
// tree is in them), and, with `protect_from_oom`, makes itself the last choice of the
// kernel's OOM killer while its children (postgres's backends) go back to the default.
Result<pid_t> Spawn(const OsUser& user, Exec& exec, int log_fd,
                    const std::vector<int>& join_fds = {}, bool protect_from_oom = false) {
  exec.Seal();
  bool drop = geteuid() == 0 && user.uid != 0;
  pid_t pid = fork();
  if (pid < 0) return Status::Internal(Errno("fork"));
  if (pid == 0) {
    for (int fd : join_fds) {
      if (write(fd, "0", 1) != 1) _exit(125);
    }
    if (protect_from_oom) {
      int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
      if (oom >= 0) {
        // Only root may lower it; an unprivileged daemon's computes keep the default.
        if (write(oom, "-1000", 5) != 5) {
        }
        close(oom);
      }
    }
    setsid();
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    // Close every other descriptor, however high: a postmaster must not hold our FUSE or
    // RocksDB files, nor another tenant's client sockets (the daemon raises its fd limit).
    if (close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 1 << 20; ++fd) close(fd);
    }
    if (drop) {
      gid_t g = user.gid;
      if (setgroups(1, &g) != 0 || setgid(user.gid) != 0 || setuid(user.uid) != 0) _exit(126);
    }
    if (chdir("/") != 0) _exit(126);
    if (exec.address_space_limit > 0) {
      struct rlimit rl {
        exec.address_space_limit, exec.address_space_limit
      };
      if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(124);
    }
    signal(SIGPIPE, SIG_DFL);
    execve(exec.argv[0], exec.argv.data(), exec.envp.data());
    _exit(127);
  }
  return pid;
}

Result<int> OpenLog(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError(Errno("opening log " + path));
  return fd;
}

// Reads postmaster.pid: true once the server with `pid` says it accepts connections.
bool PostmasterReady(const std::string& pgdata, pid_t pid) {
  std::ifstream in(pgdata + "/postmaster.pid");
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  // Line 1 is the postmaster's pid, line 8 its status: "ready" when accepting connections (a
  // hot standby's read-only ones too). "standby" means recovery runs with hot_standby off,
  // which accepts none: a compute promoted at the end of its replay is ready only after it.
  return lines.size() >= 8 && lines[0] == std::to_string(pid) && lines[7].rfind("ready", 0) == 0;
}

bool Reap(pid_t pid, bool block) {
  int status;
  pid_t r = waitpid(pid, &status, block ? 0 : WNOHANG);
  return r == pid || (r < 0 && errno == ECHILD);
}

// Waits up to `timeout` for `pid` to exit; true if it did (and was reaped).
bool WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (Reap(pid, false)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status PrepareDir(const std::string& dir, const OsUser& user) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("creating " + dir + ": " + ec.message());
  if (chmod(dir.c_str(), 0700) != 0) return Status::IOError(Errno("chmod " + dir));
  if (geteuid() == 0 && chown(dir.c_str(), user.uid, user.gid) != 0) {
    return Status::IOError(Errno("chown " + dir));
  }
  return Status::Ok();
}

}  // namespace

Result<OsUser> ComputeUser() {
  uid_t uid = geteuid();
  struct passwd pw, *res = nullptr;
  char buf[4096];
  if (uid == 0) {
    if (getpwnam_r("postgres", &pw, buf, sizeof buf, &res) != 0 || !res) {
      return Status::FailedPrecondition(
          "Arbor runs as root, so computes run as the 'postgres' OS user, which does not "
          "exist (install postgresql-15)");
    }
  } else if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) != 0 || !res) {
    return Status::FailedPrecondition("the current user (uid " + std::to_string(uid) +
                                      ") has no passwd entry");
  }
  return OsUser{res->pw_name, res->pw_uid, res->pw_gid};
}

std::string TailOf(const std::string& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (static_cast<int>(tail.size()) > lines) tail.pop_front();
  }
  std::string out;
  for (auto& l : tail) out += l + "\n";
  return out;
}

Result<int> RunAs(const OsUser& user, const std::vector<std::string>& argv,
                  const std::string& log_file) {
  ARBOR_ASSIGN_OR_RETURN(int log_fd, OpenLog(log_file));
  Exec exec{argv, {}};
  auto pid = Spawn(user, exec, log_fd);
  close(log_fd);
  if (!pid.ok()) return pid.status();
  int status = 0;
  while (waitpid(*pid, &status, 0) < 0) {
    if (errno != EINTR) return Status::Internal(Errno("waitpid"));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

Status InitDb(const OsUser& user, const std::string& pgdata, const std::string& password,
              const std::string& log_file, const std::string& pg_bin) {
  if (password.empty() || password.find('\n') != std::string::npos) {
    return Status::InvalidArgument("the password must be one non-empty line");
  }
  ARBOR_RETURN_IF_ERROR(PrepareDir(pgdata, user));
  // The password travels in a private file, never on a command line or in a log.
  char tmpl[] = "/tmp/arbor-pw-XXXXXX";
  if (!mkdtemp(tmpl)) return Status::IOError(Errno("mkdtemp"));
  std::string dir = tmpl, pwfile = dir + "/pw";
  Status st = PrepareDir(dir, user);
  if (st.ok()) {
    int fd = open(pwfile.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      st = Status::IOError(Errno("creating password file"));
    } else {
      std::string line = password + "\n";
      if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        st = Status::IOError(Errno("writing password file"));
      }
      if (geteuid() == 0 && fchown(fd, user.uid, user.gid) != 0) {
        st = Status::IOError(Errno("chown password file"));
      }
      close(fd);
    }
  }
  if (st.ok()) {
    auto rc = RunAs(user,
                    {pg_bin + "/initdb", "-D", pgdata, "-U", kSuperuser, "--pwfile=" + pwfile,
                     "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                     "--locale=C.UTF-8", "--no-instructions"},
                    log_file);
    if (!rc.ok()) {
      st = rc.status();
    } else if (*rc != 0) {
      st = Status::Internal("initdb failed (exit " + std::to_string(*rc) + "):\n" +
                            TailOf(log_file, 15));
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return st;
}

Supervisor::Supervisor(OsUser user, std::string pg_bin)
    : user_(std::move(user)), pg_bin_(std::move(pg_bin)) {}

Supervisor::~Supervisor() { StopAll(std::chrono::seconds(10)); }

Status Supervisor::Start(const ComputeSpec& spec, std::chrono::milliseconds timeout) {
  {
    std::lock_guard l(mu_);
    auto it = computes_.find(spec.id);
    if (it != computes_.end()) {
      if (it->second.phase != Phase::kRunning) {
        return Status::FailedPrecondition("compute " + spec.id + " is starting or stopping");
      }
      if (!it->second.exited && !Reap(it->second.pid, false)) {
        return Status::AlreadyExists("compute " + spec.id + " is already running");
      }
      kill(-it->second.pid, SIGKILL);  // leftovers of a crashed tree
      computes_.erase(it);
    }
    for (const auto& [id, r] : computes_) {
      if (r.spec.pgdata == spec.pgdata) {
        return Status::FailedPrecondition("compute " + id + " already runs on " + spec.pgdata);
      }
      if (r.spec.port == spec.port) {
        return Status::FailedPrecondition("compute " + id + " already uses port " +
                                          std::to_string(spec.port));
      }
    }
    // Holds the id, directory and port while postgres starts without the lock.
    Running& r = computes_[spec.id];
    r.spec = spec;
    r.phase = Phase::kStarting;
  }
  pid_t pid = -1;
  Status st = Launch(spec, timeout, &pid);
  std::lock_guard l(mu_);
  auto it = computes_.find(spec.id);
  if (!st.ok()) {
    if (it != computes_.end() && it->second.phase == Phase::kStarting) computes_.erase(it);
    return st;
  }
  it->second.pid = pid;
  it->second.phase = Phase::kRunning;
  return Status::Ok();
}

Status Supervisor::Launch(const ComputeSpec& spec, std::chrono::milliseconds timeout,
                          pid_t* started) {
  ARBOR_RETURN_IF_ERROR(PrepareDir(spec.socket_dir, user_));
  // No compute of ours runs on this directory (Start holds it), so a postmaster.pid there is
  // stale: a branch of a running parent inherits one naming the parent's (live) postmaster.
  std::string pidfile = spec.pgdata + "/postmaster.pid";
  if (unlink(pidfile.c_str()) != 0 && errno != ENOENT) {
    return Status::IOError(Errno("removing stale " + pidfile));
  }
  Exec exec;
  exec.args = {pg_bin_ + "/postgres",
               "-D",
               spec.pgdata,
               "-p",
               std::to_string(spec.port),
               "-k",
               spec.socket_dir,
               "-c",
               "listen_addresses=" + spec.listen_addresses,
               "-c",
               "shared_buffers=" + spec.shared_buffers,
               "-c",
               "max_connections=" + std::to_string(spec.max_connections)};
  for (const auto& [k, v] : spec.settings) {
    exec.args.push_back("-c");
    exec.args.push_back(k + "=" + v);
  }
  ARBOR_ASSIGN_OR_RETURN(int log_fd, OpenLog(spec.log_file));
  std::vector<int> join_fds;
  if (cgroups_ != nullptr && !spec.cgroup.empty() &&
      cgroups_->version() != Cgroups::Version::kNone) {
    Status made = cgroups_->Create(spec.cgroup, spec.limits);
    if (!made.ok()) {
      // Never fail the start: an unlimited compute serves as before.
      log::warn("compute {}: running without limits: {}", spec.id, made.ToString());
    } else {
      for (const std::string& f : cgroups_->ProcsFiles(spec.cgroup)) {
        int fd = open(f.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd >= 0) join_fds.push_back(fd);
      }
    }
  }
  // A memory limit: a backend over it gets PostgreSQL's "out of memory" error from a failed
  // allocation (RLIMIT_AS, below), and the cgroup's OOM killer, if the compute's processes
  // together still reach the limit, picks a backend rather than the postmaster.
  if (spec.limits.memory_max_bytes > 0) {
    exec.extra_env = {"PG_OOM_ADJUST_FILE=/proc/self/oom_score_adj", "PG_OOM_ADJUST_VALUE=0"};
  }
  exec.address_space_limit = spec.address_space_limit_bytes;
  auto pid = Spawn(user_, exec, log_fd, join_fds, spec.limits.memory_max_bytes > 0);
  for (int fd : join_fds) close(fd);
  close(log_fd);
  if (!pid.ok()) {
    RemoveGroup(spec);
    return pid.status();
  }

  auto deadline = Clock::now() + timeout;
  while (true) {
    if (Reap(*pid, false)) {
      kill(-*pid, SIGKILL);  // anything of the tree that outlived its postmaster
      RemoveGroup(spec);
      return Status::Unavailable("postgres for " + spec.id + " exited during startup:\n" +
                                 TailOf(spec.log_file, 15));
    }
    if (PostmasterReady(spec.pgdata, *pid)) break;
    if (Clock::now() >= deadline) {
      StopProcess(spec.id, *pid, false, std::chrono::seconds(2));
      RemoveGroup(spec);
      return Status::Unavailable("postgres for " + spec.id + " was not ready within " +
                                 std::to_string(timeout.count()) + " ms:\n" +
                                 TailOf(spec.log_file, 15));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  *started = *pid;
  return Status::Ok();
}

void Supervisor::StopProcess(const std::string& id, pid_t pid, bool exited,
                             std::chrono::milliseconds timeout) {
  if (!exited && timeout.count() == 0) {
    kill(pid, SIGQUIT);  // immediate shutdown: for computes whose data is thrown away
    if (!WaitExit(pid, std::chrono::seconds(5))) {
      kill(-pid, SIGKILL);
      Reap(pid, true);
    }
  } else if (!exited) {
    kill(pid, SIGINT);  // fast shutdown: a checkpoint, then exit
    if (!WaitExit(pid, timeout)) {
      log::warn("compute {}: no fast shutdown within {} ms; immediate shutdown", id,
                timeout.count());
      kill(pid, SIGQUIT);
      if (!WaitExit(pid, std::chrono::seconds(5))) {
        kill(-pid, SIGKILL);
        Reap(pid, true);
      }
    }
  }
  kill(-pid, SIGKILL);  // anything of the tree that outlived its postmaster
}

Status Supervisor::Stop(const std::string& id, std::chrono::milliseconds timeout) {
  pid_t pid;
  bool exited;
  {
    std::lock_guard l(mu_);
    auto it = computes_.find(id);
    if (it == computes_.end()) return Status::NotFound("no compute " + id);
    if (it->second.phase != Phase::kRunning) {
      return Status::FailedPrecondition("compute " + id + " is starting or stopping");
    }
    it->second.phase = Phase::kStopping;  // its id, directory and port stay taken meanwhile
    pid = it->second.pid;
    exited = it->second.exited;
  }
  StopProcess(id, pid, exited, timeout);
  std::lock_guard l(mu_);
  auto it = computes_.find(id);
  if (it != computes_.end() && it->second.phase == Phase::kStopping) {
    RemoveGroup(it->second.spec);
    computes_.erase(it);
  }
  return Status::Ok();
}

// Whether process `pid` is a child of `parent` now (common/proc.h).
static bool ChildOf(pid_t pid, pid_t parent) {
  auto st = ReadProcStat(pid);
  return st && st->parent == parent;
}

pid_t Supervisor::CheckpointerPid(pg_conn* conn, pid_t postmaster) {
  PGresult* r = PQexec(conn,
                       "select pid from pg_catalog.pg_stat_activity "
                       "where backend_type = 'checkpointer'");
  pid_t pid = -1;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    pid = static_cast<pid_t>(std::atol(PQgetvalue(r, 0, 0)));
  }
  PQclear(r);
  // Only a child of this compute's postmaster is ever moved.
  return pid > 0 && ChildOf(pid, postmaster) ? pid : -1;
}

Status Supervisor::Checkpoint(const std::string& id, uint64_t min_wal_bytes, double pace_cpus) {
  ComputeSpec spec;
  pid_t pid = -1;
  std::shared_ptr<PGconn> conn;
  {
    std::lock_guard l(mu_);
    auto it = computes_.find(id);
    if (it == computes_.end() || it->second.exited || it->second.phase != Phase::kRunning) {
      return Status::NotFound("compute " + id + " is not running");
    }
    spec = it->second.spec;
    pid = it->second.pid;
    conn = std::move(it->second.admin);
  }
  // libpq straight to the private socket: no psql process on the branch-creation path.
  auto connect = [&spec] {
    std::string conninfo = "host=" + spec.socket_dir + " port=" + std::to_string(spec.port) +
                           " user=" + kSuperuser + " dbname=postgres connect_timeout=10" +
                           " application_name=arbor";
    if (!spec.password.empty()) conninfo += " password='" + spec.password + "'";
    return std::shared_ptr<PGconn>(PQconnectdb(conninfo.c_str()), PQfinish);
  };
  Status st;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!conn || PQstatus(conn.get()) != CONNECTION_OK) conn = connect();
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      st = Status::Internal("CHECKPOINT on " + id + ": " + PQerrorMessage(conn.get()));
      conn.reset();
      break;
    }
    if (min_wal_bytes > 0) {
      // The WAL a branch forked now would replay: from the last checkpoint's redo point.
      PGresult* d = PQexec(conn.get(),
                           "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), redo_lsn)::bigint "
                           "from pg_control_checkpoint()");
      const bool read = PQresultStatus(d) == PGRES_TUPLES_OK && PQntuples(d) == 1;
      const long long behind = read ? std::atoll(PQgetvalue(d, 0, 0)) : -1;
      PQclear(d);
      if (read && behind >= 0 && static_cast<uint64_t>(behind) < min_wal_bytes) {
        st = Status::Ok();
        break;
      }
    }
    // Pacing (cgroup v1 only, see Cgroups::Pace): the first of concurrent calls moves the
    // checkpointer, the last to end moves it back, both under pace_mu_ (which never covers
    // the CHECKPOINT itself).
    const bool pace = pace_cpus > 0 && cgroups_ != nullptr && !spec.cgroup.empty() &&
                      cgroups_->version() == Cgroups::Version::kV1;
    // Never above the compute's own limit: v1 refuses a child's quota over its parent's.
    const double cpus = spec.limits.cpus > 0 ? std::min(pace_cpus, spec.limits.cpus) : pace_cpus;
    bool counted = false;  // this call holds one of the compute's `paced` counts
    bool moved = false;    // ... and moved the checkpointer itself
    if (pace) {
      std::lock_guard p(pace_mu_);
      bool first = false;
      {
        std::lock_guard l(mu_);
        auto it = computes_.find(id);
        if (it != computes_.end() && it->second.pid == pid && !it->second.exited) {
          counted = true;
          first = it->second.paced++ == 0;
        }
      }
      if (first) {
        const pid_t ckpt = CheckpointerPid(conn.get(), pid);
        Status paced = ckpt > 0 ? cgroups_->Pace(spec.cgroup, ckpt, cpus)
                                : Status::NotFound("no checkpointer process found");
        if (paced.ok()) {
          moved = true;
          std::lock_guard l(mu_);
          auto it = computes_.find(id);
          if (it != computes_.end() && it->second.pid == pid) it->second.paced_pid = ckpt;
        } else {
          log::warn("compute {}: CHECKPOINT not paced: {}", id, paced.ToString());
          if (ckpt > 0) (void)cgroups_->Unpace(spec.cgroup, ckpt);
        }
      }
    }
    const auto started = std::chrono::steady_clock::now();
    PGresult* r = PQexec(conn.get(), "CHECKPOINT");
    if (moved) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
      log::info("compute {}: CHECKPOINT with its checkpointer paced at {} CPUs: {} ms", id, cpus,
                ms);
    }
    if (counted) {
      std::lock_guard p(pace_mu_);
      pid_t back = -1;
      {
        std::lock_guard l(mu_);
        auto it = computes_.find(id);
        // A compute stopped meanwhile: its stop removed the groups, and a new one is not ours.
        if (it != computes_.end() && it->second.pid == pid && --it->second.paced == 0) {
          back = std::exchange(it->second.paced_pid, -1);
        }
      }
      // Still this postmaster's child (not a pid reused since).
      if (back > 0 && ChildOf(back, pid)) {
        Status unpaced = cgroups_->Unpace(spec.cgroup, back);
        if (!unpaced.ok()) {
          log::warn("compute {}: checkpointer not moved back: {}", id, unpaced.ToString());
        }
      }
    }
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    st = ok ? Status::Ok()
            : Status::Internal("CHECKPOINT on " + id + ": " + PQresultErrorMessage(r));
    PQclear(r);
    // A kept connection may have been closed under us (the compute restarted): once more,
    // on a new one.
    if (ok || PQstatus(conn.get()) == CONNECTION_OK) break;
    conn.reset();
  }
  std::lock_guard l(mu_);
  auto it = computes_.find(id);
  if (it != computes_.end() && it->second.pid == pid && !it->second.exited &&
      it->second.phase == Phase::kRunning) {
    it->second.admin = std::move(conn);
  }
  return st;
}

Result<std::vector<std::vector<std::string>>> Supervisor::Query(const std::string& id,
                                                                const std::string& dbname,
                                                                const std::string& sql) {
  ComputeSpec spec;
  {
    std::lock_guard l(mu_);
    auto it = computes_.find(id);
    if (it == computes_.end() || it->second.exited || it->second.phase != Phase::kRunning) {
      return Status::NotFound("compute " + id + " is not running");
    }
    spec = it->second.spec;
  }
  // Each value is quoted for conninfo; dbname comes from pg_database, not from a user.
  auto quoted = [](const std::string& v) {
    std::string out = "'";
    for (char c : v) {
      if (c == '\\' || c == '\'') out += '\\';
      out += c;
    }
    return out + "'";
  };
  std::string conninfo = "host=" + quoted(spec.socket_dir) + " port=" + std::to_string(spec.port) +
                         " user=" + kSuperuser + " dbname=" + quoted(dbname) +
                         " connect_timeout=10 application_name=arbor";
  if (!spec.password.empty()) conninfo += " password=" + quoted(spec.password);
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo.c_str()), PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::Internal("connecting to " + id + " (" + dbname +
                            "): " + PQerrorMessage(conn.get()));
  }
  std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(conn.get(), sql.c_str()), PQclear);
  ExecStatusType status = PQresultStatus(r.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    std::string msg = PQresultErrorMessage(r.get());
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return Status::Internal(msg);
  }
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    std::vector<std::string> row;
    for (int j = 0; j < PQnfields(r.get()); ++j) row.emplace_back(PQgetvalue(r.get(), i, j));
    rows.push_back(std::move(row));
  }
  return rows;
}

Status Supervisor::Restart(const std::string& id, std::chrono::milliseconds timeout) {
  ComputeSpec spec;
  {
    std::lock_guard l(mu_);
    auto it = computes_.find(id);
    if (it == computes_.end()) return Status::NotFound("no compute " + id);
    spec = it->second.spec;
  }
  ARBOR_RETURN_IF_ERROR(Stop(id, timeout));
  return Start(spec, timeout);
}

ComputeState Supervisor::State(const std::string& id) {
  std::lock_guard l(mu_);
  auto it = computes_.find(id);
  if (it == computes_.end()) return ComputeState::kStopped;
  Running& r = it->second;
  // Starting: not serving yet. Stopping: its stopper reaps it.
  if (r.phase != Phase::kRunning) return ComputeState::kStopped;
  if (!r.exited && Reap(r.pid, false)) {
    r.exited = true;
    kill(-r.pid, SIGKILL);
    log::warn("compute {}: postmaster {} died", id, r.pid);
  }
  return r.exited ? ComputeState::kCrashed : ComputeState::kRunning;
}

std::optional<pid_t> Supervisor::Pid(const std::string& id) {
  std::lock_guard l(mu_);
  auto it = computes_.find(id);
  if (it == computes_.end() || it->second.exited || it->second.phase != Phase::kRunning) {
    return std::nullopt;
  }
  return it->second.pid;
}

void Supervisor::StopAll(std::chrono::milliseconds timeout) {
  // Computes that are starting or stopping belong to the call doing it.
  std::vector<Running> taken;
  {
    std::lock_guard l(mu_);
    for (auto it = computes_.begin(); it != computes_.end();) {
      if (it->second.phase == Phase::kRunning) {
        taken.push_back(std::move(it->second));
        it = computes_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Ask every compute to stop first, so their shutdowns overlap.
  for (const Running& r : taken) {
    if (!r.exited) kill(r.pid, SIGINT);
  }
  for (const Running& r : taken) {
    StopProcess(r.spec.id, r.pid, r.exited, timeout);
    RemoveGroup(r.spec);
  }
}

void Supervisor::RemoveGroup(const ComputeSpec& spec) {
  if (cgroups_ == nullptr || spec.cgroup.empty()) return;
  // Its processes are gone or dying (SIGKILL to the tree); the kernel refuses the rmdir
  // until the last has exited.
  Status st;
  for (int attempt = 0; attempt < 50; ++attempt) {
    st = cgroups_->Remove(spec.cgroup);
    if (st.ok()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  log::warn("compute {}: {} (the next start reuses it)", spec.id, st.ToString());
}

Result<uint64_t> Supervisor::CpuUsageMicros(const std::string& id) {
  std::string group;
  {
    std::lock_guard l(mu_);
    auto it = computes_.find(id);
    if (it == computes_.end()) return Status::NotFound("no compute " + id);
    group = it->second.spec.cgroup;
  }
  if (cgroups_ == nullptr || group.empty()) {
    return Status::FailedPrecondition("compute " + id + " runs in no control group");
  }
  return cgroups_->CpuUsageMicros(group);
}

Status Supervisor::Resize(const std::string& id, const Limits& limits) {
  std::string group;
  {
    std::lock_guard l(mu_);
    auto it = computes_.find(id);
    if (it == computes_.end()) return Status::NotFound("no compute " + id);
    it->second.spec.limits = limits;
    group = it->second.spec.cgroup;
  }
  if (cgroups_ == nullptr || group.empty() || cgroups_->version() == Cgroups::Version::kNone) {
    return Status::Ok();
  }
  return cgroups_->Update(group, limits);
}

Status Supervisor::InitDb(const std::string& pgdata, const std::string& password,
                          const std::string& log_file) {
  return compute::InitDb(user_, pgdata, password, log_file, pg_bin_);
}

}  // namespace arbor::compute
