#pragma once

// The data diff of `arbor diff --data A B` and `POST .../branches/A:diff_data`
// (docs/workflow.md, "Data diff"): the schema diff, then the rows of every table present on
// both sides, reading only the pages either side wrote since they diverged. The comparison is
// data_diff.h's, the reads data_read.h's; this is the flow, and what it renders to.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "api/types.h"
#include "datadiff/backend.h"
#include "datadiff/data_diff.h"
#include "datadiff/schema_diff.h"

namespace arbor::datadiff {

// "public.t" for "t"; a name with a dot is taken as schema.table.
std::string QualifiedTable(const std::string& name);

// Whether a schema change concerns one of `tables` (schema.table): the table, its columns,
// constraints, indexes, triggers and policies.
bool ConcernsTables(const Change& change, const std::set<std::string>& tables);

// One side of a diff: a branch's read-write endpoint, or an endpoint pinned at a past state.
struct DiffSide {
  std::string label;  // BRANCH, or BRANCH@TIME / BRANCH@lsn:X/Y
  api::EndpointName endpoint;
};

struct DiffRequest {
  DiffSide a, b;                    // from a to b
  std::vector<std::string> tables;  // only these (schema.table, or table for public.table)
  std::string database;             // empty: the connection's (postgres)
  bool schema_only = false;         // compare the catalogs only: no table is read
};

// How one table was read.
struct TableRead {
  bool full = false;
  uint64_t pages_from = 0, pages_to = 0;
};

struct DiffReport {
  std::string from, to;               // the sides' labels
  std::vector<Change> schema;         // the schema differences (of the tables asked for)
  std::vector<TableDiff> tables;      // every table compared, in name order
  std::vector<TableRead> reads;       // one per table
  std::vector<std::string> skipped;   // unchanged on both sides since they diverged
  std::vector<std::string> one_side;  // on one side only: not compared
  bool change_index = false;          // the changed pages were known
  std::string fallback;               // why every table was read in full
  Refusal refusal = Refusal::kNone;   // kBadTable: `bad_table` is on neither side
  std::string bad_table, message;     // the table as asked, and why
  bool Differs() const;
};

// Connects to both sides (a, then b), reads their catalogs, takes each side's snapshot, then
// asks which pages changed and compares the tables. An error when a side cannot be reached or
// read; a report with `refusal` kBadTable when a table asked for is on neither side.
[[nodiscard]] Result<DiffReport> DiffData(Backend& backend, const DiffRequest& request);

// `arbor -o json diff --data`: {"from", "to", "identical", "schema", "tables",
// "skipped_tables", "tables_on_one_side", "change_index", "fallback"?}.
api::Json DiffReportJson(const DiffReport& r);
// `--format sql`: the patch that turns a's rows into b's, the schema differences as comments.
std::string DiffReportSql(const DiffReport& r);
// The text: the schema diff, then the data diff and what was read.
std::string DiffReportText(const DiffReport& r);

}  // namespace arbor::datadiff
