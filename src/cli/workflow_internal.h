#pragma once

// What the workflow commands (git.cc, workflow.cc) share. Internal to src/cli.

#include <string>
#include <vector>

#include "cli/session.h"
#include "datadiff/backend.h"
#include "datadiff/catalog.h"
#include "datadiff/diff.h"
#include "datadiff/schema_diff.h"

namespace arbor::cli {

// The schema diff's values (src/datadiff), as the workflow commands use them.
using datadiff::Catalog;
using datadiff::Change;
using datadiff::CompareCatalogs;
using datadiff::ConnInfoParts;
using datadiff::DiffFormat;
using datadiff::DiffToJson;
using datadiff::ReadCatalog;
using datadiff::RenderDiff;

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
// The exit of a failed diff or migrate-check: as ExitCodeFor, but 1 is taken by
// "differences" and "the migration failed", so the server's refusals are 5.
[[noreturn]] void FailDiffLike(const Status& st);

// One side of a diff: a branch (its primary endpoint), or a branch at a time read through an
// endpoint pinned there (read-only, on an ephemeral timeline; it deletes itself once idle).
using DiffSide = datadiff::DiffSide;
// A diff side from BRANCH, BRANCH@TIME or BRANCH@lsn:X/Y (a pinned endpoint made if missing).
[[nodiscard]] Result<DiffSide> ResolveSide(const Session& s, const api::ApiClient& c,
                                           const std::string& text);

// What the data diff and merge (src/datadiff) need of Arbor, over the REST API
// (data_backend.cc): POST credentials and :start for connections, GET branch for fork points,
// pinned endpoints made with POST endpoints, GET .../changed_pages; progress lines on stderr.
class ApiBackend : public datadiff::Backend {
 public:
  // Borrows both; they must outlive it.
  ApiBackend(const Session& s, const api::ApiClient& c) : s_(s), c_(c) {}
  Result<datadiff::ForkPoint> ForkOf(const api::BranchName& branch) override;
  // The target's credentials (`to_write`) are asked for before it is started: POST credentials
  // applies the protected-branch rule, so a refusal says so and starts nothing.
  Result<std::string> Connect(const api::EndpointName& endpoint, bool to_write) override;
  Result<datadiff::PinnedSide> Pin(const api::BranchName& branch, std::optional<int64_t> time_us,
                                   std::optional<Lsn> lsn) override;
  Result<api::ChangedPages> ChangedPages(const api::EndpointName& a,
                                         const api::EndpointName& b) override;
  void Note(const std::string& line) override;

 private:
  const Session& s_;
  const api::ApiClient& c_;
};

// `arbor diff --data` (data_diff_cmd.cc).
struct DataDiffOpts {
  std::string a, b, format = "text", database;
  std::vector<std::string> tables;
};
Status CmdDataDiff(const Session& s, const DataDiffOpts& o);

// Registers `arbor merge` (data_merge_cmd.cc).
void AddMergeCommand(CLI::App& app, Session& s, Action* action);

// Registers `arbor bisect` (bisect.cc).
void AddBisectCommand(CLI::App& app, Session& s, Action* action);

// 6 random lowercase hex digits, for temporary branch ids.
std::string RandomSuffix();

// `text` with newlines turned into spaces: a message that must stay one line.
std::string OneLineOf(std::string text);

}  // namespace arbor::cli
