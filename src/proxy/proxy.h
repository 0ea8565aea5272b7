#pragma once

// The proxy's front header: one PostgreSQL front door for every endpoint. It accepts client
// connections (optionally TLS), routes each to an endpoint (see router.h), authenticates it
// (a token from auth/token.h, or a role password the compute checks itself), wakes the
// compute through the Backend, logs in to it over its unix socket with SCRAM-SHA-256, and then
// relays bytes both ways without parsing them. docs/proxy.md is the user-facing contract.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "proxy/auth/scram.h"
#include "proxy/auth/token.h"

namespace arbor::proxy {

// An endpoint as the control plane names it. Value type.
struct EndpointRef {
  std::string project;
  std::string branch;
  std::string endpoint;
  // The endpoint's uid; tokens carry it, so a token for a deleted endpoint never opens a new
  // one of the same name.
  std::string uid;
  // A pinned endpoint (BRANCH@TIME): the state it serves. Its uid and scope are those of the
  // branch's read-write endpoint, whose tokens open the branch's past too; the endpoint
  // itself is made by Wake, after authentication.
  bool pinned = false;
  std::optional<int64_t> pin_time_us;
  std::optional<uint64_t> pin_lsn;
  std::string scope;  // the endpoint name a token must carry; empty: Name()
  // "projects/P/branches/B/endpoints/E".
  std::string Name() const {
    return "projects/" + project + "/branches/" + branch + "/endpoints/" + endpoint;
  }
  std::string TokenScope() const { return scope.empty() ? Name() : scope; }
};

// What the proxy needs from the control plane. Implemented by the daemon. Every method may be
// called from several proxy threads at once, so implementations must be thread-safe, and none
// may throw. Resolve, ResolvePort and RoleSecret may block briefly and Wake for as long as a
// compute takes to start: the proxy calls them on its own pools, never on a network thread.
// ConnectionOpened and ConnectionClosed are called on network threads (and from Proxy::Stop)
// and must not block: count and return.
class Backend {
 public:
  virtual ~Backend() = default;

  // The endpoint named by project/branch and endpoint id; an empty `endpoint` means the
  // branch's default (read-write) endpoint. NotFound if any part is unknown; other errors are
  // reported to the client as "service unavailable". Must not start anything.
  virtual Result<EndpointRef> Resolve(const std::string& project, const std::string& branch,
                                      const std::string& endpoint) = 0;

  // The endpoint whose dedicated port is `port`; NotFound if none.
  virtual Result<EndpointRef> ResolvePort(uint16_t port) = 0;

  // Starts the compute if it is suspended (or crashed) and returns its unix socket path,
  // "<dir>/.s.PGSQL.<port>", once it accepts connections. Concurrent calls for one endpoint
  // must share one start. Any error is reported to the client as 57P03.
  virtual Result<std::string> Wake(const EndpointRef& endpoint) = 0;

  // The SCRAM secrets of `role`'s password on the endpoint's branch, as Arbor set it and the
  // compute holds it. The proxy checks a client's password against them before anything
  // reaches the compute, and logs in to the compute with them. NotFound if Arbor holds no
  // password for that role there (the client then gets the same answer as for a wrong
  // password).
  virtual Result<auth::ScramSecret> RoleSecret(const EndpointRef& endpoint,
                                               const std::string& role) = 0;
  // Called when a client connection to `endpoint` passes authentication at the proxy (before
  // the wake), and once again when it ends, for scale to zero: an endpoint with open
  // connections is never suspended. Every ConnectionOpened is paired with one
  // ConnectionClosed, also when the proxy stops.
  virtual void ConnectionOpened(const EndpointRef& endpoint) = 0;
  virtual void ConnectionClosed(const EndpointRef& endpoint) = 0;

