#pragma once

// Internal: one client connection, from its first byte to its close. A session runs as
// coroutines on its own strand, so its members need no locks. Lifetime: shared by the
// coroutines and timers that reference it; the last one to finish destroys it, which releases
// its cancel key and reports ConnectionClosed.
//
// Phases: startup (SSL/GSSENC negotiation, CancelRequest, StartupMessage) -> password ->
// route and check -> wake -> compute login (SCRAM) -> forward the compute's greeting -> relay.
// A plaintext session may instead be handed off after the compute login: the compute takes
// the client's socket (options.handoff), answers the client itself, and the session only
// waits for the compute's backend to exit (a pidfd), then closes its copy of the socket.
// In the relay, client -> compute is always a user-space pump; compute -> client is one too,
// unless the kernel relays it (kernel_relay.h), and then a waiter only watches for the
// compute's close.
// Everything before the relay is read message by message with exact lengths, so no byte the
// client sends after its password is consumed by the proxy.

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "proxy/asio.h"
#include "proxy/kernel_relay.h"
#include "proxy/server.h"

namespace arbor::proxy {

// A client's socket: TCP, or a unix socket of the local front door.
using ClientSocket = boost::asio::generic::stream_protocol::socket;

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `local`: `client` came through the unix socket of `local_port`.
  Session(Proxy::Impl* impl, ClientSocket client, uint16_t local_port, bool local);
  ~Session();

  // Runs the session to its end. Never throws: every failure is answered with an
  // ErrorResponse where the protocol allows, then the connection closes.
  boost::asio::awaitable<void> Run();

 private:
  boost::asio::awaitable<void> Handshake();
  boost::asio::awaitable<void> Relay();
  boost::asio::awaitable<void> PumpClientToCompute();
  boost::asio::awaitable<void> PumpComputeToClient();
  boost::asio::awaitable<void> AwaitComputeClose();
  boost::asio::awaitable<void> ForwardCancel(wire::BackendKey key);
  boost::asio::awaitable<void> HandOff(const std::string& socket_path, const std::string& greeting);
  boost::asio::awaitable<void> LoginToCompute(const auth::ScramSecret& secret,
                                              std::string* greeting);

  boost::asio::awaitable<void> ReadClient(char* data, size_t n);
  boost::asio::awaitable<void> WriteClient(std::string_view data);
  boost::asio::awaitable<wire::Message> ReadClientMessage();
  boost::asio::awaitable<wire::Message> ReadComputeMessage();

  // Runs `job` (a Backend call that stores its result) on the blocking pool and resumes on the
  // session's strand. `job` must be a named local of the caller: GCC 12 mishandles
  // temporaries and by-value class parameters that live across a co_await.
  boost::asio::awaitable<void> OnBlockingPool(const std::function<void()>& job,
                                              boost::asio::thread_pool* pool);
  boost::asio::awaitable<void> WriteCompute(const std::string& bytes);

  void ArmTimer(std::chrono::milliseconds after);
  void CloseAll();
  // Shuts down and closes the proxy's copy of a handed-off client socket, if it holds one.
  void DropHandedSocket();
  // Reports the refusal to the Backend's metrics, then refuses (throws, as Refuse does).
  [[noreturn]] void RefuseLogin(const std::optional<EndpointRef>& ref, const char* reason,
                                std::string_view sqlstate, std::string message);
  // Reports an opened session's bytes to the Backend, once, before its client closes.
  void ReportBytes();

  Proxy::Impl* impl_;
  ClientSocket client_;
  bool local_ = false;  // a unix socket of the local front door
  std::optional<boost::asio::ssl::stream<ClientSocket&>> tls_;
  boost::asio::local::stream_protocol::socket compute_;
  boost::asio::steady_timer timer_;
  uint16_t local_port_;
  std::string peer_;                            // for logs
  std::string sni_;                             // the TLS SNI host, if any
  std::optional<EndpointRef> opened_;           // ConnectionOpened was called
  std::optional<wire::BackendKey> cancel_key_;  // registered proxy-side key
  bool handoff_requested_ = false;              // the compute login asked for a handoff
  // The compute's backend pid and cancel key, when it offered to take the client's socket.
  std::optional<wire::BackendKey> handoff_offer_;
  // A pidfd of the backend that took the client's socket: readable once it exits.
  std::optional<boost::asio::posix::stream_descriptor> backend_exit_;
  // The proxy's copy of a handed-off client socket, out of the proxy's epoll (a socket left
  // there would wake a network thread at every query the backend receives); -1 if none.
  int handed_fd_ = -1;
  // Attached: the kernel relays compute -> client (plaintext sessions only).
  KernelRelay kernel_;
  // Bytes the relay moved in user space (a unix-socket client's count), and whether
  // ReportBytes ran.
  std::atomic<uint64_t> relayed_from_client_{0}, relayed_to_client_{0};
  std::atomic<bool> bytes_reported_{false};
};

}  // namespace arbor::proxy
