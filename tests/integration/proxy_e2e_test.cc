// The proxy as a user meets it: the real daemon, real computes on private sockets, and real
// clients (libpq, psql, pgbench) arriving by every routing method, with tokens from
// POST credentials and with the role's password; every refusal, cancel, and scale to zero.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "proxy/auth/crypto.h"
#include "proxy/auth/token.h"
#include "testutil/daemon.h"
#include "testutil/pq_client.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::json;
using testutil::Pg;
using testutil::QueryOne;

// What a server answered to a login, read off the wire.
struct LoginResult {
  bool ok = false;       // AuthenticationOk
  std::string sqlstate;  // of the ErrorResponse, if any
  std::string message;
};

// A raw v3 login: StartupMessage, then the password when asked for one. Reads the refusal's
// SQLSTATE, which libpq does not expose for connection errors.
LoginResult RawLogin(uint16_t port, const std::string& password, const std::string& options = "",
                     const std::string& user = "owner",
                     const std::vector<std::string>& extra_params = {}) {
  LoginResult r;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    r.message = "connect failed";
    return r;
  }
  auto put32 = [](std::string& s, uint32_t v) {
    v = htonl(v);
    s.append(reinterpret_cast<char*>(&v), 4);
  };
  std::string body;
  put32(body, 196608);
  for (const std::string& kv :
       {std::string("user"), user, std::string("database"), std::string("postgres")}) {
    body += kv;
    body.push_back('\0');
  }
  if (!options.empty()) {
    body += "options";
    body.push_back('\0');
    body += options;
    body.push_back('\0');
  }
  for (const std::string& p : extra_params) {  // name, value, name, value...
    body += p;
    body.push_back('\0');
  }
  body.push_back('\0');
  std::string startup;
  put32(startup, static_cast<uint32_t>(body.size() + 4));
  startup += body;
  (void)!write(fd, startup.data(), startup.size());
  auto read_full = [fd](char* buf, size_t n) {
    size_t got = 0;
    while (got < n) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 30'000) != 1) return false;
      ssize_t k = read(fd, buf + got, n - got);
      if (k <= 0) return false;
      got += static_cast<size_t>(k);
    }
    return true;
  };
  for (int step = 0; step < 4; ++step) {
    char head[5];
    if (!read_full(head, 5)) {
      r.message = "connection closed";
      break;
    }
    uint32_t len;
    std::memcpy(&len, head + 1, 4);
    len = ntohl(len);
    std::string msg(len - 4, '\0');
    if (!read_full(msg.data(), msg.size())) break;
    if (head[0] == 'E') {
      for (size_t i = 0; i < msg.size() && msg[i] != '\0';) {
        char field = msg[i];
        std::string value(msg.c_str() + i + 1);
        if (field == 'C') r.sqlstate = value;
        if (field == 'M') r.message = value;
        i += 2 + value.size();
      }
      break;
    }
    if (head[0] == 'R') {
      uint32_t code;
      std::memcpy(&code, msg.data(), 4);
      code = ntohl(code);
      if (code == 0) {
        r.ok = true;
        break;
      }
      if (code == 3) {  // cleartext password, as the proxy always asks
        std::string p = "p";
        put32(p, static_cast<uint32_t>(password.size() + 5));
        p += password;
        p.push_back('\0');
        (void)!write(fd, p.data(), p.size());
        continue;
      }
      r.message = "unexpected authentication request " + std::to_string(code);
      break;
    }
  }
  close(fd);
  return r;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a shell command; its exit code and output (stdout and stderr).
