#include "cli/session.h"

namespace arbor::cli {

Result<api::BranchName> DefaultBranch(const api::ApiClient& c, const std::string& project) {
  ARBOR_ASSIGN_OR_RETURN(api::Project p, c.GetProject(project));
  auto name = api::ParseBranchName(p.status.default_branch);
  if (!name.ok()) {
    return Status::Internal("project " + p.name + " has no valid default branch ('" +
                            p.status.default_branch + "')");
  }
  return *name;
}

Result<api::EndpointName> EndpointOf(const Session& s, const api::ApiClient& c,
                                     const std::string& branch, const std::string& endpoint) {
  api::BranchName b;
  if (branch.empty()) {
    ARBOR_ASSIGN_OR_RETURN(b, DefaultBranch(c, s.ProjectId()));
  } else {
    b = s.Branch(branch);
  }
  Status st = api::ValidateId(endpoint, "endpoint id");
  if (!st.ok()) Usage("--endpoint: " + st.message());
  return api::EndpointName{b.project, b.branch, endpoint};
}

}  // namespace arbor::cli
