// `arbor diff --data` (docs/workflow.md, "Data diff"): the command. The flow and its
// renderings are src/datadiff's (diff.h), run over the REST API (ApiBackend).

#include "cli/workflow_internal.h"

namespace arbor::cli {

// `arbor diff --data A B`: the schema diff, then the rows of every table on both sides.
Status CmdDataDiff(const Session& s, const DataDiffOpts& o) {
  if (o.format != "text" && o.format != "json" && o.format != "sql") {
    Usage("--format with --data: expected text, json or sql, got '" + o.format + "'");
  }
  bool json = s.Json() || o.format == "json";
  auto c = s.Client();
  ApiBackend backend(s, c);
  auto run = [&]() -> Result<datadiff::DiffReport> {
    ARBOR_ASSIGN_OR_RETURN(DiffSide a, ResolveSide(s, c, o.a));
    ARBOR_ASSIGN_OR_RETURN(DiffSide b, ResolveSide(s, c, o.b));
    return datadiff::DiffData(backend, datadiff::DiffRequest{a, b, o.tables, o.database});
  };
  auto r = run();
  if (!r.ok()) FailDiffLike(r.status());
  if (r->refusal == datadiff::Refusal::kBadTable) {
    Usage("--table " + r->bad_table + ": " + r->message);
  }
  if (json) {
    s.PrintJson(datadiff::DiffReportJson(*r));
  } else if (o.format == "sql") {
    s.Print(datadiff::DiffReportSql(*r));
  } else {
    s.Print(datadiff::DiffReportText(*r));
  }
  if (r->Differs()) ExitWith(1, "");
  return Status::Ok();
}

}  // namespace arbor::cli
