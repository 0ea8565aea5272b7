#include "testutil/fs_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "fs/arborfs.h"

namespace arbor::testutil {
namespace {

using Clock = std::chrono::steady_clock;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Mount points at or under `dir`, deepest first.
std::vector<std::string> MountsUnder(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::vector<std::string> out;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, dev, root, mnt;
    ls >> id >> parent >> dev >> root >> mnt;
    if (mnt == dir || mnt.rfind(dir + "/", 0) == 0) out.push_back(mnt);
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
  return out;
}

// Starts `args` (args[0] a path) with stdout and stderr in `log` (truncated); -1 on failure.
pid_t SpawnLogged(std::vector<std::string> args, const std::string& log) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    ADD_FAILURE() << "open " << log;
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  return pid;
}

bool WaitPid(pid_t pid, std::chrono::milliseconds timeout, int* status) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (Clock::now() > deadline) return false;
    usleep(10'000);
  }
}

}  // namespace

TempDir::TempDir(const std::string& prefix) {
  const char* tmp = getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return;
  }
  path_ = tmpl;
  chmod(path_.c_str(), 0755);  // the compute user must reach the mount inside
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  for (const auto& m : MountsUnder(path_)) {
    if (!DetachMount(m)) ADD_FAILURE() << "could not detach " << m;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

std::string ArborBinary() { return ARBOR_BINARY; }

bool DetachMount(const std::string& path) {
  if (geteuid() == 0) return umount2(path.c_str(), MNT_DETACH) == 0 || errno == EINVAL;
  pid_t pid = fork();
  if (pid == 0) {
    execlp("fusermount3", "fusermount3", "-u", "-z", "--", path.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  return pid > 0 && WaitPid(pid, std::chrono::seconds(30), &status) && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}

std::unique_ptr<QuotaFs> QuotaFs::Start(const std::string& backing, const std::string& mnt,
                                        uint64_t quota_bytes) {
  auto q = std::unique_ptr<QuotaFs>(new QuotaFs());
  q->mnt_ = mnt;
  q->log_ = mnt + ".log";
  std::error_code ec;
  std::filesystem::create_directories(backing, ec);
  std::filesystem::create_directories(mnt, ec);
  std::vector<std::string> args = {FUSE_PASSTHROUGH_BINARY, "--quota", std::to_string(quota_bytes),
                                   backing, mnt};
  pid_t pid = SpawnLogged(args, q->log_);
  if (pid < 0) return nullptr;
  q->pid_ = pid;
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    if (ReadFile(q->log_).find("mounted") != std::string::npos && fs::IsMountPoint(mnt)) return q;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      q->pid_ = -1;
      ADD_FAILURE() << "fuse_passthrough --quota exited (is /dev/fuse open to this user, and "
                       "fusermount3 installed setuid?): "
                    << ReadFile(q->log_);
      return nullptr;
    }
    usleep(20'000);
  }
  ADD_FAILURE() << "fuse_passthrough --quota did not mount in 30 s: " << ReadFile(q->log_);
  return nullptr;  // the destructor cleans up
}

QuotaFs::~QuotaFs() {
  if (pid_ >= 0) {
    kill(pid_, SIGTERM);
    int status;
    if (!WaitPid(pid_, std::chrono::seconds(30), &status)) {
      kill(pid_, SIGKILL);
      WaitPid(pid_, std::chrono::seconds(10), &status);
    }
  }
  if (fs::IsMountPoint(mnt_) && !DetachMount(mnt_)) ADD_FAILURE() << "could not detach " << mnt_;
}

std::unique_ptr<MountProcess> MountProcess::Start(const std::string& store, const std::string& mnt,
                                                  uint64_t timeline, uint32_t uid, uint32_t gid,
                                                  const std::vector<std::string>& extra) {
  auto p = std::unique_ptr<MountProcess>(new MountProcess());
  p->mnt_ = mnt;
  p->log_ = mnt + ".log";
  std::vector<std::string> args = {
      ArborBinary(),      "debug", "mount", "--store",           store,
      "--mountpoint",     mnt,     "--uid", std::to_string(uid), "--gid",
      std::to_string(gid)};
  if (timeline == 0) {
    args.push_back("--create-root");
  } else {
    args.push_back("--timeline");
    args.push_back(std::to_string(timeline));
  }
  for (const auto& e : extra) args.push_back(e);
  pid_t pid = SpawnLogged(args, p->log_);
  if (pid < 0) return nullptr;
  p->pid_ = pid;
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    std::string out = ReadFile(p->log_);
    auto pos = out.find("mounted ");
    if (pos != std::string::npos) {
      auto t = out.find("timeline ");
      if (t != std::string::npos) p->timeline_ = std::strtoull(out.c_str() + t + 9, nullptr, 10);
      return p;
    }
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      p->pid_ = -1;
      ADD_FAILURE() << "arbor debug mount exited: " << out;
      return nullptr;
    }
    usleep(20'000);
  }
  ADD_FAILURE() << "arbor debug mount did not mount in 30 s: " << ReadFile(p->log_);
  return p;  // the destructor cleans up
}

bool MountProcess::Stop() {
  if (pid_ < 0) return !fs::IsMountPoint(mnt_);
  kill(pid_, SIGTERM);
  int status = 0;
  bool exited = WaitPid(pid_, std::chrono::seconds(30), &status);
  if (!exited) {
    kill(pid_, SIGKILL);
    WaitPid(pid_, std::chrono::seconds(10), &status);
  }
  pid_ = -1;
  return exited && WIFEXITED(status) && WEXITSTATUS(status) == 0 && !fs::IsMountPoint(mnt_);
}

void MountProcess::Kill9() {
  if (pid_ < 0) return;
  kill(pid_, SIGKILL);
  int status;
  WaitPid(pid_, std::chrono::seconds(10), &status);
  pid_ = -1;
}

MountProcess::~MountProcess() {
  if (pid_ >= 0) Stop();
  if (::testing::Test::HasFailure()) {
    std::string log = ReadFile(log_);
    if (log.size() > 4000) log = log.substr(log.size() - 4000);
    std::fprintf(stderr, "---- arbor debug mount log (%s) ----\n%s\n", log_.c_str(), log.c_str());
  }
  if (fs::IsMountPoint(mnt_)) DetachMount(mnt_);
}

Postgres::Postgres(std::string pgdata, std::string dir)
    : pgdata_(std::move(pgdata)), dir_(std::move(dir)) {
  auto user = compute::ComputeUser();
  if (!user.ok()) {
    ADD_FAILURE() << user.status().ToString();
    return;
  }
  user_ = *user;
  sup_ = std::make_unique<compute::Supervisor>(user_);
  sock_ = dir_ + "/sock";
  log_ = dir_ + "/postgres.log";
  port_ = FreePort();
}

Postgres::~Postgres() {
  if (sup_) sup_->StopAll(std::chrono::seconds(20));
}

void Postgres::InitDb() {
  Status s = compute::InitDb(user_, pgdata_, "secret", dir_ + "/initdb.log");
  ASSERT_TRUE(s.ok()) << s.ToString();
}

void Postgres::Start() {
  compute::ComputeSpec spec;
  spec.id = "pg";
  spec.pgdata = pgdata_;
  spec.port = port_;
  spec.socket_dir = sock_;
  spec.log_file = log_;
  spec.shared_buffers = "64MB";
  spec.max_connections = 30;
  spec.settings = {{"fsync", "on"}, {"synchronous_commit", "on"}, {"full_page_writes", "on"}};
  Status s = sup_->Start(spec, std::chrono::seconds(120));
  ASSERT_TRUE(s.ok()) << s.ToString();
}

void Postgres::Stop() {
  Status s = sup_->Stop("pg", std::chrono::seconds(60));
  ASSERT_TRUE(s.ok()) << s.ToString();
}

// Every descendant of `root` (backends call setsid, so a process group does not hold them).
static std::vector<pid_t> Descendants(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> children;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::string stat = ReadFile(e.path().string() + "/stat");
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream ls(stat.substr(close_paren + 2));
    char state;
    pid_t ppid = 0;
    ls >> state >> ppid;
    children[ppid].push_back(static_cast<pid_t>(std::atoi(name.c_str())));
  }
  std::vector<pid_t> out, todo = {root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    for (pid_t c : children[p]) {
      out.push_back(c);
      todo.push_back(c);
    }
  }
  return out;
}

