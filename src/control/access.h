#pragma once

// Who may do what through the REST API: the caller (a Principal, from its bearer token) and
// the one function that decides (Authorize). The rules, and why, are in docs/security.md.

#include <string>

#include "common/status.h"
#include "control/catalog.h"

namespace arbor::control {

// The caller of one API request. Value type.
struct Principal {
  std::string name;  // "admin-token" (the local owner's key), else the API token's name
  AccessRole role = AccessRole::kViewer;
  std::string project;  // empty: every project
  // "the developer token 'ci' (project default)", for messages.
  std::string Describe() const;
};

enum class Action {
  kRead,           // GET anything in the project
  kChange,         // create a branch; change, reset, restore or delete one; its endpoints/roles
  kCredentials,    // POST credentials, and role passwords: a way into the branch's data
  kProtect,        // set or clear is_protected
  kAdminProject,   // change or delete the project
  kCreateProject,  // a new project
  kManageTokens,   // create, list and revoke API tokens
};

// Ok if `p` may do `action` on `project` (a branch of it that `is_protected` or not, where it
// matters); PermissionDenied naming the token, the action and why otherwise. `what` names the
// target for the message ("reset projects/default/branches/production").
[[nodiscard]] Status Authorize(const Principal& p, Action action, const std::string& project,
                               bool is_protected, const std::string& what);

}  // namespace arbor::control