std::pair<int, std::string> Shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class ProxyE2E : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    d_ = Daemon::Start("proxy").release();
    auto a = d_->Call("POST", "projects/default/branches?branch_id=pdev",
                      {{"spec", {{"ttl", "3600s"}}}});
    ASSERT_EQ(a.status, 200) << a.body.dump();
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static std::string Endpoint(const std::string& branch) {
    return "projects/default/branches/" + branch + "/endpoints/primary";
  }
  static json GetEndpoint(const std::string& branch) {
    return d_->Call("GET", Endpoint(branch)).body;
  }
  static uint16_t PortOf(const std::string& branch) {
    return static_cast<uint16_t>(GetEndpoint(branch)["status"].value("port", 0));
  }
  static std::string StateOf(const std::string& branch) {
    return GetEndpoint(branch)["status"].value("current_state", "");
  }
  static std::string Token(const std::string& branch) {
    auto a = d_->Call("POST", "credentials", {{"endpoint", Endpoint(branch)}, {"ttl", "600s"}});
    EXPECT_EQ(a.status, 200) << a.body.dump();
    return a.body.value("token", "");
  }
  static std::string Conn(uint16_t port, const std::string& password,
                          const std::string& extra = "") {
    return "host=127.0.0.1 port=" + std::to_string(port) +
           " user=owner dbname=postgres connect_timeout=60 password='" + password + "' " + extra;
  }
  // Waits until the endpoint shows `state`; false after `seconds`.
  static bool WaitState(const std::string& branch, const std::string& state, int seconds) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (StateOf(branch) == state) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // A branch whose endpoint suspends after `timeout` idle.
  static void MakeSuspendingBranch(const std::string& branch, const std::string& timeout) {
    auto a = d_->Call("POST", "projects/default/branches?branch_id=" + branch,
                      {{"spec", {{"ttl", "3600s"}}}});
    ASSERT_EQ(a.status, 200) << a.body.dump();
    ASSERT_EQ(d_->Call("DELETE", Endpoint(branch)).status, 200);
    a = d_->Call("POST", "projects/default/branches/" + branch + "/endpoints?endpoint_id=primary",
                 {{"spec", {{"suspend_timeout_duration", timeout}}}});
    ASSERT_EQ(a.status, 200) << a.body.dump();
  }

  static Daemon* d_;
};
Daemon* ProxyE2E::d_ = nullptr;

TEST_F(ProxyE2E, ATokenOpensItsBranchByEveryRoute) {
  const std::string token = Token("pdev");
  const uint16_t port = PortOf("pdev"), front = d_->proxy_port();
  ASSERT_NE(port, 0);
  {
    Pg pg(Conn(port, token));
    ASSERT_TRUE(pg.ok());
    pg.Query("create table route(x text); insert into route values ('pdev')");
  }
  // The row is on the branch, so each route below that reads it reached the branch.
  const std::vector<std::pair<std::string, std::string>> routes = {
      {"dedicated port", Conn(port, token)},
      {"startup option", Conn(front, token, "options='endpoint=default/pdev'")},
      {"password prefix", Conn(front, "endpoint=default/pdev;" + token)},
      {"TLS SNI", "host=default--pdev.localhost hostaddr=127.0.0.1 port=" + std::to_string(front) +
                      " sslmode=require user=owner dbname=postgres password=" + token},
      {"TLS on the dedicated port", Conn(port, token, "sslmode=require")},
  };
  for (const auto& [what, conninfo] : routes) {
    Pg pg(conninfo);
    ASSERT_TRUE(pg.ok()) << what;
    EXPECT_EQ(pg.One("select x from route"), "pdev") << what;
  }
  // The role's own password works too. The endpoint's connection string carries none; a
  // reset answers one, once.
  std::string cs = GetEndpoint("pdev")["status"].value("connection_string", "");
  EXPECT_EQ(cs, "postgresql://owner@127.0.0.1:" + std::to_string(port) + "/postgres");
  auto reset = d_->Call("POST", "projects/default/branches/pdev/roles/owner:reset_password");
  ASSERT_EQ(reset.status, 200) << reset.body.dump();
  Pg by_password(Conn(port, reset.body.value("password", "")));
  ASSERT_TRUE(by_password.ok());
  EXPECT_EQ(by_password.One("select x from route"), "pdev");
  // And the parent never saw the table.
  Pg parent(Conn(PortOf("production"), Token("production")));
  EXPECT_EQ(parent.One("select count(*) from pg_tables where tablename = 'route'"), "0");
}

