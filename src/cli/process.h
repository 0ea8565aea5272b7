#pragma once

// Child processes for the workflow commands: git, and the user's migration command. Not
// thread-safe (it changes no global state, but waits for its child with waitpid).

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace arbor::cli {

struct ProcessResult {
  int exit_code = -1;  // the child's exit status; 128 + N when killed by signal N
  std::string out;     // captured stdout (capture mode only)
  std::string err;     // captured stderr (capture mode only)
};

struct ProcessOptions {
  std::string cwd;                                       // empty: ours
  std::vector<std::pair<std::string, std::string>> env;  // added to (or replacing in) ours
  // true: stdout and stderr are captured and stdin is /dev/null. false: the child shares
  // our stdin and stderr, and its stdout goes to our stderr (so that our stdout carries
  // only the report), and we ignore SIGINT and SIGQUIT until it ends, as system(3) does, so
  // that ^C stops the child and we still clean up after it.
  bool capture = true;
};

// Runs argv[0] (a path, or a name looked up on PATH) and waits for it. The Result fails
// only when the process could not be started (IOError naming the program); a non-zero exit
// is a successful Result with that exit_code.
[[nodiscard]] Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                               const ProcessOptions& options);

}  // namespace arbor::cli
