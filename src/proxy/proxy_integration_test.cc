// The proxy in front of a real PostgreSQL 15 (scram-sha-256, private unix socket only), with
// a test Backend. Clients are libpq, psql, and a raw-socket client for what libpq cannot show
// (SQLSTATEs of refused logins, garbage, stalls).

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "proxy/auth/crypto.h"
#include "proxy/proxy.h"
#include "proxy/wire/codec.h"
#include "testutil/pq_client.h"

namespace arbor::proxy {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;
using testutil::QueryOne;

const char* kPgBin = "/usr/lib/postgresql/15/bin";
const std::string kMain = "projects/default/branches/main/endpoints/primary";
const std::string kDev = "projects/default/branches/dev/endpoints/primary";

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The SCRAM secrets of role app's password "apppw", as Arbor would hold them.
const auth::ScramSecret& AppSecret() {
  static const auth::ScramSecret secret = *auth::ScramSecret::FromPassword("apppw");
  return secret;
}

// `text` with each '$' escaped for a double-quoted shell word.
std::string ShellDollars(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '$') out += '\\';
    out += c;
  }
  return out;
}

// Runs a shell command, as the postgres OS user when we are root. Returns the exit status.
int RunAsPg(const std::string& cmd) {
  std::string full = geteuid() == 0 ? "runuser -u postgres -- sh -c '" + cmd + "'" : cmd;
  return std::system(full.c_str());
}

std::string Capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// One PostgreSQL 15 cluster for the whole binary; stopped at exit even when a test fails.
class Postgres : public ::testing::Environment {
 public:
  static inline std::string dir, sock_dir, socket_path, data;
  static inline bool started = false;

  void SetUp() override {
    char tmpl[] = "/tmp/arbor_proxy_it_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    sock_dir = dir + "/sock";
    data = dir + "/data";
    fs::create_directories(sock_dir);
    std::ofstream(dir + "/pw") << "superpw\n";
    if (geteuid() == 0) {
      struct passwd* pw = getpwnam("postgres");
      ASSERT_NE(pw, nullptr) << "the postgres OS user is needed when running as root";
      for (const auto& p : {dir, sock_dir, dir + "/pw"}) {
        ASSERT_EQ(chown(p.c_str(), pw->pw_uid, pw->pw_gid), 0);
      }
    }
    ASSERT_EQ(RunAsPg(std::string(kPgBin) + "/initdb -D " + data +
                      " -U postgres --auth-local=scram-sha-256 --auth-host=scram-sha-256"
                      " --pwfile=" +
                      dir + "/pw --no-sync -E UTF8 >" + dir + "/initdb.log 2>&1"),
              0)
        << "initdb failed; see " << dir << "/initdb.log";
    ASSERT_EQ(RunAsPg(std::string(kPgBin) + "/pg_ctl -D " + data + " -l " + dir +
                      "/pg.log -w -t 60 -o \"-c listen_addresses= -c unix_socket_directories=" +
                      sock_dir + " -c port=5432 -c fsync=off\" start >/dev/null"),
              0)
        << "postgres did not start; see " << dir << "/pg.log";
    started = true;
    std::atexit(Stop);
    StartWatchdog();
    socket_path = sock_dir + "/.s.PGSQL.5432";
    // The role's password is set as Arbor sets it: from SCRAM secrets the proxy also holds.
    ASSERT_EQ(RunAsPg("PGPASSWORD=superpw psql -X -q -h " + sock_dir +
                      " -U postgres -d postgres -c \"create role app login password " + "\\$\\$" +
                      ShellDollars(AppSecret().Verifier()) +
                      "\\$\\$; grant create on schema public to app\" >/dev/null"),
              0);
  }
  void TearDown() override { Stop(); }

  // A child that outlives a crash of this process: it waits for the pipe to close (which
  // happens however we exit, even on abort or SIGKILL) and then stops postgres and removes
  // the directory.
  static void StartWatchdog() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_t pid = fork();
    if (pid == 0) {
      setsid();  // survive a kill of our process group too
      close(fds[1]);
      char c;
      while (read(fds[0], &c, 1) > 0) {
      }
      RunAsPg(std::string(kPgBin) + "/pg_ctl -D " + data + " -m immediate -w stop >/dev/null 2>&1");
      if (!getenv("ARBOR_KEEP_TEST_DIR")) {
        std::error_code ec;
        fs::remove_all(dir, ec);
      }
      _exit(0);
    }
    close(fds[0]);  // the write end stays open until this process ends
  }

  static void Stop() {
    if (started) {
      started = false;
      RunAsPg(std::string(kPgBin) + "/pg_ctl -D " + data + " -m immediate -w stop >/dev/null 2>&1");
    }
    if (!dir.empty() && !getenv("ARBOR_KEEP_TEST_DIR")) {
      std::error_code ec;
      fs::remove_all(dir, ec);
      dir.clear();
    }
  }
};

