#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/masking.h"
#include "common/ids.h"
#include "common/status.h"
#include "storage/store.h"

namespace arbor::control {

// What users name and Arbor remembers about them. Plain values; the Engine guards them.

// A project's snapshot schedule: a snapshot of `branch` every `every_s` seconds, keeping the
// newest `keep` scheduled ones. every_s == 0: no schedule.
struct SnapshotSchedule {
  std::string branch;
  int64_t every_s = 0;
  int64_t keep = 0;
  bool operator==(const SnapshotSchedule&) const = default;
};

// A compute's size in compute units (1 CU = 1 vCPU and 2 GiB of memory): it autoscales
// between min_cu and max_cu (docs/compute-sizes.md). Zero: not set (the project's default).
struct ComputeSize {
  double min_cu = 0;
  double max_cu = 0;
  bool set() const { return max_cu > 0; }
  bool operator==(const ComputeSize&) const = default;
};
// Sizes when a project says nothing: the default branch's read-write endpoint (production)
// is larger than the endpoints of the branches made from it.
inline constexpr ComputeSize kDefaultBranchComputeSize{1, 2};
inline constexpr ComputeSize kBranchComputeSize{0.25, 1};

// CU-seconds and bytes written by one endpoint in one hour (`usage/P/HOUR/B/E`), for
// GET projects/P/usage. Kept after the branch is deleted, until the project is.
struct UsageRecord {
  std::string project;
  std::string branch;
  std::string endpoint;
  int64_t hour_us = 0;  // the hour's start (UTC)
  double cu_seconds = 0;
  uint64_t written_bytes = 0;
};

struct ProjectRecord {
  std::string id;
  std::string uid;
  int64_t create_time_us = 0;
  int64_t ready_time_us = 0;  // initdb done: the history starts here (0: from before it was kept)
  int64_t history_window_s = 86'400;
  int64_t default_branch_ttl_s = 0;  // 0: none; used by the CLI when a create names no expiry
  TimelineId root;
  std::string default_branch = "production";
  SnapshotSchedule snapshot_schedule;
  // spec.default_endpoint_settings: the size of new branches' endpoints; and
  // spec.default_branch_endpoint_settings: that of the default branch's read-write endpoint.
  // Not set: kBranchComputeSize and kDefaultBranchComputeSize.
  ComputeSize branch_endpoint_size;
  ComputeSize default_branch_endpoint_size;
  // The largest max_connections a read-write compute of the project was started with: a hot
  // standby replaying the project's WAL needs at least as many (kLegacyMaxConnections before).
  int max_connections_used = 0;
};
inline constexpr int kLegacyMaxConnections = 100;

enum class Expiry { kTtl, kExpireTime, kNever };

struct BranchRecord {
  std::string project;
  std::string id;
  std::string uid;
  int64_t create_time_us = 0;
  TimelineId timeline;
  std::string parent;  // branch id in the same project; empty for the root
  // How it was made: the parent's state at this time (µs) or LSN; 0 when "at head".
  int64_t source_time_us = 0;
  uint64_t source_lsn = 0;
  bool requested_time = false;  // spec.source_branch_time was given
  bool requested_lsn = false;   // spec.source_branch_lsn was given
  Expiry expiry = Expiry::kNever;
  int64_t ttl_s = 0;
  int64_t expire_time_us = 0;  // 0 = never
  bool is_protected = false;
  // The branch's postgres has the role `owner` and its users' objects belong to it (done at
  // its first start; installations from before roles had everything owned by `postgres`).
  bool owner_ready = false;
  // The snapshot of `parent` it was made from (spec.source_snapshot); empty if none. A reset
  // or restore clears it: the branch then holds another state.
  std::string source_snapshot;
  // A masked branch (docs/api.md, "Masked branches"). `masking` and `mask_key` are set on the
  // branch whose data was masked; `masked_seq` and `masked_time_us` also on every branch made
  // from it. No state of the branch's history before `masked_seq` (which holds the raw values)
  // can be reached: not by time travel, restore, reset, bisect or a fork (ForkPointLocked).
  std::vector<api::MaskRule> masking;
  std::string mask_key;          // the secret of hash, email and name; never shown or logged
  bool masking_pending = false;  // made, not masked yet: no client reaches it; Open deletes it
  uint64_t masked_seq = 0;       // 0: not masked
  int64_t masked_time_us = 0;
};

// A snapshot of a branch (projects/P/branches/B/snapshots/S): a timeline of its own, forked
// from the branch's timeline at one point and never written, so the state it holds outlives
// the history window (GC keeps what a fork point needs). Branches are made from it in O(1).
struct SnapshotRecord {
  std::string project;
  std::string branch;  // B
  std::string id;      // S
  std::string uid;
  int64_t create_time_us = 0;
  TimelineId timeline;          // its own, never written
  TimelineId source_timeline;   // the branch's timeline it was forked from (a reset or restore
                                // of the branch later gives the branch another one)
  int64_t source_time_us = 0;   // the wall time of the state it holds
  bool requested_time = false;  // spec.source_branch_time was given
  Expiry expiry = Expiry::kNever;
  int64_t ttl_s = 0;
  int64_t expire_time_us = 0;  // 0 = never
  bool scheduled = false;      // taken by the project's snapshot_schedule
};

// A login role of one branch whose password Arbor set, and so whose SCRAM secrets it holds
// (never the password). Roles live in the branch's own PostgreSQL catalog; this record is what
// lets the proxy check a password before anything reaches the compute, and log in for a token.
struct RoleRecord {
  std::string project;
  std::string branch;
  std::string name;
  int64_t create_time_us = 0;
  int64_t password_time_us = 0;  // when the password was last set
  std::string salt;              // the SCRAM secrets (proxy/auth/scram.h), raw bytes
  int iterations = 4096;
  std::string client_key;
  std::string stored_key;
  std::string server_key;
  // The branch's postgres holds this verifier. False after a change made while it was not
  // running (a new branch's fresh passwords, a reset of a suspended branch): the next start
  // applies it before any client is let in.
  bool applied = false;
};

// What an API token may do (docs/security.md): an admin everything (in its project, if it
// has one), a developer change unprotected branches and read the rest, a viewer only read.
enum class AccessRole { kAdmin, kDeveloper, kViewer };
const char* AccessRoleName(AccessRole role);
std::optional<AccessRole> ParseAccessRole(const std::string& name);

// A scoped API token. Only the SHA-256 of the token is stored; the token is shown once.
struct ApiTokenRecord {
  std::string name;
  AccessRole role = AccessRole::kViewer;
  std::string project;      // empty: every project
  std::string project_uid;  // the project's uid when made: a later project of that name is
                            // another project
  std::string hash;         // hex SHA-256 of the token
  int64_t create_time_us = 0;
  int64_t expire_time_us = 0;  // 0: never
};

struct EndpointRecord {
  std::string project;
  std::string branch;
  std::string id;
  std::string uid;
  int64_t create_time_us = 0;
  uint16_t port = 0;
  int64_t suspend_timeout_s = 300;
  bool no_suspension = false;
  bool running = false;  // it was started and not stopped: it comes back after a restart
  // A pinned endpoint (ENDPOINT_TYPE_READ_ONLY with a source time or LSN) serves the branch as
  // it was at one point of its history: a hot standby on its own ephemeral timeline, forked
  // from the branch's at that point and deleted with the endpoint. It never changes, and it
  // deletes itself once idle for its suspend timeout.
  bool pinned = false;
  // A read replica (ENDPOINT_TYPE_READ_ONLY without a source time or LSN) is a hot standby
  // that follows its branch's read-write endpoint. Each start forks a fresh ephemeral
  // timeline from the branch's head (its `timeline` while it runs; 0 when it is stopped),
  // and streams the WAL written after that from the primary's private socket.
  bool replica = false;
  TimelineId timeline;      // the ephemeral timeline (pinned, and a running replica)
  int64_t pin_time_us = 0;  // the wall time of the state it serves
  uint64_t pin_lsn = 0;     // the LSN asked for, when it was pinned by LSN
  bool requested_lsn = false;
  ComputeSize size;  // not set: the project's default for it (records from before sizes)
};

// The branch's one read-write endpoint: neither pinned nor a replica.
inline bool IsReadWrite(const EndpointRecord& e) { return !e.pinned && !e.replica; }

// A deleted branch, recoverable until `purge_time_us` (delete time + the project's history
// window): its records as they were, while its timeline stays in the store. Keyed by the
// branch's uid, so that a new branch may take its id meanwhile.
struct DeletedBranchRecord {
  BranchRecord branch;
  std::string parent_uid;                 // the parent's uid when deleted; empty for none
  std::vector<EndpointRecord> endpoints;  // not running; their ports stay reserved
  std::vector<RoleRecord> roles;
  int64_t delete_time_us = 0;
  int64_t purge_time_us = 0;
  bool expired = false;  // deleted by the expiry reaper
};

// The catalog: every project, branch and endpoint. Each record is one store catalog key
// (`project/P`, `branch/P/B`, `endpoint/P/B/E`, `snapshot/P/B/S`,
// `deleted_branch/P/UID`, JSON values), written in the same atomic
// store write as the timeline change it describes, so no half-made branch is ever seen.
// This class is the in-memory copy plus the encoding; not thread-safe (the Engine
// serializes access).
class Catalog {
 public:
  // Reads every record from the store. Corruption if a record cannot be parsed.
  [[nodiscard]] static Result<Catalog> Load(const storage::Store& store);

