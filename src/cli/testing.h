#pragma once

// For the CLI's unit tests: runs `arbor ARGS` in-process with a given environment, a fixed
// clock and exec captured instead of performed.

#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.h"

namespace arbor::cli::testing {

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

// `exec_argv`, when given, receives what the command tried to exec, which "fails" with
// ENOENT's message.
// What a command tried to exec, or ran as a child (`arbor run`), with the variables it added.
struct Launch {
  std::vector<std::string> argv;
  Io::Env env;
  int64_t refresh_every_s = 0;
};

// `exec_argv`, when given, receives what the command tried to exec, which "fails" with
// ENOENT's message. `launch`, when given, also gets the variables, and what `arbor run`
// runs as a child (whose refresh is called once, and which exits with `child_exit`).
inline Outcome RunCli(const std::vector<std::string>& args,
                      const std::map<std::string, std::string>& env, int64_t now_us,
                      std::vector<std::string>* exec_argv = nullptr,
                      const AddCommands& add = nullptr, Launch* launch = nullptr,
                      int child_exit = 0) {
  std::ostringstream out, err;
  Io io;
  io.out = &out;
  io.err = &err;
  io.getenv = [&env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  io.now_us = [now_us] { return now_us; };
  io.exec = [exec_argv, launch](const std::vector<std::string>& argv, const Io::Env& added) {
    if (exec_argv != nullptr) *exec_argv = argv;
    if (launch != nullptr) *launch = {argv, added, 0};
    return std::string("No such file or directory");
  };
  io.run_child = [exec_argv, launch, child_exit](const std::vector<std::string>& argv,
                                                 const Io::Env& added, int64_t every,
                                                 const std::function<void()>& refresh) {
    if (exec_argv != nullptr) *exec_argv = argv;
    if (launch != nullptr) *launch = {argv, added, every};
    refresh();
    return Result<int>(child_exit);
  };
  int code = RunWith(args, add, io);
  return {code, out.str(), err.str()};
}

}  // namespace arbor::cli::testing
