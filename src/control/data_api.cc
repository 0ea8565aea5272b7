#include "control/data_api.h"

#include "api/names.h"
#include "common/clock.h"
#include "common/log.h"
#include "compute/supervisor.h"
#include "datadiff/diff.h"
#include "datadiff/merge.h"
#include "datadiff/schema_diff.h"

namespace arbor::control {
namespace {

using nlohmann::json;

// What the data diff and merge need, from the engine: endpoints started and logged in to as
// owner through the proxy with a token issued here (the branch's read-write endpoint's: it
// opens the branch's pinned endpoints too), pinned endpoints, fork points and changed pages.
// Not thread-safe; one per request.
class EngineDataBackend : public datadiff::Backend {
 public:
  EngineDataBackend(Engine* engine, const proxy::auth::TokenSigner* tokens)
      : engine_(engine), tokens_(tokens) {}

  Result<datadiff::ForkPoint> ForkOf(const api::BranchName& branch) override {
    ARBOR_ASSIGN_OR_RETURN(BranchRecord b, engine_->GetBranch(branch.project, branch.branch));
    datadiff::ForkPoint fork;
    if (b.parent.empty()) return fork;
    fork.parent = api::BranchName{b.project, b.parent}.ToString();
    fork.time_us = b.source_time_us;
    if (b.requested_lsn) fork.lsn = Lsn(b.source_lsn);
    return fork;
  }

  // The route checked the caller's right to write the target (`to_write`) before anything.
  Result<std::string> Connect(const api::EndpointName& e, bool /*to_write*/) override {
    if (tokens_ == nullptr) return Status::Unavailable("this server issues no credentials");
    ARBOR_ASSIGN_OR_RETURN(EndpointRecord base, engine_->DefaultEndpoint(e.project, e.branch));
    ARBOR_RETURN_IF_ERROR(engine_->StartEndpoint(e.project, e.branch, e.endpoint).status());
    ARBOR_ASSIGN_OR_RETURN(std::string url,
                           engine_->ConnectionString(e.project, e.branch, e.endpoint));
    api::EndpointName scope{e.project, e.branch, base.id};
    // A session outlives its token, but the merge logs in again late (its write); an hour
    // covers the longest diff.
    ARBOR_ASSIGN_OR_RETURN(std::string token,
                           tokens_->Issue(scope.ToString(), compute::kOwnerRole,
                                          proxy::auth::TokenSigner::kMaxTtlSeconds,
                                          WallMicros() / 1'000'000, base.uid));
    size_t at = url.find('@');
    if (at == std::string::npos) return Status::Internal("unexpected connection string " + url);
    return url.substr(0, at) + ":" + token + url.substr(at);
  }

  Result<datadiff::PinnedSide> Pin(const api::BranchName& branch, std::optional<int64_t> time_us,
                                   std::optional<Lsn> lsn) override {
    std::optional<uint64_t> at_lsn;
    if (lsn) at_lsn = lsn->value();
    ARBOR_ASSIGN_OR_RETURN(EndpointRecord ep, engine_->EnsurePinnedEndpoint(
                                                  branch.project, branch.branch, time_us, at_lsn));
    datadiff::PinnedSide out;
    out.endpoint = api::EndpointName{ep.project, ep.branch, ep.id};
    out.label = ep.requested_lsn ? datadiff::PinnedLabel(ep.branch, std::nullopt, Lsn(ep.pin_lsn))
                                 : datadiff::PinnedLabel(ep.branch, ep.pin_time_us, std::nullopt);
    return out;
  }

  Result<api::ChangedPages> ChangedPages(const api::EndpointName& a,
                                         const api::EndpointName& b) override {
    ARBOR_ASSIGN_OR_RETURN(
        control::ChangedPages cp,
        engine_->ChangedPagesBetween(a.project, a.branch, a.endpoint, b.branch, b.endpoint));
    api::ChangedPages out;
    out.complete = cp.complete;
    out.reason = cp.reason;
    for (const auto& [oid, rels] : cp.databases) {
      auto& list = out.databases[oid];
      for (const ChangedRelation& r : rels) {
        list.push_back(api::ChangedRelation{r.relfilenode, r.whole, r.pages});
      }
    }
    return out;
  }

  void Note(const std::string& line) override { log::info("data diff: {}", line); }

