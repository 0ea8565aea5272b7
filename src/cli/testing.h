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
inline Outcome RunCli(const std::vector<std::string>& args,
                      const std::map<std::string, std::string>& env, int64_t now_us,
                      std::vector<std::string>* exec_argv = nullptr,
                      const AddCommands& add = nullptr) {
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
  io.exec = [exec_argv](const std::vector<std::string>& argv) {
    if (exec_argv != nullptr) *exec_argv = argv;
    return std::string("No such file or directory");
  };
  int code = RunWith(args, add, io);
  return {code, out.str(), err.str()};
}

}  // namespace arbor::cli::testing