// The control plane, as far as the proxy sees it: two branches served by one postgres.
class TestBackend : public Backend {
 public:
  std::atomic<int> wakes{0};
  std::atomic<int> open{0};
  std::atomic<int> opened_total{0};
  std::atomic<uint16_t> dedicated_port{0};

  Result<EndpointRef> Resolve(const std::string& project, const std::string& branch,
                              const std::string& endpoint) override {
    if (project != "default" || (branch != "main" && branch != "dev") ||
        (!endpoint.empty() && endpoint != "primary")) {
      return Status::NotFound("no such branch or endpoint");
    }
    return EndpointRef{project, branch, "primary"};
  }
  Result<EndpointRef> ResolvePort(uint16_t port) override {
    if (port == dedicated_port.load()) return EndpointRef{"default", "main", "primary"};
    return Status::NotFound("no endpoint on this port");
  }
  std::atomic<int> wake_delay_ms{0};
  std::atomic<int> waking_now{0};
  std::atomic<int> max_waking{0};

  Result<std::string> Wake(const EndpointRef&) override {
    ++wakes;
    int now = ++waking_now;
    int seen = max_waking.load();
    while (now > seen && !max_waking.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(wake_delay_ms.load()));
    --waking_now;
    return Postgres::socket_path;
  }
  Result<auth::ScramSecret> RoleSecret(const EndpointRef&, const std::string& role) override {
    if (role == "app") return AppSecret();
    return Status::NotFound("no password of role " + role);
  }
  void ConnectionOpened(const EndpointRef&) override {
    ++open;
    ++opened_total;
  }
  void ConnectionClosed(const EndpointRef&) override { --open; }
};

// A raw protocol client: enough to see SQLSTATEs and to misbehave.
class Raw {
 public:
  explicit Raw(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~Raw() { close(fd_); }
  bool connected() const { return connected_; }
  void Send(std::string_view bytes) { (void)!write(fd_, bytes.data(), bytes.size()); }
  // Reads until `n` bytes or EOF/timeout; returns what arrived.
  std::string Read(size_t n, int timeout_ms) {
    std::string out;
    auto deadline = steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (out.size() < n) {
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now())
              .count());
      if (left <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, left) <= 0) break;
      char buf[4096];
      ssize_t r = read(fd_, buf, std::min(sizeof(buf), n - out.size()));
      if (r <= 0) {
        eof_ = true;
        break;
      }
      out.append(buf, static_cast<size_t>(r));
    }
    return out;
  }
  // True if the server closes the connection within `timeout_ms` (draining what it sends).
  bool ClosedWithin(int timeout_ms) {
    Read(1 << 20, timeout_ms);
    return eof_;
  }
  // Reads one message; type 0 on EOF/timeout.
  wire::Message ReadMessage(int timeout_ms = 5000) {
    std::string h = Read(5, timeout_ms);
    if (h.size() < 5) return {};
    auto len = wire::ParseMessageHeader(h, wire::kMaxAuthMessageLength);
    if (!len.ok()) return {};
    wire::Message m{h[0], Read(*len, timeout_ms)};
    return m;
  }
  // Startup with `params`, then the password; returns the SQLSTATE of the refusal, or "" if
  // the login succeeded (AuthenticationOk).
  std::string Login(std::vector<std::pair<std::string, std::string>> params,
                    const std::string& password) {
    wire::StartupPacket p;
    p.params = std::move(params);
    Send(wire::SerializeStartup(p));
    wire::Message m = ReadMessage();
    if (m.type == 'E') return wire::ParseError(m)->Get('C');
    if (m.type != 'R') return "no-auth-request";
    wire::Message pw = wire::SerializePasswordMessage(password);
    Send(wire::SerializeMessage(pw.type, pw.body));
    m = ReadMessage(15000);
    if (m.type == 'E') {
      last_error_ = wire::ParseError(m)->Get('M');
      return wire::ParseError(m)->Get('C');
    }
    if (m.type == 'R') return "";
    return "unexpected";
  }
  const std::string& last_error() const { return last_error_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string last_error_;
};

class ProxyIntegration : public ::testing::Test {
 protected:
  static inline TestBackend* backend = nullptr;
  static inline auth::TokenSigner* signer = nullptr;
  static inline Proxy* proxy = nullptr;
  static inline uint16_t dedicated = 0;

