#include "proxy/server.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <type_traits>

#include "common/log.h"
#include "proxy/auth/crypto.h"
#include "proxy/kernel_relay.h"
#include "proxy/proxy.h"
#include "proxy/session.h"

namespace arbor::proxy {
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

uint64_t CancelMapKey(wire::BackendKey k) { return (uint64_t{k.pid} << 32) | k.secret; }

void RaiseFdLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// Makes `dir` (and its parents) for the local sockets, private to this OS user: the proxy
// checks credentials there as on TCP, and the directory keeps other users out besides.
Status PrepareSocketDir(const std::string& dir) {
  // sun_path holds 107 bytes and a NUL; the longest name is ".s.PGSQL.65535".
  if (dir.size() + std::strlen("/.s.PGSQL.65535") >= sizeof(sockaddr_un::sun_path)) {
    return Status::InvalidArgument("the socket directory " + dir + " is too long for a unix " +
                                   "socket's path (at most " +
                                   std::to_string(sizeof(sockaddr_un::sun_path) - 16) +
                                   " bytes); choose a shorter one with --proxy-socket-dir");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir + ": " + ec.message());
  if (chmod(dir.c_str(), 0700) != 0) {
    return Status::IOError("cannot make " + dir + " private: " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

wire::BackendKey Proxy::Impl::RegisterCancel(const CancelTarget& target) {
  std::lock_guard lock(mu_);
  for (;;) {
    auto bytes = auth::RandomBytes(8);
    wire::BackendKey k;
    if (bytes.ok()) {
      std::memcpy(&k.pid, bytes->data(), 4);
      std::memcpy(&k.secret, bytes->data() + 4, 4);
    } else {
      // Unreachable in practice; a key that cannot be guessed is not needed for uniqueness.
      k.pid = static_cast<uint32_t>(cancel_.size() + 1);
      k.secret = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(&target));
    }
    k.pid &= 0x7fffffff;  // clients may treat the pid as a signed int
    if (k.pid == 0 || cancel_.count(CancelMapKey(k))) continue;
    cancel_.emplace(CancelMapKey(k), target);
    return k;
  }
}

bool Proxy::Impl::RegisterCancelAs(wire::BackendKey key, const CancelTarget& target) {
  std::lock_guard lock(mu_);
  return cancel_.emplace(CancelMapKey(key), target).second;
}

void Proxy::Impl::UnregisterCancel(wire::BackendKey key) {
  std::lock_guard lock(mu_);
  cancel_.erase(CancelMapKey(key));
}

std::optional<CancelTarget> Proxy::Impl::LookupCancel(wire::BackendKey key) {
  std::lock_guard lock(mu_);
  auto it = cancel_.find(CancelMapKey(key));
  if (it == cancel_.end()) return std::nullopt;
  return it->second;
}

Result<std::shared_ptr<Proxy::Impl::LocalAcceptor>> Proxy::Impl::ListenLocal(uint16_t port,
                                                                             std::string* path) {
  *path = socket_dir + "/.s.PGSQL." + std::to_string(port);
  // A socket left by a daemon that was killed: the data directory's lock says none runs now.
  struct stat st;
  if (lstat(path->c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path->c_str());
  auto acceptor = std::make_shared<LocalAcceptor>(asio::make_strand(*iocs.front()));
  boost::system::error_code ec;
  asio::local::stream_protocol::endpoint ep(*path);
  acceptor->open(ep.protocol(), ec);
  if (!ec) ::fcntl(acceptor->native_handle(), F_SETFD, FD_CLOEXEC);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("cannot listen on " + *path + ": " + ec.message());
  return acceptor;
}

void Proxy::Impl::Close(const Listeners& l) {
  if (l.tcp) {
    asio::post(l.tcp->get_executor(), [a = l.tcp] {
      boost::system::error_code ec;
      a->close(ec);
    });
  }
  if (l.local) {
    unlink(l.path.c_str());
    asio::post(l.local->get_executor(), [a = l.local] {
      boost::system::error_code ec;
      a->close(ec);
    });
  }
}

Result<uint16_t> Proxy::Impl::Listen(uint16_t port, bool main) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options.listen_host, ec);
  if (ec) return Status::InvalidArgument("invalid listen address " + options.listen_host);
  auto acceptor = std::make_shared<TcpAcceptor>(asio::make_strand(*iocs.front()));
  tcp::endpoint ep(address, port);
  acceptor->open(ep.protocol(), ec);
  if (!ec) ::fcntl(acceptor->native_handle(), F_SETFD, FD_CLOEXEC);  // see AcceptLoop
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::IOError("cannot listen on " + options.listen_host + ":" + std::to_string(port) +
                           ": " + ec.message());
  }
  uint16_t bound = acceptor->local_endpoint(ec).port();
  Listeners l;
  l.tcp = acceptor;
  {
    std::lock_guard lock(mu_);
    if (acceptors_.count(bound))
      return Status::AlreadyExists("already listening on port " + std::to_string(bound));
  }
  if (!socket_dir.empty()) {
    // Without its unix socket the port still serves over TCP.
    auto local = ListenLocal(bound, &l.path);
    if (local.ok()) {
      l.local = *local;
    } else {
      log::warn("proxy: {}", local.status().message());
    }
  }
  {
    std::lock_guard lock(mu_);
    if (acceptors_.count(bound)) {
      if (l.local) unlink(l.path.c_str());
      return Status::AlreadyExists("already listening on port " + std::to_string(bound));
    }
    acceptors_[bound] = l;
    if (main) main_port = bound;
  }
  auto failed = [bound](std::exception_ptr e) {
    if (e) log::error("proxy: the accept loop on port {} failed", bound);
  };
  asio::co_spawn(acceptor->get_executor(), AcceptLoop(acceptor, bound), failed);
  if (l.local) asio::co_spawn(l.local->get_executor(), AcceptLoop(l.local, bound), failed);
  return bound;
}

Status Proxy::Impl::Unlisten(uint16_t port) {
  Listeners l;
  {
    std::lock_guard lock(mu_);
    auto it = acceptors_.find(port);
    if (it == acceptors_.end() || port == main_port) {
      return Status::NotFound("not listening on endpoint port " + std::to_string(port));
    }
    l = it->second;
    acceptors_.erase(it);
  }
  Close(l);
  return Status::Ok();
}

template <typename AcceptorT>
asio::awaitable<void> Proxy::Impl::AcceptLoop(std::shared_ptr<AcceptorT> acceptor, uint16_t port) {
  constexpr bool kLocal = std::is_same_v<AcceptorT, LocalAcceptor>;
  asio::steady_timer backoff(acceptor->get_executor());
  while (acceptor->is_open()) {
    // One socket type for both: a session reads and writes bytes, whatever carries them.
    ClientSocket socket(NextIoc());
    boost::system::error_code ec;
    co_await acceptor->async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) break;
    if (ec) {
      // Typically EMFILE: back off instead of spinning; the sockets free up as sessions end.
      log::warn("proxy: accept on {} {} failed: {}", kLocal ? "the unix socket of port" : "port",
                port, ec.message());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    // Close-on-exec, so no child the daemon starts (initdb, fusermount3, postgres) can inherit
    // a client's socket, whatever its own fd cleanup does.
    ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
    auto executor = socket.get_executor();
    auto session = std::make_shared<Session>(this, std::move(socket), port, kLocal);
    asio::co_spawn(executor, session->Run(), [session](std::exception_ptr) {});
  }
}

Proxy::Proxy() = default;
Proxy::~Proxy() { Stop(); }

Status Proxy::Start(const ProxyOptions& options, Backend* backend,
                    const auth::TokenSigner* tokens) {
  if (impl_) return Status::FailedPrecondition("the proxy was already started");
  if (!backend) return Status::InvalidArgument("the proxy needs a backend");
  auto impl = std::make_shared<Impl>();
  impl->options = options;
  impl->backend = backend;
  impl->tokens = tokens;
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    try {
      auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
      ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
      ctx->use_certificate_chain_file(options.tls_cert_file);
      ctx->use_private_key_file(options.tls_key_file, asio::ssl::context::pem);
      impl->tls = std::move(ctx);
    } catch (const std::exception& e) {
      return Status::InvalidArgument("cannot load the TLS certificate " + options.tls_cert_file +
                                     " or key " + options.tls_key_file + ": " + e.what());
    }
  } else if (options.require_tls) {
    return Status::InvalidArgument("require_tls needs a certificate and key");
  }
  RaiseFdLimit();
  if (options.handoff) {
    // A handed-off session ends when its backend exits, which a pidfd tells (Linux 5.3).
    int probe = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
    if (probe >= 0) {
      close(probe);
      impl->handoff = true;
    } else {
      log::warn("proxy: socket handoff off, relaying every session: pidfd_open: {}",
                std::strerror(errno));
    }
  }
  if (options.kernel_relay) {
    impl->kernel_relay = KernelRelay::Available();  // logs once whether it is on
  } else {
    log::info("proxy: kernel relay turned off; relaying in user space");
  }
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    impl->iocs.push_back(std::make_unique<asio::io_context>(1));
    impl->busy.push_back(asio::make_work_guard(*impl->iocs.back()));
  }
  impl->blocking = std::make_unique<asio::thread_pool>(std::max(1, options.backend_threads));
  impl->waking = std::make_unique<asio::thread_pool>(std::max(1, options.wake_threads));
  if (!options.socket_dir.empty()) {
    Status dir = PrepareSocketDir(options.socket_dir);
    if (dir.ok()) {
      impl->socket_dir = options.socket_dir;
    } else {
      // The TCP front door still serves everyone; `arbor connection-string --local` says why.
      log::warn("proxy: no local socket: {}", dir.message());
    }
  }
  auto port = impl->Listen(options.listen_port, /*main=*/true);
  if (!port.ok()) {
    impl->blocking->join();
    impl->waking->join();
    return port.status();
  }
  for (auto& io : impl->iocs) {
    impl->threads.emplace_back([ioc = io.get()] {
      for (;;) {
        try {
          ioc->run();
          return;
        } catch (const std::exception& e) {
          log::error("proxy: a handler threw: {}", e.what());
        } catch (...) {
          log::error("proxy: a handler threw an unknown exception");
        }
      }
    });
  }
  impl_ = std::move(impl);
  log::info("proxy: listening on {}:{}{}{}", options.listen_host, *port,
            impl_->tls ? " (TLS available)" : "",
            impl_->socket_dir.empty() ? "" : " and in " + impl_->socket_dir);
  return Status::Ok();
}

