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
struct ProjectRecord {
  std::string id;
  std::string uid;
  int64_t create_time_us = 0;
  int64_t ready_time_us = 0;  // initdb done: the history starts here (0: from before it was kept)
  int64_t history_window_s = 86'400;
  int64_t default_branch_ttl_s = 0;  // 0: none; used by the CLI when a create names no expiry
  TimelineId root;
  std::string default_branch = "production";
};

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
  TimelineId timeline;      // the ephemeral timeline (pinned only)
  int64_t pin_time_us = 0;  // the wall time of the state it serves
  uint64_t pin_lsn = 0;     // the LSN asked for, when it was pinned by LSN
  bool requested_lsn = false;
};

// The catalog: every project, branch and endpoint. Each record is one store catalog key
// (`project/P`, `branch/P/B`, `endpoint/P/B/E`, JSON values), written in the same atomic
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
  static storage::MetaWrite EraseApiToken(const std::string& name);
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
};

// "prj-" + 16 hex digits of randomness.
std::string NewUid(const std::string& prefix);
// A random password of URL-safe characters (32 of them, about 190 bits).
std::string NewPassword();

}  // namespace arbor::control