  static void SetUpTestSuite() {
    ASSERT_TRUE(Postgres::started);
    backend = new TestBackend;
    signer = new auth::TokenSigner(std::string(32, 's'));
    std::string cert = Postgres::dir + "/cert.pem", key = Postgres::dir + "/key.pem";
    ASSERT_TRUE(GenerateSelfSignedCert(cert, key, "arbor.test").ok());
    ProxyOptions o;
    o.listen_port = 0;
    o.tls_cert_file = cert;
    o.tls_key_file = key;
    o.handshake_timeout = std::chrono::milliseconds(1500);
    if (const char* t = getenv("ARBOR_PROXY_THREADS")) o.threads = std::atoi(t);
    proxy = new Proxy;
    Status s = proxy->Start(o, backend, signer);
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto d = proxy->AddPortListener(0);
    ASSERT_TRUE(d.ok());
    dedicated = *d;
    backend->dedicated_port = dedicated;
  }
  static void TearDownTestSuite() {
    delete proxy;  // stops it
    delete signer;
    delete backend;
  }

  static std::string Token(const std::string& endpoint = kMain, const std::string& role = "app") {
    return *signer->Issue(endpoint, role, 600, Now());
  }
  static std::string Conninfo(uint16_t port, const std::string& password,
                              const std::string& extra = "") {
    return "host=127.0.0.1 port=" + std::to_string(port) +
           " user=app dbname=postgres connect_timeout=20 password='" + password + "' " + extra;
  }
  // Connects and runs `select current_user`; returns the user or the error.
  static std::string Who(const std::string& conninfo, bool expect_tls = false) {
    PGconn* c = PQconnectdb(conninfo.c_str());
    std::string out = PQstatus(c) == CONNECTION_OK ? QueryOne(c, "select current_user")
                                                   : std::string("CONNECT: ") + PQerrorMessage(c);
    if (PQstatus(c) == CONNECTION_OK && expect_tls && !PQsslInUse(c)) out = "not TLS";
    PQfinish(c);
    return out;
  }
  static void WaitForNoOpenConnections() {
    auto deadline = steady_clock::now() + std::chrono::seconds(5);
    while (backend->open.load() != 0 && steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
};

TEST_F(ProxyIntegration, TokenWithStartupOption) {
  EXPECT_EQ(
      Who(Conninfo(proxy->port(), Token(), "options='endpoint=default/main' sslmode=disable")),
      "app");
  // The -c form, with another option that must still reach postgres.
  PGconn* c = PQconnectdb(
      Conninfo(proxy->port(), Token(), "options='-c endpoint=default/main -c work_mem=7MB'")
          .c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  EXPECT_EQ(QueryOne(c, "show work_mem"), "7MB");
  PQfinish(c);
}

TEST_F(ProxyIntegration, RolePasswordWithPasswordPrefix) {
  EXPECT_EQ(Who(Conninfo(proxy->port(), "endpoint=default/main;apppw")), "app");
  EXPECT_EQ(Who(Conninfo(proxy->port(), "endpoint=default/main;" + Token())), "app");
}

TEST_F(ProxyIntegration, DedicatedPort) {
  EXPECT_EQ(Who(Conninfo(dedicated, "apppw")), "app");
  EXPECT_EQ(Who(Conninfo(dedicated, Token())), "app");
}

TEST_F(ProxyIntegration, SniWithTls) {
  std::string tls =
      "hostaddr=127.0.0.1 host=default--main.arbor.test port=" + std::to_string(proxy->port()) +
      " user=app dbname=postgres sslmode=require connect_timeout=20 password=";
  EXPECT_EQ(Who(tls + Token(), /*expect_tls=*/true), "app");
  // The SNI label names dev; a token for main does not open it.
  std::string dev =
      "hostaddr=127.0.0.1 host=default--dev.arbor.test port=" + std::to_string(proxy->port()) +
      " user=app dbname=postgres sslmode=require password=";
  EXPECT_NE(Who(dev + Token(kMain)).find("token rejected"), std::string::npos);
  EXPECT_EQ(Who(dev + Token(kDev), true), "app");
  // TLS on the dedicated port, without SNI routing.
  EXPECT_EQ(Who(Conninfo(dedicated, Token(), "sslmode=require"), true), "app");
}

TEST_F(ProxyIntegration, PsqlWithToken) {
  std::string out = Capture("PGPASSWORD='" + Token() + "' PGCONNECT_TIMEOUT=20 psql -X -At " +
                            "\"host=127.0.0.1 port=" + std::to_string(proxy->port()) +
                            " user=app dbname=postgres options=endpoint=default/main "
                            "sslmode=require\" -c 'select 6*7' 2>&1");
  EXPECT_EQ(out, "42\n");
}

TEST_F(ProxyIntegration, LargeResultsAndCopyBothWays) {
  PGconn* c = PQconnectdb(
      Conninfo(proxy->port(), Token(), "options=endpoint=default/main sslmode=require").c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  EXPECT_EQ(QueryOne(c, "select length(repeat('x', 5000000))"), "5000000");
  PGresult* r = PQexec(c, "select repeat('y', 3000000)");
  ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
  EXPECT_EQ(std::string(PQgetvalue(r, 0, 0)), std::string(3000000, 'y'));
  PQclear(r);
  // COPY FROM STDIN
  PQclear(PQexec(c, "create temp table t(i int)"));
  r = PQexec(c, "copy t from stdin");
  ASSERT_EQ(PQresultStatus(r), PGRES_COPY_IN);
  PQclear(r);
  std::string rows;
  for (int i = 1; i <= 100000; ++i) rows += std::to_string(i) + "\n";
  ASSERT_EQ(PQputCopyData(c, rows.data(), static_cast<int>(rows.size())), 1);
  ASSERT_EQ(PQputCopyEnd(c, nullptr), 1);
  r = PQgetResult(c);
  EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  while ((r = PQgetResult(c))) PQclear(r);
  EXPECT_EQ(QueryOne(c, "select sum(i) from t"), "5000050000");
  // COPY TO STDOUT
  r = PQexec(c, "copy t to stdout");
  ASSERT_EQ(PQresultStatus(r), PGRES_COPY_OUT);
  PQclear(r);
  size_t lines = 0;
  char* buf = nullptr;
  int n;
  while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
    ++lines;
    PQfreemem(buf);
  }
  while ((r = PQgetResult(c))) PQclear(r);
  EXPECT_EQ(lines, 100000u);
  // Extended protocol.
  const char* params[] = {"41"};
  r = PQexecParams(c, "select $1::int + 1", 1, nullptr, params, nullptr, nullptr, 0);
  ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
  EXPECT_STREQ(PQgetvalue(r, 0, 0), "42");
  PQclear(r);
  PQfinish(c);
}

TEST_F(ProxyIntegration, RefusalsNeverWakeTheCompute) {
  int wakes = backend->wakes.load();
  auto login = [&](const std::string& password,
                   const std::string& options = "endpoint=default/main",
                   const std::string& user = "app") {
    Raw raw(proxy->port());
    EXPECT_TRUE(raw.connected());
    std::vector<std::pair<std::string, std::string>> params = {{"user", user},
                                                               {"database", "postgres"}};
    if (!options.empty()) params.emplace_back("options", options);
    return raw.Login(params, password);
  };
  auth::TokenSigner other(std::string(32, 'x'));
  EXPECT_EQ(login(*other.Issue(kMain, "app", 600, Now())), "28P01");          // forged
  EXPECT_EQ(login(*signer->Issue(kMain, "app", 300, Now() - 400)), "28P01");  // expired
  EXPECT_EQ(login(Token(kDev)), "28P01");                                     // other endpoint
  EXPECT_EQ(login(Token(kMain, "postgres")), "28P01");  // issued for another role
  // An endpoint that does not exist gets what a wrong password gets (no enumeration).
  EXPECT_EQ(login(Token(), "endpoint=default/nope"), "28P01");
  EXPECT_EQ(login(Token(), "endpoint=nope/main"), "28P01");
  EXPECT_EQ(login("endpoint=default/gone;apppw", ""), "28P01");
  EXPECT_EQ(login(Token(), ""), "28000");  // no routing information at all
  EXPECT_EQ(login(Token(), "endpoint=Bad_Name"), "28000");
  EXPECT_EQ(login("", "endpoint=default/main"), "28P01");
  // Item 7, "Anyone can wake a compute without a credential": a wrong role password, or a
  // role Arbor holds no password for, is refused by the proxy itself.
  EXPECT_EQ(login("wrong"), "28P01");
  EXPECT_EQ(login("apppw", "endpoint=default/main", "nobody"), "28P01");
  EXPECT_EQ(login("apppw", "endpoint=default/main", "postgres"), "28000");  // Arbor's own
  EXPECT_EQ(backend->wakes.load(), wakes) << "a refused login woke the compute";
  // A right one passes.
  EXPECT_EQ(login("apppw"), "");
  // The message is clear about what went wrong.
  Raw raw(proxy->port());
  raw.Login({{"user", "app"}, {"options", "endpoint=default/main"}},
            *signer->Issue(kMain, "app", 300, Now() - 400));
  EXPECT_NE(raw.last_error().find("expired"), std::string::npos) << raw.last_error();
}

TEST_F(ProxyIntegration, CancelStopsASleep) {
  PGconn* c =
      PQconnectdb(Conninfo(proxy->port(), Token(), "options=endpoint=default/main").c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  auto start = steady_clock::now();
  ASSERT_EQ(PQsendQuery(c, "select pg_sleep(60)"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  PGcancel* cancel = PQgetCancel(c);
  char err[256];
  ASSERT_EQ(PQcancel(cancel, err, sizeof(err)), 1) << err;
  PQfreeCancel(cancel);
  PGresult* r = PQgetResult(c);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR);
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  EXPECT_STREQ(state ? state : "", "57014");
  PQclear(r);
  while ((r = PQgetResult(c))) PQclear(r);
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(QueryOne(c, "select 1"), "1");  // the session survives its cancelled query
  PQfinish(c);
}

TEST_F(ProxyIntegration, GarbageAndStalledClientsCloseOnlyTheirOwnConnection) {
  PGconn* good = PQconnectdb(Conninfo(dedicated, "apppw").c_str());
  ASSERT_EQ(PQstatus(good), CONNECTION_OK) << PQerrorMessage(good);

  Raw http(proxy->port());
  http.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(http.ClosedWithin(1000));

  Raw oversized(proxy->port());
  oversized.Send(std::string("\x7f\xff\xff\xff\x00\x03\x00\x00", 8));
  EXPECT_TRUE(oversized.ClosedWithin(1000));

  Raw stalled(proxy->port());  // sends nothing
  Raw half(proxy->port());     // half a startup packet
  half.Send(std::string("\x00\x00\x00\x40\x00\x03\x00\x00user", 12));
  Raw no_password(proxy->port());  // a startup, then silence at the password prompt
  wire::StartupPacket p;
  p.params = {{"user", "app"}, {"options", "endpoint=default/main"}};
  no_password.Send(wire::SerializeStartup(p));
  Raw bad_password_msg(proxy->port());  // a query instead of a password
  bad_password_msg.Send(wire::SerializeStartup(p));
  bad_password_msg.Send(wire::SerializeMessage('Q', std::string("select 1\0", 9)));
  Raw huge_password(proxy->port());
  huge_password.Send(wire::SerializeStartup(p));
  huge_password.Send(std::string("p\x7f\x00\x00\x00", 5));
  EXPECT_TRUE(huge_password.ClosedWithin(1000));

  auto start = steady_clock::now();
  EXPECT_TRUE(stalled.ClosedWithin(4000));
  EXPECT_TRUE(half.ClosedWithin(4000));
  EXPECT_TRUE(no_password.ClosedWithin(4000));
  EXPECT_TRUE(bad_password_msg.ClosedWithin(4000));
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(4));

  // The established session is untouched, and new ones still work.
  EXPECT_EQ(QueryOne(good, "select 2"), "2");
  PQfinish(good);
  EXPECT_EQ(Who(Conninfo(proxy->port(), Token(), "options=endpoint=default/main")), "app");
}

TEST_F(ProxyIntegration, GssEncIsDeclinedAndUnknownCancelIsIgnored) {
  Raw gss(proxy->port());
  wire::StartupPacket g;
  g.kind = wire::StartupKind::kGssEncRequest;
  gss.Send(wire::SerializeStartup(g));
  EXPECT_EQ(gss.Read(1, 2000), "N");
  EXPECT_EQ(gss.Login({{"user", "app"}, {"options", "endpoint=default/main"}}, Token()), "");

  Raw cancel(proxy->port());
  cancel.Send(wire::SerializeCancelRequest({1234, 5678}));
  EXPECT_TRUE(cancel.ClosedWithin(2000));
}

TEST_F(ProxyIntegration, ConcurrentConnectionsAreCountedAndReleased) {
  WaitForNoOpenConnections();
  int before_total = backend->opened_total.load();
  constexpr int kClients = 40;
  std::vector<PGconn*> conns(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      conns[i] = PQconnectdb(Conninfo(i % 2 ? dedicated : proxy->port(), Token(),
                                      i % 2 ? "" : "options=endpoint=default/main")
                                 .c_str());
    });
  }
  for (auto& t : threads) t.join();
  for (PGconn* c : conns) {
    EXPECT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  }
  EXPECT_EQ(backend->open.load(), kClients);
  EXPECT_EQ(backend->opened_total.load() - before_total, kClients);
  for (PGconn* c : conns) PQfinish(c);
  WaitForNoOpenConnections();
  EXPECT_EQ(backend->open.load(), 0);
}

TEST_F(ProxyIntegration, AThousandConcurrentClients) {
  // 1000 clients parked at the password prompt at once; the proxy keeps serving others, and
  // each parked client is released when it leaves.
  constexpr int kClients = 1000;
  std::vector<std::unique_ptr<Raw>> parked;
  wire::StartupPacket p;
  p.params = {{"user", "app"}, {"options", "endpoint=default/main"}};
  std::string startup = wire::SerializeStartup(p);
  for (int i = 0; i < kClients; ++i) {
    parked.push_back(std::make_unique<Raw>(i % 2 ? proxy->port() : dedicated));
    ASSERT_TRUE(parked.back()->connected()) << i;
    parked.back()->Send(startup);
  }
  int asked = 0;
  for (auto& r : parked) asked += r->ReadMessage(10000).type == 'R';
  EXPECT_EQ(asked, kClients);
  EXPECT_GE(proxy->ActiveConnections(), static_cast<size_t>(kClients));
  EXPECT_EQ(Who(Conninfo(proxy->port(), Token(), "options=endpoint=default/main")), "app");
  parked.clear();
  auto deadline = steady_clock::now() + std::chrono::seconds(10);
  while (proxy->ActiveConnections() > 0 && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(proxy->ActiveConnections(), 0u);
}

TEST_F(ProxyIntegration, RequireTls) {
  ProxyOptions o;
  o.listen_port = 0;
  o.tls_cert_file = Postgres::dir + "/cert.pem";
  o.tls_key_file = Postgres::dir + "/key.pem";
  o.require_tls = true;
  Proxy strict;
  ASSERT_TRUE(strict.Start(o, backend, signer).ok());
  Raw plain(strict.port());
  EXPECT_EQ(plain.Login({{"user", "app"}, {"options", "endpoint=default/main"}}, Token()), "28000");
  EXPECT_NE(Who(Conninfo(strict.port(), Token(), "options=endpoint=default/main sslmode=disable"))
                .find("requires TLS"),
            std::string::npos);
  EXPECT_EQ(
      Who(Conninfo(strict.port(), Token(), "options=endpoint=default/main sslmode=require"), true),
      "app");
  // Options that cannot work are refused at Start.
  ProxyOptions no_cert;
  no_cert.listen_port = 0;
  no_cert.require_tls = true;
  Proxy broken;
  EXPECT_FALSE(broken.Start(no_cert, backend, signer).ok());
  ProxyOptions bad_cert = o;
  bad_cert.tls_cert_file = Postgres::dir + "/missing.pem";
  EXPECT_FALSE(broken.Start(bad_cert, backend, signer).ok());
}

// Whether this run must see the kernel relay: as root, unless ARBOR_PROXY_KERNEL_RELAY=0
// says the environment does not allow it (a seccomp filter, say).
bool ExpectKernelRelay() {
  const char* off = getenv("ARBOR_PROXY_KERNEL_RELAY");
  return geteuid() == 0 && !(off && std::string(off) == "0");
}

// A COPY TO STDOUT of 54 MB read by a client that does not read until postgres, seen from
// `watcher`, waits to write (backpressure reaches it), checked against the md5 the server
// computes; then a COPY FROM STDIN of a million rows. Returns "" or what went wrong.
std::string BigCopiesBothWays(PGconn* c, PGconn* watcher) {
  const std::string rows = "select g, repeat('x', 100) from generate_series(1, 500000) g";
  std::string want = QueryOne(c,
                              "select md5(string_agg(g || E'\\t' || repeat('x', 100) || "
                              "E'\\n', '' order by g)) from generate_series(1, 500000) g");
  std::string pid = QueryOne(c, "select pg_backend_pid()");
  if (PQsendQuery(c, ("copy (" + rows + ") to stdout").c_str()) != 1) return PQerrorMessage(c);
  std::string waiting;
  for (int i = 0; i < 100 && waiting != "ClientWrite"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    waiting = QueryOne(watcher,
                       "select coalesce(wait_event, 'none') from pg_stat_activity "
                       "where pid = " +
                           pid);
  }
  if (waiting != "ClientWrite") return "postgres never waited for the slow client: " + waiting;
  std::string got;
  PGresult* r = PQgetResult(c);
  if (PQresultStatus(r) != PGRES_COPY_OUT)
    return "no COPY OUT: " + std::string(PQresultErrorMessage(r));
  PQclear(r);
  char* buf = nullptr;
  int n;
  while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
    got.append(buf, static_cast<size_t>(n));
    PQfreemem(buf);
  }
  std::string err;
  while ((r = PQgetResult(c))) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK) err = PQresultErrorMessage(r);
    PQclear(r);
  }
  if (!err.empty()) return "COPY OUT: " + err;
  if (got.size() != 53'888'895u) {
    return "COPY OUT: " + std::to_string(got.size()) + " bytes";
  }
  if (auth::HexMd5(got) != want) return "COPY OUT: the bytes differ from the server's";

