#pragma once

// What the workflow commands (git.cc, workflow.cc) share. Internal to src/cli.

#include <string>

#include "cli/session.h"

namespace arbor::cli {

// Registers `arbor git ...` (git.cc).
void AddGitCommands(CLI::App& app, Session& s, Action* action);

// Ends the command with `exit_code`, printing `arbor: <message>` unless it is empty
// (through RunWith's handling of CLI::RuntimeError).
[[noreturn]] void ExitWith(int exit_code, const std::string& message);

// The connection string of `branch`'s primary endpoint, as GET endpoint reports it; starts
// nothing.
[[nodiscard]] Result<std::string> PrimaryConnectionString(const api::ApiClient& c,
                                                          const api::BranchName& branch);

// `branch`'s primary endpoint URL with a new password for its role owner, which does not
// expire; the role's previous password stops working. For .env and CI variables.
[[nodiscard]] Result<std::string> RolePasswordUrl(const api::ApiClient& c,
                                                  const api::BranchName& branch);
// `branch`'s primary endpoint URL with a fresh token for owner (valid an hour).
[[nodiscard]] Result<std::string> TokenUrl(const api::ApiClient& c, const api::BranchName& branch);
// Whether `url` logs in as the same user at the same address as `base`, the endpoint's
// password-less connection string.
bool SameLogin(const std::string& url, const std::string& base);

// Starts endpoint `name` and returns its URL with a fresh token for owner (valid an hour).
[[nodiscard]] Result<std::string> ConnectEndpoint(const api::ApiClient& c,
                                                  const api::EndpointName& name);
// Registers `arbor bisect` (bisect.cc).
void AddBisectCommand(CLI::App& app, Session& s, Action* action);

// 6 random lowercase hex digits, for temporary branch ids.
std::string RandomSuffix();

// `text` with newlines turned into spaces: a message that must stay one line.
std::string OneLineOf(std::string text);

}  // namespace arbor::cli
