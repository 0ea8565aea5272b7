// The proxy's local front door against the real daemon, real postgres, libpq and psql: every
// port the proxy listens on also has a unix socket in DATA_DIR/proxy, private to the daemon's
// OS user; a login there is checked and routed exactly as over TCP; the CLI uses it on the
// daemon's host; an endpoint's socket goes with the endpoint; and a socket left by a killed
// daemon is replaced at the next start.

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "testutil/branches.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

using testutil::Daemon;
using testutil::Pg;

bool IsSocket(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// The server's refusal of `conninfo`, or "" if the login succeeded.
std::string LoginError(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::string err = PQstatus(c) == CONNECTION_OK ? "" : PQerrorMessage(c);
  PQfinish(c);
  return err;
}

// The part of a libpq error after "FATAL:  " (the server's sentence, whatever the address).
std::string Fatal(const std::string& err) {
  size_t at = err.find("FATAL:");
  return at == std::string::npos ? err : err.substr(at);
}

class LocalSocket : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    d_ = Daemon::Start("local").release();
    if (d_ != nullptr) testutil::Fork(d_, "ldev", "production");
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static std::string Dir() { return d_->home() + "/proxy"; }
  static int PortOf(const std::string& branch) {
    auto a = d_->Call("GET", "projects/default/branches/" + branch + "/endpoints/primary");
    EXPECT_EQ(a.status, 200) << a.body.dump();
    return a.body["status"].value("port", 0);
  }
  static std::string Token(const std::string& branch) {
    auto a = d_->Call("POST", "credentials",
                      {{"endpoint", "projects/default/branches/" + branch + "/endpoints/primary"},
                       {"ttl", "600s"}});
    EXPECT_EQ(a.status, 200) << a.body.dump();
    return a.body.value("token", "");
  }
  // A conninfo through the unix socket of `port`.
  static std::string Local(int port, const std::string& password, const std::string& extra = "") {
    return "host=" + Dir() + " port=" + std::to_string(port) +
           " user=owner dbname=postgres connect_timeout=60 password=" + password + " " + extra;
  }
  static std::string Tcp(int port, const std::string& password) {
    return "host=127.0.0.1 port=" + std::to_string(port) +
           " user=owner dbname=postgres sslmode=disable connect_timeout=60 password=" + password;
  }
  static testutil::CliRun Arbor(const std::string& args, const std::string& env = "") {
    return testutil::RunArbor(d_->home(), args, env);
  }

  static Daemon* d_;
};
Daemon* LocalSocket::d_ = nullptr;