  PQclear(PQexec(c, "create temp table big(i int, s text)"));
  r = PQexec(c, "copy big from stdin");
  if (PQresultStatus(r) != PGRES_COPY_IN) return "no COPY IN";
  PQclear(r);
  std::string chunk;
  for (int i = 1; i <= 1'000'000; ++i) {
    chunk += std::to_string(i) + "\tsome text\n";
    if (chunk.size() > 60'000 || i == 1'000'000) {
      if (PQputCopyData(c, chunk.data(), static_cast<int>(chunk.size())) != 1) {
        return "COPY IN: " + std::string(PQerrorMessage(c));
      }
      chunk.clear();
    }
  }
  if (PQputCopyEnd(c, nullptr) != 1) return "COPY IN end";
  while ((r = PQgetResult(c))) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK) err = PQresultErrorMessage(r);
    PQclear(r);
  }
  if (!err.empty()) return "COPY IN: " + err;
  std::string sum = QueryOne(c, "select count(*) || ' ' || sum(i) from big");
  if (sum != "1000000 500000500000") return "COPY IN: " + sum;
  PQclear(PQexec(c, "drop table big"));
  return "";
}

// Starts `p` with `o` on a free port below the ephemeral range (32768+), which tests leave to
// outgoing connections.
Status StartBelowEphemeral(Proxy* p, ProxyOptions o, Backend* b, const auth::TokenSigner* s) {
  Status st = Status::Unavailable("no free port");
  for (int i = 0; i < 200; ++i) {
    o.listen_port = static_cast<uint16_t>(15000 + (getpid() * 7 + i * 13) % 5000);
    st = p->Start(o, b, s);
    if (st.ok() || st.code() != Code::kIOError) return st;
  }
  return st;
}

