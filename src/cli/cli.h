#pragma once

// The `arbor` command's client side: every command that only talks to the REST API
// (status, branch, endpoint, connection-string, psql, credential, and the seed-compatible
// `postgres ...` verbs). The server-side commands (up, down, debug) are registered by the
// app through `add_server_commands`, so that this library depends on api only.
//
// Exit codes, mapped in one place (cli.cc: ExitCodeFor):
//   0 ok; 1 the server said no (4xx); 2 usage error; 3 cannot reach the daemon;
//   4 server error (5xx) or an answer that is not as documented.
// Errors print one line, `arbor: <message>`, on stderr.

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace CLI {
class App;
}

namespace arbor::cli {

// Registers commands on the root app. A server command's callback reports failure by
// throwing CLI::RuntimeError(exit_code); Run turns it into that exit code. Any other
// exception escaping a callback is exit code 4 with its what() on stderr.
using AddCommands = std::function<void(CLI::App&)>;

// Parses argv, runs the chosen command and returns the process exit code. Never throws.
int Run(int argc, char** argv, const AddCommands& add_server_commands);

// Where a run reads its environment and writes; tests replace every part.
struct Io {
  std::ostream* out;  // results
  std::ostream* err;  // `arbor: <message>` lines
  // The environment: ARBOR_HOME, ARBOR_API, ARBOR_TOKEN, HOME, PATH.
  std::function<std::optional<std::string>(const std::string&)> getenv;
  // Wall-clock time in µs since the epoch; for relative times (-5m), ages and expiries.
  std::function<int64_t()> now_us;
  // Variables a child gets in addition to ours (a password goes here, never into argv,
  // where `ps` shows it to every local user).
  using Env = std::vector<std::pair<std::string, std::string>>;
  // Replaces the process with argv[0] (a path, or a name looked up on PATH) with `env` added;
  // returns only on failure, with errno's message. `arbor psql` uses it.
  std::function<std::string(const std::vector<std::string>& argv, const Env& env)> exec;
  // Runs argv as a child with `env` added and waits for it, calling `refresh` every
  // `refresh_every_s` seconds while it runs; SIGINT and SIGQUIT reach the child (we ignore
  // them meanwhile) and SIGTERM and SIGHUP are passed on to it. Returns its exit status (128 +
  // N when killed by signal N); IOError if it cannot be started. `arbor run` uses it.
  std::function<Result<int>(const std::vector<std::string>& argv, const Env& env,
                            int64_t refresh_every_s, const std::function<void()>& refresh)>
      run_child;

  // The real process: std::cout, std::cerr, ::getenv, the system clock, execvp.
  static Io Process();
};

// Run with explicit arguments (without the program name) and I/O.
int RunWith(const std::vector<std::string>& args, const AddCommands& add_server_commands,
            const Io& io);

}  // namespace arbor::cli