TEST_F(LocalSocket, EveryPortHasAPrivateSocketThatTheStatusNames) {
  struct stat st;
  ASSERT_EQ(stat(Dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "only the daemon's OS user reaches the sockets";
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_TRUE(IsSocket(Dir() + "/.s.PGSQL." + std::to_string(d_->proxy_port())));
  EXPECT_TRUE(IsSocket(Dir() + "/.s.PGSQL." + std::to_string(PortOf("production"))));
  EXPECT_TRUE(IsSocket(Dir() + "/.s.PGSQL." + std::to_string(PortOf("ldev"))));
  auto status = d_->Call("GET", "status");
  ASSERT_EQ(status.status, 200);
  EXPECT_EQ(status.body.value("proxy_socket_dir", ""), Dir());
}

TEST_F(LocalSocket, ALoginIsCheckedAndRoutedAsOverTcp) {
  const int dev = PortOf("ldev"), prod = PortOf("production");
  const std::string token = Token("ldev");
  {
    Pg pg(Local(dev, token));
    ASSERT_TRUE(pg.ok());
    EXPECT_EQ(pg.One("select current_user"), "owner");
    ASSERT_EQ(pg.TryExec("create table via_socket (x text); insert into via_socket values "
                         "('on ldev')"),
              "");
  }
  // The same endpoint over TCP sees the row; the parent does not.
  EXPECT_EQ(Pg(Tcp(dev, token)).One("select x from via_socket"), "on ldev");
  EXPECT_EQ(Pg(Local(prod, Token("production")))
                .One("select count(*) from pg_tables where tablename = 'via_socket'"),
            "0");

  // Routing by option on the shared port's socket, as on TCP.
  EXPECT_EQ(Pg(Local(d_->proxy_port(), token, "options='endpoint=default/ldev'"))
                .One("select x from via_socket"),
            "on ldev");

  // Refusals: the same sentence as over TCP, and nothing gets in.
  std::string wrong_local = LoginError(Local(dev, "not-a-token"));
  std::string wrong_tcp = LoginError(Tcp(dev, "not-a-token"));
  ASSERT_NE(wrong_local, "") << "a wrong password was let in through the socket";
  EXPECT_EQ(Fatal(wrong_local), Fatal(wrong_tcp));
  std::string other = LoginError(Local(dev, Token("production")));
  EXPECT_NE(other, "") << "production's token opened ldev through the socket";
  EXPECT_EQ(Fatal(other), Fatal(LoginError(Tcp(dev, Token("production")))));
  std::string super = LoginError("host=" + Dir() + " port=" + std::to_string(dev) +
                                 " user=postgres dbname=postgres "
                                 "password=" +
                                 token);
  EXPECT_NE(super.find("Arbor's own superuser"), std::string::npos) << super;
}

TEST_F(LocalSocket, AnotherOsUserCannotReachTheSockets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  const std::string conninfo = Local(PortOf("ldev"), Token("ldev"));
  auto r = testutil::RunShell(
      "runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -XAtc "
      "'select 1' '" +
          conninfo + "'",
      "/tmp/arbor-local-socket-test.err");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
}

TEST_F(LocalSocket, TheCliUsesTheSocketOnThisHost) {
  auto cs = Arbor("connection-string ldev --local");
  ASSERT_EQ(cs.rc, 0) << cs.err;
  std::string url = cs.out.substr(0, cs.out.find('\n'));
  EXPECT_NE(url.find("?host=" + Dir()), std::string::npos) << url;
  EXPECT_EQ(Pg(url).One("select x from via_socket"), "on ldev");
  auto tcp = Arbor("connection-string ldev");
  ASSERT_EQ(tcp.rc, 0) << tcp.err;
  EXPECT_EQ(tcp.out.find("host="), std::string::npos) << "the plain form stays TCP: " << tcp.out;

  // psql and run go through the socket, unless ARBOR_LOCAL_SOCKET=0 says not to.
  auto psql = Arbor("psql ldev -- -XAtc '\\conninfo'");
  ASSERT_EQ(psql.rc, 0) << psql.err;
  EXPECT_NE(psql.out.find("via socket in \"" + Dir() + "\""), std::string::npos) << psql.out;
  auto tcp_psql = Arbor("psql ldev -- -XAtc '\\conninfo'", "ARBOR_LOCAL_SOCKET=0");
  ASSERT_EQ(tcp_psql.rc, 0) << tcp_psql.err;
  EXPECT_NE(tcp_psql.out.find("on host \"127.0.0.1\""), std::string::npos) << tcp_psql.out;
  auto run = Arbor("run ldev -- sh -c 'echo \"$PGHOST\"; psql -XAtc \"select x from via_socket\"'");
  ASSERT_EQ(run.rc, 0) << run.err;
  EXPECT_EQ(run.out, Dir() + "\non ldev\n");
  auto off = Arbor("connection-string ldev --local", "ARBOR_LOCAL_SOCKET=0");
  EXPECT_EQ(off.rc, 1);
  EXPECT_NE(off.err.find("ARBOR_LOCAL_SOCKET=0"), std::string::npos) << off.err;
}

TEST_F(LocalSocket, AnEndpointsSocketGoesWithIt) {
  testutil::Fork(d_, "lgone", "production");
  const std::string socket = Dir() + "/.s.PGSQL." + std::to_string(PortOf("lgone"));
  ASSERT_TRUE(IsSocket(socket));
  ASSERT_EQ(d_->Call("DELETE", "projects/default/branches/lgone").status, 200);
  EXPECT_FALSE(IsSocket(socket)) << "a deleted endpoint's socket stayed";
}

TEST_F(LocalSocket, ASocketLeftByAKilledDaemonIsReplaced) {
  const int dev = PortOf("ldev");
  const std::string socket = Dir() + "/.s.PGSQL." + std::to_string(dev);
  d_->Kill9();
  ASSERT_TRUE(IsSocket(socket)) << "kill -9 leaves the socket file";
  d_->Relaunch();
  EXPECT_EQ(Pg(Local(dev, Token("ldev"))).One("select x from via_socket"), "on ldev");
  d_->Stop();
  EXPECT_FALSE(IsSocket(socket)) << "a stopped daemon removes its sockets";
  d_->Relaunch();
}

}  // namespace
}  // namespace arbor
