#include "control/daemon.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "api/names.h"
#include "common/clock.h"
#include "common/home.h"
#include "common/log.h"
#include "common/proc.h"
#include "compute/cgroups.h"
#include "compute/supervisor.h"
#include "control/api_server.h"
#include "proxy/auth/crypto.h"
#include "proxy/auth/token.h"
#include "proxy/proxy.h"

namespace arbor::control {
namespace {

// jemalloc, the arbor binary's allocator (apps/arbor_main.cc, malloc_conf), turns its
// background thread off in a forked child, and `arbor up` forks the daemon: turned on again,
// it returns freed pages after their 1 s decay even when nothing allocates. Nothing happens
// in a build without jemalloc (no mallctl).
void ResumeAllocatorThreads() {
  using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
  auto mallctl = reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"));
  if (mallctl == nullptr) return;
  bool on = true;
  if (mallctl("background_thread", nullptr, nullptr, &on, sizeof on) != 0) {
    std::fprintf(stderr, "arbor: jemalloc's background thread could not be started\n");
  }
}

namespace fs = std::filesystem;

// `arbor down` sends SIGTERM and waits this long before it kills the daemon and its
// computes; clearing up after that takes a few seconds at most, so `arbor down` returns
// within 30 s whatever the state of the daemon.
constexpr int kStopGraceS = 20;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Writes `content` to `path` atomically with mode 0600.
Status WritePrivate(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  unlink(tmp.c_str());  // a leftover (or a planted symlink) is never written through
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("writing " + path + ": " + std::strerror(errno));
  bool ok = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ok = ok && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return Status::IOError("writing " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// 32 random bytes in hex. Internal if the system's random source fails: a token made from
// whatever was in memory would be guessable.
Result<std::string> RandomToken() {
  ARBOR_ASSIGN_OR_RETURN(std::string b, proxy::auth::RandomBytes(32));
  static const char* kHex = "0123456789abcdef";
  std::string t;
  for (unsigned char c : b) t += kHex[c >> 4], t += kHex[c & 15];
  return t;
}

// Holds the data directory's lock for the life of the daemon.
int LockDataDir(const std::string& data_dir) {
  std::string path = data_dir + "/arbor.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return -1;
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    log::warn("daemon: cannot record the pid in {}", path);
  }
  return fd;
}

// Runs argv (no shell) with stdout and stderr captured; its exit status, or -1.
int RunCaptured(const std::vector<std::string>& argv, std::string* output) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return -1;
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return -1;
  }
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  close(out[1]);
  char buf[512];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof buf)) > 0) output->append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (!output->empty() && (output->back() == '\n' || output->back() == ' ')) {
    output->pop_back();
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The mount points under `prefix`, deepest first.
std::vector<std::string> MountsUnder(const std::string& prefix) {
  std::ifstream mounts("/proc/mounts");
  std::string dev, point, rest;
  std::vector<std::string> found;
  while (mounts >> dev >> point && std::getline(mounts, rest)) {
    if (point.rfind(prefix, 0) == 0) found.push_back(point);
  }
  std::sort(found.rbegin(), found.rend());
  return found;
}

struct Cleared {
  std::vector<std::string> removed;
  std::vector<std::string> left;  // "path: why"
};

// Detaches every mount under `prefix` (those of a daemon that is gone: dead FUSE mounts).
// umount2 needs no /etc/mtab; an ordinary user's fusermount3 does.
Cleared ClearMounts(const std::string& prefix) {
  Cleared c;
  for (const auto& p : MountsUnder(prefix)) {
    if (umount2(p.c_str(), MNT_DETACH) == 0) {
      c.removed.push_back(p);
      continue;
    }
    std::string why = std::strerror(errno);
    if (geteuid() != 0) {
      std::string out;
      if (RunCaptured({"fusermount3", "-u", "-z", "--", p}, &out) == 0) {
        c.removed.push_back(p);
        continue;
      }
      why = out.empty() ? "fusermount3 failed" : out;
      if (access("/etc/mtab", F_OK) != 0) {
        why += " (fusermount3 needs /etc/mtab: ln -s /proc/self/mounts /etc/mtab)";
      }
    }
    c.left.push_back(p + ": " + why);
  }
  return c;
}

// True if `pid` runs. A zombie does not: it only waits to be reaped by its parent (init, once
// the daemon that started it is gone, which some containers' init does late).
bool Running(pid_t pid) {
  if (pid <= 1 || kill(pid, 0) != 0) return false;
  std::optional<ProcStat> stat = ReadProcStat(pid);
  return !stat || (stat->state != 'Z' && stat->state != 'X');
}

// The lock file of a compute's socket in the runtime directory, and its postmaster if that
// still runs (a pid reused by another process does not count).
struct SocketLock {
  std::string path;
  pid_t running = 0;
};

std::vector<SocketLock> SocketLocks(const std::string& runtime_dir) {
  std::vector<SocketLock> locks;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(runtime_dir + "/run", ec)) {
    std::error_code ec2;
    for (const auto& f : fs::directory_iterator(d.path(), ec2)) {
      std::string name = f.path().filename();
      if (name.rfind(".s.PGSQL.", 0) != 0 || name.size() < 5 ||
          name.substr(name.size() - 5) != ".lock") {
        continue;
      }
      SocketLock l{f.path().string()};
      pid_t pid = 0;
      std::ifstream(f.path()) >> pid;
      std::string proc = "/proc/" + std::to_string(pid);
      std::string cmdline = ReadFile(proc + "/cmdline");
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      if (Running(pid) && ReadFile(proc + "/comm").find("postgres") != std::string::npos &&
          cmdline.find(runtime_dir + "/") != std::string::npos) {
        l.running = pid;
      }
      locks.push_back(l);
    }
  }
  return locks;
}