TEST_F(ProxyE2E, EveryBadLoginIsRefusedWithItsSqlstate) {
  const uint16_t port = PortOf("pdev"), front = d_->proxy_port();
  const std::string token = Token("pdev");
  ASSERT_TRUE(RawLogin(port, token).ok);

  std::string forged = token;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  LoginResult r = RawLogin(port, forged);
  EXPECT_EQ(r.sqlstate, "28P01") << r.message;

  // A token signed with the daemon's own key an hour ago, expired now.
  std::string key = Slurp(d_->home() + "/jwt.key");
  proxy::auth::TokenSigner signer(key);
  int64_t now = testutil::NowMicros() / 1'000'000;
  auto expired = signer.Issue(Endpoint("pdev"), "owner", 600, now - 3600,
                              GetEndpoint("pdev").value("uid", ""));
  ASSERT_TRUE(expired.ok());
  r = RawLogin(port, *expired);
  EXPECT_EQ(r.sqlstate, "28P01") << r.message;
  EXPECT_NE(r.message.find("expired"), std::string::npos) << r.message;

  // A token for another branch opens nothing here.
  r = RawLogin(port, Token("production"));
  EXPECT_EQ(r.sqlstate, "28P01") << r.message;
  EXPECT_NE(r.message.find("production"), std::string::npos) << r.message;

  // A wrong role password: the proxy refuses it.
  r = RawLogin(port, "not-the-password");
  EXPECT_EQ(r.sqlstate, "28P01") << r.message;

  // Arbor's own superuser never logs in through the proxy, whatever the password.
  r = RawLogin(port, token, "", "postgres");
  EXPECT_EQ(r.sqlstate, "28000") << r.message;
  EXPECT_NE(r.message.find("superuser"), std::string::npos) << r.message;

  // An unknown branch answers as a wrong password does (10a: no enumeration), and no routing
  // at all says what is missing.
  r = RawLogin(front, token, "endpoint=default/no-such-branch");
  EXPECT_EQ(r.sqlstate, "28P01") << r.message;
  LoginResult wrong = RawLogin(front, "not-the-password", "endpoint=default/pdev");
  LoginResult missing = RawLogin(front, "not-the-password", "endpoint=default/no-such-branch");
  EXPECT_EQ(wrong.sqlstate, missing.sqlstate);
  EXPECT_EQ(wrong.message, missing.message);
  r = RawLogin(front, token);
  EXPECT_EQ(r.sqlstate, "28000") << r.message;
  EXPECT_NE(r.message.find("endpoint"), std::string::npos) << r.message;
}

TEST_F(ProxyE2E, CredentialsRefuseBadRequests) {
  auto a = d_->Call("POST", "credentials", {{"endpoint", Endpoint("pdev")}, {"ttl", "60s"}});
  EXPECT_EQ(a.status, 400) << a.body.dump();
  EXPECT_NE(a.body.value("message", "").find("300s"), std::string::npos) << a.body.dump();
  a = d_->Call("POST", "credentials", {{"endpoint", Endpoint("no-such-branch")}});
  EXPECT_EQ(a.status, 404) << a.body.dump();
  a = d_->Call("POST", "credentials", {{"endpoint", "projects/default"}});
  EXPECT_EQ(a.status, 400) << a.body.dump();
  a = d_->Call("POST", "credentials", {{"endpoint", Endpoint("pdev")}, {"role", "admin"}});
  EXPECT_EQ(a.status, 404) << a.body.dump();  // no such role on the branch
  a = d_->Call("POST", "credentials", {{"endpoint", Endpoint("pdev")}, {"role", "postgres"}});
  EXPECT_EQ(a.status, 400) << a.body.dump();  // Arbor's own superuser
  a = d_->Call("POST", "credentials", json::object());
  EXPECT_EQ(a.status, 400) << a.body.dump();
  // The default lifetime is the longest, an hour.
  a = d_->Call("POST", "credentials", {{"endpoint", Endpoint("pdev")}});
  ASSERT_EQ(a.status, 200) << a.body.dump();
  EXPECT_FALSE(a.body.value("token", "").empty());
  EXPECT_FALSE(a.body.value("expire_time", "").empty());
}

