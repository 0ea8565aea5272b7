// The server's refusals and robustness without a compute: a fake Backend whose Wake either
// fails or points at a socket nobody listens on. (proxy_integration_test covers real logins.)

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "proxy/auth/base64.h"
#include "proxy/auth/crypto.h"
#include "proxy/proxy.h"
#include "proxy/wire/codec.h"

namespace arbor::proxy {
namespace {

using std::chrono::steady_clock;
const std::string kMain = "projects/default/branches/main/endpoints/primary";

class FakeBackend : public Backend {
 public:
  std::atomic<int> wakes{0}, opened{0}, closed{0};
  Result<EndpointRef> Resolve(const std::string& p, const std::string& b,
                              const std::string& e) override {
    if (p == "default" && b == "main" && (e.empty() || e == "primary")) {
      return EndpointRef{"default", "main", "primary"};
    }
    if (p == "default" && b == "broken") return Status::Unavailable("catalog is down");
    return Status::NotFound("no such branch");
  }
  Result<EndpointRef> ResolvePort(uint16_t) override { return Status::NotFound("no port"); }
  Result<std::string> Wake(const EndpointRef&) override {
    ++wakes;
    if (fail_wake) return Status::Unavailable("out of memory");
    if (!socket_path.empty()) return socket_path;
    return std::string("/nonexistent/dir/.s.PGSQL.5432");
  }
  std::string socket_path;  // set before connections: where Wake points
  Result<auth::ScramSecret> RoleSecret(const EndpointRef&, const std::string&) override {
    return auth::ScramSecret::Derive("pw", "salt", 4096);
  }
  void ConnectionOpened(const EndpointRef&) override { ++opened; }
  void ConnectionClosed(const EndpointRef&) override { ++closed; }
  std::atomic<bool> fail_wake{false};
};

// A unix socket in a fresh directory, where the fake backend's Wake points: what a rogue
// compute listens on. Removed, and Wake pointed back at nothing, when it goes (also after a
// failed ASSERT). fd() is -1 if it could not be made.
class RogueSocket {
 public:
  RogueSocket(FakeBackend* backend, const std::string& tag)
      : backend_(backend), dir_("/tmp/arbor_rogue_" + tag + "_" + std::to_string(getpid())) {
    if (mkdir(dir_.c_str(), 0700) != 0) return;
    backend_->socket_path = dir_ + "/.s.PGSQL.5432";
    fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", backend_->socket_path.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 8) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~RogueSocket() {
    if (fd_ >= 0) close(fd_);
    unlink((dir_ + "/.s.PGSQL.5432").c_str());
    rmdir(dir_.c_str());
    backend_->socket_path.clear();
  }
  RogueSocket(const RogueSocket&) = delete;
  RogueSocket& operator=(const RogueSocket&) = delete;
  int fd() const { return fd_; }

 private:
  FakeBackend* backend_;
  std::string dir_;
  int fd_ = -1;
};

int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

void Send(int fd, const std::string& s) { (void)!write(fd, s.data(), s.size()); }

// Everything the server sends until it closes (or `ms` pass); `closed` tells which.
std::string Drain(int fd, int ms, bool* closed) {
  std::string out;
  *closed = false;
  auto deadline = steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now())
            .count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) return out;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
      *closed = true;
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

// The SQLSTATE of the first ErrorResponse in `bytes`, or "".
std::string SqlState(std::string bytes) {
  for (;;) {
    auto m = wire::TakeMessage(bytes, wire::kMaxAuthMessageLength);
    if (!m.ok() || !m->has_value()) return "";
    if ((*m)->type == 'E') return wire::ParseError(**m)->Get('C');
  }
}

class ProxyServer : public ::testing::Test {
 protected:
  void SetUp() override {
    ProxyOptions o;
    o.listen_port = 0;
    o.handshake_timeout = std::chrono::milliseconds(300);
    o.handoff = handoff_;
    ASSERT_TRUE(proxy_.Start(o, &backend_, &signer_).ok());
  }
  // Startup with `options`, then `password`; returns the SQLSTATE the proxy answers with.
  std::string Login(const std::string& options, const std::string& password) {
    int fd = Connect(proxy_.port());
    wire::StartupPacket p;
    p.params = {{"user", "app"}};
    if (!options.empty()) p.params.emplace_back("options", options);
    Send(fd, wire::SerializeStartup(p));
    wire::Message pw = wire::SerializePasswordMessage(password);
    Send(fd, wire::SerializeMessage(pw.type, pw.body));
    bool closed;
    std::string reply = Drain(fd, 3000, &closed);
    close(fd);
    EXPECT_TRUE(closed);
    return SqlState(reply);
  }
  std::string Token(const std::string& ep = kMain) {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    return *signer_.Issue(ep, "app", 600, now);
  }