 private:
  Engine* engine_;
  const proxy::auth::TokenSigner* tokens_;
};

// The usual error body, with more fields when there is more to say.
DataAnswer Refused(int http_status, const char* code, const std::string& message,
                   json body = json::object()) {
  body["error_code"] = code;
  body["message"] = message;
  return DataAnswer{http_status, std::move(body)};
}

}  // namespace

Result<api::BranchName> BranchNameIn(const std::string& project, const std::string& text) {
  if (text.rfind("projects/", 0) == 0) return api::ParseBranchName(text);
  ARBOR_RETURN_IF_ERROR(api::ValidateId(text, "branch id"));
  return api::BranchName{project, text};
}

Result<DataAnswer> RunDataDiff(Engine* engine, const proxy::auth::TokenSigner* tokens,
                               const std::string& project, const std::string& branch,
                               const DataDiffCall& call) {
  if (call.against.empty()) {
    return Status::InvalidArgument(
        "against is required: the branch to compare with (OTHER, OTHER@TIME or "
        "OTHER@lsn:X/Y)");
  }
  EngineDataBackend backend(engine, tokens);
  datadiff::DiffRequest r;
  r.tables = call.tables;
  r.database = call.database;
  r.schema_only = call.schema_only;
  // A: the branch of the URL, as it is now.
  api::BranchName a{project, branch};
  ARBOR_RETURN_IF_ERROR(engine->GetBranch(a.project, a.branch).status());
  r.a = datadiff::DiffSide{a.branch,
                           api::EndpointName{a.project, a.branch, datadiff::kPrimaryEndpoint}};
  // B: `against`, a branch or a branch at a past state.
  size_t at = call.against.find('@');
  auto b = BranchNameIn(project, call.against.substr(0, at));
  if (!b.ok()) return Status::InvalidArgument("against: " + b.status().message());
  if (at == std::string::npos) {
    ARBOR_RETURN_IF_ERROR(engine->GetBranch(b->project, b->branch).status());
    r.b = datadiff::DiffSide{b->branch,
                             api::EndpointName{b->project, b->branch, datadiff::kPrimaryEndpoint}};
  } else {
    std::string when = call.against.substr(at + 1);
    std::optional<int64_t> time_us;
    std::optional<Lsn> lsn;
    if (when.rfind("lsn:", 0) == 0) {
      auto l = api::ParseLsn(when.substr(4));
      if (!l.ok()) return Status::InvalidArgument("against: " + l.status().message());
      lsn = *l;
    } else {
      auto t = api::ParseTime(when);
      if (!t.ok()) {
        return Status::InvalidArgument("against: after @ comes an RFC 3339 time or lsn:X/Y: " +
                                       t.status().message());
      }
      time_us = *t;
    }
    ARBOR_ASSIGN_OR_RETURN(datadiff::PinnedSide pinned, backend.Pin(*b, time_us, lsn));
    r.b = datadiff::DiffSide{pinned.label, pinned.endpoint};
  }
  ARBOR_ASSIGN_OR_RETURN(datadiff::DiffReport report, datadiff::DiffData(backend, r));
  if (report.refusal == datadiff::Refusal::kBadTable) {
    return Status::InvalidArgument("tables: " + report.bad_table + ": " + report.message);
  }
  if (call.sql) return DataAnswer{200, json{{"patch", datadiff::DiffReportSql(report)}}};
  if (call.markdown) {
    return DataAnswer{200,
                      json{{"markdown", datadiff::RenderDiff(report.schema, report.from, report.to,
                                                             datadiff::DiffFormat::kMarkdown)},
                           {"identical", report.schema.empty()}}};
  }
  return DataAnswer{200, datadiff::DiffReportJson(report)};
}

Result<DataAnswer> RunMerge(Engine* engine, const proxy::auth::TokenSigner* tokens,
                            const std::string& project, const std::string& source,
                            const MergeCall& call) {
  if (call.into.empty()) {
    return Status::InvalidArgument(
        "into is required: the branch to merge into (the source's parent)");
  }
  auto target = BranchNameIn(project, call.into);
  if (!target.ok()) return Status::InvalidArgument("into: " + target.status().message());
  if (target->project != project) {
    return Status::InvalidArgument("into: the source and the target must be in one project (" +
                                   target->ToString() + " is not in projects/" + project + ")");
  }
  if (target->branch == source) {
    return Status::InvalidArgument("into: the source and the target are the same branch");
  }
  EngineDataBackend backend(engine, tokens);
  datadiff::MergeRequest r{api::BranchName{project, source}, *target, call.tables, call.database,
                           call.dry_run};
  ARBOR_ASSIGN_OR_RETURN(datadiff::MergeReport report, datadiff::Merge(backend, r));
  switch (report.refusal) {
    case datadiff::Refusal::kNone:
      break;
    case datadiff::Refusal::kBadTable:
      return Status::InvalidArgument("tables: " + report.bad_table + ": " + report.message);
    case datadiff::Refusal::kUnsupported:
      return Refused(412, "FAILED_PRECONDITION", report.message);
    case datadiff::Refusal::kTargetMoved:
      return Refused(409, "ABORTED", report.message);
    case datadiff::Refusal::kApplyFailed:
      return Status::FailedPrecondition(report.message);
  }
  json body = datadiff::MergeReportJson(report);
  if (report.conflicts > 0) {
    return Refused(409, "ABORTED",
                   std::to_string(report.conflicts) + " conflict" +
                       (report.conflicts == 1 ? "" : "s") +
                       ": keys both branches changed since the fork, differently; nothing was "
                       "merged (the keys are in conflicts)",
                   std::move(body));
  }
  return DataAnswer{200, std::move(body)};
}

}  // namespace arbor::control