// The postmasters of computes under `runtime_dir` that still run, whoever started them.
std::vector<pid_t> LeftoverComputes(const std::string& runtime_dir) {
  std::vector<pid_t> pids;
  for (const auto& l : SocketLocks(runtime_dir)) {
    if (l.running) pids.push_back(l.running);
  }
  return pids;
}

// Kills the computes under `runtime_dir` (each postmaster leads its own process group) and
// waits up to 5 s for them to end. Then removes the socket lock files of postmasters that no
// longer run: postgres refuses to start while the pid in one exists, and a killed
// postmaster's pid lives on as a zombie until init reaps it. Returns how many it killed.
// REQUIRES: no daemon runs on this runtime directory.
size_t KillComputes(const std::string& runtime_dir, int quit_grace_s = 0) {
  std::vector<pid_t> pids = LeftoverComputes(runtime_dir);
  for (pid_t pid : pids) kill(pid, quit_grace_s > 0 ? SIGQUIT : SIGKILL);
  auto all_gone = [&pids] {
    return std::none_of(pids.begin(), pids.end(), [](pid_t p) { return Running(p); });
  };
  for (int i = 0; i < quit_grace_s * 20 && !all_gone(); ++i) usleep(50'000);
  for (pid_t pid : pids) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
  }
  for (int i = 0; i < 100 && !all_gone(); ++i) usleep(50'000);
  for (const auto& l : SocketLocks(runtime_dir)) {
    if (!l.running) unlink(l.path.c_str());
  }
  return pids.size();
}

// A daemon killed with -9 leaves its FUSE mounts (now dead: ENOTCONN) and possibly postgres
// processes whose data directory vanished. Clear both before serving again.
void ClearLeftovers(const std::string& runtime_dir) {
  Cleared c = ClearMounts(runtime_dir + "/mnt/");
  for (const auto& p : c.removed) {
    log::warn("daemon: cleared a mount left by an earlier run: {}", p);
  }
  for (const auto& l : c.left) log::warn("daemon: cannot unmount {}", l);
  if (size_t n = KillComputes(runtime_dir, 5); n > 0) {
    log::warn("daemon: stopped {} postgres process(es) left by an earlier run", n);
  }
}

// Where the daemon of `data_dir` keeps its mounts and sockets (it writes it at start).
std::string RuntimeDirOf(const std::string& data_dir) {
  std::string dir = ReadFile(data_dir + "/runtime-dir");
  return dir.empty() ? data_dir : dir;
}

// The last error the daemon logged after byte `from` of its log (spdlog's "[time] [error]
// message"; a warning if there is no error), without its time stamp; "" if there is none.
std::string LastLoggedError(const std::string& log_path, std::streamoff from) {
  std::ifstream in(log_path);
  in.seekg(from);
  std::string line, error, warning;
  while (std::getline(in, line)) {
    for (const char* level : {"] [error] ", "] [critical] ", "] [warning] "}) {
      auto at = line.find(level);
      if (at == std::string::npos) continue;
      std::string text = line.substr(at + std::strlen(level));
      (std::strcmp(level, "] [warning] ") == 0 ? warning : error) = text;
      break;
    }
  }
  return error.empty() ? warning : error;
}

// Waits until no process holds the data directory's lock (the daemon has exited), at most
// `seconds`. True if it was released.
bool WaitStopped(const std::string& data_dir, double seconds) {
  auto deadline = MonoNanos() + static_cast<int64_t>(seconds * 1e9);
  while (RunningDaemon(data_dir)) {
    if (MonoNanos() >= deadline) return false;
    usleep(50'000);
  }
  return true;
}

// Says what had to be cleared after a daemon; the exit code: 1 if a mount stays.
int ReportLeftovers(size_t computes_killed, const Cleared& mounts) {
  if (computes_killed > 0) {
    std::fprintf(stderr, "arbor: killed %zu compute(s) left running\n", computes_killed);
  }
  if (!mounts.removed.empty()) {
    std::fprintf(stderr, "arbor: removed %zu mount(s) left behind\n", mounts.removed.size());
  }
  if (mounts.left.empty()) return 0;
  std::fprintf(stderr, "arbor: %zu mount(s) could not be removed:\n", mounts.left.size());
  for (const auto& l : mounts.left) std::fprintf(stderr, "  %s\n", l.c_str());
  return 1;
}

// Stops the daemon `pid` of `data_dir` and everything it started, within `grace_s` + 10 s:
// SIGTERM, and if it has not exited after `grace_s`, SIGKILL for it and its computes; then
// the mounts it left are cleared. Prints what it had to do; the exit code for the CLI.
int StopDaemon(const std::string& data_dir, pid_t pid, int grace_s) {
  if (kill(pid, SIGTERM) != 0 && errno != ESRCH) {
    std::fprintf(stderr, "arbor: cannot signal the daemon (pid %d): %s\n", pid,
                 std::strerror(errno));
    return 1;
  }
  std::string runtime_dir = RuntimeDirOf(data_dir);
  bool killed = false;
  if (!WaitStopped(data_dir, grace_s)) {
    std::fprintf(stderr, "arbor: the daemon (pid %d) did not stop within %d s; killing it\n", pid,
                 grace_s);
    killed = true;
    // `arbor up` makes the daemon lead its own session: its group is its own alone.
    if (getsid(pid) == pid) kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
  }
  if (killed && !WaitStopped(data_dir, 5)) {
    std::fprintf(stderr, "arbor: the daemon (pid %d) survived SIGKILL\n", pid);
    return 1;
  }
  // Computes it left (killed, or a shutdown that failed to stop one).
  size_t computes = KillComputes(runtime_dir);
  return ReportLeftovers(computes, ClearMounts(runtime_dir + "/mnt/"));
}

// Mount points and socket directories must be reachable by the compute user, and the data
// directory must not be (it holds the store and the keys). As root, with computes running as
// another user, they live in /run/arbor/<hash of the data directory> instead; otherwise the
// compute user is the daemon's own, and the data directory serves.
std::string RuntimeDir(const std::string& data_dir, const compute::OsUser& user) {
  if (geteuid() != 0 || user.uid == 0) return data_dir;
  char hash[17];
  snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>()(data_dir));
  for (const char* base : {"/run/arbor", "/tmp/arbor-run"}) {
    std::error_code ec;
    fs::create_directories(base, ec);
    struct stat st;
    // A base another user could have made (in /tmp) is not trusted.
    if (!ec && lstat(base, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0) {
      chmod(base, 0711);
      return std::string(base) + "/" + hash;
    }
  }
  log::warn("daemon: no private runtime directory; using the data directory {}", data_dir);
  return data_dir;
}

// Copies arbor_guard.so from beside the arbor binary into <runtime_dir>/lib, where the compute
// user can read it (the binary's own directory may be under a home it cannot enter).
// Returns the copy's path. FailedPrecondition if the module is missing: computes never run
// without it.
Result<std::string> InstallGuard(const std::string& runtime_dir) {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return Status::Internal("cannot find the arbor binary: " + ec.message());
  fs::path source = exe.parent_path() / "arbor_guard.so";
  if (!fs::exists(source, ec)) {
    return Status::FailedPrecondition(source.string() +
                                      " is missing: computes load it; rebuild arbor (make up)");
  }
  std::string dir = runtime_dir + "/lib";
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("creating " + dir + ": " + ec.message());
  chmod(dir.c_str(), 0711);  // reachable; its parent decides who can reach it
  std::string target = dir + "/arbor_guard.so", tmp = target + ".tmp";
  fs::remove(tmp, ec);
  fs::copy_file(source, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) return Status::IOError("copying " + source.string() + ": " + ec.message());
  chmod(tmp.c_str(), 0644);  // no secret; the compute user loads it
  if (rename(tmp.c_str(), target.c_str()) != 0) {
    return Status::IOError("installing " + target + ": " + std::strerror(errno));
  }
  return target;
}

// Removes a runtime directory apart from the data directory once nothing is mounted in it:
// only the files Arbor put there and empty directories, never anything through a mount.
void RemoveRuntimeDir(const std::string& runtime_dir) {
  std::ifstream mounts("/proc/mounts");
  std::string dev, point, rest;
  while (mounts >> dev >> point && std::getline(mounts, rest)) {
    if (point.rfind(runtime_dir + "/", 0) == 0) {
      log::warn("daemon: {} is still mounted; leaving {}", point, runtime_dir);
      return;
    }
  }
  for (const char* f : {"/run/pg_hba.conf", "/run/pg_ident.conf", "/lib/arbor_guard.so"}) {
    unlink((runtime_dir + f).c_str());
  }
  std::error_code ec;
  for (const char* sub : {"/mnt", "/run"}) {
    for (const auto& d : fs::directory_iterator(runtime_dir + sub, ec)) rmdir(d.path().c_str());
    rmdir((runtime_dir + sub).c_str());
  }
  // The WAL files walked pinned endpoints were given (Engine::AdvancePinnedEndpoint): the
  // endpoints themselves go at the next start.
  fs::remove_all(runtime_dir + "/wal", ec);
  rmdir((runtime_dir + "/lib").c_str());
  rmdir(runtime_dir.c_str());
}

std::string ApiUrl(const std::string& host, int port) {
  return "http://" + host + ":" + std::to_string(port);
}

// Asks the running daemon for the default branch's connection string.
Result<std::string> FetchConnectionString(const std::string& data_dir) {
  std::string url = ReadFile(data_dir + "/api");
  std::string token = ReadFile(data_dir + "/admin-token");
  if (url.empty()) return Status::Unavailable("the daemon has not written its API address yet");
  httplib::Client cli(url);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(120);
  httplib::Headers h{{"Authorization", "Bearer " + token}};
  auto res = cli.Get("/api/2.0/postgres/projects/default/branches/production/endpoints/primary", h);
  if (!res) return Status::Unavailable("cannot reach the daemon at " + url);
  auto j = nlohmann::json::parse(res->body, nullptr, false);
  if (res->status != 200 || j.is_discarded()) {
    return Status::Internal("the daemon answered " + std::to_string(res->status) + ": " +
                            res->body);
  }
  // A fresh token as the password: what every client should use.
  std::string endpoint = j.value("name", std::string());
  nlohmann::json req{{"endpoint", endpoint}, {"ttl", "3600s"}};
  auto cred = cli.Post("/api/2.0/postgres/credentials", h, req.dump(), "application/json");
  if (!cred || cred->status != 200) {
    return Status::Internal("the daemon issued no credential for " + endpoint);
  }
  auto c = nlohmann::json::parse(cred->body, nullptr, false);
  if (c.is_discarded() || !c.contains("token")) {
    return Status::Internal("the daemon answered a credential without a token");
  }
  return std::string("postgresql://") + compute::kOwnerRole + ":" + c["token"].get<std::string>() +
         "@" + j["status"].value("host", std::string("127.0.0.1")) + ":" +
         std::to_string(j["status"].value("port", 0)) + "/postgres";
}

// The proxy's view of the engine, and the engine's of the proxy's port listeners.
class EngineBackend final : public proxy::Backend, public PortListener {
 public:
  EngineBackend(Engine* engine, proxy::Proxy* proxy) : engine_(engine), proxy_(proxy) {}

  Result<proxy::EndpointRef> Resolve(const std::string& project, const std::string& branch,
                                     const std::string& endpoint) override {
    size_t at = branch.find('@');
    if (at != std::string::npos)
      return ResolvePinned(project, branch.substr(0, at), branch.substr(at + 1));
    if (!endpoint.empty()) {
      ARBOR_ASSIGN_OR_RETURN(EndpointRecord e, engine_->GetEndpoint(project, branch, endpoint));
      return Ref(e);
    }
    ARBOR_ASSIGN_OR_RETURN(EndpointRecord e, engine_->DefaultEndpoint(project, branch));
    return Ref(e);
  }
  // "B@<when>": the endpoint pinned there, named but not made (Wake makes it, once the client
  // has proven a password or token; nothing about the history is checked before).
  Result<proxy::EndpointRef> ResolvePinned(const std::string& project, const std::string& branch,
                                           const std::string& when) {
    proxy::EndpointRef ref;
    if (when.rfind("lsn:", 0) == 0) {
      ARBOR_ASSIGN_OR_RETURN(Lsn lsn, api::ParseLsn(when.substr(4)));
      ref.pin_lsn = lsn.value();
    } else {
      ARBOR_ASSIGN_OR_RETURN(int64_t t, api::ParseTimeOrAgo(when, WallMicros()));
      ref.pin_time_us = t;
    }
    ARBOR_ASSIGN_OR_RETURN(EndpointRecord base, engine_->DefaultEndpoint(project, branch));
    ref.project = project;
    ref.branch = branch;
    std::optional<Lsn> pin_lsn;
    if (ref.pin_lsn) pin_lsn = Lsn(*ref.pin_lsn);
    ref.endpoint = api::PinnedEndpointId(ref.pin_time_us, pin_lsn);
    ref.uid = base.uid;
    ref.pinned = true;
    ref.scope = "projects/" + project + "/branches/" + branch + "/endpoints/" + base.id;
    return ref;
  }
  Result<proxy::EndpointRef> ResolvePort(uint16_t port) override {
    ARBOR_ASSIGN_OR_RETURN(EndpointRecord e, engine_->EndpointAtPort(port));
    return Ref(e);
  }
  Result<std::string> Wake(const proxy::EndpointRef& e) override {
    if (e.pinned) {
      ARBOR_RETURN_IF_ERROR(
          engine_->EnsurePinnedEndpoint(e.project, e.branch, e.pin_time_us, e.pin_lsn).status());
    }
    return engine_->Wake(e.project, e.branch, e.endpoint);
  }
  Result<proxy::auth::ScramSecret> RoleSecret(const proxy::EndpointRef& e,
                                              const std::string& role) override {
    ARBOR_ASSIGN_OR_RETURN(RoleRecord r, engine_->RoleForLogin(e.project, e.branch, role));
    proxy::auth::ScramSecret s;
    s.salt = r.salt;
    s.iterations = r.iterations;
    s.client_key = r.client_key;
    s.stored_key = r.stored_key;
    s.server_key = r.server_key;
    return s;
  }
  void ConnectionOpened(const proxy::EndpointRef& e) override {
    engine_->ConnectionOpened(e.project, e.branch, e.endpoint);
  }
  void ConnectionClosed(const proxy::EndpointRef& e) override {
    engine_->ConnectionClosed(e.project, e.branch, e.endpoint);
  }
  void LoginRefused(const proxy::EndpointRef* e, const char* reason) override {
    if (e) {
      engine_->RecordAuthFailure(e->project, e->branch, e->endpoint, reason);
    } else {
      engine_->RecordAuthFailure("", "", "", reason);
    }
  }
  void SessionEnded(const proxy::EndpointRef& e, uint64_t from_client,
                    uint64_t to_client) override {
    engine_->RecordRelayed(e.project, e.branch, e.endpoint, from_client, to_client);
  }

  void Listen(uint16_t port) override {
    auto bound = proxy_->AddPortListener(port);
    if (!bound.ok() && bound.status().code() != Code::kAlreadyExists) {
      log::warn(
          "proxy: cannot listen on endpoint port {}: {} (the endpoint stays reachable "
          "through the shared port)",
          port, bound.status().ToString());
    }
  }
  void Unlisten(uint16_t port) override { (void)proxy_->RemovePortListener(port); }

 private:
  // A pinned endpoint takes the uid and scope of its branch's read-write endpoint: that
  // endpoint's tokens open the branch's past too. NotFound when the branch has none.
  Result<proxy::EndpointRef> Ref(const EndpointRecord& e) {
    proxy::EndpointRef ref;
    ref.project = e.project;
    ref.branch = e.branch;
    ref.endpoint = e.id;
    ref.uid = e.uid;
    if (e.pinned) {
      ARBOR_ASSIGN_OR_RETURN(EndpointRecord base, engine_->DefaultEndpoint(e.project, e.branch));
      ref.uid = base.uid;
      ref.scope = "projects/" + e.project + "/branches/" + e.branch + "/endpoints/" + base.id;
    }
    return ref;
  }
  Engine* engine_;
  proxy::Proxy* proxy_;
};

// The proxy's certificate: the user's, else a self-signed one made at the first start.
Status TlsFiles(const DaemonOptions& o, std::string* cert, std::string* key) {
  if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
    if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
      return Status::InvalidArgument("--tls-cert and --tls-key go together");
    }
    *cert = o.tls_cert_file;
    *key = o.tls_key_file;
    return Status::Ok();
  }
  std::string dir = o.data_dir + "/tls";
  *cert = dir + "/server.crt";
  *key = dir + "/server.key";
  if (fs::exists(*cert) && fs::exists(*key)) return Status::Ok();
  std::error_code ec;
  fs::create_directories(dir, ec);
  chmod(dir.c_str(), 0700);
  log::info("daemon: creating a self-signed TLS certificate in {}", dir);
  return proxy::GenerateSelfSignedCert(*cert, *key, "localhost");
}

}  // namespace

