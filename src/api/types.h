#pragma once

// The request and response bodies of docs/api.md as C++ values, with their JSON forms. No
// HTTP here: the server (src/control) and the client (src/api/client.h, src/cli) share it.
//
// Fields hold parsed values (microseconds since the epoch, seconds, Lsn), so a value that
// was read successfully is well formed. std::optional marks a field that may be absent; an
// absent optional is omitted from the JSON, never written as null.
//
// Reading (FromJson) checks every known field's JSON type and text form and answers
// InvalidArgument naming the field ("branch.spec.ttl: expected a string, got 3600"). A JSON
// null counts as absent. Unknown fields are ignored, so that an older client can read a
// newer server; a server that wants to refuse them calls UnknownFields. Nothing here throws.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/masking.h"
#include "common/ids.h"
#include "common/status.h"

namespace arbor::api {

using Json = nlohmann::json;

// spec.snapshot_schedule of a project: a snapshot of `branch` every `every_s`, the newest
// `keep` of them kept.
struct SnapshotScheduleSpec {
  std::string branch;  // a full branch name in answers; an id or a full name in requests
  int64_t every_s = 0;
  int64_t keep = 0;
};
struct ProjectSpec {
  std::optional<int64_t> history_retention_s;   // "history_retention_duration"
  std::optional<int64_t> default_branch_ttl_s;  // "default_branch_ttl": the CLI's default TTL
  std::optional<SnapshotScheduleSpec> snapshot_schedule;
};
struct ProjectStatus {
  std::string default_branch;  // a full branch name
};
struct Project {
  std::string name;  // projects/{project}
  std::string uid;
  int64_t create_time_us = 0;
  ProjectSpec spec;
  ProjectStatus status;
};

struct BranchSpec {
  std::optional<std::string> source_branch;  // a full branch name
  std::optional<int64_t> source_branch_time_us;
  std::optional<Lsn> source_branch_lsn;
  std::optional<int64_t> ttl_s;
  std::optional<int64_t> expire_time_us;
  std::optional<bool> no_expiry;
  std::optional<bool> is_protected;
  // projects/P/branches/B/snapshots/S (or "B/S"): the branch starts from that snapshot.
  std::optional<std::string> source_snapshot;
  std::optional<std::vector<MaskRule>> masking;  // a masked branch (api/masking.h)
};
struct BranchStatus {
  std::string current_state;  // "READY"
  bool is_default = false;    // "default"
  int64_t logical_size_bytes = 0;
  int64_t written_bytes = 0;
  std::optional<int64_t> expire_time_us;  // absent: never expires
  std::optional<std::string> source_branch;
  std::optional<int64_t> source_branch_time_us;
  std::optional<Lsn> source_branch_lsn;
  std::optional<std::string> source_snapshot;  // the snapshot it was made from
  // A deleted branch (GET .../branches?show_deleted=true): current_state "DELETED".
  bool deleted = false;
  std::optional<int64_t> delete_time_us;
  std::optional<int64_t> purge_time_us;  // when it goes for good
  // A masked branch (or a branch of one): its history starts here for every reader.
  std::optional<int64_t> masked_time_us;  // "masked_time"
};
struct Branch {
  std::string name;  // projects/{project}/branches/{branch}
  std::string uid;
  int64_t create_time_us = 0;
  BranchSpec spec;
  BranchStatus status;
};

inline constexpr const char* kEndpointTypeReadWrite = "ENDPOINT_TYPE_READ_WRITE";
inline constexpr const char* kEndpointTypeReadOnly = "ENDPOINT_TYPE_READ_ONLY";

struct EndpointSpec {
  std::optional<std::string> endpoint_type;
  std::optional<int64_t> suspend_timeout_s;  // "suspend_timeout_duration"
  std::optional<bool> no_suspension;
  // A READ_ONLY endpoint pinned at the branch's state then (time travel).
  std::optional<int64_t> source_branch_time_us;
  std::optional<Lsn> source_branch_lsn;
  // Its size in compute units (1 CU = 1 vCPU and 2 GiB): it autoscales between the two.
  std::optional<double> autoscaling_limit_min_cu;
  std::optional<double> autoscaling_limit_max_cu;
};
struct EndpointStatus {
  std::string current_state;  // ACTIVE, IDLE or STARTING
  std::string host;
  int port = 0;
  std::optional<std::string> connection_string;
  // A read replica's: STREAMING, CONNECTING, PRIMARY_SUSPENDED or STOPPED, and its lag
  // ("0.012s") while it streams or its primary is suspended.
  std::optional<std::string> replication_state;
  std::optional<std::string> replay_lag;
  std::optional<double> current_cu;  // its CPU limit now, while it runs
};
struct Endpoint {
  std::string name;  // projects/{project}/branches/{branch}/endpoints/{endpoint}
  std::string uid;
  int64_t create_time_us = 0;
  EndpointSpec spec;
  EndpointStatus status;
};

// One write of a branch's WAL (GET .../history).
struct HistoryPoint {
  int64_t time_us = 0;
  Lsn lsn;
};

// GET .../endpoints/E/changed_pages: the pages of relation files (main fork) that may
// differ between two endpoints, per database oid.
struct ChangedRelation {
  uint32_t relfilenode = 0;
  bool whole = false;  // not the same file on both sides: every page may differ
  std::vector<std::pair<uint64_t, uint64_t>> pages;  // sorted inclusive ranges
};
struct ChangedPages {
  bool complete = true;  // false: the store cannot tell; compare in full
  std::string reason;
  std::map<uint32_t, std::vector<ChangedRelation>> databases;
};

// POST credentials: the request and the answer.
struct CredentialRequest {
  std::string endpoint;  // a full endpoint name
  std::optional<int64_t> ttl_s;
  std::optional<std::string> role;  // absent: owner
};
struct Credential {
  std::string token;
  int64_t expire_time_us = 0;
  std::string role;  // the role it logs in as
};

// POST /api/2.0/tokens, and its answer (`token` only there, shown once).
struct ApiTokenRequest {
  std::string name;
  std::string role;     // admin, developer or viewer
  std::string project;  // a project id; empty: every project
  std::optional<int64_t> ttl_s;
};
struct ApiToken {
  std::string name;
  std::string role;
  std::optional<std::string> project;  // projects/P
  int64_t create_time_us = 0;
  int64_t expire_time_us = 0;  // 0: never
  std::optional<std::string> token;
};

// A login role of a branch: projects/P/branches/B/roles/R.
struct Role {
  std::string name;           // the full resource name
  std::string postgres_role;  // R
  int64_t create_time_us = 0;
  int64_t password_update_time_us = 0;
  bool password_applied = false;
  std::optional<std::string> password;  // only in the answers of create and :reset_password
};

// A snapshot of a branch: projects/P/branches/B/snapshots/S.
struct SnapshotSpec {
  std::optional<int64_t> source_branch_time_us;  // absent: the branch's head
  std::optional<int64_t> ttl_s;
  std::optional<int64_t> expire_time_us;
  std::optional<bool> no_expiry;
};
struct SnapshotStatus {
  std::string source_branch;  // a full branch name
  int64_t source_branch_time_us = 0;
  bool scheduled = false;  // taken by the project's snapshot_schedule
  int64_t logical_size_bytes = 0;
  // The bytes that deleting it would let GC free: versions that only it keeps.
  int64_t exclusive_size_bytes = 0;
  std::optional<int64_t> expire_time_us;  // absent: never expires
};
struct Snapshot {
  std::string name;  // projects/{project}/branches/{branch}/snapshots/{snapshot}
  std::string uid;
  int64_t create_time_us = 0;
  SnapshotSpec spec;
  SnapshotStatus status;
};

// A database of a branch: projects/P/branches/B/databases/D. The API's answers wrap it as
// {"database": {...}} and lists as {"databases": [...]}.
struct Database {
  std::string name;        // D
  std::string owner_name;  // the role that owns it
  std::string branch;      // projects/P/branches/B
};

// POST projects/P/branches/B:reset (both fields optional) and :restore (exactly one).
struct PointInTime {
  std::optional<int64_t> source_branch_time_us;
  std::optional<Lsn> source_branch_lsn;
};
// The answer of :restore.
struct RestoreResult {
  Branch branch;
  std::string backup_branch;  // a full branch name
};

// The answer of :undelete: the branch back, its endpoints, and what changed on the way (a
// port that could not be had again, an expiry that had passed).
struct UndeleteResult {
  Branch branch;
  std::vector<Endpoint> endpoints;
  std::vector<std::string> notes;
};

// GET status.
struct ServerStatus {
  std::string version;
  int64_t pid = 0;
  std::string data_dir;
  std::string api;
  std::string proxy;
  // The directory of the proxy's unix sockets (host=DIR for libpq); empty: none.
  std::string proxy_socket_dir;
  std::string endpoint_ports;
  // Which control groups limit the computes: "cgroup v2 (...)", "cgroup v1 (...)" or
  // "none: <why>" (computes run unlimited).
  std::string compute_limits;
  std::string metrics;   // the --metrics-listen URL; empty: /metrics on the API only
  bool console = false;  // the console's files are served at the API's /
};

// The body of every 4xx/5xx answer.
struct ApiError {
  std::string error_code;  // e.g. RESOURCE_DOES_NOT_EXIST
  std::string message;
};

// ---- JSON ----
// ToJson writes exactly the documented form. FromJson reads `j` into `*out`; on failure
// `*out` is unspecified and the message names the field under `where`.
Json ToJson(const ProjectSpec& v);
Json ToJson(const Project& v);
Json ToJson(const BranchSpec& v);
Json ToJson(const BranchStatus& v);
Json ToJson(const Branch& v);
Json ToJson(const EndpointSpec& v);
Json ToJson(const EndpointStatus& v);
Json ToJson(const Endpoint& v);
Json ToJson(const CredentialRequest& v);
Json ToJson(const Credential& v);
Json ToJson(const Role& v);
Json ToJson(const Database& v);
Json ToJson(const SnapshotSpec& v);
Json ToJson(const Snapshot& v);
Json ToJson(const ApiToken& v);
Json ToJson(const PointInTime& v);
Json ToJson(const RestoreResult& v);
Json ToJson(const UndeleteResult& v);
Json ToJson(const ServerStatus& v);
Json ToJson(const ApiError& v);

[[nodiscard]] Status FromJson(const Json& j, ProjectSpec* out, std::string_view where = "spec");
[[nodiscard]] Status FromJson(const Json& j, Project* out, std::string_view where = "project");
[[nodiscard]] Status FromJson(const Json& j, BranchSpec* out, std::string_view where = "spec");
[[nodiscard]] Status FromJson(const Json& j, BranchStatus* out, std::string_view where = "status");
[[nodiscard]] Status FromJson(const Json& j, Branch* out, std::string_view where = "branch");
[[nodiscard]] Status FromJson(const Json& j, EndpointSpec* out, std::string_view where = "spec");
[[nodiscard]] Status FromJson(const Json& j, EndpointStatus* out,
                              std::string_view where = "status");
[[nodiscard]] Status FromJson(const Json& j, Endpoint* out, std::string_view where = "endpoint");
[[nodiscard]] Status FromJson(const Json& j, CredentialRequest* out,
                              std::string_view where = "body");
[[nodiscard]] Status FromJson(const Json& j, Credential* out,
                              std::string_view where = "credential");
[[nodiscard]] Status FromJson(const Json& j, PointInTime* out, std::string_view where = "body");
[[nodiscard]] Status FromJson(const Json& j, Role* out, std::string_view where = "role");
[[nodiscard]] Status FromJson(const Json& j, Database* out, std::string_view where = "database");
[[nodiscard]] Status FromJson(const Json& j, SnapshotSpec* out, std::string_view where = "spec");
[[nodiscard]] Status FromJson(const Json& j, Snapshot* out, std::string_view where = "snapshot");
[[nodiscard]] Status FromJson(const Json& j, ApiToken* out, std::string_view where = "token");
[[nodiscard]] Status FromJson(const Json& j, RestoreResult* out, std::string_view where = "body");
[[nodiscard]] Status FromJson(const Json& j, UndeleteResult* out, std::string_view where = "body");
[[nodiscard]] Status FromJson(const Json& j, ServerStatus* out, std::string_view where = "status");
[[nodiscard]] Status FromJson(const Json& j, ApiError* out, std::string_view where = "error");

// A list answer {"<key>": [...]} (key: projects, branches, endpoints, roles, databases,
// snapshots).
template <typename T>
[[nodiscard]] Status FromJsonList(const Json& j, std::string_view key, std::vector<T>* out);
template <typename T>
Json ToJsonList(std::string_view key, const std::vector<T>& items) {
  Json list = Json::array();
  for (const auto& item : items) list.push_back(ToJson(item));
  return Json{{std::string(key), std::move(list)}};
}

// Parses JSON text without throwing. InvalidArgument if it is not JSON or not an object.
[[nodiscard]] Result<Json> ParseJsonObject(std::string_view text, std::string_view what = "body");

// Parses JSON text into T: ParseJsonObject then FromJson.
template <typename T>
[[nodiscard]] Result<T> ParseAs(std::string_view text, std::string_view where) {
  ARBOR_ASSIGN_OR_RETURN(Json j, ParseJsonObject(text, where));
  T out;
  ARBOR_RETURN_IF_ERROR(FromJson(j, &out, where));
  return out;
}

// InvalidArgument naming the first key of object `j` that is not in `known`; Ok otherwise.
[[nodiscard]] Status UnknownFields(const Json& j, std::initializer_list<std::string_view> known,
                                   std::string_view where);

}  // namespace arbor::api
