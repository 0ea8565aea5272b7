#pragma once

// The text forms of docs/api.md: resource ids and names, durations, RFC 3339 times and
// PostgreSQL LSNs. Pure functions, no I/O, no HTTP; shared by the server (src/control) and
// the client (src/cli). Every parser returns InvalidArgument with a message that quotes the
// bad input and shows a good example; none throws.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/ids.h"
#include "common/status.h"

namespace arbor::api {

inline constexpr size_t kMaxIdLength = 63;

// Ok if `id` is 1-63 characters of lowercase letters, digits and hyphens, starting with a
// letter. `what` names the id in the message ("branch id").
[[nodiscard]] Status ValidateId(std::string_view id, std::string_view what);

// projects/{project}
struct ProjectName {
  std::string project;
  std::string ToString() const;
};
// projects/{project}/branches/{branch}
struct BranchName {
  std::string project;
  std::string branch;
  std::string ToString() const;
  ProjectName Parent() const { return {project}; }
};
// projects/{project}/branches/{branch}/endpoints/{endpoint}
struct EndpointName {
  std::string project;
  std::string branch;
  std::string endpoint;
  std::string ToString() const;
  BranchName Parent() const { return {project, branch}; }
};

// Parse full resource names; each id is validated. InvalidArgument otherwise.
[[nodiscard]] Result<ProjectName> ParseProjectName(std::string_view name);
[[nodiscard]] Result<BranchName> ParseBranchName(std::string_view name);
[[nodiscard]] Result<EndpointName> ParseEndpointName(std::string_view name);

// Durations are whole seconds with an `s` suffix: "3600s" <-> 3600. Negative durations and
// values above ~31,700 years are refused.
[[nodiscard]] Result<int64_t> ParseDuration(std::string_view text);
std::string FormatDuration(int64_t seconds);

// RFC 3339 -> microseconds since the Unix epoch. Accepts `T` or `t`, 0-9 fraction digits
// (truncated to microseconds), and a `Z`/`z` or +hh:mm/-hh:mm offset; refuses anything else,
// including impossible dates (2026-02-30).
[[nodiscard]] Result<int64_t> ParseTime(std::string_view text);
// Microseconds since the epoch -> "2026-11-24T16:00:00.123456Z" (UTC, always 6 digits).
std::string FormatTime(int64_t micros);

// Reads "<n><unit>..." (units s, m, h, d, w; "1h30m") into seconds. False on anything else.
bool UnitSeconds(std::string_view text, int64_t* out);
// RFC 3339, or how long before `now_us` ("-10m", "-1h30m"). -> µs since the epoch.
[[nodiscard]] Result<int64_t> ParseTimeOrAgo(std::string_view text, int64_t now_us);

// The id of the read-only endpoint pinned at a time (µs) or an LSN, as the daemon names the
// ones it makes for BRANCH@TIME: "at-<µs>" or "lsn-<high>-<low>" (hex, lowercase).
std::string PinnedEndpointId(std::optional<int64_t> time_us, std::optional<Lsn> lsn);

// PostgreSQL's LSN text form "16/B374D848" (two hex numbers of up to 8 digits) <-> Lsn.
[[nodiscard]] Result<Lsn> ParseLsn(std::string_view text);
std::string FormatLsn(Lsn lsn);

}  // namespace arbor::api