  // For metrics (the default ignores them); called on network threads: count and return.
  // A login the proxy refused: `endpoint` is null when it could not be routed to one;
  // `reason` is one of "tls_required", "superuser", "no_endpoint", "no_password",
  // "bad_token" and "wrong_password".
  virtual void LoginRefused(const EndpointRef* /*endpoint*/, const char* /*reason*/) {}
  // A session that passed authentication ended: the bytes its client sent and received on
  // its connection (for TCP, the kernel's count of the socket, TLS and handshake included;
  // for a unix socket, what the proxy relayed).
  virtual void SessionEnded(const EndpointRef& /*endpoint*/, uint64_t /*from_client*/,
                            uint64_t /*to_client*/) {}
};

struct ProxyOptions {
  // The shared front door. Port 0 picks a free port (tests); see Proxy::port().
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 55432;
  // The local front door: a directory where every listened port P also gets a unix socket
  // "<socket_dir>/.s.PGSQL.P" (libpq's host=<socket_dir> port=P), routed and checked exactly
  // as the TCP port. The directory is made 0700: only the daemon's own OS user connects.
  // TLS is not required there (require_tls applies to TCP). Empty: no unix sockets.
  std::string socket_dir;
  // PEM certificate chain and private key. Both empty: SSLRequest is declined ('N').
  std::string tls_cert_file;
  std::string tls_key_file;
  // Refuse clients that did not negotiate TLS (28000).
  bool require_tls = false;
  // Network threads (one io_context); threads for the quick Backend calls (Resolve,
  // RoleSecret, password checks); threads for Wake, which blocks while a compute starts. Wakes have
  // their own pool so that slow starts never delay routing for endpoints that are already running.
  int threads = 2;
  int backend_threads = 4;
  int wake_threads = 32;
  // A client must finish its startup and send its password within this time.
  std::chrono::milliseconds handshake_timeout{10'000};
  // Wake plus login to the compute must finish within this time.
  std::chrono::milliseconds compute_timeout{60'000};
  // Connections beyond this get 53300 and are closed.
  size_t max_connections = 10'000;
  // Relay a plaintext session's compute -> client bytes in the kernel (a BPF sockmap) where
  // the kernel allows it (root, no seccomp filter against bpf); otherwise, and always for TLS
  // and the client -> compute direction, in user space. See kernel_relay.h.
  bool kernel_relay = true;
  // After a plaintext client's login, give the compute the client's own socket, so that the
  // session's bytes pass between the client and postgres with no relay (docs/proxy.md,
  // "Socket handoff"). Only computes that load Arbor's module (arbor_guard) take it; others
  // answer the login as usual, and the session is relayed. The daemon's computes all load it.
  bool handoff = false;
};

// The proxy server. Start once, Stop once (the destructor stops it). Thread-safe: port
// listeners may be added and removed from any thread while it runs. Owns its threads; does not
// own the Backend or the TokenSigner, which must outlive it.
class Proxy {
 public:
  Proxy();
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Binds the front door and starts the threads. InvalidArgument for bad options (TLS files
  // that do not load); IOError if the address cannot be bound; FailedPrecondition if already
  // started. Raises the soft RLIMIT_NOFILE to the hard limit (each client holds two fds).
  [[nodiscard]] Status Start(const ProxyOptions& options, Backend* backend,
                             const auth::TokenSigner* tokens);

  // The bound port of the front door. REQUIRES: Start succeeded.
  uint16_t port() const;

  // Also accepts connections on `port` (an endpoint's dedicated port; 0 picks one), and on its
  // unix socket in socket_dir, and routes those without other routing information by
  // Backend::ResolvePort. Returns the bound port.
  // IOError if it cannot be bound; AlreadyExists if already listening there.
  [[nodiscard]] Result<uint16_t> AddPortListener(uint16_t port);
  // Stops accepting on `port`; connections already made continue. NotFound if not listening.
  [[nodiscard]] Status RemovePortListener(uint16_t port);

  // Closes the listeners and every connection, and joins the threads, after waiting for
  // Backend calls in flight (a Wake in progress delays Stop until it returns). Idempotent.
  void Stop();

  // The directory of the unix sockets; empty if there are none.
  std::string socket_dir() const;

  // Client connections currently open (any phase).
  size_t ActiveConnections() const;

  // Sessions since Start whose compute -> client direction the kernel relays (kernel_relay).
  size_t KernelRelayedSessions() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Writes a new self-signed certificate (EC P-256, valid 10 years, CN and subjectAltName DNS
// `common_name` plus `*.common_name`) and its key (mode 0600), for a proxy started without a
// user-supplied certificate. IOError if the files cannot be written.
[[nodiscard]] Status GenerateSelfSignedCert(const std::string& cert_file,
                                            const std::string& key_file,
                                            const std::string& common_name);

}  // namespace arbor::proxy
