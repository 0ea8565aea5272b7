// ApiBackend (workflow_internal.h): the data diff and merge's needs, met over the REST API.

#include "cli/workflow_internal.h"

namespace arbor::cli {

Result<datadiff::ForkPoint> ApiBackend::ForkOf(const api::BranchName& branch) {
  ARBOR_ASSIGN_OR_RETURN(api::Branch b, c_.GetBranch(branch));
  datadiff::ForkPoint fork;
  fork.parent = b.status.source_branch.value_or(b.spec.source_branch.value_or(""));
  fork.time_us = b.status.source_branch_time_us ? b.status.source_branch_time_us
                                                : b.spec.source_branch_time_us;
  fork.lsn = b.status.source_branch_lsn ? b.status.source_branch_lsn : b.spec.source_branch_lsn;
  return fork;
}

Result<std::string> ApiBackend::Connect(const api::EndpointName& endpoint, bool to_write) {
  if (!to_write) return ConnectEndpoint(c_, endpoint);
  api::CredentialRequest req;
  req.endpoint = endpoint.ToString();
  req.role = "owner";
  ARBOR_ASSIGN_OR_RETURN(api::Credential cred, c_.GenerateCredential(req));
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, c_.StartEndpoint(endpoint));
  if (!e.status.connection_string) {
    return Status::Internal("endpoint " + endpoint.ToString() + " has no connection string");
  }
  const std::string& base = *e.status.connection_string;
  size_t at = base.find('@');
  if (at == std::string::npos) return base;
  return base.substr(0, at) + ":" + cred.token + base.substr(at);
}

Result<datadiff::PinnedSide> ApiBackend::Pin(const api::BranchName& branch,
                                             std::optional<int64_t> time_us,
                                             std::optional<Lsn> lsn) {
  api::EndpointSpec spec;
  spec.endpoint_type = api::kEndpointTypeReadOnly;
  spec.source_branch_time_us = time_us;
  spec.source_branch_lsn = lsn;
  std::string id = api::PinnedEndpointId(time_us, lsn);
  datadiff::PinnedSide out;
  out.endpoint = api::EndpointName{branch.project, branch.branch, id};
  auto made = c_.CreateEndpoint(branch, id, spec);
  if (!made.ok() && made.status().code() != Code::kAlreadyExists) return made.status();
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, c_.GetEndpoint(out.endpoint));
  out.label =
      datadiff::PinnedLabel(branch.branch, e.spec.source_branch_time_us, e.spec.source_branch_lsn);
  return out;
}

Result<api::ChangedPages> ApiBackend::ChangedPages(const api::EndpointName& a,
                                                   const api::EndpointName& b) {
  return c_.GetChangedPages(a, b);
}

void ApiBackend::Note(const std::string& line) { *s_.io->err << line << "\n"; }

}  // namespace arbor::cli
