#pragma once

// An HTTP client for the REST API of docs/api.md, one method per call.
//
// Errors: an answer with a 4xx/5xx status becomes a Status whose code comes from the
// body's error_code (api/errors.h: CodeForError) and whose message is the body's message,
// verbatim. An API that cannot be reached (connection refused, no such host, timeout) is
// kUnavailable with a hint to run `arbor up`. An answer that is not the documented JSON is
// kInternal naming what was wrong. Nothing throws.
//
// Thread-safe: the client holds only its configuration, and each call opens its own
// connection (the API is local; a connection costs well under a millisecond).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/names.h"
#include "api/types.h"
#include "common/status.h"

namespace arbor::api {

struct ClientOptions {
  // "http://127.0.0.1:8432"; a trailing '/' is ignored. Only http:// is supported.
  std::string base_url;
  // Sent as `Authorization: Bearer <token>`; empty sends no header.
  std::string token;
  int connect_timeout_s = 5;
  // Long enough for calls that start or stop a postgres (endpoint start, branch reset).
  int read_timeout_s = 300;
  // Added to the message of a 401 (the caller says where the token came from).
  std::string auth_hint{};
};

class ApiClient {
 public:
  explicit ApiClient(ClientOptions options);

  const std::string& base_url() const { return options_.base_url; }

  // GET status.
  [[nodiscard]] Result<ServerStatus> GetStatus() const;

  // ---- projects ----
  [[nodiscard]] Result<Project> CreateProject(const std::string& project_id,
                                              const ProjectSpec& spec) const;
  [[nodiscard]] Result<std::vector<Project>> ListProjects() const;
  [[nodiscard]] Result<Project> GetProject(const std::string& project) const;
  // PATCH with update_mask=spec.history_retention_duration.
  [[nodiscard]] Result<Project> UpdateProject(const std::string& project,
                                              const ProjectSpec& spec) const;
  [[nodiscard]] Status DeleteProject(const std::string& project) const;

  // ---- branches ----
  [[nodiscard]] Result<Branch> CreateBranch(const std::string& project,
                                            const std::string& branch_id,
                                            const BranchSpec& spec) const;
  // The same call with a caller-made body, sent as is ({"spec": {...}}); for the
  // seed-compatible `arbor postgres create-branch --json`.
  [[nodiscard]] Result<Branch> CreateBranchRaw(const std::string& project,
                                               const std::string& branch_id,
                                               const Json& body) const;
  // With `show_deleted`, the deleted branches not yet purged too (status.deleted).
  [[nodiscard]] Result<std::vector<Branch>> ListBranches(const std::string& project,
                                                         bool show_deleted = false) const;
  [[nodiscard]] Result<Branch> GetBranch(const BranchName& branch) const;
  // PATCH: `update_mask` lists the spec fields to change ("spec.is_protected,spec.ttl").
  [[nodiscard]] Result<Branch> UpdateBranch(const BranchName& branch, const BranchSpec& spec,
                                            const std::string& update_mask) const;
  [[nodiscard]] Status DeleteBranch(const BranchName& branch) const;
  // DELETE ...?purge=true: the live branch, or else its most recently deleted namesake, goes
  // for good.
  [[nodiscard]] Status PurgeBranch(const BranchName& branch) const;
  // :undelete the most recently deleted branch of that name, under `new_branch_id` if set.
  [[nodiscard]] Result<UndeleteResult> UndeleteBranch(
      const BranchName& branch, const std::optional<std::string>& new_branch_id) const;
  // :reset to the parent's head (`at` empty) or to its state at at->source_branch_time_us.
  [[nodiscard]] Result<Branch> ResetBranch(const BranchName& branch, const PointInTime& at) const;
  // :restore the branch's own state at a time or LSN; the old state becomes a backup branch.
  [[nodiscard]] Result<RestoreResult> RestoreBranch(const BranchName& branch,
                                                    const PointInTime& at) const;

  // ---- endpoints ----
  [[nodiscard]] Result<Endpoint> CreateEndpoint(const BranchName& branch,
                                                const std::string& endpoint_id,
                                                const EndpointSpec& spec) const;
  [[nodiscard]] Result<std::vector<Endpoint>> ListEndpoints(const BranchName& branch) const;
  [[nodiscard]] Result<Endpoint> GetEndpoint(const EndpointName& endpoint) const;
  [[nodiscard]] Status DeleteEndpoint(const EndpointName& endpoint) const;
  // PATCH its size (autoscaling_limit_min_cu/_max_cu; either may be left unset).
  [[nodiscard]] Result<Endpoint> UpdateEndpointSize(const EndpointName& endpoint,
                                                    std::optional<double> min_cu,
                                                    std::optional<double> max_cu) const;
  // PATCH the project's spec.snapshot_schedule; nullopt removes it.
  [[nodiscard]] Result<Project> SetSnapshotSchedule(
      const std::string& project, const std::optional<SnapshotScheduleSpec>& schedule) const;
  // GET projects/P/usage?start=..&end=.. as the API answers it (docs/compute-sizes.md).
  [[nodiscard]] Result<Json> GetUsage(const std::string& project, const std::string& start,
                                      const std::string& end) const;
  // Returns once postgres accepts connections (or has stopped), with the endpoint after.
  [[nodiscard]] Result<Endpoint> StartEndpoint(const EndpointName& endpoint) const;
  [[nodiscard]] Result<Endpoint> StopEndpoint(const EndpointName& endpoint) const;

