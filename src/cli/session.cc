#include "cli/session.h"

#include "cli/args.h"

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

Result<api::EndpointName> PinnedEndpoint(const Session& s, const api::ApiClient& c,
                                         const std::string& text) {
  size_t at = text.find('@');
  api::BranchName b = s.Branch(text.substr(0, at));
  std::string when = text.substr(at + 1);
  api::EndpointSpec spec;
  spec.endpoint_type = api::kEndpointTypeReadOnly;
  if (when.rfind("lsn:", 0) == 0) {
    auto lsn = api::ParseLsn(when.substr(4));
    if (!lsn.ok()) Usage(text + ": " + lsn.status().message());
    spec.source_branch_lsn = *lsn;
  } else {
    spec.source_branch_time_us = OrUsage(ParseTimeArg(when, s.Now()));
  }
  std::string id = api::PinnedEndpointId(spec.source_branch_time_us, spec.source_branch_lsn);
  api::EndpointName name{b.project, b.branch, id};
  auto made = c.CreateEndpoint(b, id, spec);
  if (made.ok()) return name;
  if (made.status().code() != Code::kAlreadyExists) return made.status();
  return name;  // pinned there already: the same state
}

}  // namespace arbor::cli