TEST_F(ProxyE2E, AFailedLoginNeverWakesACompute) {
  MakeSuspendingBranch("asleep", "300s");
  ASSERT_EQ(StateOf("asleep"), "IDLE");
  const uint16_t port = PortOf("asleep");
  std::string forged = Token("asleep");
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(RawLogin(port, forged).sqlstate, "28P01");
  EXPECT_EQ(RawLogin(port, Token("pdev")).sqlstate, "28P01");
  // Item 7, "Anyone can wake a compute without a credential": junk passwords, a role with no
  // password, and Arbor's superuser are all refused before the wake.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(RawLogin(port, "junk-" + std::to_string(i)).sqlstate, "28P01");
  }
  EXPECT_EQ(RawLogin(port, "junk", "", "nobody").sqlstate, "28P01");
  EXPECT_EQ(RawLogin(port, "junk", "", "postgres").sqlstate, "28000");
  EXPECT_EQ(StateOf("asleep"), "IDLE");
  // A good token does wake it.
  EXPECT_TRUE(RawLogin(port, Token("asleep")).ok);
  EXPECT_EQ(StateOf("asleep"), "ACTIVE");
}

TEST_F(ProxyE2E, CancelStopsALongQuery) {
  PGconn* conn = PQconnectdb(Conn(PortOf("pdev"), Token("pdev")).c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  ASSERT_EQ(PQsendQuery(conn, "select pg_sleep(60)"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto start = std::chrono::steady_clock::now();
  PGcancel* cancel = PQgetCancel(conn);
  char err[256];
  ASSERT_EQ(PQcancel(cancel, err, sizeof err), 1) << err;
  PQfreeCancel(cancel);
  PGresult* res = PQgetResult(conn);
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_NE(res, nullptr);
  EXPECT_EQ(PQresultStatus(res), PGRES_FATAL_ERROR);
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  EXPECT_STREQ(state == nullptr ? "" : state, "57014");  // query_canceled
  EXPECT_LT(waited, std::chrono::seconds(30)) << "the sleep ran on";
  PQclear(res);
  while ((res = PQgetResult(conn)) != nullptr) PQclear(res);
  PQfinish(conn);
}

TEST_F(ProxyE2E, AnIdleComputeSuspendsAndAConnectionWakesIt) {
  MakeSuspendingBranch("nap", "1s");
  const uint16_t port = PortOf("nap");
  {
    Pg pg(Conn(port, Token("nap")));
    ASSERT_TRUE(pg.ok());
    pg.Query("create table kept(x int); insert into kept select generate_series(1, 1000)");
  }
  ASSERT_TRUE(WaitState("nap", "IDLE", 30)) << "the compute did not suspend";
  // No postgres serves it any more: its socket is gone with its mount.
  {
    Pg pg(Conn(port, Token("nap")));
    ASSERT_TRUE(pg.ok());
    EXPECT_EQ(pg.One("select count(*) from kept"), "1000");
  }
  ASSERT_TRUE(WaitState("nap", "IDLE", 30));

  // 20 clients arrive while it wakes; every one gets in.
  const std::string token = Token("nap");
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back([&] {
      PGconn* c = PQconnectdb(Conn(port, token).c_str());
      if (PQstatus(c) == CONNECTION_OK) {
        PGresult* r = PQexec(c, "select count(*) from kept");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && std::string(PQgetvalue(r, 0, 0)) == "1000") {
          ++ok;
        }
        PQclear(r);
      } else {
        ADD_FAILURE() << PQerrorMessage(c);
      }
      PQfinish(c);
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 20);
}

TEST_F(ProxyE2E, TheApiAnswersAndShowsStartingDuringAWake) {
  MakeSuspendingBranch("waking", "300s");
  ASSERT_EQ(StateOf("waking"), "IDLE");
  std::atomic<bool> done{false};
  std::thread client([&] {
    Pg pg(Conn(PortOf("waking"), Token("waking")));
    EXPECT_EQ(pg.One("select 1"), "1");
    done = true;
  });
  std::set<std::string> seen;
  while (!done) {
    seen.insert(StateOf("waking"));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  client.join();
  EXPECT_TRUE(seen.count("STARTING")) << "the wake was never seen as STARTING";
  EXPECT_EQ(StateOf("waking"), "ACTIVE");
}

TEST_F(ProxyE2E, GarbageClosesOnlyItsOwnConnection) {
  const uint16_t port = PortOf("pdev");
  Pg pg(Conn(port, Token("pdev")));
  ASSERT_TRUE(pg.ok());
  for (const std::string& junk :
       {std::string("GET / HTTP/1.1\r\n\r\n"), std::string("\x00\x00\x00\x08\x00\x00\x00\x00", 8),
        std::string("\xff\xff\xff\xff", 4), std::string("\x00\x00\x00\x09\x00\x03", 6)}) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    (void)!write(fd, junk.data(), junk.size());
    shutdown(fd, SHUT_WR);
    char buf[512];
    pollfd p{fd, POLLIN, 0};
    // The proxy answers with an error or closes; it does not hang on to the socket.
    EXPECT_EQ(poll(&p, 1, 15'000), 1);
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
  }
  EXPECT_EQ(pg.One("select 1"), "1");
}

TEST_F(ProxyE2E, PgbenchAndTheCliRunThroughTheProxy) {
  const uint16_t port = PortOf("pdev");
  const std::string env = "PGHOST=127.0.0.1 PGPORT=" + std::to_string(port) +
                          " PGUSER=owner PGDATABASE=postgres PGPASSWORD=" + Token("pdev") + " ";
  auto [rc, out] = Shell(env + "/usr/lib/postgresql/15/bin/pgbench -i -s 1 -q");
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Shell(env + "/usr/lib/postgresql/15/bin/pgbench -T 3 -c 4 -j 2");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("number of failed transactions: 0"), std::string::npos) << out;

  // `arbor run` hands the command a fresh token in DATABASE_URL and the PG* variables.
  std::tie(rc, out) = Shell("ARBOR_HOME='" + d_->home() + "' " + ARBOR_BINARY +
                            " run pdev -- sh -c 'psql \"$DATABASE_URL\" -Atc \"select x from "
                            "route\" && psql -Atc \"select count(*) from pgbench_branches\"'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "pdev\n1\n");
}

// ---- The relay. The same checks against a daemon whose proxy relays results in the kernel
// (a BPF sockmap, when root) and one told not to (ARBOR_PROXY_KERNEL_RELAY=0). Plaintext
// connections (sslmode=disable): TLS sessions are always relayed in user space.

// Whether this run must see the kernel relay: as root, unless ARBOR_PROXY_KERNEL_RELAY=0
// says the environment does not allow it (a seccomp filter, say).
bool ExpectKernelRelay() {
  const char* off = getenv("ARBOR_PROXY_KERNEL_RELAY");
  return geteuid() == 0 && !(off && std::string(off) == "0");
}

// BPF sockmaps the process holds open; a kernel-relayed session holds two.
int SockmapsOf(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fdinfo", ec)) {
    if (Slurp(e.path().string()).find("map_type:\t15\n") != std::string::npos) ++n;  // SOCKMAP
  }
  return n;
}

struct RelayTarget {
  Daemon* d;
  uint16_t port;
  std::string token;
  std::string Conn() const {
    return "host=127.0.0.1 port=" + std::to_string(port) +
           " user=owner dbname=postgres sslmode=disable connect_timeout=60 password=" + token;
  }
};

RelayTarget TargetOf(Daemon* d) {
  const std::string ep = "projects/default/branches/production/endpoints/primary";
  RelayTarget t{d, 0, ""};
  t.port = static_cast<uint16_t>(d->Call("GET", ep).body["status"].value("port", 0));
  auto a = d->Call("POST", "credentials", {{"endpoint", ep}, {"ttl", "600s"}});
  EXPECT_EQ(a.status, 200) << a.body.dump();
  t.token = a.body.value("token", "");
  return t;
}

// The kernel relay is used exactly when it should be: two sockmaps per open session.
void CheckRelayMode(const RelayTarget& t, bool kernel) {
  PGconn* c = PQconnectdb(t.Conn().c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  EXPECT_EQ(QueryOne(c, "select 1"), "1");
  EXPECT_EQ(SockmapsOf(t.d->pid()), kernel ? 2 : 0)
      << "as root the kernel relays plaintext sessions (ARBOR_PROXY_KERNEL_RELAY=0 to test "
         "without it)";
  // A TLS session is never relayed in the kernel.
  PGconn* tls = PQconnectdb((t.Conn() + " sslmode=require").c_str());
  ASSERT_EQ(PQstatus(tls), CONNECTION_OK) << PQerrorMessage(tls);
  EXPECT_EQ(QueryOne(tls, "select 2"), "2");
  EXPECT_EQ(SockmapsOf(t.d->pid()), kernel ? 2 : 0);
  PQfinish(tls);
  PQfinish(c);
  std::string log = Slurp(t.d->home() + "/daemon.out");
  EXPECT_NE(log.find(kernel ? "kernel relay on" : "relaying in user space"), std::string::npos)
      << log;
}

// 54 MB of COPY TO STDOUT to a client that does not read until postgres waits to write (the
// backpressure reaches postgres), checked byte for byte by md5 against the server's; then a
// million rows of COPY FROM STDIN.
void CheckBigCopies(const RelayTarget& t) {
  PGconn* c = PQconnectdb(t.Conn().c_str());
  PGconn* watcher = PQconnectdb(t.Conn().c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  ASSERT_EQ(PQstatus(watcher), CONNECTION_OK) << PQerrorMessage(watcher);
  const std::string want =
      QueryOne(c,
               "select md5(string_agg(g || E'\\t' || repeat('x', 100) || E'\\n', '' order by g))"
               " from generate_series(1, 500000) g");
  const std::string pid = QueryOne(c, "select pg_backend_pid()");
  ASSERT_EQ(PQsendQuery(c,
                        "copy (select g, repeat('x', 100) from generate_series(1, 500000) g) "
                        "to stdout"),
            1);
  std::string waiting;
  for (int i = 0; i < 100 && waiting != "ClientWrite"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    waiting = QueryOne(
        watcher, "select coalesce(wait_event, 'none') from pg_stat_activity where pid = " + pid);
  }
  EXPECT_EQ(waiting, "ClientWrite") << "postgres never waited for the stalled client";
  PGresult* r = PQgetResult(c);
  ASSERT_EQ(PQresultStatus(r), PGRES_COPY_OUT) << PQresultErrorMessage(r);
  PQclear(r);
  std::string got;
  char* buf = nullptr;
  int n;
  while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
    got.append(buf, static_cast<size_t>(n));
    PQfreemem(buf);
  }
  EXPECT_EQ(n, -1) << PQerrorMessage(c);
  while ((r = PQgetResult(c))) {
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
  }
  EXPECT_EQ(got.size(), 53'888'895u);
  EXPECT_EQ(proxy::auth::HexMd5(got), want);

  PQclear(PQexec(c, "create temp table big(i int, s text)"));
  r = PQexec(c, "copy big from stdin");
  ASSERT_EQ(PQresultStatus(r), PGRES_COPY_IN) << PQresultErrorMessage(r);
  PQclear(r);
  std::string chunk;
  for (int i = 1; i <= 1'000'000; ++i) {
    chunk += std::to_string(i) + "\tsome text\n";
    if (chunk.size() > 60'000 || i == 1'000'000) {
      ASSERT_EQ(PQputCopyData(c, chunk.data(), static_cast<int>(chunk.size())), 1);
      chunk.clear();
    }
  }
  ASSERT_EQ(PQputCopyEnd(c, nullptr), 1);
  while ((r = PQgetResult(c))) {
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
  }
  EXPECT_EQ(QueryOne(c, "select count(*) || ' ' || sum(i) from big"), "1000000 500000500000");
  PQfinish(watcher);
  PQfinish(c);
}

// The compute ends the session: the client reads its FATAL, not just a dropped connection.
void CheckTerminate(const RelayTarget& t) {
  PGconn* c = PQconnectdb(t.Conn().c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  std::string notices;  // libpq reports an error that arrives while idle as a notice
  testutil::CollectNotices(c, &notices);
  const std::string pid = QueryOne(c, "select pg_backend_pid()");
  {
    Pg admin(t.Conn());
    EXPECT_EQ(admin.One("select pg_terminate_backend(" + pid + ")"), "t");
  }
  // Without sending anything, the client reads the FATAL and then the proxy's close.
  EXPECT_TRUE(testutil::AwaitServerClose(c))
      << "the proxy kept the client's connection after the compute closed";
  std::string seen = notices + PQerrorMessage(c);
  EXPECT_NE(seen.find("terminating connection due to administrator command"), std::string::npos)
      << seen;
  PQfinish(c);
  // The proxy let go of the session: its maps are closed.
  for (int i = 0; i < 50 && SockmapsOf(t.d->pid()) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(SockmapsOf(t.d->pid()), 0);
}

// Many small queries, pipelined (extended protocol), from 4 clients at once.
void CheckPipelinedPgbench(const RelayTarget& t) {
  const std::string env =
      "PGHOST=127.0.0.1 PGPORT=" + std::to_string(t.port) +
      " PGSSLMODE=disable PGUSER=owner PGDATABASE=postgres PGPASSWORD=" + t.token + " ";
  const std::string pgbench = "/usr/lib/postgresql/15/bin/pgbench";
  auto [rc, out] = Shell(env + pgbench + " -i -s 1 -q");
  ASSERT_EQ(rc, 0) << out;
  const std::string script = t.d->home() + "/pipeline.sql";
  {
    std::ofstream f(script);
    f << "\\set aid random(1, 100000)\n\\startpipeline\n";
    for (int i = 0; i < 10; ++i) {
      f << "select abalance from pgbench_accounts where aid = :aid + " << i << ";\n";
    }
    f << "\\endpipeline\n";
  }
  std::tie(rc, out) = Shell(env + pgbench + " -n -M extended -f " + script + " -T 2 -c 4 -j 2");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("number of failed transactions: 0"), std::string::npos) << out;
  std::tie(rc, out) = Shell(env + pgbench + " -n -M prepared -T 2 -c 4 -j 2");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("number of failed transactions: 0"), std::string::npos) << out;
}

// Starts a daemon with the environment variables `env` set (the daemon inherits them), and
// puts the test's environment back.
std::unique_ptr<Daemon> StartWithEnv(const std::string& name,
                                     const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  for (const auto& [k, v] : env) {
    const char* was = getenv(k.c_str());
    saved.emplace_back(k, was ? std::optional<std::string>(was) : std::nullopt);
    setenv(k.c_str(), v.c_str(), 1);
  }
  auto d = Daemon::Start(name);
  for (const auto& [k, v] : saved) {
    if (v) {
      setenv(k.c_str(), v->c_str(), 1);
    } else {
      unsetenv(k.c_str());
    }
  }
  return d;
}

// The inode of the TCP socket from local port `from` to `to` on loopback, from /proc/net/tcp.
std::string TcpInode(uint16_t from, uint16_t to) {
  std::istringstream in(Slurp("/proc/net/tcp"));
  std::string line;
  std::getline(in, line);  // header
  char want_local[8], want_remote[8];
  std::snprintf(want_local, sizeof want_local, ":%04X", from);
  std::snprintf(want_remote, sizeof want_remote, ":%04X", to);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, tr, retr, uid, timeout, inode;
    f >> sl >> local >> remote >> st >> queues >> tr >> retr >> uid >> timeout >> inode;
    if (local.ends_with(want_local) && remote.ends_with(want_remote)) return inode;
  }
  return "";
}

// Whether process `pid` holds the socket with inode `inode`.
bool HoldsSocket(const std::string& pid, const std::string& inode) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + pid + "/fd", ec)) {
    std::error_code rec;
    if (std::filesystem::read_symlink(e.path(), rec).string() == "socket:[" + inode + "]") {
      return true;
    }
  }
  return false;
}

// A plaintext session is handed to its compute: the postgres backend that serves the client
// holds the client's own TCP connection (the proxy's end of it), so no relay is in between.
// A TLS session stays relayed: its backend holds no TCP socket of the proxy's port.
void CheckHandedOff(const RelayTarget& t) {
  PGconn* c = PQconnectdb(t.Conn().c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  sockaddr_in me{};
  socklen_t len = sizeof me;
  ASSERT_EQ(getsockname(PQsocket(c), reinterpret_cast<sockaddr*>(&me), &len), 0);
  const std::string inode = TcpInode(t.port, ntohs(me.sin_port));  // the server side
  ASSERT_FALSE(inode.empty());
  const std::string pid = QueryOne(c, "select pg_backend_pid()");
  EXPECT_TRUE(HoldsSocket(pid, inode)) << "backend " << pid << " does not hold the client's socket";
  EXPECT_EQ(SockmapsOf(t.d->pid()), 0) << "a handed-off session needs no kernel relay";
  // The session behaves as any: its cancel key reaches the proxy, which forwards it.
  ASSERT_EQ(PQsendQuery(c, "select pg_sleep(60)"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  PGcancel* cancel = PQgetCancel(c);
  char err[256];
  EXPECT_EQ(PQcancel(cancel, err, sizeof err), 1) << err;
  PQfreeCancel(cancel);
  PGresult* r = PQgetResult(c);
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  EXPECT_STREQ(state == nullptr ? "" : state, "57014");
  PQclear(r);
  while ((r = PQgetResult(c)) != nullptr) PQclear(r);
  // The proxy's own startup parameter is not left behind as a setting.
  r = PQexec(c, "select current_setting('arbor.handoff', true) is null");
  EXPECT_STREQ(PQgetvalue(r, 0, 0), "t");
  PQclear(r);

  PGconn* tls = PQconnectdb((t.Conn() + " sslmode=require").c_str());
  ASSERT_EQ(PQstatus(tls), CONNECTION_OK) << PQerrorMessage(tls);
  const std::string tls_pid = QueryOne(tls, "select pg_backend_pid()");
  len = sizeof me;
  ASSERT_EQ(getsockname(PQsocket(tls), reinterpret_cast<sockaddr*>(&me), &len), 0);
  const std::string tls_inode = TcpInode(t.port, ntohs(me.sin_port));
  ASSERT_FALSE(tls_inode.empty());
  EXPECT_FALSE(HoldsSocket(tls_pid, tls_inode)) << "a TLS session was handed off";
  EXPECT_TRUE(HoldsSocket(std::to_string(t.d->pid()), tls_inode));
  PQfinish(tls);
  PQfinish(c);
  std::string log = Slurp(t.d->home() + "/daemon.out");
  EXPECT_NE(log.find("proxy socket handoff on"), std::string::npos) << log;
}

TEST(ProxyRelay, HandedToTheCompute) {
  auto d = Daemon::Start("handoff");
  ASSERT_NE(d, nullptr);
  RelayTarget t = TargetOf(d.get());
  ASSERT_NE(t.port, 0);
  CheckHandedOff(t);
  CheckBigCopies(t);
  CheckTerminate(t);
  CheckPipelinedPgbench(t);
}

TEST(ProxyRelay, InTheKernel) {
  auto d = StartWithEnv("relay", {{"ARBOR_PROXY_HANDOFF", "0"}});
  ASSERT_NE(d, nullptr);
  RelayTarget t = TargetOf(d.get());
  ASSERT_NE(t.port, 0);
  CheckRelayMode(t, ExpectKernelRelay());
  CheckBigCopies(t);
  CheckTerminate(t);
  CheckPipelinedPgbench(t);
  // Only the proxy asks a compute for a handoff: a client's arbor.* parameters are dropped,
  // so this relayed session logs in as any (the compute would otherwise offer its socket to a
  // proxy that did not ask, and the login would fail).
  LoginResult forged = RawLogin(t.port, t.token, "", "owner", {"arbor.handoff", "on"});
  EXPECT_TRUE(forged.ok) << forged.sqlstate << " " << forged.message;
}

TEST(ProxyRelay, InUserSpaceWhenTurnedOff) {
  auto d =
      StartWithEnv("relay-off", {{"ARBOR_PROXY_KERNEL_RELAY", "0"}, {"ARBOR_PROXY_HANDOFF", "0"}});
  ASSERT_NE(d, nullptr);
  RelayTarget t = TargetOf(d.get());
  ASSERT_NE(t.port, 0);
  CheckRelayMode(t, false);
  CheckBigCopies(t);
  CheckTerminate(t);
  CheckPipelinedPgbench(t);
}

}  // namespace
}  // namespace arbor
