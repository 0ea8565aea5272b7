#pragma once

// The pure parts of `arbor git` (docs/workflow.md): how a git branch name becomes a branch
// id, how the env file's one variable is rewritten, the repository's `.arbor.toml`, the
// record of the branches the hook made, and the text of the hooks. No I/O here, so that
// every rule is unit-tested (workflow_test.cc).

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace arbor::cli {

// A git branch name -> a valid branch id (1-63 of [a-z0-9-], starting with a letter):
//   lowercase; '/' and every character outside [a-z0-9-] become '-'; runs of '-' collapse
//   to one and leading/trailing ones go; a name not starting with a letter gets "b-" in
//   front (an empty one becomes "b-" + hash); a name over 63 characters is cut to 54 and
//   gets "-" + 8 hex digits of a hash of the whole git name, so that two long names sharing
//   a prefix stay apart. Deterministic: the hook and `arbor git status` agree.
std::string MapGitBranch(std::string_view git_branch);

// FNV-1a, 32 bits, as 8 lowercase hex digits: the suffix of cut names.
std::string ShortHash(std::string_view text);

// Rewrites every line of `content` that assigns `variable` (`NAME=...`, `export NAME=...`,
// spaces around `=` allowed) to `[export ]NAME=value`, keeping each such line's `export`
// and its `\r\n` ending; every other byte stays as it was. With no such line, appends
// `NAME=value\n` (after a '\n' if the content does not end with one). The value is quoted
// with '...' only when it holds a character a dotenv reader would treat specially.
std::string RewriteEnvVar(std::string_view content, std::string_view variable,
                          std::string_view value);

// The value of `variable` in env-file `content` (last assignment wins), unquoted; empty if
// absent.
std::string EnvValue(std::string_view content, std::string_view variable);

// The repository's `.arbor.toml`: `key = "value"` lines, `#` comments.
struct GitConfig {
  std::string project = "default";
  std::string parent = "production";
  std::string ttl = "7d";
  std::string env_file = ".env";
  std::string variable = "DATABASE_URL";
  // The git branch that maps to `parent` itself (main, master, ...).
  std::string default_branch = "main";
};

inline constexpr const char* kConfigFile = ".arbor.toml";

// A committed `.arbor.toml` is whoever wrote the pull request's, so the hook trusts neither
// key. `env_file` must be a file inside the work tree, relative to its root: not empty, not
// absolute, no `..` or `.git` component, no control character (NUL, newline, ...), not a
// directory ("x/"). InvalidArgument naming `what` (".arbor.toml: env_file", "--env-file")
// otherwise. Links on the way are checked when the file is written (git.cc).
[[nodiscard]] Status ValidateEnvFile(std::string_view env_file, std::string_view what);

// `variable` must be a name, [A-Za-z_][A-Za-z0-9_]*: it is written into the env file,
// $GITHUB_ENV and shell code, where anything else would add assignments or code of its own.
[[nodiscard]] Status ValidateEnvVariable(std::string_view variable, std::string_view what);

// InvalidArgument naming the line for a malformed line or an unknown key (a typo is never
// silently ignored), or naming the key for an `env_file` or `variable` the two rules above
// refuse; missing keys keep their defaults.
[[nodiscard]] Result<GitConfig> ParseGitConfig(std::string_view text);
std::string FormatGitConfig(const GitConfig& c);

// The database branch of `git_branch`: `parent` for the default git branch (and for a name
// that maps to the parent's id), else MapGitBranch.
std::string DatabaseBranchFor(const GitConfig& c, std::string_view git_branch);

// What the hook made or adopted, kept in the git directory (`arbor-branches.json`): the
// git branch, its database branch and that branch's uid, so that `prune` deletes only
// these and never a branch of the same name made since by someone else.
struct HookRecord {
  std::string git_branch;
  std::string db_branch;
  std::string uid;
};
using HookRecords = std::map<std::string, HookRecord>;  // by git branch
[[nodiscard]] Result<HookRecords> ParseHookRecords(std::string_view text);
std::string FormatHookRecords(const HookRecords& r);

// The database branch of `git_branch` in a clone whose hook made `records`: the one recorded
// for it, if any; else DatabaseBranchFor, unless another git branch's record already holds
// that id (two names that map alike, such as "feature/login" and "feature-login"). Then it
// is the mapping cut to 54 characters, "-" and ShortHash of the name, so that two git
// branches of one clone never share a database branch.
std::string DatabaseBranchFor(const GitConfig& c, const HookRecords& records,
                              std::string_view git_branch);

// Hooks: ours carry kHookMarker; `install` moves an existing hook H to H + kOrigSuffix and
// ours runs it first, with the same arguments, keeping its exit status.
inline constexpr const char* kHookMarker = "arbor-git-hook";
inline constexpr const char* kOrigSuffix = ".arbor-orig";
inline constexpr const char* kHookNames[] = {"post-checkout", "post-merge"};
std::string HookScript(std::string_view hook_name, std::string_view arbor_binary);

// `s` in single quotes for sh, with embedded quotes escaped: it's -> 'it'\''s'.
std::string ShellQuote(std::string_view s);

}  // namespace arbor::cli
