#pragma once

// A real `arbor` daemon for integration tests: its own ARBOR_HOME, API port and endpoint
// port range; stopped, unmounted and removed when the object goes away, even after a
// failed assertion.

#include <libpq-fe.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace arbor::testutil {

using nlohmann::json;

struct HttpAnswer {
  int status = 0;  // 0: no answer
  json body;
};

class Daemon {
 public:
  // Starts `arbor up --foreground` and waits until it serves. Fails the test on error.
  // With `os_user` (only when the test runs as root), the daemon runs as that user, as
  // Arbor does when a non-root user starts it; its computes then run as that user too. If
  // that user cannot open /dev/fuse, the daemon runs in its own mount namespace with a
  // private /dev/fuse it can open; its mounts are then only in /proc/<pid>/mounts.
  static std::unique_ptr<Daemon> Start(const std::string& name = "it",
                                       const std::string& os_user = "");
  // The same, with more flags for `arbor up` (--metrics-listen, say).
  static std::unique_ptr<Daemon> StartWith(const std::string& name,
                                           std::vector<std::string> extra_args);
  ~Daemon();

  // A request under /api/2.0/postgres/ with the admin token, or `token` when not empty.
  HttpAnswer Call(const std::string& method, const std::string& path, const json& body = json(),
                  const std::string& token = "");
  // The same with `body` sent as it is (malformed JSON, say).
  HttpAnswer CallRaw(const std::string& method, const std::string& path, const std::string& body,
                     const std::string& token = "");
  // The connection string of a branch's primary endpoint, started first, with a fresh token
  // for `role` as its password (the endpoint's own connection string has none).
  std::string Connect(const std::string& branch, const std::string& project = "default",
                      const std::string& role = "owner");
  // A conninfo for Arbor's own superuser on the branch's private socket (peer
  // authentication, so only when the test runs as the daemon's OS user). For checks no user
  // can make, such as pg_amcheck; never a user-facing path.
  std::string AdminConnect(const std::string& branch, const std::string& project = "default");
  // Starts the endpoint of `branch` and returns when postgres accepts connections.
  void StartEndpoint(const std::string& branch, const std::string& project = "default");
  const std::string& home() const { return home_; }
  // The API's base URL ("http://127.0.0.1:PORT") and the admin token.
  const std::string& api() const { return api_; }
  const std::string& admin_token() const { return token_; }
  pid_t pid() const { return pid_; }
  // The proxy's shared port (endpoints have their own ports after it).
  uint16_t proxy_port() const { return port_lo_; }
  // kill -9 the daemon (its computes die with their mounts), then start it again.
  void KillAndRestart();
  // The two halves of KillAndRestart, for killing it while another thread uses it.
  void Kill9();
  void Relaunch() { Launch(); }
  // Stops the daemon as `arbor down` does (SIGTERM; SIGKILL if it is still there after two
  // minutes). Relaunch starts it again on the same home.
  void Stop();

 private:
  void Launch();
  std::string home_;
  std::vector<std::string> extra_args_;
  std::string api_;
  std::string token_;
  uint16_t port_lo_ = 0;
  pid_t pid_ = -1;
  uid_t uid_ = 0;  // the daemon's user; 0: the test's own
  gid_t gid_ = 0;
  bool private_fuse_ = false;
  dev_t fuse_rdev_ = 0;
};

// A libpq connection; every call fails the test on error unless said otherwise.
class Pg {
 public:
  explicit Pg(const std::string& conninfo);
  ~Pg();
  bool ok() const;
  // Runs `sql`; returns the first column of every row.
  std::vector<std::string> Query(const std::string& sql);
  // The first column of the first row.
  std::string One(const std::string& sql);
  // Runs `sql`; returns "" on success or the server's error message.
  std::string TryExec(const std::string& sql);

 private:
  PGconn* conn_ = nullptr;
};

// What a command printed and how it exited.
struct CliRun {
  int rc = -1;  // the exit status; -1 if it did not exit normally
  std::string out, err;
};
// Runs the shell command `cmd` with its stderr sent to `err_file` (read back, then removed).
CliRun RunShell(const std::string& cmd, const std::string& err_file);
// Runs `arbor ARGS` with ARBOR_HOME=`home` (the daemon's), `env` (VAR=value ...) before it.
CliRun RunArbor(const std::string& home, const std::string& args, const std::string& env = "");

// Now, wall clock, µs; RFC 3339 of a µs time.
int64_t NowMicros();
std::string Rfc3339(int64_t us);

// Runs pg_amcheck on every database of the server behind `conninfo`; "" when clean,
// else its output.
std::string AmCheck(const std::string& conninfo);

}  // namespace arbor::testutil
