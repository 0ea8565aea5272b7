#include "proxy/kernel_relay.h"

#include <linux/bpf.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "common/log.h"

namespace arbor::proxy {
namespace {

// Raw bpf(2): no libbpf, the few commands needed here are stable kernel ABI.
long Bpf(int cmd, union bpf_attr* attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// A one-entry SOCKMAP (key: u32 index, value: u32 socket fd). Returns the fd or -1 with errno.
int CreateSockmap() {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.map_type = BPF_MAP_TYPE_SOCKMAP;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = 1;
  return static_cast<int>(Bpf(BPF_MAP_CREATE, &attr));
}

// Loads `r2 = map target; r3 = 0; r4 = 0; return bpf_sk_redirect_map(skb, r2, r3, r4)`: every
// skb goes to the egress (flags 0) of the socket at key 0 of `target_map`. Returns the program
// fd, or -1 with `error` set (including the verifier's log).
int LoadRedirectProgram(int target_map, std::string* error) {
  struct bpf_insn insns[6];
  std::memset(insns, 0, sizeof(insns));
  // ld_imm64 r2, map fd: two instructions, the second holding the upper 32 bits (zero).
  insns[0].code = BPF_LD | BPF_DW | BPF_IMM;
  insns[0].dst_reg = BPF_REG_2;
  insns[0].src_reg = BPF_PSEUDO_MAP_FD;
  insns[0].imm = target_map;
  insns[2].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r3 = 0: the key
  insns[2].dst_reg = BPF_REG_3;
  insns[3].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r4 = 0: the flags, egress
  insns[3].dst_reg = BPF_REG_4;
  insns[4].code = BPF_JMP | BPF_CALL;
  insns[4].imm = BPF_FUNC_sk_redirect_map;
  insns[5].code = BPF_JMP | BPF_EXIT;

  static const char kLicense[] = "GPL";  // bpf_sk_redirect_map is GPL-only
  char log_buf[2048];
  log_buf[0] = '\0';
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.prog_type = BPF_PROG_TYPE_SK_SKB;
  attr.insns = reinterpret_cast<uintptr_t>(insns);
  attr.insn_cnt = sizeof(insns) / sizeof(insns[0]);
  attr.license = reinterpret_cast<uintptr_t>(kLicense);
  attr.log_buf = reinterpret_cast<uintptr_t>(log_buf);
  attr.log_size = sizeof(log_buf);
  attr.log_level = 1;
  int fd = static_cast<int>(Bpf(BPF_PROG_LOAD, &attr));
  if (fd < 0) {
    *error = Errno("BPF_PROG_LOAD");
    // A verifier log only when there is one; ENOSPC means the log itself overflowed, so retry
    // without one to get the real error.
    if (errno == ENOSPC) {
      attr.log_buf = 0;
      attr.log_size = 0;
      attr.log_level = 0;
      fd = static_cast<int>(Bpf(BPF_PROG_LOAD, &attr));
      if (fd >= 0) return fd;
      *error = Errno("BPF_PROG_LOAD");
    }
    if (log_buf[0] != '\0') *error += std::string(" (verifier: ") + log_buf + ")";
  }
  return fd;
}

int Attach(int map, int prog) {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.target_fd = static_cast<uint32_t>(map);
  attr.attach_bpf_fd = static_cast<uint32_t>(prog);
  attr.attach_type = BPF_SK_SKB_VERDICT;
  return static_cast<int>(Bpf(BPF_PROG_ATTACH, &attr));
}

int Insert(int map, int socket_fd) {
  uint32_t key = 0;
  uint32_t value = static_cast<uint32_t>(socket_fd);
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.map_fd = static_cast<uint32_t>(map);
  attr.key = reinterpret_cast<uintptr_t>(&key);
  attr.value = reinterpret_cast<uintptr_t>(&value);
  attr.flags = BPF_ANY;
  return static_cast<int>(Bpf(BPF_MAP_UPDATE_ELEM, &attr));
}

// Builds the two maps with the program attached to the first. Ok, or why not.
Status Build(int* verdict_map, int* target_map) {
  *target_map = CreateSockmap();
  if (*target_map < 0) return Status::Unavailable(Errno("BPF_MAP_CREATE"));
  *verdict_map = CreateSockmap();
  if (*verdict_map < 0) return Status::Unavailable(Errno("BPF_MAP_CREATE"));
  std::string error;
  int prog = LoadRedirectProgram(*target_map, &error);
  if (prog < 0) return Status::Unavailable(error);
  int rc = Attach(*verdict_map, prog);
  std::string attach_error = rc < 0 ? Errno("BPF_PROG_ATTACH") : "";
  close(prog);  // the map holds the program from now on
  if (rc < 0) return Status::Unavailable(attach_error);
  return Status::Ok();
}

// The process-wide probe: a relay can be built, and an AF_UNIX stream socket can enter a
// sockmap (kernels before 5.15 only take TCP and UDP).
Status Probe() {
  int verdict_map = -1, target_map = -1;
  Status s = Build(&verdict_map, &target_map);
  if (s.ok()) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      s = Status::Unavailable(Errno("socketpair"));
    } else {
      if (Insert(verdict_map, pair[0]) != 0) {
        s = Status::Unavailable(Errno("a unix socket into a sockmap (BPF_MAP_UPDATE_ELEM)"));
      }
      close(pair[0]);
      close(pair[1]);
    }
  }
  if (verdict_map >= 0) close(verdict_map);
  if (target_map >= 0) close(target_map);
  return s;
}

}  // namespace

bool KernelRelay::Available() {
  static std::once_flag once;
  static bool available = false;
  std::call_once(once, [] {
    Status s = Probe();
    available = s.ok();
    if (available) {
      log::info("proxy: kernel relay on: plaintext sessions send results through a BPF sockmap");
    } else {
      log::info("proxy: kernel relay off, relaying in user space: {}", s.message());
    }
  });
  return available;
}

KernelRelay::~KernelRelay() { Reset(); }

KernelRelay::KernelRelay(KernelRelay&& other) noexcept
    : verdict_map_(std::exchange(other.verdict_map_, -1)),
      target_map_(std::exchange(other.target_map_, -1)) {}

KernelRelay& KernelRelay::operator=(KernelRelay&& other) noexcept {
  if (this != &other) {
    Reset();
    verdict_map_ = std::exchange(other.verdict_map_, -1);
    target_map_ = std::exchange(other.target_map_, -1);
  }
  return *this;
}

void KernelRelay::Reset() {
  // Closing a sockmap's last fd takes its sockets out of it; they keep working as plain
  // sockets.
  if (verdict_map_ >= 0) close(verdict_map_);
  if (target_map_ >= 0) close(target_map_);
  verdict_map_ = target_map_ = -1;
}

Status KernelRelay::Attach(int client_fd, int compute_fd) {
  if (attached()) return Status::FailedPrecondition("the kernel relay is already attached");
  int verdict_map = -1, target_map = -1;
  Status s = Build(&verdict_map, &target_map);
  // The target first: once the compute socket is in the verdict map, its bytes go there.
  if (s.ok() && Insert(target_map, client_fd) != 0) {
    s = Status::Unavailable(Errno("the client socket into a sockmap"));
  }
  if (s.ok() && Insert(verdict_map, compute_fd) != 0) {
    s = Status::Unavailable(Errno("the compute socket into a sockmap"));
  }
  if (!s.ok()) {
    if (verdict_map >= 0) close(verdict_map);
    if (target_map >= 0) close(target_map);
    return s;
  }
  verdict_map_ = verdict_map;
  target_map_ = target_map;
  return Status::Ok();
}

}  // namespace arbor::proxy
