#include "common/proc.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace arbor {

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "re");
  if (f == nullptr) return std::nullopt;
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // "PID (NAME) STATE PPID ...": the name may hold spaces and parentheses; the last ')' ends it.
  const char* close = std::strrchr(buf, ')');
  ProcStat st;
  int parent;
  if (close == nullptr || std::sscanf(close + 1, " %c %d", &st.state, &parent) != 2) {
    return std::nullopt;
  }
  st.parent = static_cast<pid_t>(parent);
  return st;
}

}  // namespace arbor
