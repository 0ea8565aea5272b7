#pragma once

// Reads tables' rows for the data diff (data_diff.h), through libpq. One connection per side
// holds one read-only, repeatable-read transaction from Open to destruction, so every read
// sees one snapshot, taken by Open. Not thread-safe.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "datadiff/data_diff.h"

struct pg_conn;

namespace arbor::datadiff {

struct TableColumn {
  std::string name;
  std::string sql_name;  // quote_ident'ed
  std::string type;      // format_type
  bool identity_always = false;
};

// An ordinary, logged table (relkind r, relpersistence p) of a user schema.
struct TableInfo {
  std::string name;      // schema.table
  std::string sql_name;  // quote_ident(schema).quote_ident(table)
  uint32_t oid = 0;
  uint32_t relfilenode = 0;
  bool own_tablespace = false;           // not in the database's default tablespace (base/)
  std::vector<TableColumn> columns;      // in attnum order; generated and dropped ones left out
  std::vector<std::string> primary_key;  // column names, in key order; empty: none
};

class TableReader {
 public:
  // Connects to `conninfo` (`database`, when not empty, replaces its database), begins the
  // transaction and takes its snapshot. IOError naming the server's message on failure.
  [[nodiscard]] static Result<std::unique_ptr<TableReader>> Open(const std::string& conninfo,
                                                                 const std::string& database);
  ~TableReader();
  TableReader(const TableReader&) = delete;
  TableReader& operator=(const TableReader&) = delete;

  uint32_t database_oid() const { return database_oid_; }
  // Every table, by name (schema.table).
  [[nodiscard]] Result<std::map<std::string, TableInfo>> Tables();
  // The rows of `t` (the columns `sql_columns`, as text) on the pages in `ranges` (sorted,
  // inclusive), one TID range scan each (64 to a statement); every row when `ranges` is null.
  // Adds the pages read (or the table's size in pages for a full read) to `*pages`.
  [[nodiscard]] Result<std::vector<DataRow>> Rows(
      const TableInfo& t, const std::vector<std::string>& sql_columns,
      const std::vector<std::pair<uint64_t, uint64_t>>* ranges, uint64_t* pages);

 private:
  explicit TableReader(pg_conn* conn) : conn_(conn) {}
  pg_conn* conn_;
  uint32_t database_oid_ = 0;
};

}  // namespace arbor::datadiff
