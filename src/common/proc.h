#pragma once

#include <sys/types.h>

#include <optional>

namespace arbor {

// What Arbor reads of a process's /proc/PID/stat.
struct ProcStat {
  char state = 0;  // R, S, D, Z (zombie), X (dead), ...
  pid_t parent = 0;
};

// The state and parent of process `pid`; nullopt if it is gone or its entry cannot be read
// (/proc mounted with hidepid, say). The process name is skipped whatever it holds.
std::optional<ProcStat> ReadProcStat(pid_t pid);

}  // namespace arbor
