#pragma once

// The three-way logic of `arbor merge` (docs/workflow.md, "Data merge"): given one table's
// changes since the common ancestor on the source and on the target, by primary key, what
// to apply to the target and which keys conflict. Pure values and functions; the command
// (data_merge_cmd.cc) reads the rows and applies the result.

#include <optional>
#include <string>
#include <vector>

#include "api/types.h"
#include "datadiff/data_diff.h"

namespace arbor::datadiff {

// A key both sides changed since the ancestor, to different results. A side's row is
// nullopt when that side has no row with the key (deleted it, or never had it).
struct MergeConflict {
  DataRow key;
  std::optional<DataRow> ancestor, source, target;
  // "both updated", "deleted on the source, updated on the target",
  // "updated on the source, deleted on the target", "both inserted".
  std::string Kind() const;
};

struct TableMerge {
  // What the source changed that the target did not: from is the ancestor's row (which the
  // target still has), to the source's. Sorted by key.
  TableDiff apply;
  std::vector<MergeConflict> conflicts;  // sorted by key
  size_t same_on_both = 0;               // keys both sides changed to the same result
};

// Three-way merge of one table. `source` compares the ancestor (from) with the source (to),
// `target` the ancestor with the target. A key changed on the source only is applied; a key
// changed on both to the same result (the same row, or deleted on both) needs nothing; any
// other key changed on both is a conflict.
// REQUIRES: both diffs have the same shape, with a primary key (shape.key not empty).
TableMerge ThreeWay(const TableDiff& source, const TableDiff& target);

// Text: per table with conflicts, a line and up to `limit` keys with what each side did.
std::string RenderConflictsText(const std::vector<TableMerge>& merges, size_t limit = 20);

// JSON: [{"table", "key_columns", "count", "conflicts": [{"key", "kind", "ancestor",
// "source", "target"}]}] for the tables with conflicts; rows as column -> text, or null.
api::Json ConflictsToJson(const std::vector<TableMerge>& merges);

}  // namespace arbor::datadiff
