#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include "common/log.h"
#include "fs/arborfs.h"
#include "fs/fuse_ops.h"

namespace arbor::fs {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// How long Unmount waits for the serving threads at each step before it tries the next one.
// Together with kHelperWait they bound an unmount at about 15 s whatever the environment.
constexpr auto kDetachWait = std::chrono::seconds(5);  // the kernel ends an unused mount
constexpr auto kWakeWait = std::chrono::seconds(2);
constexpr auto kAbortWait = std::chrono::seconds(2);
// fusermount3 touches the mount point; if that hangs, it is killed after this long.
constexpr auto kHelperWait = std::chrono::seconds(5);

// /proc/self/mountinfo escapes spaces, tabs, newlines and backslashes as octal.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (int k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

struct MountEntry {
  std::string point;  // unescaped
  std::string type;   // e.g. "fuse.arbor"
  std::string dev;    // "major:minor"
};

// Every mount this process sees, in the order of /proc/self/mountinfo (a stack's top last).
// Reads /proc only: it never touches a mount, which may be ours and not serving.
std::vector<MountEntry> Mounts() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - type source superopts
    std::istringstream ls(line);
    std::string id, parent, dev, root, mnt;
    ls >> id >> parent >> dev >> root >> mnt;
    std::string tok;
    while (ls >> tok && tok != "-") {
    }
    std::string type;
    ls >> type;
    out.push_back({Unescape(mnt), type, dev});
  }
  return out;
}

// The file system type of the mount at `path` ("" if it is not a mount point), and its
// device minor number (the FUSE connection id).
std::string MountTypeAt(const std::string& path, unsigned* minor_out = nullptr) {
  std::string found;
  for (const auto& m : Mounts()) {
    if (m.point != path) continue;
    found = m.type;  // the last one listed is the top of the stack
    if (minor_out) {
      auto colon = m.dev.find(':');
      *minor_out =
          colon == std::string::npos
              ? 0
              : static_cast<unsigned>(std::strtoul(m.dev.c_str() + colon + 1, nullptr, 10));
    }
  }
  return found;
}

// Where arborfs's FUSE connection `conn` is attached, wherever it was moved to (a rename of
// a parent directory moves the mounts below it).
std::vector<std::string> MountsOfConnection(unsigned conn) {
  std::vector<std::string> out;
  std::string dev = "0:" + std::to_string(conn);
  for (const auto& m : Mounts()) {
    if (m.dev == dev && m.type == "fuse.arbor") out.push_back(m.point);
  }
  return out;
}

// Runs `fusermount3 -u -z -- path` and waits at most kHelperWait. Its stderr becomes the
// message of a failure (without /etc/mtab, for one, it refuses every unmount).
Status Fusermount3Detach(const std::string& path) {
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return Status::IOError(Errno("pipe"));
  pid_t pid = fork();
  if (pid < 0) {
    close(err_pipe[0]);
    close(err_pipe[1]);
    return Status::IOError(Errno("fork"));
  }
  if (pid == 0) {
    dup2(err_pipe[1], 2);
    execlp("fusermount3", "fusermount3", "-u", "-z", "--", path.c_str(), nullptr);
    _exit(127);
  }
  close(err_pipe[1]);
  int status = 0;
  bool exited = false;
  auto deadline = std::chrono::steady_clock::now() + kHelperWait;
  while (!exited) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) {
      exited = r == pid;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(err_pipe[0]);
    return Status::IOError("fusermount3 -u -z " + path + " did not finish within " +
                           std::to_string(kHelperWait.count()) + " s; killed it");
  }
  std::string err;
  char buf[512];
  ssize_t n;
  while ((n = read(err_pipe[0], buf, sizeof buf)) > 0) err.append(buf, static_cast<size_t>(n));
  close(err_pipe[0]);
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) err = "fusermount3 not found";
    return Status::IOError("fusermount3 -u -z " + path + " failed" +
                           (err.empty() ? std::string() : ": " + err));
  }
  return Status::Ok();
}

// Detaches the mount at `path` at once, even while files in it are open (a lazy unmount):
// umount2(MNT_DETACH) as root, which needs no /etc/mtab; fusermount3 otherwise.
Status DetachMount(const std::string& path) {
  if (geteuid() == 0) {
    if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
      return Status::IOError(Errno("umount2 " + path));
    }
    return Status::Ok();
  }
  return Fusermount3Detach(path);
}