uint16_t Proxy::port() const { return impl_ ? impl_->main_port : 0; }

std::string Proxy::socket_dir() const { return impl_ ? impl_->socket_dir : std::string(); }

Result<uint16_t> Proxy::AddPortListener(uint16_t port) {
  if (!impl_ || impl_->stopped) return Status::FailedPrecondition("the proxy is not running");
  return impl_->Listen(port, /*main=*/false);
}

Status Proxy::RemovePortListener(uint16_t port) {
  if (!impl_ || impl_->stopped) return Status::FailedPrecondition("the proxy is not running");
  return impl_->Unlisten(port);
}

void Proxy::Stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  // Order matters: stop running handlers, let in-flight Backend calls finish, then destroy the
  // io_context, which destroys every session (closing its sockets and reporting
  // ConnectionClosed) while the Impl is still alive.
  impl_->busy.clear();
  for (auto& io : impl_->iocs) io->stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->blocking->join();
  impl_->waking->join();
  {
    std::lock_guard lock(impl_->mu_);
    for (const auto& [port, l] : impl_->acceptors_) {
      if (l.local) unlink(l.path.c_str());
    }
    impl_->acceptors_.clear();
  }
  impl_->iocs.clear();
  impl_->blocking.reset();
  impl_->waking.reset();
}

size_t Proxy::ActiveConnections() const { return impl_ ? impl_->active.load() : 0; }

size_t Proxy::KernelRelayedSessions() const { return impl_ ? impl_->kernel_relayed.load() : 0; }

}  // namespace arbor::proxy
