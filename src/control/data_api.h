#pragma once

// POST projects/P/branches/B:diff_data and POST projects/P/branches/SOURCE:merge (docs/api.md,
// "Data diff and merge"): the data diff and merge of src/datadiff, run by the daemon. It
// connects to the endpoints as the role owner through the proxy, with tokens it issues itself
// (as bisect does), so the caller's right to read or write is checked before, by the route
// (ApiServer::AuthorizeRequest), and the answers are the JSON `arbor -o json diff --data` and
// `arbor -o json merge` print.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/names.h"
#include "common/status.h"
#include "control/engine.h"
#include "proxy/auth/token.h"

namespace arbor::control {

// An answer other than a plain error: 200 with a body, or a refusal whose body says more than
// {"error_code", "message"} (the conflicts of a merge) or whose status is not SendError's.
struct DataAnswer {
  int http_status = 200;
  nlohmann::json body;
};

struct DataDiffCall {
  std::string against;              // OTHER, projects/Q/branches/OTHER, OTHER@TIME, OTHER@lsn:X/Y
  std::vector<std::string> tables;  // only these
  std::string database;             // empty: postgres
  bool sql = false;                 // answer {"patch": ...} instead of the JSON report
  bool markdown = false;     // answer {"markdown": ...}: the schema diff as `arbor diff` renders it
  bool schema_only = false;  // compare the schemas only (the report's tables are empty)
};

// The data diff from `branch` (the JSON's "from") to `against` ("to"): the order of
// `arbor diff --data BRANCH AGAINST`. InvalidArgument for a malformed `against` or a table on
// neither side; NotFound for a branch that does not exist; OutOfRange for a time outside the
// history.
[[nodiscard]] Result<DataAnswer> RunDataDiff(Engine* engine, const proxy::auth::TokenSigner* tokens,
                                             const std::string& project, const std::string& branch,
                                             const DataDiffCall& call);

struct MergeCall {
  std::string into;  // TARGET, or projects/P/branches/TARGET
  bool dry_run = false;
  std::vector<std::string> tables;
  std::string database;
};

// The merge of `source` into `call.into`. 200 with the report when it merged (or, dry, would
// merge cleanly); 409 ABORTED with the report when keys conflict (nothing changed), or with
// the reason when the target changed meanwhile; 412 FAILED_PRECONDITION when the merge is not
// supported as asked (the target is not the source's parent, the schemas differ, a changed
// table has no primary key). Errors: InvalidArgument (a malformed `into`, a table not on the
// source), NotFound, and FailedPrecondition (409) with PostgreSQL's message when the
// transaction failed and was rolled back.
[[nodiscard]] Result<DataAnswer> RunMerge(Engine* engine, const proxy::auth::TokenSigner* tokens,
                                          const std::string& project, const std::string& source,
                                          const MergeCall& call);

// `text` (a branch id, or a branch's full name) as a branch of `project`: the full name's
// project, which may be another; InvalidArgument when it is neither.
[[nodiscard]] Result<api::BranchName> BranchNameIn(const std::string& project,
                                                   const std::string& text);

}  // namespace arbor::control
