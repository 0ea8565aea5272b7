#include "proxy/session.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <vector>

#include "common/log.h"
#include "common/proc.h"
#include "proxy/auth/crypto.h"
#include "proxy/auth/scram.h"
#include "proxy/router.h"

namespace arbor::proxy {
namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

// Thrown inside a session's coroutines to end it after the client has been answered. Caught
// in Session::Run and in the relay pumps; never leaves the session.
struct SessionEnd {};

// Thrown by Refuse(); Run answers it with an ErrorResponse. (Not a coroutine on purpose: GCC 12
// mishandles temporaries that live across a co_await, so the write happens in Run.)
struct Refusal {
  std::string sqlstate;
  std::string message;
};

[[noreturn]] void Refuse(std::string_view sqlstate, std::string message) {
  throw Refusal{std::string(sqlstate), std::move(message)};
}

constexpr size_t kRelayBufferBytes = 64 * 1024;

// After the compute closes a kernel-relayed session, its last bytes (a FATAL ErrorResponse,
// say) may still be on their way to the client inside the kernel: wait this long, then until
// the client's send queue is empty (at most kCloseDrainLimit more), before closing the client.
constexpr std::chrono::milliseconds kCloseGrace{100};
constexpr std::chrono::milliseconds kCloseDrainLimit{2000};
constexpr std::chrono::milliseconds kCloseDrainPoll{20};

// Arbor's own superuser: reached over the private socket by Arbor alone, never by a client.
constexpr const char* kArborSuperuser = "postgres";

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Session::Session(Proxy::Impl* impl, ClientSocket client, uint16_t local_port, bool local)
    : impl_(impl),
      client_(std::move(client)),
      local_(local),
      compute_(client_.get_executor()),
      timer_(client_.get_executor()),
      local_port_(local_port) {
  impl_->active.fetch_add(1);
  boost::system::error_code ec;
  if (local_) {
    // The peer's process, from the kernel (the socket has no address).
    struct ucred cred {};
    socklen_t len = sizeof cred;
    if (getsockopt(client_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      peer_ = "local pid " + std::to_string(cred.pid);
    } else {
      peer_ = "local";
    }
    return;
  }
  asio::ip::tcp::socket::endpoint_type remote;
  auto generic = client_.remote_endpoint(ec);
  if (!ec && generic.size() <= remote.capacity()) {
    std::memcpy(remote.data(), generic.data(), generic.size());
    remote.resize(generic.size());
    peer_ = remote.address().to_string() + ":" + std::to_string(remote.port());
  }
  int one = 1;
  setsockopt(client_.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Session::~Session() {
  if (cancel_key_) impl_->UnregisterCancel(*cancel_key_);
  ReportBytes();
  // The proxy stopped under a handed-off session: it ends, as every other session does.
  DropHandedSocket();
  if (opened_) impl_->backend->ConnectionClosed(*opened_);
  impl_->active.fetch_sub(1);
}

awaitable<void> Session::OnBlockingPool(const std::function<void()>& job, asio::thread_pool* pool) {
  co_await asio::co_spawn(
      pool->get_executor(),
      [&job]() -> awaitable<void> {
        try {
          job();
        } catch (...) {
          // The Backend must not throw; if it does, the caller sees no result.
        }
        co_return;
      },
      use_awaitable);
}

awaitable<void> Session::WriteCompute(const std::string& bytes) {
  co_await asio::async_write(compute_, asio::buffer(bytes), use_awaitable);
}

void Session::ArmTimer(std::chrono::milliseconds after) {
  timer_.expires_after(after);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    // Cancelled or re-armed; or expired just as the session was handed off (the backend owns
    // the client's socket now).
    if (ec || self->backend_exit_) return;
    log::info("proxy: {} timed out during the handshake; closing", self->peer_);
    self->CloseAll();
  });
}

void Session::RefuseLogin(const std::optional<EndpointRef>& ref, const char* reason,
                          std::string_view sqlstate, std::string message) {
  impl_->backend->LoginRefused(ref ? &*ref : nullptr, reason);
  Refuse(sqlstate, std::move(message));
}

void Session::ReportBytes() {
  if (!opened_ || bytes_reported_.exchange(true)) return;
  uint64_t from = relayed_from_client_.load(), to = relayed_to_client_.load();
  // The kernel's struct tcp_info goes on past glibc's with these (Linux 4.1 and later); a
  // kernel that does not fill them answers a shorter length.
  static_assert(sizeof(struct tcp_info) == 104,
                "glibc's struct tcp_info changed: the fields below are no longer right after it");
  struct {
    struct tcp_info base;
    uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
  } info{};
  socklen_t len = sizeof info;
  const int fd = client_.is_open() ? client_.native_handle() : handed_fd_;
  if (!local_ && fd >= 0 && getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
      len >= sizeof info) {
    from = info.bytes_received;
    to = info.bytes_acked;
  }
  impl_->backend->SessionEnded(*opened_, from, to);
}

void Session::CloseAll() {
  ReportBytes();
  boost::system::error_code ec;
  client_.shutdown(asio::socket_base::shutdown_both, ec);
  client_.close(ec);
  compute_.close(ec);
  if (backend_exit_) backend_exit_->close(ec);
  DropHandedSocket();
}

void Session::DropHandedSocket() {
  if (handed_fd_ < 0) return;
  shutdown(handed_fd_, SHUT_RDWR);  // ends the session if the backend still serves it
  close(handed_fd_);
  handed_fd_ = -1;
}

awaitable<void> Session::ReadClient(char* data, size_t n) {
  if (tls_) {
    co_await asio::async_read(*tls_, asio::buffer(data, n), use_awaitable);
  } else {
    co_await asio::async_read(client_, asio::buffer(data, n), use_awaitable);
  }
}

awaitable<void> Session::WriteClient(std::string_view data) {
  if (tls_) {
    co_await asio::async_write(*tls_, asio::buffer(data.data(), data.size()), use_awaitable);
  } else {
    co_await asio::async_write(client_, asio::buffer(data.data(), data.size()), use_awaitable);
  }
}

awaitable<wire::Message> Session::ReadClientMessage() {
  char header[5];
  co_await ReadClient(header, 5);
  // Before authentication a client may make the proxy hold only a few KiB.
  auto len =
      wire::ParseMessageHeader(std::string_view(header, 5), wire::kMaxClientAuthMessageLength);
  if (!len.ok()) Refuse("08P01", len.status().message());
  wire::Message m;
  m.type = header[0];
  m.body.resize(*len);
  if (*len > 0) co_await ReadClient(m.body.data(), *len);
  co_return m;
}

awaitable<wire::Message> Session::ReadComputeMessage() {
  char header[5];
  co_await asio::async_read(compute_, asio::buffer(header, 5), use_awaitable);
  auto len = wire::ParseMessageHeader(std::string_view(header, 5), wire::kMaxAuthMessageLength);
  if (!len.ok()) Refuse("08P01", "the compute sent an invalid message: " + len.status().message());
  wire::Message m;
  m.type = header[0];
  m.body.resize(*len);
  if (*len > 0) co_await asio::async_read(compute_, asio::buffer(m.body), use_awaitable);
  co_return m;
}

awaitable<void> Session::Run() {
  auto self = shared_from_this();  // keeps the session alive while Run is suspended
  std::optional<Refusal> refusal;
  try {
    if (impl_->active.load() > impl_->options.max_connections) {
      Refuse("53300", "too many connections to the arbor proxy");
    }
    co_await Handshake();
  } catch (Refusal& r) {
    refusal = std::move(r);
  } catch (const SessionEnd&) {
  } catch (const boost::system::system_error& e) {
    log::debug("proxy: {} closed: {}", peer_, e.what());
  } catch (const std::exception& e) {
    log::warn("proxy: {} failed: {}", peer_, e.what());
  } catch (...) {
    log::warn("proxy: {} failed with an unknown exception", peer_);
  }
  if (refusal) {
    log::info("proxy: {} refused: {} {}", peer_, refusal->sqlstate, refusal->message);
    wire::Message e = wire::MakeError(refusal->sqlstate, refusal->message);
    std::string bytes = wire::SerializeMessage(e.type, e.body);
    try {
      co_await WriteClient(bytes);
    } catch (...) {
      // The client is gone; nothing more to tell it.
    }
  }
  timer_.cancel();
  CloseAll();
}

awaitable<void> Session::Handshake() {
  const ProxyOptions& opt = impl_->options;
  ArmTimer(opt.handshake_timeout);

  // ---- Startup packets: SSL/GSSENC negotiation, then a StartupMessage or CancelRequest.
  wire::StartupPacket startup;
  for (int round = 0;; ++round) {
    if (round >= 3) Refuse("08P01", "too many startup packets");
    char prefix[4];
    co_await ReadClient(prefix, 4);
    auto len = wire::ParseStartupLength(std::string_view(prefix, 4));
    if (!len.ok()) Refuse("08P01", len.status().message());
    std::string packet(*len, '\0');
    std::memcpy(packet.data(), prefix, 4);
    co_await ReadClient(packet.data() + 4, *len - 4);
    auto parsed = wire::ParseStartup(packet);
    if (!parsed.ok()) Refuse("08P01", parsed.status().message());
    if (parsed->kind == wire::StartupKind::kSslRequest) {
      if (tls_) Refuse("08P01", "SSLRequest received twice");
      if (!impl_->tls) {
        co_await WriteClient("N");
        continue;
      }
      co_await WriteClient("S");
      tls_.emplace(client_, *impl_->tls);
      co_await tls_->async_handshake(asio::ssl::stream_base::server, use_awaitable);
      const char* host = SSL_get_servername(tls_->native_handle(), TLSEXT_NAMETYPE_host_name);
      if (host) sni_ = host;
      continue;
    }
    if (parsed->kind == wire::StartupKind::kGssEncRequest) {
      co_await WriteClient("N");
      continue;
    }
    if (parsed->kind == wire::StartupKind::kCancel) {
      co_await ForwardCancel({parsed->cancel_pid, parsed->cancel_secret});
      co_return;
    }
    startup = std::move(*parsed);
    break;
  }
  // The local socket is reachable by the daemon's own OS user alone: nothing to encrypt.
  if (opt.require_tls && !tls_ && !local_) {
    RefuseLogin(std::nullopt, "tls_required", "28000",
                "this arbor proxy requires TLS: connect with sslmode=require");
  }
  // arbor.* parameters are the proxy's to send (arbor.handoff, arbor_handoff.c): a client's
  // are dropped, so that only the proxy asks a compute for a handoff.
  std::erase_if(startup.params, [](const auto& p) {
    return p.first.size() >= 6 && strncasecmp(p.first.c_str(), "arbor.", 6) == 0;
  });
  const std::string user = *startup.Param("user");  // ParseStartup guarantees it
  if (user == kArborSuperuser) {
    RefuseLogin(std::nullopt, "superuser", "28000",
                "role \"postgres\" is Arbor's own superuser and cannot log in through the "
                "proxy; log in as \"owner\" or another role (see `arbor role list`)");
  }

  // ---- Routing information the startup packet carries (rules 1 and 2 of router.h).
  std::optional<EndpointName> sni_name = sni_.empty() ? std::nullopt : EndpointFromSni(sni_);
  std::optional<EndpointName> option_name;
  if (auto options = startup.Param("options")) {
    OptionsSplit split = SplitOptions(*options);
    if (split.endpoint) {
      auto n = ParseEndpointName(*split.endpoint);
      if (!n.ok()) Refuse("28000", "invalid endpoint= option: " + n.status().message());
      option_name = *n;
      if (split.rest.empty()) {
        startup.EraseParam("options");
      } else {
        startup.SetParam("options", split.rest);
      }
    }
  }

  // ---- The password. Cleartext is safe here: over TLS it is encrypted, and without TLS the
  // default listener is loopback only (see docs/proxy.md).
  {
    wire::Message req = wire::SerializeAuth({wire::AuthCode::kCleartextPassword, {}, {}});
    std::string bytes = wire::SerializeMessage(req.type, req.body);
    co_await WriteClient(bytes);
  }
  wire::Message pw_msg = co_await ReadClientMessage();
  if (pw_msg.type == 'X') co_return;  // the client gave up (psql does, to prompt)
  auto password_text = wire::ParsePasswordMessage(pw_msg);
  if (!password_text.ok()) Refuse("08P01", password_text.status().message());
  PasswordSplit pw = SplitPassword(*password_text);
  std::optional<EndpointName> password_name;
  if (pw.endpoint) {
    auto n = ParseEndpointName(*pw.endpoint);
    if (!n.ok()) Refuse("28000", "invalid endpoint= password prefix: " + n.status().message());
    password_name = *n;
  }

  // ---- Route: the first rule that names an endpoint wins. Backend calls run on the blocking
  // pool; each job writes into a named local (see OnBlockingPool).
  Backend* backend = impl_->backend;
  std::optional<EndpointRef> ref;
  std::string unresolved_sni;
  std::optional<Result<EndpointRef>> resolved;
  EndpointName candidate;
  std::function<void()> resolve_job = [&] {
    resolved.emplace(backend->Resolve(candidate.project, candidate.branch, candidate.endpoint));
  };
  std::vector<std::pair<EndpointName, bool>> candidates;  // name, is_sni
  if (sni_name) candidates.emplace_back(*sni_name, true);
  if (option_name) candidates.emplace_back(*option_name, false);
  if (password_name) candidates.emplace_back(*password_name, false);
  // A name that resolves to nothing is not revealed as such: the client gets the answer a
  // wrong password gets, after the same work, so endpoints cannot be enumerated.
  std::string requested;  // the name a token must be scoped to
  bool unknown = false;
  for (const auto& [name, is_sni] : candidates) {
    candidate = name;
    resolved.reset();
    co_await OnBlockingPool(resolve_job, impl_->blocking.get());
    if (!resolved) Refuse("XX000", "the control plane failed to resolve the endpoint");
    if (resolved->ok()) {
      ref = **resolved;
      break;
    }
    if (resolved->status().code() != Code::kNotFound) {
      Refuse("57P03", "cannot resolve endpoint: " + resolved->status().message());
    }
    if (!is_sni) {
      requested = "projects/" + name.project + "/branches/" + name.branch + "/endpoints/" +
                  (name.endpoint.empty() ? "primary" : name.endpoint);
      unknown = true;
      break;
    }
    unresolved_sni = sni_;  // a host name that is not an endpoint's; try the other rules
  }
  if (!ref && !unknown && local_port_ != impl_->main_port) {
    uint16_t port = local_port_;
    resolved.reset();
    std::function<void()> port_job = [&] { resolved.emplace(backend->ResolvePort(port)); };
    co_await OnBlockingPool(port_job, impl_->blocking.get());
    if (!resolved) Refuse("XX000", "the control plane failed to resolve the endpoint");
    if (resolved->ok()) {
      ref = **resolved;
    } else if (resolved->status().code() == Code::kNotFound) {
      unknown = true;
    } else {
      Refuse("57P03", "cannot resolve endpoint: " + resolved->status().message());
    }
  }
  if (!ref && !unknown) {
    std::string msg =
        "no endpoint named: connect to the endpoint's own port (see `arbor connection-string`), "
        "or set options=endpoint=<project>/<branch>, or prefix the password with "
        "endpoint=<project>/<branch>;";
    if (!unresolved_sni.empty()) {
      msg += " (the TLS host name " + unresolved_sni + " names no endpoint)";
    }
    RefuseLogin(std::nullopt, "no_endpoint", "28000", msg);
  }
  if (ref) requested = ref->TokenScope();

  // ---- Credentials, checked here, before anything reaches the compute: a failure never
  // wakes it, and junk passwords cost the proxy one PBKDF2 each, not a postgres login.
  const std::string failed = "password authentication failed for user \"" + user + "\"";
  if (pw.password.empty()) {
    RefuseLogin(ref, "no_password", "28P01", failed + ": a password or token is required");
  }
  std::optional<Result<auth::ScramSecret>> secret;
  if (ref) {
    std::function<void()> secret_job = [&] { secret.emplace(backend->RoleSecret(*ref, user)); };
    co_await OnBlockingPool(secret_job, impl_->blocking.get());
  }
  if (auth::TokenSigner::LooksLikeToken(pw.password)) {
    if (!impl_->tokens) {
      RefuseLogin(ref, "bad_token", "28P01", "this arbor proxy does not accept tokens");
    }
    // Checked against the name the client asked for, so the answer is the same whether or
    // not that endpoint exists.
    auto claims = impl_->tokens->Verify(pw.password, requested, UnixNow());
    if (!claims.ok()) {
      RefuseLogin(ref, "bad_token", "28P01", "token rejected: " + claims.status().message());
    }
    if (claims->role != user) {
      RefuseLogin(ref, "bad_token", "28P01",
                  "token rejected: it was issued for role \"" + claims->role +
                      "\", but the connection asks for user \"" + user + "\"");
    }
    if (!ref || claims->endpoint_uid != ref->uid) {
      log::info("proxy: {} token for {} refused: no such endpoint (or a newer one of its name)",
                peer_, requested);
      RefuseLogin(ref, "bad_token", "28P01", failed);
    }
  } else {
    // The check costs the same whether or not the endpoint and the role exist.
    static const auth::ScramSecret kDecoy = auth::ScramSecret::Derive("", "arbor-decoy-salt", 4096);
    const auth::ScramSecret& against = secret && secret->ok() ? **secret : kDecoy;
    std::optional<bool> matches;
    std::string candidate_pw = pw.password;
    std::function<void()> check_job = [&] { matches = against.Matches(candidate_pw); };
    co_await OnBlockingPool(check_job, impl_->blocking.get());
    if (!matches || !*matches || !ref || !secret || !secret->ok()) {
      RefuseLogin(ref, "wrong_password", "28P01", failed);
    }
  }
  if (!secret || !secret->ok()) {
    log::info("proxy: {} refused: no password of role {} on {}", peer_, user, requested);
    RefuseLogin(ref, "wrong_password", "28P01", failed);
  }
  const auth::ScramSecret role_secret = **secret;

  // ---- Wake and log in. From here on the connection counts for scale to zero.
  opened_ = *ref;
  backend->ConnectionOpened(*ref);
  ArmTimer(opt.compute_timeout);
  std::optional<Result<std::string>> woken;
  std::function<void()> wake_job = [&] { woken.emplace(backend->Wake(*ref)); };
  co_await OnBlockingPool(wake_job, impl_->waking.get());
  if (!woken) Refuse("XX000", "the control plane failed to start the compute");
  if (!woken->ok()) {
    Refuse("57P03",
           "the compute for " + ref->Name() + " could not start: " + woken->status().message());
  }
  const std::string socket_path = **woken;
  boost::system::error_code ec;
  asio::local::stream_protocol::endpoint compute_ep(socket_path);
  co_await compute_.async_connect(compute_ep, asio::redirect_error(use_awaitable, ec));
  if (ec) {
    log::warn("proxy: connect to {} failed: {}", socket_path, ec.message());
    Refuse("57P03", "the compute for " + ref->Name() + " does not accept connections");
  }
  startup.kind = wire::StartupKind::kStartup;
  // TLS sessions stay relayed: the compute could not read the client's TLS records.
  handoff_requested_ = impl_->handoff && !tls_;
  if (handoff_requested_) startup.SetParam("arbor.handoff", "on");
  std::string startup_bytes = wire::SerializeStartup(startup);
  co_await WriteCompute(startup_bytes);
  std::string greeting;
  co_await LoginToCompute(role_secret, &greeting);
  if (handoff_offer_) {
    timer_.cancel();
    co_await HandOff(socket_path, greeting);
    co_return;
  }

  // The compute's greeting (AuthenticationOk, ParameterStatus..., BackendKeyData,
  // ReadyForQuery), with the key replaced, as one write.
  for (;;) {
    wire::Message m = co_await ReadComputeMessage();
    if (m.type == 'K') {
      auto key = wire::ParseBackendKeyData(m);
      if (!key.ok()) Refuse("08P01", "the compute sent " + key.status().message());
      if (!cancel_key_) cancel_key_ = impl_->RegisterCancel({socket_path, *key});
      wire::Message mine = wire::SerializeBackendKeyData(*cancel_key_);
      greeting += wire::SerializeMessage(mine.type, mine.body);
      continue;
    }
    greeting += wire::SerializeMessage(m.type, m.body);
    if (m.type == 'E') {
      co_await WriteClient(greeting);
      throw SessionEnd{};
    }
    if (m.type == 'Z') break;
  }
  // The compute has sent all it will until it gets a query, and the proxy has read all of it
  // (exact lengths): the quiet point the kernel relay needs. Attach before the greeting goes
  // out, so the client cannot have sent a query yet that the compute answers.
  if (!tls_ && impl_->kernel_relay) {
    Status attached = kernel_.Attach(client_.native_handle(), compute_.native_handle());
    if (attached.ok()) {
      impl_->kernel_relayed.fetch_add(1);
    } else {
      log::debug("proxy: {} relays in user space: {}", peer_, attached.message());
    }
  }
  co_await WriteClient(greeting);
  timer_.cancel();
  log::debug("proxy: {} connected to {} as {}{}", peer_, ref->Name(), user,
             kernel_.attached() ? " (kernel relay)" : "");
  co_await Relay();
}

awaitable<void> Session::LoginToCompute(const auth::ScramSecret& secret, std::string* greeting) {
  // Only SCRAM-SHA-256, proven both ways, counts as the compute: a socket that answers
  // AuthenticationOk without it, or asks for a cleartext or MD5 password, is not one of
  // Arbor's computes (their hba_file asks every role for SCRAM), and gets nothing.
  std::optional<auth::ScramClient> scram;
  bool server_proven = false;
  for (;;) {
    wire::Message m = co_await ReadComputeMessage();
    if (m.type == 'E') {
      // The compute's own refusal (no such role or database, too many connections): relay it.
      std::string bytes = wire::SerializeMessage(m.type, m.body);
      co_await WriteClient(bytes);
      throw SessionEnd{};
    }
    if (m.type == 'N') {
      *greeting += wire::SerializeMessage(m.type, m.body);
      continue;
    }
    if (m.type == 'h') {
      // The compute offers to take the client's socket (arbor_handoff.c): its pid and cancel
      // key. Only after the proxy asked, and after the compute proved the role's password.
      // Its body is a BackendKeyData's.
      auto key = wire::ParseBackendKeyData({'K', m.body});
      if (!handoff_requested_ || !server_proven || !key.ok() || handoff_offer_) {
        Refuse("08P01", "the compute sent an unexpected handoff message");
      }
      handoff_offer_ = *key;
      co_return;
    }
    auto auth = wire::ParseAuth(m);
    if (!auth.ok()) {
      Refuse("08P01", "the compute sent an unexpected message: " + auth.status().message());
    }
    std::optional<wire::Message> reply;
    switch (auth->code) {
      case wire::AuthCode::kOk: {
        if (!server_proven) {
          log::error("proxy: {}: the compute's socket accepted a login without SCRAM; refused",
                     peer_);
          Refuse("28000", "the compute did not authenticate with SCRAM-SHA-256");
        }
        wire::Message ok = wire::SerializeAuth({});
        *greeting += wire::SerializeMessage(ok.type, ok.body);
        co_return;
      }
      case wire::AuthCode::kSasl: {
        bool has = false;
        for (const auto& mech : auth->sasl_mechanisms) has |= mech == "SCRAM-SHA-256";
        if (!has || scram)
          Refuse("28000", "the compute offers no SASL mechanism the proxy supports");
        auto nonce = auth::ScramClient::NewNonce();
        if (!nonce.ok()) Refuse("XX000", nonce.status().message());
        scram.emplace("", secret, *nonce);
        reply = wire::SerializeSaslInitialResponse({"SCRAM-SHA-256", scram->ClientFirst()});
        break;
      }
      case wire::AuthCode::kSaslContinue: {
        if (!scram) Refuse("08P01", "the compute sent SASLContinue out of order");
        auto final_msg = scram->ClientFinal(auth->data);
        if (!final_msg.ok()) {
          log::warn("proxy: {}: {}", peer_, final_msg.status().message());
          Refuse("28P01",
                 "the compute holds another password for this role than Arbor set "
                 "(was it changed with ALTER ROLE?); reset it with `arbor role "
                 "reset-password`");
        }
        reply = wire::SerializeSaslResponse(*final_msg);
        break;
      }
      case wire::AuthCode::kSaslFinal: {
        if (!scram) Refuse("08P01", "the compute sent SASLFinal out of order");
        Status s = scram->VerifyServerFinal(auth->data);
        if (!s.ok()) Refuse("28P01", s.message());
        server_proven = true;
        break;
      }
      default:
        Refuse("28000", "the compute asks for an authentication method (code " +
                            std::to_string(static_cast<uint32_t>(auth->code)) +
                            ") other than SCRAM-SHA-256; refused");
    }
    if (reply) {
      std::string bytes = wire::SerializeMessage(reply->type, reply->body);
      co_await WriteCompute(bytes);
    }
  }
}

awaitable<void> Session::HandOff(const std::string& socket_path, const std::string& greeting) {
  const wire::BackendKey key = *handoff_offer_;
  // The backend waits for the socket, so its pid names it until then: the pidfd is taken
  // first, and tells when the session ends whoever ends it.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(key.pid), 0));
  if (pidfd < 0) {
    Refuse("XX000",
           std::string("the proxy cannot watch the compute's backend: ") + std::strerror(errno));
  }
  // The pid must be a backend of the postmaster this session reached (the socket's listener,
  // from the kernel): a compute cannot make the proxy watch, or hand a client to, a process
  // of its choosing. Checked after pidfd_open, and the pidfd is checked to name a live
  // process after it, so the process checked is the pidfd's.
  struct ucred listener {};
  socklen_t len = sizeof listener;
  const std::optional<ProcStat> backend = ReadProcStat(static_cast<pid_t>(key.pid));
  const pid_t parent = backend ? backend->parent : -1;
  const bool have_listener =
      getsockopt(compute_.native_handle(), SOL_SOCKET, SO_PEERCRED, &listener, &len) == 0 &&
      listener.pid > 0;
  if (parent < 0 || !have_listener) {
    close(pidfd);
    log::warn(
        "proxy: {}: cannot tell whether process {} is a backend of the compute ({}); "
        "the session is refused",
        peer_, key.pid, parent < 0 ? "its /proc entry is unreadable" : "no SO_PEERCRED");
    Refuse("XX000", "the proxy cannot check the compute's backend");
  }
  if (parent != listener.pid || syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0) {
    close(pidfd);
    log::warn(
        "proxy: {}: the compute named process {} as its backend, which is not a child "
        "of its postmaster; the session is refused",
        peer_, key.pid);
    Refuse("08P01", "the compute named a backend that is not its own");
  }
  try {
    backend_exit_.emplace(client_.get_executor(), pidfd);
  } catch (...) {
    close(pidfd);
    throw;
  }
  // The client sees the compute's own BackendKeyData; cancel requests for it come here.
  if (!impl_->RegisterCancelAs(key, {socket_path, key})) {
    Refuse("XX000", "the compute's cancel key is already registered");
  }
  cancel_key_ = key;
  // Notices the compute sent during the login go first: the compute writes next.
  if (!greeting.empty()) co_await WriteClient(greeting);
  char byte = 'H';
  struct iovec iov = {&byte, 1};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  int fd = client_.native_handle();
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  // The compute's socket is empty and waiting: one byte always fits.
  ssize_t sent;
  do {
    sent = sendmsg(compute_.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (sent < 0 && errno == EINTR);
  if (sent != 1) {
    Refuse("XX000", std::string("the proxy could not hand the session to the compute: ") +
                        std::strerror(errno));
  }
  boost::system::error_code ec;
  compute_.close(ec);  // the backend has dropped its end for the client's socket
  // Kept for the byte counts and the close, out of the network thread's epoll.
  handed_fd_ = client_.release(ec);
  if (ec) handed_fd_ = -1;
  log::debug("proxy: {} handed to the compute's backend {}", peer_, key.pid);
  co_await backend_exit_->async_wait(asio::posix::descriptor_base::wait_read,
                                     asio::redirect_error(use_awaitable, ec));
  // The backend has exited (or the session was closed): its last bytes are in the socket's
  // queue, which the close below still sends.
  CloseAll();
}

awaitable<void> Session::ForwardCancel(wire::BackendKey key) {
  auto target = impl_->LookupCancel(key);
  if (!target) {
    log::debug("proxy: {} sent a cancel request for an unknown key", peer_);
    co_return;
  }
  asio::local::stream_protocol::socket s(client_.get_executor());
  asio::local::stream_protocol::endpoint ep(target->socket_path);
  co_await s.async_connect(ep, use_awaitable);
  std::string request = wire::SerializeCancelRequest(target->key);
  co_await asio::async_write(s, asio::buffer(request), use_awaitable);
  // PostgreSQL closes the connection once it has read the request; wait for that (the
  // handshake timer bounds the wait), so the client sees its close after the cancel is sent.
  char byte;
  boost::system::error_code ec;
  co_await s.async_read_some(asio::buffer(&byte, 1), asio::redirect_error(use_awaitable, ec));
}

awaitable<void> Session::Relay() {
  auto self = shared_from_this();
  asio::co_spawn(client_.get_executor(), self->PumpClientToCompute(),
                 [self](std::exception_ptr) {});
  if (kernel_.attached()) {
    co_await AwaitComputeClose();
  } else {
    co_await PumpComputeToClient();
  }
}

awaitable<void> Session::PumpClientToCompute() {
  std::vector<char> buf(kRelayBufferBytes);
  try {
    for (;;) {
      size_t n = tls_ ? co_await tls_->async_read_some(asio::buffer(buf), use_awaitable)
                      : co_await client_.async_read_some(asio::buffer(buf), use_awaitable);
      co_await asio::async_write(compute_, asio::buffer(buf.data(), n), use_awaitable);
      relayed_from_client_.fetch_add(n, std::memory_order_relaxed);
    }
  } catch (...) {
  }
  CloseAll();
}

awaitable<void> Session::PumpComputeToClient() {
  std::vector<char> buf(kRelayBufferBytes);
  try {
    for (;;) {
      size_t n = co_await compute_.async_read_some(asio::buffer(buf), use_awaitable);
      std::string_view chunk(buf.data(), n);
      co_await WriteClient(chunk);
      relayed_to_client_.fetch_add(n, std::memory_order_relaxed);
    }
  } catch (...) {
  }
  CloseAll();
}

awaitable<void> Session::AwaitComputeClose() {
  boost::system::error_code ec;
  std::vector<char> buf;
  compute_.non_blocking(true, ec);
  for (;;) {
    co_await compute_.async_wait(asio::socket_base::wait_read,
                                 asio::redirect_error(use_awaitable, ec));
    if (ec) break;  // closed by the other pump or by Stop
    if (buf.empty()) buf.resize(kRelayBufferBytes);
    size_t n = compute_.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) continue;  // spurious
    if (ec) {
      // EOF or an error: the compute ended the session. Let the kernel deliver its last bytes.
      asio::steady_timer wait(compute_.get_executor());
      wait.expires_after(kCloseGrace);
      co_await wait.async_wait(asio::redirect_error(use_awaitable, ec));
      auto deadline = std::chrono::steady_clock::now() + kCloseDrainLimit;
      int unsent = 0;
      while (client_.is_open() && ioctl(client_.native_handle(), SIOCOUTQ, &unsent) == 0 &&
             unsent > 0 && std::chrono::steady_clock::now() < deadline) {
        wait.expires_after(kCloseDrainPoll);
        co_await wait.async_wait(asio::redirect_error(use_awaitable, ec));
      }
      break;
    }
    // Bytes that reached user space after all (the program redirects every skb, so this
    // should not happen): forward them rather than lose them.
    try {
      std::string_view chunk(buf.data(), n);
      co_await WriteClient(chunk);
    } catch (...) {
      break;
    }
  }
  CloseAll();
}

}  // namespace arbor::proxy