std::string ResolveDataDir(const std::string& flag) {
  return fs::absolute(flag.empty() ? ArborHome(RealEnv) : flag).string();
}

std::optional<pid_t> RunningDaemon(const std::string& data_dir) {
  std::string path = data_dir + "/arbor.lock";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<pid_t> running;
  if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    pid_t pid = 0;
    std::ifstream(path) >> pid;
    running = pid;
  } else {
    flock(fd, LOCK_UN);
  }
  close(fd);
  return running;
}

int RunDaemon(const DaemonOptions& o, const MounterFactory& make_mounter) {
  // Everything the daemon makes (the store, its WAL, logs, keys) is its own alone; the few
  // places the compute user must reach are opened up explicitly (RuntimeDir, Engine::Open).
  umask(077);
  std::error_code ec;
  fs::create_directories(o.data_dir, ec);
  if (ec) {
    log::error("cannot create the data directory {}: {}", o.data_dir, ec.message());
    return 1;
  }
  // Private: it holds the store, the keys and the logs. The compute user never needs it: as
  // root its mounts and sockets live in a separate runtime directory (RuntimeDir), and
  // otherwise computes run as this very user.
  chmod(o.data_dir.c_str(), 0700);
  int lock_fd = LockDataDir(o.data_dir);
  if (lock_fd < 0) {
    auto pid = RunningDaemon(o.data_dir);
    log::error("another Arbor daemon (pid {}) is running on {}", pid ? *pid : 0, o.data_dir);
    return 1;
  }
  // Signals are taken by sigtimedwait on this thread; every thread started later inherits
  // the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  unlink((o.data_dir + "/api").c_str());
  storage::Store::Options so;
  so.path = o.data_dir + "/store";
  so.block_cache_bytes = o.block_cache_bytes;
  auto store = storage::Store::Open(so);
  if (!store.ok()) {
    log::error("cannot open the store: {}", store.status().ToString());
    return 1;
  }
  auto user = compute::ComputeUser();
  if (!user.ok()) {
    log::error("{}", user.status().message());
    return 1;
  }
  std::string runtime_dir = RuntimeDir(o.data_dir, *user);
  ClearLeftovers(runtime_dir);
  if (geteuid() != 0 && access("/etc/mtab", F_OK) != 0) {
    log::warn(
        "daemon: /etc/mtab is missing, so fusermount3 cannot unmount: a mount whose compute "
        "stops stays behind, dead, until root removes it (ln -s /proc/self/mounts /etc/mtab)");
  }
  // Where the mounts and private sockets are, for an operator (and the tests) to find.
  if (Status w = WritePrivate(o.data_dir + "/runtime-dir", runtime_dir + "\n"); !w.ok()) {
    log::warn("daemon: {}", w.ToString());
  }
  int exit_code = 0;
  {
    compute::Supervisor supervisor(*user);
    // Each compute in a control group of its own, under one directory per data directory
    // (two daemons on one host keep apart). Never fails: without one, computes run unlimited.
    char group[32];
    std::snprintf(group, sizeof group, "arbor-%016zx", std::hash<std::string>{}(o.data_dir));
    std::unique_ptr<compute::Cgroups> cgroups = compute::Cgroups::Detect(group);
    // ARBOR_COMPUTE_LIMITS=off: unlimited computes (the baseline of bench/compute_sizes_bench.sh).
    const char* off = getenv("ARBOR_COMPUTE_LIMITS");
    const bool limited = !(off != nullptr && std::string(off) == "off");
    if (limited) supervisor.SetCgroups(cgroups.get());
    log::info("daemon: compute limits: {}",
              limited ? cgroups->Describe() : "none: turned off by ARBOR_COMPUTE_LIMITS=off");
    std::unique_ptr<Mounter> mounter = make_mounter(store->get());
    EngineOptions eo;
    eo.data_dir = o.data_dir;
    eo.runtime_dir = runtime_dir;
    eo.port_lo = o.port_lo;
    eo.port_hi = o.port_hi;
    eo.shared_buffers = o.shared_buffers;
    // The write budget is a compute limit too: ARBOR_COMPUTE_LIMITS=off turns it off.
    eo.write_bytes_per_cu = limited ? o.write_mb_per_cu << 20 : 0;
    // Computes grow past their minimums only into CPUs no other compute holds.
    eo.host_cpus = limited ? static_cast<double>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN))) : 0;
    log::info("daemon: compute writes: {}",
              eo.write_bytes_per_cu == 0
                  ? std::string("unlimited")
                  : std::to_string(o.write_mb_per_cu) +
                        " MiB/s per CU of each compute's current size, while another compute "
                        "starts or commits");
    // ARBOR_BRANCH_CHECKPOINT=0: a branch forks its running parent's head without a
    // CHECKPOINT (the other side of bench/branch_load_bench.sh; EngineOptions::checkpoint_parent).
    if (const char* c = getenv("ARBOR_BRANCH_CHECKPOINT"); c && std::string(c) == "0") {
      eo.checkpoint_parent = false;
      log::info("daemon: a branch forks its parent's head without a CHECKPOINT");
    }
    // ARBOR_BRANCH_CHECKPOINT_MIN_MB=N: the parent checkpoints only when its WAL is N MiB
    // past its last checkpoint (0: always; EngineOptions::checkpoint_min_wal_bytes).
    if (const char* c = getenv("ARBOR_BRANCH_CHECKPOINT_MIN_MB"); c && *c) {
      char* end = nullptr;
      unsigned long long mb = std::strtoull(c, &end, 10);
      if (end != nullptr && *end == '\0' && mb < (1ull << 30)) {
        eo.checkpoint_min_wal_bytes = mb << 20;
        log::info("daemon: a branch's parent checkpoints when its WAL is {} MiB past its last", mb);
      } else {
        log::warn("daemon: ignoring ARBOR_BRANCH_CHECKPOINT_MIN_MB={}: not a number of MiB", c);
      }
    }
    // ARBOR_BRANCH_CHECKPOINT_WAIT_MS=N: a create or reset waits at most N ms for that
    // CHECKPOINT (-1: until it ends; EngineOptions::checkpoint_wait_ms).
    if (const char* c = getenv("ARBOR_BRANCH_CHECKPOINT_WAIT_MS"); c && *c) {
      char* end = nullptr;
      long long ms = std::strtoll(c, &end, 10);
      if (end != nullptr && *end == '\0' && ms >= -1 && ms <= 3'600'000) {
        eo.checkpoint_wait_ms = ms;
        log::info("daemon: a create or reset waits {} for its parent's CHECKPOINT",
                  ms < 0 ? std::string("until the end") : "at most " + std::to_string(ms) + " ms");
      } else {
        log::warn("daemon: ignoring ARBOR_BRANCH_CHECKPOINT_WAIT_MS={}: not -1 or a number of ms",
                  c);
      }
    }
    // ARBOR_BRANCH_RECOVERY=promote: every start that replays promotes, however short its
    // replay (EngineOptions::crash_recovery_in_one_segment).
    if (const char* c = getenv("ARBOR_BRANCH_RECOVERY"); c && *c) {
      if (std::string(c) == "promote") {
        eo.crash_recovery_in_one_segment = false;
        log::info("daemon: a start that replays WAL promotes, however short its replay");
      } else if (std::string(c) != "auto") {
        log::warn("daemon: ignoring ARBOR_BRANCH_RECOVERY={}: not auto or promote", c);
      }
    }
    // ARBOR_BRANCH_CHECKPOINT_PACE_CPUS=N: that CHECKPOINT runs with the parent's checkpointer
    // held to N CPUs while computes commit, the parent included (0: not held;
    // EngineOptions::checkpoint_pace_cpus).
    if (const char* c = getenv("ARBOR_BRANCH_CHECKPOINT_PACE_CPUS"); c && *c) {
      char* end = nullptr;
      double cpus = std::strtod(c, &end);
      // The checkpointer is one process: more than one CPU means nothing.
      if (end != nullptr && end != c && *end == '\0' && cpus >= 0 && cpus <= 1) {
        eo.checkpoint_pace_cpus = cpus;
      } else {
        log::warn(
            "daemon: ignoring ARBOR_BRANCH_CHECKPOINT_PACE_CPUS={}: not a number of CPUs "
            "from 0 to 1",
            c);
      }
    }
    // Only a compute in a cgroup v1 group can be paced (Cgroups::Pace).
    if (!limited || cgroups->version() != compute::Cgroups::Version::kV1) {
      eo.checkpoint_pace_cpus = 0;
    }
    if (eo.checkpoint_pace_cpus > 0) {
      log::info(
          "daemon: a fork's CHECKPOINT of its parent runs with the checkpointer held to {} "
          "CPUs while computes commit",
          eo.checkpoint_pace_cpus);
    }
    auto guard = InstallGuard(runtime_dir);
    if (guard.ok()) eo.guard_library = *guard;
    Engine engine(eo, store->get(), mounter.get(), &supervisor);
    Status st = guard.ok() ? engine.Open() : guard.status();
    if (st.ok() && !engine.GetProject("default").ok()) {
      log::info("daemon: creating the embedded default project");
      st = engine.CreateProject("default", 86'400).status();
    }
    // The proxy: the only way into a compute.
    proxy::Proxy front;
    EngineBackend backend(&engine, &front);
    auto signer = proxy::auth::TokenSigner::LoadOrCreate(o.data_dir + "/jwt.key");
    if (st.ok() && !signer.ok()) st = signer.status();
    if (st.ok()) {
      proxy::ProxyOptions po;
      po.listen_host = o.proxy_host;
      po.listen_port = o.proxy_port;
      po.socket_dir = o.proxy_socket_dir;
      po.require_tls = o.require_tls;
      // Half the cores: the other half serve postgres and its clients. On 2 cores one
      // network thread relayed more select-only TPS than two (docs/proxy.md, Performance).
      po.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency() / 2));
      // ARBOR_PROXY_KERNEL_RELAY=0 keeps every byte in user space (docs/proxy.md).
      if (const char* k = getenv("ARBOR_PROXY_KERNEL_RELAY"); k && std::string(k) == "0") {
        po.kernel_relay = false;
      }
      // The computes load arbor_guard, which takes a plaintext client's socket after its
      // login (docs/proxy.md, "Socket handoff"); ARBOR_PROXY_HANDOFF=0 relays every session.
      po.handoff = true;
      if (const char* h = getenv("ARBOR_PROXY_HANDOFF"); h && std::string(h) == "0") {
        po.handoff = false;
      }
      log::info("daemon: proxy socket handoff {}", po.handoff ? "on" : "off");
      st = TlsFiles(o, &po.tls_cert_file, &po.tls_key_file);
      if (st.ok()) st = front.Start(po, &backend, &*signer);
      if (st.ok()) {
        engine.SetPortListener(&backend);
        log::info("daemon: proxy on {}:{}", o.proxy_host, front.port());
      }
    }
    if (st.ok()) st = engine.StartEndpoint("default", "production", "primary").status();
    if (st.ok()) engine.RestartRunning();
    std::string token = ReadFile(o.data_dir + "/admin-token");
    if (token.size() != 64) {
      auto fresh = RandomToken();
      if (st.ok()) st = fresh.status();
      token = fresh.ok() ? *fresh : std::string();
      if (st.ok()) st = WritePrivate(o.data_dir + "/admin-token", token + "\n");
    }
    ServerInfo info;
    info.version = o.version;
    info.data_dir = o.data_dir;
    info.proxy_listen = st.ok() ? o.proxy_host + ":" + std::to_string(front.port()) : "";
    info.proxy_socket_dir = front.socket_dir();
    info.endpoint_ports = std::to_string(o.port_lo) + "-" + std::to_string(o.port_hi);
    info.console_dir = o.console_dir;
    ApiServer api(&engine, token, info, signer.ok() ? &*signer : nullptr);
    int port = o.api_port;
    if (st.ok()) {
      // Port 0 takes any free port (tests run many daemons side by side).
      auto bound = api.Bind(o.api_host, static_cast<uint16_t>(port));
      if (bound.ok()) port = *bound;
      st = bound.status();
      api.SetApiUrl(ApiUrl(o.api_host, port));
    }
    std::thread serving, serving_metrics;
    if (st.ok() && !o.metrics_host.empty()) {
      auto bound = api.BindMetrics(o.metrics_host, o.metrics_port);
      st = bound.status();
      if (st.ok()) {
        log::info("daemon: metrics at http://{}:{}/metrics", o.metrics_host, *bound);
        serving_metrics = std::thread([&api] { api.ServeMetrics(); });
      }
    }
    if (st.ok()) {
      serving = std::thread([&api] { api.Serve(); });
      st = WritePrivate(o.data_dir + "/api", ApiUrl(o.api_host, port) + "\n");
    }
    if (!st.ok()) {
      log::error("daemon: {}", st.ToString());
      exit_code = 1;
    } else {
      log::info("daemon: ready; API at {}", ApiUrl(o.api_host, port));
      // Each second: suspend idle computes; every fifth: delete expired branches (they become
      // deleted branches, recoverable like any other) and snapshots, purge the deleted
      // branches whose history window has passed, and take and prune the projects' scheduled
      // snapshots.
      for (int tick = 1;; ++tick) {
        struct timespec ts {
          1, 0
        };
        int sig = sigtimedwait(&sigs, nullptr, &ts);
        if (sig == SIGTERM || sig == SIGINT) break;
        engine.SuspendIdle(WallMicros());
        engine.Autoscale(WallMicros());
        if (tick % 5 == 0) {
          engine.ReapExpired(WallMicros());
          engine.RunSnapshotSchedules(WallMicros());
          engine.PurgeDeleted(WallMicros());
        }
      }
      log::info("daemon: shutting down");
    }
    unlink((o.data_dir + "/api").c_str());
    api.Stop();
    if (serving.joinable()) serving.join();
    if (serving_metrics.joinable()) serving_metrics.join();
    engine.SetPortListener(nullptr);
    front.Stop();
    engine.Shutdown();
    mounter.reset();
    if (Status gone = cgroups->RemoveParents(); !gone.ok())
      log::warn("daemon: {}", gone.ToString());
  }
  if (runtime_dir != o.data_dir) RemoveRuntimeDir(runtime_dir);
  store->reset();
  close(lock_fd);
  return exit_code;
}

