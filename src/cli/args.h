#pragma once

// The CLI's forms of user input, turned into the API's: short or full branch names,
// relative or RFC 3339 times, and human durations. Pure functions; usage errors come back
// as InvalidArgument with a message for the user.

#include <cstdint>
#include <string>
#include <string_view>

#include "api/names.h"
#include "common/status.h"

namespace arbor::cli {

// "dev" -> projects/<project>/branches/dev; a full name is parsed as given.
[[nodiscard]] Result<api::BranchName> ResolveBranch(std::string_view text,
                                                    const std::string& project);

// TIME: RFC 3339 ("2026-11-24T16:00:00Z"), "now", how long ago ("-5m", "-30s", "-2h",
// "-1d", "-1h30m") or how far ahead ("+2h", for expiry times). -> µs since the epoch.
[[nodiscard]] Result<int64_t> ParseTimeArg(std::string_view text, int64_t now_us);

// DUR: "3600s", "90m", "2h", "7d", "1w", "1h30m" -> seconds. The API's "3600s" is a case.
[[nodiscard]] Result<int64_t> ParseDurationArg(std::string_view text);

// "1h30m" style for people: 0s, 45s, 5m, 2h5m, 3d4h.
std::string HumanDuration(int64_t seconds);
// 0 B, 512 B, 8.0 KiB, 39.1 MiB, 1.2 GiB.
std::string HumanBytes(int64_t bytes);

}  // namespace arbor::cli
