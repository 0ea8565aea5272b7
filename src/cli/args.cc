#include "cli/args.h"

#include <cstdio>

namespace arbor::cli {
using api::UnitSeconds;

Result<api::BranchName> ResolveBranch(std::string_view text, const std::string& project) {
  if (text.rfind("projects/", 0) == 0) return api::ParseBranchName(text);
  ARBOR_RETURN_IF_ERROR(api::ValidateId(project, "project id"));
  ARBOR_RETURN_IF_ERROR(api::ValidateId(text, "branch id"));
  return api::BranchName{project, std::string(text)};
}

Result<int64_t> ParseTimeArg(std::string_view text, int64_t now_us) {
  if (text == "now") return now_us;
  int64_t ago_s;
  if (!text.empty() && text[0] == '-' && UnitSeconds(text.substr(1), &ago_s)) {
    return now_us - ago_s * 1'000'000;
  }
  int64_t ahead_s;
  if (!text.empty() && text[0] == '+' && UnitSeconds(text.substr(1), &ahead_s)) {
    return now_us + ahead_s * 1'000'000;
  }
  auto t = api::ParseTime(text);
  if (t.ok()) return t;
  return Status::InvalidArgument("'" + std::string(text) +
                                 "' is not a time: use RFC 3339 (2026-11-24T16:00:00Z), "
                                 "\"now\", how long ago (-5m, -30s, -2h) or from now (+2h)");
}

Result<int64_t> ParseDurationArg(std::string_view text) {
  int64_t s;
  if (UnitSeconds(text, &s)) return s;
  return Status::InvalidArgument("'" + std::string(text) +
                                 "' is not a duration: use e.g. 3600s, 90m, 2h, 7d or 1h30m");
}

std::string HumanDuration(int64_t seconds) {
  if (seconds < 0) seconds = -seconds;
  if (seconds < 60) return std::to_string(seconds) + "s";
  if (seconds < 3600) return std::to_string(seconds / 60) + "m";
  auto two = [](int64_t a, const char* ua, int64_t b, const char* ub) {
    std::string s = std::to_string(a) + ua;
    if (b != 0) s += std::to_string(b) + ub;
    return s;
  };
  if (seconds < 86'400) return two(seconds / 3600, "h", seconds % 3600 / 60, "m");
  return two(seconds / 86'400, "d", seconds % 86'400 / 3600, "h");
}

std::string HumanBytes(int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes) / 1024;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace arbor::cli
