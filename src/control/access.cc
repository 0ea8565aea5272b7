#include "control/access.h"

namespace arbor::control {

std::string Principal::Describe() const {
  if (name == "admin-token") return "the admin token";
  std::string out = "the " + std::string(AccessRoleName(role)) + " token '" + name + "'";
  if (!project.empty()) out += " (project " + project + ")";
  return out;
}

Status Authorize(const Principal& p, Action action, const std::string& project, bool is_protected,
                 const std::string& what) {
  auto deny = [&](const std::string& why) {
    return Status::PermissionDenied("permission denied: " + p.Describe() + " cannot " + what +
                                    (why.empty() ? "" : ": " + why));
  };
  const bool global = p.project.empty();
  if (action == Action::kCreateProject || action == Action::kManageTokens) {
    if (p.role == AccessRole::kAdmin && global) return Status::Ok();
    return deny("that needs an admin token for every project");
  }
  if (!global && project != p.project) {
    return deny("it is limited to project " + p.project);
  }
  switch (p.role) {
    case AccessRole::kAdmin:
      return Status::Ok();
    case AccessRole::kViewer:
      if (action == Action::kRead) return Status::Ok();
      return deny("a viewer token only reads");
    case AccessRole::kDeveloper:
      if (action == Action::kRead) return Status::Ok();
      if (action == Action::kChange || action == Action::kCredentials) {
        if (!is_protected) return Status::Ok();
        return deny("the branch is protected; that needs an admin token");
      }
      return deny("that needs an admin token");
  }
  return deny("");
}

}  // namespace arbor::control
