#pragma once

// The data diff of `arbor diff --data` (docs/workflow.md, "Data diff"): the rows of one table
// on two sides compared by primary key (or by the whole row, as a multiset, when the table
// has none), and what that comparison renders to: text, JSON and an SQL patch that turns the
// first side's rows into the second's. Pure values and functions; the rows are read from
// postgres by data_read.h, and the tests build them by hand.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/types.h"

namespace arbor::datadiff {

// One column's value as PostgreSQL's text output; nullopt is SQL NULL (distinct from 'NULL').
using DataValue = std::optional<std::string>;
using DataRow = std::vector<DataValue>;

// What is compared of one table: the columns both sides have, in the first side's order.
struct TableShape {
  std::string name;                      // schema.table, for people
  std::string sql_name;                  // quote_ident(schema).quote_ident(table), for the patch
  std::vector<std::string> columns;      // for people
  std::vector<std::string> sql_columns;  // quote_ident'ed
  std::vector<size_t> key;               // the primary key's columns; empty: the whole row
  bool identity_always = false;          // INSERT needs OVERRIDING SYSTEM VALUE
  std::vector<std::string> notes;        // "compared on common columns only: ...", ...
};

struct RowChange {
  DataRow from, to;
};

// One table's differences.
struct TableDiff {
  TableShape shape;
  std::vector<DataRow> only_from, only_to;  // sorted
  std::vector<RowChange> changed;           // keyed tables only; sorted by key
  bool Differs() const { return !only_from.empty() || !only_to.empty() || !changed.empty(); }
};

// Compares the rows of one table (or of the same pages of it) on the two sides. By key:
// a key on one side only is a row only there, a key on both with other values a changed
// row. Without a key: a multiset difference (a row twice on one side and once on the other
// is once "only" there). REQUIRES: every row has shape.columns.size() values.
TableDiff CompareRows(const TableShape& shape, std::vector<DataRow> from, std::vector<DataRow> to);

// The order the diff lists rows and keys in, per value: NULL, integers by value, other text
// as bytes.
bool DataRowLess(const DataRow& a, const DataRow& b);

// The values of `row` in the primary key's columns (none for a table without one).
DataRow KeyOf(const TableShape& shape, const DataRow& row);

// An SQL literal for a value: 'text' with quotes doubled, or NULL.
std::string SqlLiteral(const DataValue& v);

// One table's statements that turn `from`'s rows into `to`'s, by kind (each ";\n"-ended).
struct SqlStatements {
  std::string deletes, updates, inserts;
};
SqlStatements RenderSqlStatements(const TableDiff& d);

// DELETE, UPDATE and INSERT statements (in that order, per table) in one transaction, that
// turn `from`'s rows into `to`'s. Keyed tables by primary key; a table without one deletes
// one matching row (by ctid) per surplus row. "-- No data differences." when there are none.
std::string RenderSqlPatch(const std::vector<TableDiff>& diffs);

// Text: per differing table a line of counts, then up to `limit` rows of each kind.
std::string RenderDataText(const std::vector<TableDiff>& diffs, const std::string& from_label,
                           const std::string& to_label, size_t limit = 10);

// JSON: every changed row, each as an object of column -> text (null for NULL).
api::Json DataDiffToJson(const std::vector<TableDiff>& diffs);

}  // namespace arbor::datadiff
