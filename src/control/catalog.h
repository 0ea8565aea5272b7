#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/status.h"

namespace arbor::control {

// What users name and Arbor remembers about them. Plain values; the Engine guards them.
struct ProjectRecord {
  std::string id;
  std::string uid;
  int64_t create_time_us = 0;
  int64_t history_window_s = 86'400;
  TimelineId root;
  std::string default_branch = "production";
  std::string password;  // the postgres role's password (shared by the project's branches)
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
};

// The catalog: every project, branch and endpoint, persisted as one JSON file that is
// replaced atomically (write, fsync, rename, fsync dir). Not thread-safe: the Engine
// serializes access.
class Catalog {
 public:
  // Loads `path` if it exists; Corruption with the file's name if it cannot be parsed.
  [[nodiscard]] static Result<Catalog> Load(const std::string& path);
  // Writes the whole catalog durably. IOError/ResourceExhausted leave the old file intact.
  [[nodiscard]] Status Save() const;

  std::map<std::string, ProjectRecord> projects;
  std::map<std::pair<std::string, std::string>, BranchRecord> branches;  // (project, branch)
  // (project, branch, endpoint)
  std::map<std::tuple<std::string, std::string, std::string>, EndpointRecord> endpoints;

 private:
  std::string path_;
};

// "prj-" + 16 hex digits of randomness.
std::string NewUid(const std::string& prefix);
// A random password of URL-safe characters.
std::string NewPassword();

}  // namespace arbor::control
