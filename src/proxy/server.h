#pragma once

// Internal: the state behind Proxy, shared by the listeners and the sessions.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proxy/asio.h"
#include "proxy/proxy.h"
#include "proxy/wire/codec.h"

namespace arbor::proxy {

// Where a cancel request for a proxy-issued key goes: the compute's socket and its real key.
struct CancelTarget {
  std::string socket_path;
  wire::BackendKey key;
};

class Proxy::Impl {
 public:
  ProxyOptions options;
  Backend* backend = nullptr;
  const auth::TokenSigner* tokens = nullptr;

  // One single-threaded io_context per network thread; each session lives on one of them, so
  // a relay's reads and writes never hand work between threads (with one io_context run by
  // several threads, a completion may wake another thread to run its handler).
  std::vector<std::unique_ptr<boost::asio::io_context>> iocs;
  std::atomic<size_t> next_ioc{0};
  // Keep each io_context running while it has no session yet.
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> busy;
  boost::asio::io_context& NextIoc() { return *iocs[next_ioc++ % iocs.size()]; }
  std::unique_ptr<boost::asio::thread_pool> blocking;  // quick Backend calls
  std::unique_ptr<boost::asio::thread_pool> waking;    // Backend::Wake
  std::unique_ptr<boost::asio::ssl::context> tls;      // null: TLS declined
  std::vector<std::thread> threads;
  uint16_t main_port = 0;
  std::string socket_dir;  // options.socket_dir once it is usable; empty otherwise
  std::atomic<size_t> active{0};
  std::atomic<size_t> kernel_relayed{0};  // sessions whose results the kernel relays
  bool kernel_relay = false;              // options.kernel_relay && KernelRelay::Available()
  bool handoff = false;                   // options.handoff, and the kernel has pidfd_open
  std::atomic<bool> stopped{false};

  // Issues a proxy-side key for `target`, unique among live sessions. Thread-safe.
  wire::BackendKey RegisterCancel(const CancelTarget& target);
  // Registers the compute's own key as the client's (a handed-off session, whose client sees
  // the compute's BackendKeyData). False if that key is taken.
  bool RegisterCancelAs(wire::BackendKey key, const CancelTarget& target);
  void UnregisterCancel(wire::BackendKey key);
  std::optional<CancelTarget> LookupCancel(wire::BackendKey key);

  Result<uint16_t> Listen(uint16_t port, bool main);
  Status Unlisten(uint16_t port);

 private:
  using TcpAcceptor = boost::asio::ip::tcp::acceptor;
  using LocalAcceptor = boost::asio::local::stream_protocol::acceptor;
  // A port's listeners: TCP, and the unix socket at `path` when there is a socket_dir.
  struct Listeners {
    std::shared_ptr<TcpAcceptor> tcp;
    std::shared_ptr<LocalAcceptor> local;
    std::string path;
  };
  template <typename AcceptorT>
  boost::asio::awaitable<void> AcceptLoop(std::shared_ptr<AcceptorT> acceptor, uint16_t port);
  Result<std::shared_ptr<LocalAcceptor>> ListenLocal(uint16_t port, std::string* path);
  static void Close(const Listeners& l);

  std::mutex mu_;
  std::map<uint16_t, Listeners> acceptors_;
  std::unordered_map<uint64_t, CancelTarget> cancel_;  // key: pid << 32 | secret

  friend class Proxy;
};

}  // namespace arbor::proxy