TEST_F(ProxyIntegration, KernelRelayCarriesPlaintextSessions) {
  size_t before = proxy->KernelRelayedSessions();
  PGconn* c = PQconnectdb(
      Conninfo(proxy->port(), Token(), "options=endpoint=default/main sslmode=disable").c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  EXPECT_EQ(proxy->KernelRelayedSessions() - before, ExpectKernelRelay() ? 1u : 0u)
      << "as root the kernel relays plaintext sessions (ARBOR_PROXY_KERNEL_RELAY=0 to test "
         "without it)";
  PGconn* watcher = PQconnectdb(Conninfo(dedicated, "apppw").c_str());
  EXPECT_EQ(BigCopiesBothWays(c, watcher), "");
  EXPECT_EQ(QueryOne(c, "select 1"), "1");
  PQfinish(watcher);
  PQfinish(c);

  // TLS sessions stay in user space.
  before = proxy->KernelRelayedSessions();
  c = PQconnectdb(
      Conninfo(proxy->port(), Token(), "options=endpoint=default/main sslmode=require").c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  EXPECT_EQ(QueryOne(c, "select length(repeat('z', 1000000))"), "1000000");
  EXPECT_EQ(proxy->KernelRelayedSessions(), before);
  PQfinish(c);
}

TEST_F(ProxyIntegration, KernelRelayOffRelaysInUserSpace) {
  ProxyOptions o;
  o.kernel_relay = false;
  Proxy plain;
  Status started = StartBelowEphemeral(&plain, o, backend, signer);
  ASSERT_TRUE(started.ok()) << started.ToString();
  PGconn* c = PQconnectdb(
      Conninfo(plain.port(), Token(), "options=endpoint=default/main sslmode=disable").c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PGconn* watcher = PQconnectdb(Conninfo(dedicated, "apppw").c_str());
  EXPECT_EQ(BigCopiesBothWays(c, watcher), "");
  PQfinish(watcher);
  PQfinish(c);
  EXPECT_EQ(plain.KernelRelayedSessions(), 0u);
}

// The compute ends a session: the client reads the compute's FATAL, in both relays.
TEST_F(ProxyIntegration, TheClientSeesTheComputesFatal) {
  ProxyOptions o;
  o.kernel_relay = false;
  Proxy user_space;
  Status started = StartBelowEphemeral(&user_space, o, backend, signer);
  ASSERT_TRUE(started.ok()) << started.ToString();
  for (Proxy* p : {proxy, &user_space}) {
    SCOPED_TRACE(p == proxy ? "kernel relay" : "user space");
    PGconn* c = PQconnectdb(
        Conninfo(p->port(), Token(), "options=endpoint=default/main sslmode=disable").c_str());
    ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
    std::string notices;
    testutil::CollectNotices(c, &notices);
    std::string pid = QueryOne(c, "select pg_backend_pid()");
    PGconn* admin = PQconnectdb(Conninfo(dedicated, "apppw").c_str());
    ASSERT_EQ(PQstatus(admin), CONNECTION_OK) << PQerrorMessage(admin);
    EXPECT_EQ(QueryOne(admin, "select pg_terminate_backend(" + pid + ")"), "t");
    PQfinish(admin);
    // Without sending anything, the client reads the FATAL and then the proxy's close.
    EXPECT_TRUE(testutil::AwaitServerClose(c))
        << "the proxy kept the client's connection after the compute closed";
    std::string seen = notices + PQerrorMessage(c);
    EXPECT_NE(seen.find("terminating connection due to administrator command"), std::string::npos)
        << seen;
    PQfinish(c);
  }
  WaitForNoOpenConnections();
  EXPECT_EQ(backend->open.load(), 0);
}

// pgbench select-only and TPC-B, direct to the compute's socket against through the proxy.
// Prints the ratios; run by hand: proxy_integration_test --gtest_also_run_disabled_tests
// --gtest_filter=*Pgbench* (ARBOR_PGBENCH_SECONDS sets the duration of each run, default 10).
TEST_F(ProxyIntegration, DISABLED_PgbenchThroughput) {
  const char* secs_env = getenv("ARBOR_PGBENCH_SECONDS");
  std::string secs = secs_env ? secs_env : "10";
  std::string pg = std::string(kPgBin) + "/pgbench";
  std::string direct = "PGPASSWORD=apppw " + pg + " -h " + Postgres::sock_dir + " -U app ";
  std::string proxied = "PGPASSWORD='" + Token(kMain, "app") +
                        "' PGOPTIONS='endpoint=default/main' " + pg + " -h 127.0.0.1 -p " +
                        std::to_string(proxy->port()) + " -U app ";
  ASSERT_EQ(std::system((direct + "-i -q -s 5 postgres >/dev/null 2>&1").c_str()), 0);
  auto tps = [&](const std::string& base, const std::string& args) {
    std::string out = Capture(base + args + " -T " + secs + " postgres 2>&1");
    size_t at = out.find("tps = ");
    return at == std::string::npos ? 0.0 : std::stod(out.substr(at + 6));
  };
  for (const auto& [name, args] :
       std::vector<std::pair<std::string, std::string>>{{"select-only -c 8", "-S -c 8 -j 2"},
                                                        {"tpc-b -c 8", "-c 8 -j 2"},
                                                        {"connect per tx -S", "-S -C -c 4 -j 2"}}) {
    double d = tps(direct, args);
    double p = tps(proxied, args);
    std::printf("pgbench %-20s direct %9.0f tps  proxy %9.0f tps  ratio %.2f\n", name.c_str(), d, p,
                d > 0 ? p / d : 0.0);
    EXPECT_GT(p, 0.0);
  }
}

TEST_F(ProxyIntegration, TwentyConnectionsDuringASlowWakeAllSucceed) {
  // Each Wake blocks 1 s, as a compute start does. The 20 connections wait together (wakes
  // run on their own pool), and routing for others is not held up meanwhile.
  backend->wake_delay_ms = 1000;
  backend->max_waking = 0;
  constexpr int kClients = 20;
  std::vector<std::string> results(kClients);
  std::vector<std::thread> threads;
  auto start = steady_clock::now();
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Who(Conninfo(proxy->port(), Token(), "options=endpoint=default/main"));
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Raw other(proxy->port());  // a refusal needs Resolve only, never a wake
  EXPECT_EQ(other.Login({{"user", "app"}, {"options", "endpoint=default/nope"}}, Token()), "28P01");
  EXPECT_LT(steady_clock::now() - start, std::chrono::milliseconds(900));
  for (auto& t : threads) t.join();
  backend->wake_delay_ms = 0;
  for (const auto& r : results) EXPECT_EQ(r, "app");
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(backend->max_waking.load(), kClients);
}

TEST_F(ProxyIntegration, PortListenersComeAndGo) {
  auto extra = proxy->AddPortListener(0);
  ASSERT_TRUE(extra.ok());
  EXPECT_FALSE(proxy->AddPortListener(*extra).ok());
  EXPECT_TRUE(proxy->RemovePortListener(*extra).ok());
  EXPECT_FALSE(proxy->RemovePortListener(*extra).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Raw refused(*extra);
  EXPECT_FALSE(refused.connected());
}

}  // namespace
}  // namespace arbor::proxy

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new arbor::proxy::Postgres);
  return RUN_ALL_TESTS();
}
