#pragma once

// Internal: relays a plaintext session's compute -> client bytes inside the kernel, with a BPF
// sockmap, so that the proxy's threads are not woken for each result message.
//
// Per session: map A (a SOCKMAP) holds the compute's unix socket and has a BPF_SK_SKB_VERDICT
// program attached; map B (a SOCKMAP without programs) holds the client's TCP socket, only so
// that it can be a redirect target. Every skb arriving on the compute socket is redirected by
// the program to the egress of the client socket. The program is loaded per session, with map
// B's fd built in: for data arriving on an AF_UNIX socket the skb's socket is the sender's
// (postgres's end), so one shared program could not tell sessions apart.
//
// Only this direction: client -> compute through a sockmap (TCP ingress to unix egress) loses
// backpressure and then data in the kernels this was tried on, so that direction stays in user
// space. Compute -> client keeps backpressure: the unix skbs stay charged to postgres's socket,
// so postgres blocks when the client stops reading.

#include "common/status.h"

namespace arbor::proxy {

// Owns one session's two map fds. Not thread-safe (one session's strand uses it). Move-only.
class KernelRelay {
 public:
  // True if the kernel lets this process build a relay: it can create sockmaps, load and
  // attach the verdict program, and put an AF_UNIX stream socket in a sockmap. Probed once
  // per process (thread-safe); the first call logs, at info, whether the relay is on and if
  // not why (typically: not root, or a seccomp filter).
  static bool Available();

  KernelRelay() = default;
  ~KernelRelay();
  KernelRelay(KernelRelay&& other) noexcept;
  KernelRelay& operator=(KernelRelay&& other) noexcept;
  KernelRelay(const KernelRelay&) = delete;
  KernelRelay& operator=(const KernelRelay&) = delete;

  // From now on, bytes arriving on `compute_fd` go to `client_fd` without reaching user space;
  // user space still sees EOF on `compute_fd`, and may still write to `client_fd`. Ok on
  // success; an error (with nothing left attached) if the kernel refuses, after which the
  // caller relays in user space.
  // REQUIRES: Available(); not attached yet; `client_fd` an established TCP socket and
  // `compute_fd` a connected AF_UNIX stream socket, both open for this object's life; nothing
  // unread on `compute_fd` and the compute quiet (bytes already queued when the socket enters
  // the map are not seen by the program until more arrive).
  [[nodiscard]] Status Attach(int client_fd, int compute_fd);

  bool attached() const { return verdict_map_ >= 0; }

 private:
  void Reset();

  int verdict_map_ = -1;  // map A: the compute socket, with the program
  int target_map_ = -1;   // map B: the client socket
};

}  // namespace arbor::proxy