void Postgres::Kill9() {
  auto pid = sup_->Pid("pg");
  if (!pid) return;
  kill(*pid, SIGSTOP);  // no new children while we collect them
  for (pid_t c : Descendants(*pid)) kill(c, SIGKILL);
  kill(-*pid, SIGKILL);
  kill(*pid, SIGKILL);
  for (int i = 0; i < 500 && sup_->State("pg") == compute::ComputeState::kRunning; ++i) {
    usleep(10'000);
  }
}

int Postgres::Run(const std::string& tool, const std::vector<std::string>& args, std::string* out) {
  std::string out_file = dir_ + "/out-" + std::to_string(++seq_) + ".txt";
  std::vector<std::string> argv = {std::string(compute::kPgBin) + "/" + tool,
                                   "-h",
                                   sock_,
                                   "-p",
                                   std::to_string(port_),
                                   "-U",
                                   "postgres"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto rc = compute::RunAs(user_, argv, out_file);
  if (out) *out = ReadFile(out_file);
  unlink(out_file.c_str());
  return rc.ok() ? *rc : -1;
}

std::string Postgres::Psql(const std::string& sql, bool may_fail) {
  std::string out;
  int rc = Run("psql", {"-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql}, &out);
  if (!may_fail) {
    EXPECT_EQ(rc, 0) << "psql -c " << sql << ":\n" << out;
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string Postgres::AmCheck() {
  std::string out;
  int rc = Run("pg_amcheck", {"--all", "--install-missing", "--heapallindexed"}, &out);
  if (rc == 0) return "";
  return "pg_amcheck exit " + std::to_string(rc) + ":\n" + out;
}

std::string Postgres::ConnInfo() const {
  return "host=" + sock_ + " port=" + std::to_string(port_) + " user=postgres dbname=postgres";
}

AckWriter::AckWriter(std::string conninfo, int64_t first_id)
    : conninfo_(std::move(conninfo)), next_(first_id), last_acked_(first_id - 1) {}

AckWriter::~AckWriter() {
  stop_ = true;
  Join();
}

void AckWriter::Start() {
  thread_ = std::thread([this] {
    PGconn* c = PQconnectdb(conninfo_.c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      PQfinish(c);
      return;
    }
    while (!stop_) {
      std::string sql = "INSERT INTO acks VALUES (" + std::to_string(next_) + ", repeat('x', 200))";
      PGresult* r = PQexec(c, sql.c_str());
      bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
      if (!ok) break;  // the server died (or refused): nothing more is acknowledged
      last_acked_ = next_++;
    }
    PQfinish(c);
  });
}

void AckWriter::Join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace arbor::testutil
