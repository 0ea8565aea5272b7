#pragma once

// The data merge of `arbor merge SOURCE --into TARGET` and `POST .../branches/SOURCE:merge`
// (docs/workflow.md, "Data merge"): the rows SOURCE changed since it was forked from TARGET,
// applied to TARGET in one transaction, three-way by primary key against TARGET as it was at
// the fork. The three-way rule is data_merge.h's, the reads data_read.h's, the statements
// data_diff.h's; this is the flow, and what it renders to.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "api/names.h"
#include "api/types.h"
#include "datadiff/backend.h"
#include "datadiff/data_merge.h"

namespace arbor::datadiff {

struct MergeRequest {
  api::BranchName source, target;   // REQUIRES: one project, two branches
  std::vector<std::string> tables;  // only these (schema.table, or table for public.table)
  std::string database;             // empty: the connection's (postgres)
  bool dry_run = false;
};

struct MergeReport {
  std::string source, target;  // branch ids
  std::string ancestor;        // TARGET@TIME (or @lsn:X/Y): the common ancestor's label
  bool dry_run = false;
  bool merged = false;                                     // the transaction committed
  std::vector<TableMerge> merges;                          // one per table, in name order
  std::vector<std::pair<std::string, long long>> advance;  // sequences to move forward
  uint64_t pages = 0;                                      // pages read on the three sides
  size_t conflicts = 0, changes = 0, same = 0;
  // kUnsupported, kBadTable (`bad_table`: on the source), kTargetMoved or kApplyFailed, and
  // why; the rest of the report is then incomplete.
  Refusal refusal = Refusal::kNone;
  std::string bad_table, message;
};

// Checks that TARGET is SOURCE's parent, connects to TARGET first (to_write), then SOURCE and
// the ancestor (TARGET pinned at SOURCE's fork), refuses different schemas and changed tables
// without a primary key, reads ΔS and ΔT, and, when there is no conflict and it is not a dry
// run, applies ΔS minus what TARGET has in one transaction (after checking under FOR UPDATE
// that TARGET's rows of those keys are still the ancestor's). An error when a side cannot be
// reached or read.
[[nodiscard]] Result<MergeReport> Merge(Backend& backend, const MergeRequest& request);

// `arbor -o json merge`: {"source", "target", "ancestor", "dry_run", "merged",
// "conflict_count", "conflicts", "change_count", "tables", "sequences", "pages_read"}.
api::Json MergeReportJson(const MergeReport& r);
// The text `arbor merge` prints.
std::string MergeReportText(const MergeReport& r);

}  // namespace arbor::datadiff