// Aborts FUSE connection `conn` through the fusectl file system, mounting it at its usual
// place first when it is missing and we are root. Every request of the connection then fails
// and its serving threads see the end of the device.
Status AbortConnection(unsigned conn) {
  const std::string ctl = "/sys/fs/fuse/connections";
  std::string abort_file = ctl + "/" + std::to_string(conn) + "/abort";
  if (access(abort_file.c_str(), F_OK) != 0 && geteuid() == 0 && MountTypeAt(ctl) != "fusectl") {
    if (mount("fusectl", ctl.c_str(), "fusectl", 0, nullptr) != 0) {
      return Status::IOError(Errno("mounting fusectl at " + ctl));
    }
    log::info("arborfs: mounted fusectl at {} to abort a connection", ctl);
  }
  int fd = open(abort_file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(Errno("opening " + abort_file));
  bool ok = write(fd, "1", 1) == 1;
  int err = errno;
  close(fd);
  if (!ok) return Status::IOError("writing " + abort_file + ": " + std::strerror(err));
  return Status::Ok();
}

std::string Canonical(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(path, ec);
  return ec ? path : p.string();
}

}  // namespace

bool IsMountPoint(const std::string& path) { return !MountTypeAt(Canonical(path)).empty(); }

Status ClearStaleMount(const std::string& mountpoint_in) {
  std::string mountpoint = mountpoint_in;
  bool is_fuse = MountTypeAt(Canonical(mountpoint)).rfind("fuse", 0) == 0;
  struct stat st;
  int err = 0;
  if (is_fuse) {
    // statfs always reaches the server (stat may be answered from cached attributes): a
    // mount whose server died answers ENOTCONN.
    struct statfs sf;
    err = statfs(mountpoint.c_str(), &sf) == 0 ? 0 : errno;
    if (err == 0) {
      return Status::FailedPrecondition(mountpoint + " is already served by a live FUSE mount");
    }
  } else if (stat(mountpoint.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::FailedPrecondition(mountpoint + " is not a directory");
    return Status::Ok();
  } else {
    err = errno;
  }
  if (err == ENOENT) {
    std::error_code ec;
    std::filesystem::create_directories(mountpoint, ec);
    if (ec) return Status::IOError("creating " + mountpoint + ": " + ec.message());
    return Status::Ok();
  }
  if (err != ENOTCONN && err != ECONNABORTED) {
    return Status::IOError("checking " + mountpoint + ": " + std::strerror(err));
  }
  // The process that served this mount is gone: the kernel answers ENOTCONN.
  log::warn("arborfs: clearing the stale mount at {}", mountpoint);
  ARBOR_RETURN_IF_ERROR(DetachMount(mountpoint));
  if (stat(mountpoint.c_str(), &st) != 0) {
    return Status::IOError(Errno("stat " + mountpoint + " after clearing its stale mount"));
  }
  return Status::Ok();
}

class Mount::Impl {
 public:
  ~Impl() {
    if (se_) fuse_session_destroy(se_);
  }

  Status Start(storage::Store* store, TimelineId timeline, const std::string& mountpoint,
               const MountOptions& options) {
    fs_ = std::make_unique<FileSystem>(store, timeline);
    // Files unlinked while open when the previous server died still hold their blocks.
    if (auto n = fs_->ReclaimOrphans(); !n.ok()) {
      log::warn(
          "arborfs: could not free orphaned inodes; they keep their space until the next "
          "mount");
    } else if (*n > 0) {
      log::info("arborfs: freed {} orphaned inode(s) (unlinked while open, then a crash)", *n);
    }
    ctx_.fs = fs_.get();
    ctx_.options = options;
    // Resolved before mounting: once mounted, looking at the path would wait for ourselves.
    mountpoint_ = Canonical(mountpoint);
    // allow_other lets the compute user (postgres) in when Arbor runs as root. An ordinary
    // user's computes run as that user, so the mount needs no allow_other, which
    // fusermount3 would refuse without user_allow_other in /etc/fuse.conf.
    std::string opts = "default_permissions,fsname=arborfs,subtype=arbor";
    if (geteuid() == 0) opts += ",allow_other";
    std::vector<std::string> argv = {"arborfs", "-o", opts};
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(cargv.size()), cargv.data());
    se_ = fuse_session_new(&args, &Operations(), sizeof(fuse_lowlevel_ops), &ctx_);
    fuse_opt_free_args(&args);
    if (!se_) return Status::Unavailable("fuse_session_new failed");
    if (fuse_session_mount(se_, mountpoint.c_str()) != 0) {
      return Status::Unavailable(
          "mounting FUSE at " + mountpoint + " failed (" +
          (access("/dev/fuse", R_OK | W_OK) != 0
               ? Errno("/dev/fuse") + "; an ordinary user needs it readable and writable"
               : std::string("is fusermount3 installed?")) +
          ")");
    }
    mounted_ = true;
    MountTypeAt(mountpoint_, &conn_id_);
    std::promise<void> ended;
    loop_done_ = ended.get_future();
    int max_threads = options.max_threads;
    // The serving threads carry their timeline in their name ("fs:<timeline>"; the loop's
    // workers inherit it), so top -H and /proc tell which branch the daemon's CPU served.
    std::string thread_name = ("fs:" + timeline.ToString()).substr(0, 15);
    loop_ = std::thread([this, max_threads, thread_name, ended = std::move(ended)]() mutable {
      pthread_setname_np(pthread_self(), thread_name.c_str());
      fuse_loop_config* cfg = fuse_loop_cfg_create();
      fuse_loop_cfg_set_clone_fd(cfg, 0);
      fuse_loop_cfg_set_max_threads(cfg, static_cast<unsigned>(max_threads));
      fuse_loop_cfg_set_idle_threads(cfg, 4);
      int rc = fuse_session_loop_mt(se_, cfg);
      fuse_loop_cfg_destroy(cfg);
      if (rc != 0 && !stopping_) log::error("arborfs: FUSE loop ended with {}", rc);
      ended.set_value();
    });
    return Status::Ok();
  }

  // The steps, each tried only when the one before did not end the serving threads:
  //  1. detach the mount (lazy) and wait: the kernel ends the connection once nothing
  //     uses the mount any more;
  //  2. wake the loop with a request of our own (Wake: needs no privilege), so that it sees
  //     it was told to exit;
  //  3. abort the connection through fusectl (mounted first if needed, as root).
  // Then the session is closed, which also ends the connection, and a mount still attached
  // (the detach failed: fusermount3 refuses without /etc/mtab) is detached again, dead now.
  Status Unmount() {
    if (!se_ || unmounted_) return Status::Ok();
    unmounted_ = true;
    stopping_ = true;
    // Detached while the loop still serves: fusermount3 looks at the mount point first.
    Status detached = Status::Ok();
    if (mounted_) {
      detached = DetachMount(mountpoint_);
      if (!detached.ok()) log::warn("arborfs: {}", detached.ToString());
    }
    fuse_session_exit(se_);
    bool ended = !loop_.joinable();
    if (!ended && detached.ok()) ended = WaitLoop(kDetachWait);
    if (!ended) {
      log::warn("arborfs: {} is still served; waking its loop", mountpoint_);
      ended = Wake(detached.ok()) && WaitLoop(kWakeWait);
    }
    if (!ended && conn_id_ != 0) {
      log::warn("arborfs: {} still served; aborting FUSE connection {}", mountpoint_, conn_id_);
      Status aborted = AbortConnection(conn_id_);
      if (!aborted.ok()) log::warn("arborfs: {}", aborted.ToString());
      ended = WaitLoop(kAbortWait);
    }
    if (!ended) {
      // A request is stuck inside the file system; nothing from outside can end it.
      abandoned_ = true;
      loop_.detach();
      return Status::IOError("the FUSE threads of " + mountpoint_ +
                             " did not end (a request is stuck); left them running");
    }
    if (loop_.joinable()) loop_.join();
    // Closing the device ends the connection: whatever still has files open gets ENOTCONN.
    fuse_session_destroy(se_);
    se_ = nullptr;
    fs_.reset();  // frees unlinked inodes the kernel no longer references
    // A detached mount is gone from every path (and its device number may belong to a new
    // mount once its last user is gone); only one whose detach failed is still attached.
    if (detached.ok() || conn_id_ == 0) return Status::Ok();
    Status left = Status::Ok();
    for (const auto& point : MountsOfConnection(conn_id_)) {
      Status st = DetachMount(point);
      if (st.ok()) {
        log::info("arborfs: detached the dead mount at {}", point);
      } else if (left.ok()) {
        left = Status::IOError("the mount at " + point +
                               " stays (dead) until unmounted: " + st.message() +
                               (access("/etc/mtab", F_OK) != 0
                                    ? " (fusermount3 needs /etc/mtab: ln -s /proc/self/mounts "
                                      "/etc/mtab)"
                                    : ""));
      }
    }
    return left;
  }

  // True if Unmount left the serving threads running (a request stuck in the file system).
  bool abandoned() const { return abandoned_; }
  RateLimiter& write_limiter() { return ctx_.write_limiter; }
  uint64_t fsyncs() const { return ctx_.fsyncs.load(std::memory_order_relaxed); }
  void DiscardWrites() { ctx_.discard_writes.store(true); }

 private:
  // Makes the kernel send the loop a request, so that a worker wakes, answers it and sees
  // that the session was told to exit. No privilege needed. While the mount is attached, a
  // statfs on it (from a thread of its own: it returns once answered, or failed when the
  // connection ends); once detached, a retrieve notification about a regular file the kernel
  // holds (Linux answers it with a request, and accepts only regular files). False if
  // neither could be sent.
  bool Wake(bool detached) {
    if (!detached && conn_id_ != 0) {
      auto points = MountsOfConnection(conn_id_);
      for (const auto& p : points) {
        std::thread([p] {
          struct statfs sf;
          (void)statfs(p.c_str(), &sf);
        }).detach();
      }
      if (!points.empty()) return true;
    }
    auto ino = fs_->AnyKnownFile();
    if (!ino) return false;
    int rc = fuse_lowlevel_notify_retrieve(se_, ino->value(), 0, 0, nullptr);
    if (rc != 0) log::warn("arborfs: waking the loop of {}: {}", mountpoint_, std::strerror(-rc));
    return rc == 0;
  }

  // True if the loop ended within `d`.
  bool WaitLoop(std::chrono::steady_clock::duration d) {
    return loop_done_.wait_for(d) == std::future_status::ready;
  }

  std::unique_ptr<FileSystem> fs_;
  SessionContext ctx_;
  fuse_session* se_ = nullptr;
  std::string mountpoint_;
  bool mounted_ = false;
  bool unmounted_ = false;
  bool abandoned_ = false;
  std::atomic<bool> stopping_{false};
  unsigned conn_id_ = 0;
  std::thread loop_;
  std::future<void> loop_done_;
};

