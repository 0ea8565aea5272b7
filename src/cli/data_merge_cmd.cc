// `arbor merge SOURCE --into TARGET` (docs/workflow.md, "Data merge"): the command. The
// flow and its renderings are src/datadiff's (merge.h), run over the REST API (ApiBackend).
//
// Exit status: 0 merged (with --dry-run: it would merge cleanly), 1 conflicts, or the target
// changed during the merge (nothing changed), 2 usage, or a merge that is not supported (branches
// not parent and child, schemas that differ, a changed table without a primary key), 3 daemon
// unreachable, 4 the transaction failed (PostgreSQL's message; rolled back) or a server failure, 5
// the server refused (no such branch, a protected target without an admin token).

#include "cli/workflow_internal.h"
#include "datadiff/merge.h"

namespace arbor::cli {
namespace {

constexpr int kConflictExit = 1;
constexpr int kUnsupportedExit = 2;
constexpr int kFailedExit = 4;

struct MergeOpts {
  std::string source, target, database;
  std::vector<std::string> tables;
  bool dry_run = false;
};

Status CmdMerge(const Session& s, const MergeOpts& o) {
  auto c = s.Client();
  api::BranchName src = s.Branch(o.source);
  api::BranchName tgt = s.Branch(o.target);
  if (IsPinned(o.source) || IsPinned(o.target)) Usage("merge takes branches, not BRANCH@TIME");
  if (src.project != tgt.project) Usage("the source and the target must be in one project");
  if (src.branch == tgt.branch) Usage("the source and the target are the same branch");
  ApiBackend backend(s, c);
  auto r =
      datadiff::Merge(backend, datadiff::MergeRequest{src, tgt, o.tables, o.database, o.dry_run});
  if (!r.ok()) FailDiffLike(r.status());
  switch (r->refusal) {
    case datadiff::Refusal::kNone:
      break;
    case datadiff::Refusal::kBadTable:
      Usage("--table " + r->bad_table + ": " + r->message);
    case datadiff::Refusal::kUnsupported:
      ExitWith(kUnsupportedExit, r->message);
    case datadiff::Refusal::kTargetMoved:
      ExitWith(kConflictExit, r->message);
    case datadiff::Refusal::kApplyFailed:
      ExitWith(kFailedExit, r->message);
  }
  if (s.Json()) {
    s.PrintJson(datadiff::MergeReportJson(*r));
  } else {
    s.Print(datadiff::MergeReportText(*r));
  }
  if (r->conflicts > 0) ExitWith(kConflictExit, "");
  return Status::Ok();
}

}  // namespace

void AddMergeCommand(CLI::App& app, Session& s, Action* action) {
  auto o = std::make_shared<MergeOpts>();
  auto* m =
      app.add_subcommand("merge",
                         "Apply the row changes a branch made since its fork to its parent, in one "
                         "transaction");
  m->add_option("source", o->source, "the branch whose changes are merged")->required();
  m->add_option("--into", o->target, "the branch to change: the source's parent")->required();
  m->add_flag("--dry-run", o->dry_run,
              "show what would be applied and the conflicts; change nothing");
  m->add_option("--table", o->tables, "only this table (repeatable)");
  m->add_option("--database", o->database, "the database to merge (default postgres)");
  m->footer(
      "A three-way merge by primary key: a key both branches changed since the fork, to\n"
      "different results, is a conflict, and any conflict refuses the whole merge.\n"
      "Exit status: 0 merged, 1 conflicts (nothing changed), 2 usage or a merge that is not\n"
      "supported (not parent and child, schemas differ, a changed table without a primary\n"
      "key), 3 daemon unreachable, 4 the transaction failed (rolled back) or server failure,\n"
      "5 refused (no such branch, a protected target without an admin token).\n"
      "Example:\n  arbor merge dev --into production --dry-run");
  OnRun(m, action, [&s, o] { return CmdMerge(s, *o); });
}

}  // namespace arbor::cli