int Up(const DaemonOptions& o, bool foreground, const MounterFactory& make_mounter) {
  std::error_code ec;
  fs::create_directories(o.data_dir, ec);
  if (auto pid = RunningDaemon(o.data_dir)) {
    std::printf("Arbor is already running (pid %d) on %s\n", *pid, o.data_dir.c_str());
    auto cs = FetchConnectionString(o.data_dir);
    if (cs.ok()) std::printf("%s\n", cs->c_str());
    return 0;
  }
  if (foreground) return RunDaemon(o, make_mounter);

  std::string log_path = o.data_dir + "/arbor.log";
  unlink((o.data_dir + "/api").c_str());
  if (!fs::exists(o.data_dir + "/store")) {
    std::printf("First start: creating the default project (initdb on a new branch)...\n");
  } else {
    std::printf("Starting Arbor...\n");
  }
  std::fflush(stdout);
  // Where this start's lines begin: an error logged by an earlier run is not its reason.
  std::error_code size_ec;
  auto log_start = fs::file_size(log_path, size_ec);
  if (size_ec) log_start = 0;
  pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "arbor: fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (pid == 0) {
    setsid();
    ResumeAllocatorThreads();
    int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    if (log_fd >= 0) dup2(log_fd, 1), dup2(log_fd, 2);
    _exit(RunDaemon(o, make_mounter));
  }
  // The reason to quote: the last error this start logged.
  auto reason = [&]() {
    std::string e = LastLoggedError(log_path, static_cast<std::streamoff>(log_start));
    return e.empty() ? std::string("it logged no error") : e;
  };
  // Wait until the daemon says it is ready, or dies, or the bound passes.
  auto deadline = MonoNanos() + int64_t{o.start_timeout_s} * 1'000'000'000;
  while (MonoNanos() < deadline) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      std::fprintf(stderr, "arbor: the daemon failed to start: %s\nThe end of %s:\n%s\n",
                   reason().c_str(), log_path.c_str(), compute::TailOf(log_path, 20).c_str());
      // It may have left computes and mounts behind (a crash half way).
      std::string runtime_dir = RuntimeDirOf(o.data_dir);
      size_t computes = KillComputes(runtime_dir);
      (void)ReportLeftovers(computes, ClearMounts(runtime_dir + "/mnt/"));
      return 1;
    }
    if (fs::exists(o.data_dir + "/api")) {
      auto cs = FetchConnectionString(o.data_dir);
      if (cs.ok()) {
        std::printf(
            "Arbor is running (pid %d). Data: %s\n"
            "Connect with (the password is a token valid for an hour):\n  psql '%s'\n"
            "A fresh one: arbor connection-string production (add --role-password for one "
            "that does not expire)\n",
            pid, o.data_dir.c_str(), cs->c_str());
        return 0;
      }
    }
    usleep(50'000);
  }
  std::fprintf(stderr,
               "arbor: the daemon did not become ready within %d s (--start-timeout): %s\n"
               "Stopping it; the end of %s:\n%s\n",
               o.start_timeout_s, reason().c_str(), log_path.c_str(),
               compute::TailOf(log_path, 20).c_str());
  // Until it is ready it does not take SIGTERM: little grace before SIGKILL.
  (void)StopDaemon(o.data_dir, pid, 5);
  waitpid(pid, nullptr, WNOHANG);
  return 1;
}

int Down(const std::string& data_dir) {
  auto pid = RunningDaemon(data_dir);
  if (!pid) {
    // A daemon killed with -9 leaves dead mounts and maybe computes: clear them too.
    std::printf("Arbor is not running on %s\n", data_dir.c_str());
    std::fflush(stdout);
    std::string runtime_dir = RuntimeDirOf(data_dir);
    size_t computes = KillComputes(runtime_dir);
    return ReportLeftovers(computes, ClearMounts(runtime_dir + "/mnt/"));
  }
  int rc = StopDaemon(data_dir, *pid, kStopGraceS);
  if (rc == 0) std::printf("Arbor stopped\n");
  return rc;
}

}  // namespace arbor::control
