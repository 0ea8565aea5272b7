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

#include "common/log.h"
#include "fs/arborfs.h"
#include "fs/fuse_ops.h"

namespace arbor::fs {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

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

// The file system type of the mount at `path` ("" if it is not a mount point), and its
// device minor number (the FUSE connection id). Reads /proc only: it never touches the mount,
// which may be ours and not serving yet.
std::string MountTypeAt(const std::string& path, unsigned* minor_out = nullptr) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, found;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - type source superopts
    std::istringstream ls(line);
    std::string id, parent, dev, root, mnt;
    ls >> id >> parent >> dev >> root >> mnt;
    if (Unescape(mnt) != path) continue;
    std::string tok;
    while (ls >> tok && tok != "-") {
    }
    std::string type;
    ls >> type;
    found = type;  // the last one listed is the top of the stack
    if (minor_out) {
      auto colon = dev.find(':');
      *minor_out = colon == std::string::npos
                       ? 0
                       : static_cast<unsigned>(std::strtoul(dev.c_str() + colon + 1, nullptr, 10));
    }
  }
  return found;
}

Status DetachMount(const std::string& path) {
  if (geteuid() == 0) {
    if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
      return Status::IOError(Errno("umount2 " + path));
    }
    return Status::Ok();
  }
  pid_t pid = fork();
  if (pid < 0) return Status::IOError(Errno("fork"));
  if (pid == 0) {
    execlp("fusermount3", "fusermount3", "-u", "-z", "--", path.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::IOError("fusermount3 -u -z " + path + " failed");
  }
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
      return Status::Unavailable("mounting FUSE at " + mountpoint +
                                 " failed (is /dev/fuse available, and fusermount3 installed?)");
    }
    mounted_ = true;
    MountTypeAt(mountpoint_, &conn_id_);
    std::promise<void> ended;
    loop_done_ = ended.get_future();
    int max_threads = options.max_threads;
    loop_ = std::thread([this, max_threads, ended = std::move(ended)]() mutable {
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

  Status Unmount() {
    if (!se_ || unmounted_) return Status::Ok();
    unmounted_ = true;
    stopping_ = true;
    fuse_session_exit(se_);
    if (mounted_) fuse_session_unmount(se_);
    // With files still open the detached mount keeps serving; abort the connection so that
    // the loop ends (their next I/O fails, as after a crash).
    if (loop_.joinable() &&
        loop_done_.wait_for(std::chrono::seconds(5)) != std::future_status::ready &&
        conn_id_ != 0) {
      log::warn("arborfs: {} still busy after unmount; aborting its connection", mountpoint_);
      std::string ctl = "/sys/fs/fuse/connections";
      if (access((ctl + "/" + std::to_string(conn_id_)).c_str(), F_OK) != 0 && geteuid() == 0) {
        mount("fusectl", ctl.c_str(), "fusectl", 0, nullptr);
      }
      std::ofstream abort(ctl + "/" + std::to_string(conn_id_) + "/abort");
      abort << "1";
    }
    if (loop_.joinable()) loop_.join();
    fs_.reset();  // frees unlinked inodes the kernel no longer references
    return Status::Ok();
  }

 private:
  std::unique_ptr<FileSystem> fs_;
  SessionContext ctx_;
  fuse_session* se_ = nullptr;
  std::string mountpoint_;
  bool mounted_ = false;
  bool unmounted_ = false;
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
    return s;
  }
  return std::unique_ptr<Mount>(new Mount(std::move(impl), mountpoint));
}

Mount::Mount(std::unique_ptr<Impl> impl, std::string mountpoint)
    : impl_(std::move(impl)), mountpoint_(std::move(mountpoint)) {}

Mount::~Mount() {
  Status s = impl_->Unmount();
  if (!s.ok()) log::error("arborfs: unmounting {}: {}", mountpoint_, s.ToString());
}

Status Mount::Unmount() { return impl_->Unmount(); }

}  // namespace arbor::fs