  // ---- history ----
  // GET .../branches/B/history: the branch's WAL writes in [since, until] (absent: from the
  // earliest time still available, to now), oldest first. No transaction commits between
  // two consecutive points; a READ_ONLY endpoint at a point's LSN serves exactly its state.
  [[nodiscard]] Result<std::vector<HistoryPoint>> History(const BranchName& branch,
                                                          std::optional<int64_t> since_us,
                                                          std::optional<int64_t> until_us) const;

  // POST .../branches/B:bisect with `body` ({"check", "since"?, "until"?, "database"?});
  // answers the outcome as the API gives it (docs/api.md, "Bisect").
  [[nodiscard]] Result<Json> Bisect(const BranchName& branch, const Json& body) const;

  // GET .../endpoints/E/changed_pages?against=OTHER: the relation pages that may differ
  // between what the two endpoints serve (both in one project). Running read-write computes
  // of both branches are checkpointed first.
  [[nodiscard]] Result<ChangedPages> GetChangedPages(const EndpointName& endpoint,
                                                     const EndpointName& against) const;

  // ---- databases ----
  // Makes database `name` owned by `owner` (empty: the API's default, owner).
  [[nodiscard]] Result<Database> CreateDatabase(const BranchName& branch, const std::string& name,
                                                const std::string& owner) const;
  [[nodiscard]] Result<std::vector<Database>> ListDatabases(const BranchName& branch) const;
  [[nodiscard]] Result<Database> GetDatabase(const BranchName& branch,
                                             const std::string& name) const;
  // `force`: ends the sessions connected to it first (otherwise FailedPrecondition).
  [[nodiscard]] Status DeleteDatabase(const BranchName& branch, const std::string& name,
                                      bool force) const;

  // ---- snapshots ----
  [[nodiscard]] Result<Snapshot> CreateSnapshot(const BranchName& branch,
                                                const std::string& snapshot_id,
                                                const SnapshotSpec& spec) const;
  // The snapshots of one branch, or of every branch of `branch.project` when branch.branch is
  // empty; oldest first.
  [[nodiscard]] Result<std::vector<Snapshot>> ListSnapshots(const BranchName& branch) const;
  [[nodiscard]] Result<Snapshot> GetSnapshot(const BranchName& branch,
                                             const std::string& snapshot_id) const;
  [[nodiscard]] Status DeleteSnapshot(const BranchName& branch,
                                      const std::string& snapshot_id) const;

  // ---- roles ----
  [[nodiscard]] Result<Role> CreateRole(const BranchName& branch, const std::string& role) const;
  [[nodiscard]] Result<std::vector<Role>> ListRoles(const BranchName& branch) const;
  [[nodiscard]] Status DeleteRole(const BranchName& branch, const std::string& role) const;
  // A new password for the role, in the answer's `password` (shown this once).
  [[nodiscard]] Result<Role> ResetRolePassword(const BranchName& branch,
                                               const std::string& role) const;

  // ---- API tokens (/api/2.0/tokens) ----
  [[nodiscard]] Result<ApiToken> CreateApiToken(const ApiTokenRequest& request) const;
  [[nodiscard]] Result<std::vector<ApiToken>> ListApiTokens() const;
  [[nodiscard]] Status RevokeApiToken(const std::string& name) const;

  // ---- the web console ----
  // POST /api/2.0/console/links: a one-time login code for this client's token, valid two
  // minutes ({"code", "url", "expire_time"}; docs/console.md).
  [[nodiscard]] Result<Json> ConsoleLink() const;

  // ---- credentials ----
  [[nodiscard]] Result<Credential> GenerateCredential(const CredentialRequest& request) const;

 private:
  // Sends one request and returns the answer's JSON object (2xx), or the mapped error.
  Result<Json> Call(const char* method, const std::string& path, const Json* body) const;
  template <typename T>
  Result<T> CallAs(const char* method, const std::string& path, const Json* body,
                   const char* what) const;

  ClientOptions options_;
};

}  // namespace arbor::api
