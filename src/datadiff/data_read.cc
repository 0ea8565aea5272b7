#include "datadiff/data_read.h"

#include <libpq-fe.h>

#include <cstdlib>

#include "datadiff/pq.h"

namespace arbor::datadiff {
namespace {

Result<ResultPtr> Exec(PGconn* conn, const std::string& sql) {
  ResultPtr r(PQexec(conn, sql.c_str()));
  ExecStatusType st = PQresultStatus(r.get());
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    return Status::IOError("reading the data failed: " + OneLine(PQresultErrorMessage(r.get())));
  }
  return r;
}

uint32_t U32(PGresult* r, int row, int col) {
  return static_cast<uint32_t>(std::strtoul(PQgetvalue(r, row, col), nullptr, 10));
}

// Ordinary, logged tables of user schemas that are not an extension's. Unlogged tables are
// left out: a hot standby (a BRANCH@TIME side) cannot read them, and a branch starts them
// empty.
constexpr const char* kUserTables =
    "c.relkind = 'r' and c.relpersistence = 'p' and n.nspname not in ('pg_catalog', "
    "'information_schema', 'pg_toast') "
    "and n.nspname not like 'pg_temp_%' and n.nspname not like 'pg_toast_temp_%' "
    "and not exists (select 1 from pg_depend dep where dep.classid = 'pg_class'::regclass "
    "and dep.objid = c.oid and dep.deptype = 'e')";

}  // namespace

Result<std::unique_ptr<TableReader>> TableReader::Open(const std::string& conninfo,
                                                       const std::string& database) {
  const char* keys[] = {"dbname", "connect_timeout", database.empty() ? nullptr : "dbname",
                        nullptr};
  const char* values[] = {conninfo.c_str(), "10", database.empty() ? nullptr : database.c_str(),
                          nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    std::string m = conn ? OneLine(PQerrorMessage(conn)) : "out of memory";
    PQfinish(conn);
    return Status::IOError("cannot connect to read the data: " + m);
  }
  std::unique_ptr<TableReader> reader(new TableReader(conn));
  ARBOR_RETURN_IF_ERROR(
      Exec(conn,
           "begin isolation level repeatable read read only; set local search_path = pg_catalog")
          .status());
  // The first query takes the snapshot every later read sees.
  ARBOR_ASSIGN_OR_RETURN(
      ResultPtr r, Exec(conn, "select oid from pg_database where datname = current_database()"));
  if (PQntuples(r.get()) != 1) return Status::IOError("cannot find the current database's oid");
  reader->database_oid_ = U32(r.get(), 0, 0);
  return reader;
}

TableReader::~TableReader() {
  if (conn_ != nullptr) {
    PQclear(PQexec(conn_, "rollback"));
    PQfinish(conn_);
  }
}

Result<std::map<std::string, TableInfo>> TableReader::Tables() {
  ARBOR_ASSIGN_OR_RETURN(
      ResultPtr tables,
      Exec(conn_, std::string("select c.oid, n.nspname || '.' || c.relname, "
                              "quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
                              "pg_relation_filenode(c.oid), c.reltablespace <> 0 from pg_class c "
                              "join pg_namespace n "
                              "on n.oid = c.relnamespace where ") +
                      kUserTables));
  std::map<uint32_t, TableInfo> by_oid;
  for (int i = 0; i < PQntuples(tables.get()); ++i) {
    TableInfo t;
    t.name = PQgetvalue(tables.get(), i, 1);
    t.sql_name = PQgetvalue(tables.get(), i, 2);
    t.oid = U32(tables.get(), i, 0);
    t.relfilenode = U32(tables.get(), i, 3);
    t.own_tablespace = std::string(PQgetvalue(tables.get(), i, 4)) == "t";
    by_oid[U32(tables.get(), i, 0)] = std::move(t);
  }
  ARBOR_ASSIGN_OR_RETURN(
      ResultPtr cols,
      Exec(conn_,
           "select a.attrelid, a.attname, quote_ident(a.attname), "
           "format_type(a.atttypid, a.atttypmod), a.attidentity = 'a' from pg_attribute a "
           "where a.attnum > 0 and not a.attisdropped and a.attgenerated = '' "
           "order by a.attrelid, a.attnum"));
  for (int i = 0; i < PQntuples(cols.get()); ++i) {
    auto it = by_oid.find(U32(cols.get(), i, 0));
    if (it == by_oid.end()) continue;
    it->second.columns.push_back({PQgetvalue(cols.get(), i, 1), PQgetvalue(cols.get(), i, 2),
                                  PQgetvalue(cols.get(), i, 3),
                                  std::string(PQgetvalue(cols.get(), i, 4)) == "t"});
  }
  ARBOR_ASSIGN_OR_RETURN(
      ResultPtr keys, Exec(conn_,
                           "select i.indrelid, a.attname from pg_index i cross join lateral "
                           "unnest(i.indkey) with ordinality k(attnum, ord) join pg_attribute a on "
                           "a.attrelid = i.indrelid and a.attnum = k.attnum where i.indisprimary "
                           "order by i.indrelid, k.ord"));
  for (int i = 0; i < PQntuples(keys.get()); ++i) {
    auto it = by_oid.find(U32(keys.get(), i, 0));
    if (it != by_oid.end()) it->second.primary_key.push_back(PQgetvalue(keys.get(), i, 1));
  }
  std::map<std::string, TableInfo> out;
  for (auto& [oid, t] : by_oid) out[t.name] = std::move(t);
  return out;
}

Result<std::vector<DataRow>> TableReader::Rows(
    const TableInfo& t, const std::vector<std::string>& sql_columns,
    const std::vector<std::pair<uint64_t, uint64_t>>* ranges, uint64_t* pages) {
  std::string select = "select ";
  for (size_t i = 0; i < sql_columns.size(); ++i) {
    select += (i ? ", " : "") + sql_columns[i] + "::text";
  }
  select += " from only " + t.sql_name;
  std::vector<std::string> queries;
  if (ranges == nullptr) {
    queries.push_back(select);
    ARBOR_ASSIGN_OR_RETURN(
        ResultPtr size,
        Exec(conn_, "select pg_relation_size(" + std::to_string(t.oid) + "::oid) / 8192"));
    *pages += std::strtoull(PQgetvalue(size.get(), 0, 0), nullptr, 10);
  } else {
    // One TID range scan per run of pages, up to 64 of them per statement.
    constexpr size_t kPerStatement = 64;
    for (size_t i = 0; i < ranges->size(); ++i) {
      const auto& [lo, hi] = (*ranges)[i];
      std::string scan = select + " where ctid >= '(" + std::to_string(lo) +
                         ",0)'::tid and ctid < '(" + std::to_string(hi + 1) + ",0)'::tid";
      if (i % kPerStatement == 0) {
        queries.push_back(scan);
      } else {
        queries.back() += " union all " + scan;
      }
      *pages += hi - lo + 1;
    }
  }
  std::vector<DataRow> rows;
  for (const std::string& q : queries) {
    ARBOR_ASSIGN_OR_RETURN(ResultPtr r, Exec(conn_, q));
    int n = PQntuples(r.get()), cols = PQnfields(r.get());
    for (int i = 0; i < n; ++i) {
      DataRow row;
      row.reserve(cols);
      for (int j = 0; j < cols; ++j) {
        if (PQgetisnull(r.get(), i, j)) {
          row.push_back(std::nullopt);
        } else {
          row.push_back(std::string(PQgetvalue(r.get(), i, j), PQgetlength(r.get(), i, j)));
        }
      }
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

}  // namespace arbor::datadiff
