#pragma once

// What every client command shares: the session (global flags, I/O, the API client), exit
// codes and the helpers that resolve names. Internal to src/cli.

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <utility>

#include "api/client.h"
#include "api/names.h"
#include "api/types.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/settings.h"
#include "common/status.h"

namespace arbor::cli {

// Debian's postgresql-client-15 (DESIGN.md: the binaries are Debian's); else psql on PATH.
inline constexpr const char* kDebianPsql = "/usr/lib/postgresql/15/bin/psql";
inline constexpr const char* kPrimary = "primary";

enum class Exit : int { kOk = 0, kRejected = 1, kUsage = 2, kUnreachable = 3, kServerError = 4 };

// The one place a command's outcome becomes an exit code (usage errors, raised as CLI11
// exceptions, are mapped in RunWith).
inline int ExitCodeFor(const Status& st) {
  switch (st.code()) {
    case Code::kOk:
      return static_cast<int>(Exit::kOk);
    case Code::kUnavailable:
      return static_cast<int>(Exit::kUnreachable);
    case Code::kInternal:
    case Code::kResourceExhausted:
    case Code::kIOError:
    case Code::kCorruption:
      return static_cast<int>(Exit::kServerError);
    default:
      return static_cast<int>(Exit::kRejected);
  }
}

// A mistake in the command line found after parsing; exit code 2 like CLI11's own.
[[noreturn]] inline void Usage(const std::string& message) { throw CLI::ValidationError(message); }

template <typename T>
T OrUsage(Result<T> r) {
  if (!r.ok()) Usage(r.status().message());
  return std::move(r).value();
}

// The flags every command shares, and what one run needs.
struct Session {
  const Io* io = nullptr;
  std::string api_flag;
  std::string output = "table";
  CLI::Option* output_opt = nullptr;
  std::string project = "default";

  api::ApiClient Client() const {
    Settings s = ResolveSettings(api_flag, io->getenv);
    api::ClientOptions o;
    o.base_url = s.api_url;
    o.token = s.token;
    o.auth_hint = AuthHint(s);
    return api::ApiClient(o);
  }
  // JSON output: -o json, or by default for the seed-compatible verbs.
  bool Json(bool json_by_default = false) const {
    if (output_opt != nullptr && output_opt->count() > 0) return output == "json";
    return json_by_default;
  }
  int64_t Now() const { return io->now_us(); }
  void Print(const std::string& text) const { *io->out << text; }
  void PrintJson(const api::Json& j) const { *io->out << j.dump(2) << "\n"; }
  api::BranchName Branch(const std::string& text) const {
    return OrUsage(ResolveBranch(text, project));
  }
  std::string ProjectId() const {
    Status st = api::ValidateId(project, "project id");
    if (!st.ok()) Usage("--project: " + st.message());
    return project;
  }
};

using Action = std::function<Status()>;

// The project's default branch.
Result<api::BranchName> DefaultBranch(const api::ApiClient& c, const std::string& project);

// The endpoint `endpoint` of `branch` (the project's default branch when empty); usage error
// for a malformed name.
Result<api::EndpointName> EndpointOf(const Session& s, const api::ApiClient& c,
                                     const std::string& branch, const std::string& endpoint);

// Whether a branch argument names a past state: BRANCH@TIME or BRANCH@lsn:X/Y.
inline bool IsPinned(const std::string& branch) { return branch.find('@') != std::string::npos; }
// BRANCH@TIME (RFC 3339, "-10m") or BRANCH@lsn:X/Y: the branch's read-only endpoint pinned at
// that state, made through the API or reused if one is already pinned there. It deletes
// itself once idle (5 min). Usage error for a malformed time or LSN.
Result<api::EndpointName> PinnedEndpoint(const Session& s, const api::ApiClient& c,
                                         const std::string& text);

// Sets `*action` when `sub` is chosen; the action runs after parsing succeeded.
inline void OnRun(CLI::App* sub, Action* action, Action run) {
  sub->callback([action, run = std::move(run)] { *action = run; });
}

}  // namespace arbor::cli