  bool handoff_ = false;  // set before SetUp
  FakeBackend backend_;
  auth::TokenSigner signer_{std::string(32, 'k')};
  Proxy proxy_;
};

TEST_F(ProxyServer, RefusalsNeverWake) {
  auth::TokenSigner other(std::string(32, 'o'));
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  EXPECT_EQ(Login("endpoint=default/main", *other.Issue(kMain, "app", 600, now)), "28P01");
  EXPECT_EQ(Login("endpoint=default/main", Token("projects/default/branches/x/endpoints/e")),
            "28P01");
  EXPECT_EQ(Login("endpoint=default/main", ""), "28P01");
  // 10a: a missing endpoint answers as a bad password does, so endpoints cannot be listed.
  EXPECT_EQ(Login("endpoint=default/nope", Token()), "28P01");
  EXPECT_EQ(Login("", "endpoint=default/nope;" + Token()), "28P01");
  EXPECT_EQ(Login("endpoint=default/nope", "pw"), "28P01");
  EXPECT_EQ(Login("endpoint=default/main", "not-pw"), "28P01");
  EXPECT_EQ(Login("", Token()), "28000");
  EXPECT_EQ(Login("endpoint=NOT/VALID", Token()), "28000");
  EXPECT_EQ(Login("endpoint=default/broken", Token()), "57P03");
  EXPECT_EQ(backend_.wakes.load(), 0);
  EXPECT_EQ(backend_.opened.load(), 0);
}

TEST_F(ProxyServer, WakeFailuresAre57P03AndConnectionsArePaired) {
  backend_.fail_wake = true;
  EXPECT_EQ(Login("endpoint=default/main", Token()), "57P03");
  backend_.fail_wake = false;
  EXPECT_EQ(Login("endpoint=default/main", Token()), "57P03");  // nothing listens there
  EXPECT_EQ(backend_.wakes.load(), 2);
  auto deadline = steady_clock::now() + std::chrono::seconds(2);
  while (backend_.closed.load() < 2 && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(backend_.opened.load(), 2);
  EXPECT_EQ(backend_.closed.load(), 2);
}

TEST_F(ProxyServer, GarbageOversizedAndStalledInputCloseTheConnection) {
  bool closed;
  int fd = Connect(proxy_.port());
  Send(fd, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(SqlState(Drain(fd, 2000, &closed)), "08P01");
  EXPECT_TRUE(closed);
  close(fd);

  fd = Connect(proxy_.port());
  Send(fd, std::string("\x00\x01\x00\x00\x00\x03\x00\x00", 8));  // 65536-byte startup
  EXPECT_EQ(SqlState(Drain(fd, 2000, &closed)), "08P01");
  EXPECT_TRUE(closed);
  close(fd);

  // Out of order: a Query where the password belongs.
  fd = Connect(proxy_.port());
  wire::StartupPacket p;
  p.params = {{"user", "app"}};
  Send(fd, wire::SerializeStartup(p));
  Send(fd, wire::SerializeMessage('Q', std::string("select 1\0", 9)));
  EXPECT_EQ(SqlState(Drain(fd, 2000, &closed)), "08P01");
  EXPECT_TRUE(closed);
  close(fd);

  // Stalled: closed after the 300 ms handshake timeout.
  fd = Connect(proxy_.port());
  auto start = steady_clock::now();
  Drain(fd, 3000, &closed);
  EXPECT_TRUE(closed);
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(2));
  close(fd);

  // Still serving.
  EXPECT_EQ(Login("endpoint=default/nope", Token()), "28P01");
}

// Item 8, "Memory can be exhausted before authentication": a password message or startup
// packet over a few KiB is refused from its header, before its body is buffered.
TEST_F(ProxyServer, OversizedPasswordAndStartupAreRefusedFromTheirHeader) {
  bool closed;
  int fd = Connect(proxy_.port());
  wire::StartupPacket p;
  p.params = {{"user", "app"}, {"options", "endpoint=default/main"}};
  Send(fd, wire::SerializeStartup(p));
  std::string header = "p";
  uint32_t len = htonl(8 * 1024);  // declared; never sent
  header.append(reinterpret_cast<const char*>(&len), 4);
  Send(fd, header);
  EXPECT_EQ(SqlState(Drain(fd, 2000, &closed)), "08P01");
  EXPECT_TRUE(closed);
  close(fd);

  fd = Connect(proxy_.port());
  uint32_t startup_len = htonl(9000);
  Send(fd, std::string(reinterpret_cast<const char*>(&startup_len), 4));
  EXPECT_EQ(SqlState(Drain(fd, 2000, &closed)), "08P01");
  EXPECT_TRUE(closed);
  close(fd);
  EXPECT_EQ(backend_.wakes.load(), 0);
}

// Item 5, "The proxy talks to whatever answers on a compute's socket": a socket that lets the
// login in without SCRAM, or asks for the password in cleartext or MD5, is refused, and never
// sees a password or a client's query.
TEST_F(ProxyServer, ComputeWithoutScramIsRefused) {
  RogueSocket rogue_socket(&backend_, "scram");
  ASSERT_GE(rogue_socket.fd(), 0);
  const int listener = rogue_socket.fd();
  // Each rogue answer: AuthenticationOk (code 0), CleartextPassword (3), MD5Password (5).
  for (uint32_t code : {0u, 3u, 5u}) {
    std::string received;
    std::thread rogue([&] {
      int c = accept(listener, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      ssize_t n = read(c, buf, sizeof buf);  // the startup packet
      std::string auth = "R";
      uint32_t l = htonl(code == 5 ? 12 : 8), k = htonl(code);
      auth.append(reinterpret_cast<const char*>(&l), 4);
      auth.append(reinterpret_cast<const char*>(&k), 4);
      if (code == 5) auth.append("salt", 4);
      if (code == 0) auth += std::string("Z\0\0\0\5I", 6);  // ReadyForQuery
      (void)!write(c, auth.data(), auth.size());
      pollfd pf{c, POLLIN, 0};
      while (n > 0 && poll(&pf, 1, 1000) == 1 && (n = read(c, buf, sizeof buf)) > 0) {
        received.append(buf, static_cast<size_t>(n));
      }
      close(c);
    });
    EXPECT_EQ(Login("endpoint=default/main", Token()), "28000") << "code " << code;
    rogue.join();
    EXPECT_EQ(received.find('p'), std::string::npos)
        << "the proxy answered code " << code << " with a password message";
  }
}

// A rogue compute that logs the proxy in (it knows the role's SCRAM keys, as a compute does),
// then names a process that is not one of its backends for the handoff: here pid 1. The proxy
// refuses the session and sends the rogue no client socket (it used to hand the client over
// and wait for pid 1 to exit).
class ProxyHandoff : public ProxyServer {
 protected:
  void SetUp() override {
    handoff_ = true;
    ProxyServer::SetUp();
  }
};

// One typed message from `fd` (blocking): its type and body; type 0 on EOF.
std::pair<char, std::string> ReadMessage(int fd, bool typed = true) {
  auto read_all = [fd](char* p, size_t n) {
    while (n > 0) {
      ssize_t r = read(fd, p, n);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  };
  char type = 0;
  uint32_t len;
  if ((typed && !read_all(&type, 1)) || !read_all(reinterpret_cast<char*>(&len), 4)) return {};
  if (ntohl(len) < 4 || ntohl(len) > (1u << 20)) return {};
  std::string body(ntohl(len) - 4, '\0');
  if (!read_all(body.data(), body.size())) return {};
  return {typed ? type : 'S', body};
}

std::string Int32(uint32_t v) {
  v = htonl(v);
  return std::string(reinterpret_cast<const char*>(&v), 4);
}

void SendAuth(int fd, uint32_t code, const std::string& data) {
  Send(fd, wire::SerializeMessage('R', Int32(code) + data));
}

TEST_F(ProxyHandoff, ARogueComputeCannotNameAnotherProcessAsItsBackend) {
  RogueSocket rogue_socket(&backend_, "handoff");
  ASSERT_GE(rogue_socket.fd(), 0);
  const int listener = rogue_socket.fd();
  const auth::ScramSecret secret = auth::ScramSecret::Derive("pw", "salt", 4096);
  std::atomic<bool> asked{false}, proven{false}, got_socket{false};
  std::thread rogue([&] {
    pollfd incoming{listener, POLLIN, 0};
    if (poll(&incoming, 1, 10000) != 1) return;  // the proxy never came: the checks below fail
    int c = accept(listener, nullptr, nullptr);
    if (c < 0) return;
    auto startup = ReadMessage(c, /*typed=*/false);
    asked = startup.second.find(std::string("arbor.handoff\0on", 16)) != std::string::npos;
    SendAuth(c, 10, std::string("SCRAM-SHA-256\0\0", 15));
    // SASLInitialResponse: mechanism, length, "n,,n=,r=<client nonce>".
    auto first = ReadMessage(c);
    size_t at = first.second.find("n,,");
    std::string client_first_bare = at == std::string::npos ? "" : first.second.substr(at + 3);
    size_t r = client_first_bare.find("r=");
    std::string nonce = (r == std::string::npos ? "" : client_first_bare.substr(r + 2)) + "rogue";
    std::string server_first = "r=" + nonce + ",s=" + auth::Base64Encode(secret.salt) + ",i=4096";
    SendAuth(c, 11, server_first);
    auto final_msg = ReadMessage(c);  // "c=biws,r=<nonce>,p=<proof>"
    std::string without_proof = final_msg.second.substr(0, final_msg.second.find(",p="));
    std::string auth_message = client_first_bare + "," + server_first + "," + without_proof;
    SendAuth(c, 12, "v=" + auth::Base64Encode(auth::HmacSha256(secret.server_key, auth_message)));
    proven = true;
    Send(c, wire::SerializeMessage('h', Int32(1) + Int32(12345)));  // pid 1, not a child
    char byte;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{&byte, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    pollfd pf{c, POLLIN, 0};
    if (poll(&pf, 1, 3000) == 1 && recvmsg(c, &msg, MSG_CMSG_CLOEXEC) > 0) {
      for (cmsghdr* h = CMSG_FIRSTHDR(&msg); h != nullptr; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_type == SCM_RIGHTS) {
          got_socket = true;
          int fd;
          std::memcpy(&fd, CMSG_DATA(h), sizeof fd);
          close(fd);
        }
      }
    }
    close(c);
  });
  EXPECT_EQ(Login("endpoint=default/main", Token()), "08P01");
  rogue.join();
  EXPECT_TRUE(asked.load()) << "the proxy did not ask this compute for a handoff";
  EXPECT_TRUE(proven.load());
  EXPECT_FALSE(got_socket.load()) << "the proxy handed the client to a rogue compute";
}

TEST_F(ProxyServer, SslDeclinedWithoutCertificateAndGssEncDeclined) {
  for (auto kind : {wire::StartupKind::kSslRequest, wire::StartupKind::kGssEncRequest}) {
    int fd = Connect(proxy_.port());
    wire::StartupPacket p;
    p.kind = kind;
    Send(fd, wire::SerializeStartup(p));
    char c = 0;
    pollfd pf{fd, POLLIN, 0};
    ASSERT_EQ(poll(&pf, 1, 2000), 1);
    ASSERT_EQ(read(fd, &c, 1), 1);
    EXPECT_EQ(c, 'N');
    close(fd);
  }
}

TEST_F(ProxyServer, StopWithOpenConnections) {
  int fd = Connect(proxy_.port());
  proxy_.Stop();
  bool closed;
  Drain(fd, 2000, &closed);
  EXPECT_TRUE(closed);
  close(fd);
  EXPECT_EQ(proxy_.ActiveConnections(), 0u);
}

}  // namespace
}  // namespace arbor::proxy
