#include "testutil/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/clock.h"

namespace arbor::testutil {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

void UnmountUnder(const std::string& dir) {
  std::ifstream mounts("/proc/mounts");
  std::string dev, point, rest;
  std::vector<std::string> found;
  while (mounts >> dev >> point && std::getline(mounts, rest)) {
    if (point.rfind(dir, 0) == 0) found.push_back(point);
  }
  for (const auto& p : found) {
    if (umount2(p.c_str(), MNT_DETACH) != 0) {
      std::string cmd = "fusermount3 -u -z '" + p + "' 2>/dev/null";
      (void)std::system(cmd.c_str());
    }
  }
}

// True if `uid`:`gid` can open /dev/fuse for reading and writing, as libfuse does before it
// hands a mount to fusermount3.
bool CanOpenFuse(uid_t uid, gid_t gid) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(2);
    _exit(open("/dev/fuse", O_RDWR | O_CLOEXEC) >= 0 ? 0 : 1);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Rfc3339(int64_t us) { return FormatRfc3339(us); }

CliRun RunShell(const std::string& cmd, const std::string& err_file) {
  CliRun r;
  FILE* p = popen((cmd + " 2>'" + err_file + "'").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  std::remove(err_file.c_str());
  return r;
}

CliRun RunArbor(const std::string& home, const std::string& args, const std::string& env) {
  return RunShell("ARBOR_HOME='" + home + "' " + env + " " + ARBOR_BINARY + " " + args,
                  home + "/cli.err");
}

std::unique_ptr<Daemon> Daemon::StartWith(const std::string& name,
                                          std::vector<std::string> extra_args) {
  auto d = std::unique_ptr<Daemon>(new Daemon());
  d->extra_args_ = std::move(extra_args);
  std::string tmpl = (fs::temp_directory_path() / ("arbor-" + name + "-XXXXXX")).string();
  d->home_ = mkdtemp(tmpl.data());
  d->port_lo_ = static_cast<uint16_t>(20000 + (getpid() % 300) * 40);
  d->Launch();
  return d;
}

std::unique_ptr<Daemon> Daemon::Start(const std::string& name, const std::string& os_user) {
  auto d = std::unique_ptr<Daemon>(new Daemon());
  std::string tmpl = (fs::temp_directory_path() / ("arbor-" + name + "-XXXXXX")).string();
  d->home_ = mkdtemp(tmpl.data());
  if (!os_user.empty()) {
    struct passwd* pw = getpwnam(os_user.c_str());
    EXPECT_NE(pw, nullptr) << "no OS user " << os_user;
    if (pw != nullptr) {
      d->uid_ = pw->pw_uid;
      d->gid_ = pw->pw_gid;
      EXPECT_EQ(chown(d->home_.c_str(), d->uid_, d->gid_), 0);
      // Debian makes /dev/fuse 0666; where it is not (containers often leave it 0600), the
      // daemon gets a private one instead of a change to the system's device.
      d->private_fuse_ = !CanOpenFuse(d->uid_, d->gid_);
      struct stat st;
      if (d->private_fuse_ && stat("/dev/fuse", &st) == 0) {
        d->fuse_rdev_ = st.st_rdev;
        EXPECT_EQ(mkdir((d->home_ + "/dev").c_str(), 0755), 0);
      }
    }
  }
  // Each test process gets its own 40-port range.
  // Below the kernel's ephemeral range (32768+), where outgoing connections take ports.
  d->port_lo_ = static_cast<uint16_t>(20000 + (getpid() % 300) * 40);
  d->Launch();
  return d;
}

void Daemon::Launch() {
  // A killed daemon leaves its address behind; wait for the new one's.
  unlink((home_ + "/api").c_str());
  std::string dev_dir = home_ + "/dev";
  std::string fuse_node = dev_dir + "/fuse";
  pid_ = fork();
  if (pid_ == 0) {
    setsid();
    std::string log = home_ + "/daemon.out";
    FILE* f = freopen(log.c_str(), "a", stdout);
    (void)f;
    dup2(1, 2);
    if (private_fuse_) {
      // Its own mount namespace, in which /dev/fuse is a node on a private tmpfs that every
      // user may open. Nothing outside changes; its mounts end with its processes.
      const char* step = "unshare";
      bool ok = unshare(CLONE_NEWNS) == 0;
      ok = ok && (step = "making mounts private",
                  mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
      ok = ok && (step = "mounting a tmpfs",
                  mount("arbor-test-dev", dev_dir.c_str(), "tmpfs", MS_NOSUID, "mode=0755") == 0);
      ok = ok && (step = "mknod", mknod(fuse_node.c_str(), S_IFCHR | 0666, fuse_rdev_) == 0);
      ok = ok && (step = "chmod", chmod(fuse_node.c_str(), 0666) == 0);
      ok = ok && (step = "bind-mounting it on /dev/fuse",
                  mount(fuse_node.c_str(), "/dev/fuse", nullptr, MS_BIND, nullptr) == 0);
      if (!ok) {
        std::fprintf(stderr,
                     "test: /dev/fuse is not open to the daemon's user, and a private one "
                     "cannot be made (%s: %s)\n",
                     step, std::strerror(errno));
        _exit(125);
      }
    }
    if (uid_ != 0) {
      if (setgroups(0, nullptr) != 0 || setgid(gid_) != 0 || setuid(uid_) != 0) _exit(126);
      setenv("HOME", home_.c_str(), 1);
    }
    // The proxy's shared port first, then the endpoints' ports.
    std::string proxy = "127.0.0.1:" + std::to_string(port_lo_);
    std::string ports =
        std::to_string(port_lo_ + 1) + "-" + std::to_string(static_cast<int>(port_lo_) + 39);
    std::vector<std::string> args = {"arbor",        "up",
                                     "--foreground", "--data-dir",
                                     home_,          "--api-listen",
                                     "127.0.0.1:0",  "--proxy-listen",
                                     proxy,          "--endpoint-ports",
                                     ports,          "--shared-buffers",
                                     "32MB"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(ARBOR_BINARY, argv.data());
    _exit(127);
  }
  ASSERT_GT(pid_, 0);
  for (int i = 0; i < 3000; ++i) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << "arbor up exited early:\n" << Slurp(home_ + "/daemon.out");
    }
    api_ = Slurp(home_ + "/api");
    if (!api_.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(api_.empty()) << "the daemon never became ready:\n" << Slurp(home_ + "/daemon.out");
  token_ = Slurp(home_ + "/admin-token");
}

void Daemon::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status;
    for (int i = 0; i < 1200; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (pid_ > 0) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
}

void Daemon::Kill9() {
  ASSERT_GT(pid_, 0);
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void Daemon::KillAndRestart() {
  Kill9();
  Launch();
}

Daemon::~Daemon() {
  if (testing::UnitTest::GetInstance()->failed_test_count() > 0 || testing::Test::HasFailure()) {
    std::fprintf(stderr, "---- the end of the daemon's log ----\n%s\n",
                 Slurp(home_ + "/daemon.out").substr(0, 20000).c_str());
  }
  std::string runtime = Slurp(home_ + "/runtime-dir");
  Stop();
  // Whatever a failed test left: postgres processes under our run dir, mounts under mnt/
  // (in the data directory, or the runtime directory apart from it when the daemon is root).
  for (const std::string& dir : {home_, runtime}) {
    if (dir.empty() || dir == "/") continue;
    std::string cmd = "pkill -9 -f -- '" + dir + "/mnt/' 2>/dev/null";
    (void)std::system(cmd.c_str());
    UnmountUnder(dir + "/");
  }
  if (!runtime.empty() && runtime != home_ && runtime.rfind("/run/arbor/", 0) == 0) {
    std::error_code ec;
    fs::remove_all(runtime, ec);  // nothing is mounted there any more
  }
  std::error_code ec;
  fs::remove_all(home_, ec);
}

HttpAnswer Daemon::Call(const std::string& method, const std::string& path, const json& body,
                        const std::string& token) {
  return CallRaw(method, path, body.is_null() ? "{}" : body.dump(), token);
}

HttpAnswer Daemon::CallRaw(const std::string& method, const std::string& path,
                           const std::string& text, const std::string& token) {
  httplib::Client cli(api_);
  cli.set_read_timeout(300);
  httplib::Headers h{{"Authorization", "Bearer " + (token.empty() ? token_ : token)}};
  std::string full = "/api/2.0/postgres/" + path;
  auto send = [&]() -> httplib::Result {
    if (method == "GET") return cli.Get(full, h);
    if (method == "PATCH") return cli.Patch(full, h, text, "application/json");
    if (method == "DELETE") return cli.Delete(full, h);
    return cli.Post(full, h, text, "application/json");
  };
  httplib::Result r = send();
  HttpAnswer a;
  if (!r) {
    a.body = json{{"error", "no answer from " + api_ + ": " + httplib::to_string(r.error())}};
    return a;
  }
  a.status = r->status;
  a.body = json::parse(r->body, nullptr, false);
  return a;
}

void Daemon::StartEndpoint(const std::string& branch, const std::string& project) {
  auto a = Call("POST", "projects/" + project + "/branches/" + branch + "/endpoints/primary:start");
  ASSERT_EQ(a.status, 200) << a.body.dump();
}

std::string Daemon::Connect(const std::string& branch, const std::string& project,
                            const std::string& role) {
  auto a = Call("POST", "projects/" + project + "/branches/" + branch + "/endpoints/primary:start");
  EXPECT_EQ(a.status, 200) << a.body.dump();
  if (a.status != 200) return "";
  // The endpoint's connection string names no password: a fresh token goes in as one.
  std::string url = a.body["status"].value("connection_string", "");
  auto cred = Call("POST", "credentials",
                   {{"endpoint", a.body.value("name", "")}, {"role", role}, {"ttl", "3600s"}});
  EXPECT_EQ(cred.status, 200) << cred.body.dump();
  std::string prefix = "postgresql://owner@";
  EXPECT_EQ(url.rfind(prefix, 0), 0u) << url;
  if (cred.status != 200 || url.rfind(prefix, 0) != 0) return "";
  return "postgresql://" + role + ":" + cred.body.value("token", "") + "@" +
         url.substr(prefix.size());
}

std::string Daemon::AdminConnect(const std::string& branch, const std::string& project) {
  auto a = Call("POST", "projects/" + project + "/branches/" + branch + "/endpoints/primary:start");
  EXPECT_EQ(a.status, 200) << a.body.dump();
  std::string runtime = Slurp(home_ + "/runtime-dir");
  while (!runtime.empty() && runtime.back() == '\n') runtime.pop_back();
  EXPECT_FALSE(runtime.empty()) << "the daemon wrote no runtime-dir";
  return "host=" + runtime + "/run/" + a.body.value("uid", "") +
         " port=" + std::to_string(a.body["status"].value("port", 0)) +
         " user=postgres dbname=postgres";
}

Pg::Pg(const std::string& conninfo) {
  conn_ = PQconnectdb(conninfo.c_str());
  EXPECT_EQ(PQstatus(conn_), CONNECTION_OK) << PQerrorMessage(conn_);
}

Pg::~Pg() { PQfinish(conn_); }

bool Pg::ok() const { return PQstatus(conn_) == CONNECTION_OK; }

std::vector<std::string> Pg::Query(const std::string& sql) {
  std::vector<std::string> out;
  PGresult* r = PQexec(conn_, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  EXPECT_TRUE(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
      << sql << ": " << PQresultErrorMessage(r);
  if (st == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) out.push_back(PQgetvalue(r, i, 0));
  }
  PQclear(r);
  return out;
}

std::string Pg::One(const std::string& sql) {
  auto rows = Query(sql);
  return rows.empty() ? "<no rows>" : rows[0];
}

std::string Pg::TryExec(const std::string& sql) {
  PGresult* r = PQexec(conn_, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  std::string err =
      (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) ? "" : PQresultErrorMessage(r);
  if (err.empty() && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) err = "failed";
  PQclear(r);
  return err;
}

std::string AmCheck(const std::string& conninfo) {
  std::string cmd =
      "/usr/lib/postgresql/15/bin/pg_amcheck --all --install-missing "
      "--maintenance-db='" +
      conninfo + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  int rc = pclose(p);
  return rc == 0 ? "" : (out.empty() ? "pg_amcheck failed" : out);
}

}  // namespace arbor::testutil