  static storage::MetaWrite Put(const ProjectRecord& p);
  static storage::MetaWrite Put(const BranchRecord& b);
  static storage::MetaWrite Put(const EndpointRecord& e);
  static storage::MetaWrite Put(const RoleRecord& r);
  static storage::MetaWrite Put(const ApiTokenRecord& t);
  static storage::MetaWrite Put(const SnapshotRecord& s);
  static storage::MetaWrite EraseSnapshot(const std::string& project, const std::string& branch,
                                          const std::string& snapshot);
  static storage::MetaWrite Put(const DeletedBranchRecord& d);
  static storage::MetaWrite EraseDeletedBranch(const std::string& project, const std::string& uid);
  static storage::MetaWrite EraseApiToken(const std::string& name);
  static storage::MetaWrite Put(const UsageRecord& u);
  static storage::MetaWrite EraseUsage(const UsageRecord& u);
  static storage::MetaWrite EraseProject(const std::string& project);
  static storage::MetaWrite EraseBranch(const std::string& project, const std::string& branch);
  static storage::MetaWrite EraseRole(const std::string& project, const std::string& branch,
                                      const std::string& role);
  static storage::MetaWrite EraseEndpoint(const std::string& project, const std::string& branch,
                                          const std::string& endpoint);

  std::map<std::string, ProjectRecord> projects;
  std::map<std::pair<std::string, std::string>, BranchRecord> branches;  // (project, branch)
  // (project, branch, endpoint)
  std::map<std::tuple<std::string, std::string, std::string>, EndpointRecord> endpoints;
  // (project, branch, role)
  std::map<std::tuple<std::string, std::string, std::string>, RoleRecord> roles;
  std::map<std::string, ApiTokenRecord> api_tokens;  // by name
  // (project, hour, branch, endpoint)
  std::map<std::tuple<std::string, int64_t, std::string, std::string>, UsageRecord> usage;
  // (project, branch, snapshot)
  std::map<std::tuple<std::string, std::string, std::string>, SnapshotRecord> snapshots;
  // (project, branch uid): deleted branches not yet purged; none is live.
  std::map<std::pair<std::string, std::string>, DeletedBranchRecord> deleted_branches;
};

// "prj-" + 16 hex digits of randomness.
std::string NewUid(const std::string& prefix);
// A random password of URL-safe characters (32 of them, about 190 bits).
std::string NewPassword();

}  // namespace arbor::control