Result<std::unique_ptr<Mount>> Mount::Start(storage::Store* store, TimelineId timeline,
                                            const std::string& mountpoint,
                                            const MountOptions& options) {
  ARBOR_RETURN_IF_ERROR(ClearStaleMount(mountpoint));
  auto impl = std::make_unique<Impl>();
  Status s = impl->Start(store, timeline, mountpoint, options);
  if (!s.ok()) {
    (void)impl->Unmount();
    if (impl->abandoned()) (void)impl.release();
    return s;
  }
  return std::unique_ptr<Mount>(new Mount(std::move(impl), mountpoint));
}

Mount::Mount(std::unique_ptr<Impl> impl, std::string mountpoint)
    : impl_(std::move(impl)), mountpoint_(std::move(mountpoint)) {}

Mount::~Mount() {
  Status s = Unmount();
  if (!s.ok()) log::error("arborfs: unmounting {}: {}", mountpoint_, s.ToString());
  // Threads that never ended still use it: it is theirs until the process exits.
  if (impl_->abandoned()) (void)impl_.release();
}

Status Mount::Unmount() {
  impl_->write_limiter().Stop();  // no request of a mount going away waits for its budget
  return impl_->Unmount();
}

void Mount::SetWriteRate(uint64_t bytes_per_s) { impl_->write_limiter().SetRate(bytes_per_s); }

void Mount::DiscardWrites() {
  impl_->DiscardWrites();
  impl_->write_limiter().Stop();
}

uint64_t Mount::WriteThrottledNanos() const { return impl_->write_limiter().waited_ns(); }

uint64_t Mount::Fsyncs() const { return impl_->fsyncs(); }

}  // namespace arbor::fs
