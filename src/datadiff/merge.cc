#include "datadiff/merge.h"

#include <libpq-fe.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "datadiff/catalog.h"
#include "datadiff/data_read.h"
#include "datadiff/diff.h"
#include "datadiff/pq.h"
#include "datadiff/schema_diff.h"

namespace arbor::datadiff {
namespace {

// Which pages of which relation may differ between two endpoints; everything when the
// index cannot tell.
struct ChangeIndex {
  bool complete = false;
  std::map<uint32_t, const api::ChangedRelation*> rels;  // by relfilenode
  api::ChangedPages pages;
};

Result<std::unique_ptr<ChangeIndex>> IndexOf(Backend& backend, const api::EndpointName& a,
                                             const api::EndpointName& b, uint32_t db_a,
                                             uint32_t db_b) {
  auto idx = std::make_unique<ChangeIndex>();
  ARBOR_ASSIGN_OR_RETURN(idx->pages, backend.ChangedPages(a, b));
  idx->complete = idx->pages.complete && db_a == db_b;
  if (idx->complete) {
    auto db = idx->pages.databases.find(db_a);
    if (db != idx->pages.databases.end()) {
      for (const auto& r : db->second) idx->rels[r.relfilenode] = &r;
    }
  }
  return idx;
}

// The rows of one table that differ between `a` and `b`, reading the pages the index names
// (every page when it cannot tell, or the file is not the same on both sides).
Result<TableDiff> DiffTable(TableReader& ra, const TableInfo& ia, TableReader& rb,
                            const TableInfo& ib, const TableShape& shape, const ChangeIndex& idx,
                            uint64_t* pages) {
  const std::vector<std::pair<uint64_t, uint64_t>>* ranges = nullptr;
  bool full =
      !idx.complete || ia.own_tablespace || ib.own_tablespace || ia.relfilenode != ib.relfilenode;
  if (!full) {
    auto r = idx.rels.find(ia.relfilenode);
    if (r == idx.rels.end()) return CompareRows(shape, {}, {});  // no page written since
    if (r->second->whole) {
      full = true;
    } else {
      ranges = &r->second->pages;
    }
  }
  auto columns_of = [&](const TableInfo& t) {
    std::vector<std::string> out;
    for (const std::string& col : shape.columns) {
      for (const TableColumn& tc : t.columns) {
        if (tc.name == col) out.push_back(tc.sql_name);
      }
    }
    return out;
  };
  ARBOR_ASSIGN_OR_RETURN(auto rows_a, ra.Rows(ia, columns_of(ia), ranges, pages));
  ARBOR_ASSIGN_OR_RETURN(auto rows_b, rb.Rows(ib, columns_of(ib), ranges, pages));
  return CompareRows(shape, std::move(rows_a), std::move(rows_b));
}

// Column name -> type: what must be the same on the three sides.
std::map<std::string, std::string> ColumnTypes(const TableInfo& t) {
  std::map<std::string, std::string> out;
  for (const TableColumn& c : t.columns) out[c.name] = c.type;
  return out;
}

TableShape KeyedShape(const TableInfo& t) {
  TableShape s;
  s.name = t.name;
  s.sql_name = t.sql_name;
  for (const TableColumn& c : t.columns) {
    s.columns.push_back(c.name);
    s.sql_columns.push_back(c.sql_name);
    s.identity_always = s.identity_always || c.identity_always;
  }
  for (const std::string& k : t.primary_key) {
    auto it = std::find(s.columns.begin(), s.columns.end(), k);
    if (it != s.columns.end()) s.key.push_back(static_cast<size_t>(it - s.columns.begin()));
  }
  return s;
}

Result<ConnPtr> Connect(const std::string& url, const std::string& database, const char* what) {
  const char* keys[] = {"dbname", "connect_timeout", database.empty() ? nullptr : "dbname",
                        nullptr};
  const char* values[] = {url.c_str(), "10", database.empty() ? nullptr : database.c_str(),
                          nullptr};
  ConnPtr conn(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::IOError(std::string("cannot connect to ") + what + ": " +
                           (conn ? OneLine(PQerrorMessage(conn.get())) : "out of memory"));
  }
  return conn;
}

// Runs `sql`; IOError with `what` and the server's message (and its detail) on failure.
Status Exec(PGconn* conn, const std::string& sql, const std::string& what) {
  PGresult* r = PQexec(conn, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  Status out = Status::Ok();
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    std::string m = OneLine(PQresultErrorMessage(r));
    const char* detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    if (detail != nullptr) m += " (" + OneLine(detail) + ")";
    out = Status::IOError(what + ": " + m);
  }
  PQclear(r);
  return out;
}

// A sequence's last value (nullopt: never used) and whether it ascends, by name.
struct SeqState {
  std::optional<long long> last_value;
  bool ascending = true;
};
Result<std::map<std::string, SeqState>> Sequences(const std::string& url,
                                                  const std::string& database, const char* what) {
  ARBOR_ASSIGN_OR_RETURN(ConnPtr conn, Connect(url, database, what));
  PGresult* r = PQexec(conn.get(),
                       "select quote_ident(schemaname) || '.' || quote_ident(sequencename), "
                       "last_value, increment_by > 0 from pg_catalog.pg_sequences "
                       "where schemaname not in ('pg_catalog', 'information_schema')");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    std::string m = OneLine(PQresultErrorMessage(r));
    PQclear(r);
    return Status::IOError(std::string("reading the sequences of ") + what + " failed: " + m);
  }
  std::map<std::string, SeqState> out;
  for (int i = 0; i < PQntuples(r); ++i) {
    SeqState s;
    if (!PQgetisnull(r, i, 1)) s.last_value = std::stoll(PQgetvalue(r, i, 1));
    s.ascending = std::string(PQgetvalue(r, i, 2)) == "t";
    out[PQgetvalue(r, i, 0)] = s;
  }
  PQclear(r);
  return out;
}

// Foreign keys between distinct tables: (referencing, referenced) by schema.table.
Result<std::set<std::pair<std::string, std::string>>> ForeignKeys(PGconn* conn) {
  PGresult* r = PQexec(conn,
                       "select cn.nspname || '.' || c.relname, pn.nspname || '.' || p.relname "
                       "from pg_catalog.pg_constraint k "
                       "join pg_catalog.pg_class c on c.oid = k.conrelid "
                       "join pg_catalog.pg_namespace cn on cn.oid = c.relnamespace "
                       "join pg_catalog.pg_class p on p.oid = k.confrelid "
                       "join pg_catalog.pg_namespace pn on pn.oid = p.relnamespace "
                       "where k.contype = 'f' and k.conrelid <> k.confrelid");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    std::string m = OneLine(PQresultErrorMessage(r));
    PQclear(r);
    return Status::IOError("reading the target's foreign keys failed: " + m);
  }
  std::set<std::pair<std::string, std::string>> out;
  for (int i = 0; i < PQntuples(r); ++i) out.insert({PQgetvalue(r, i, 0), PQgetvalue(r, i, 1)});
  PQclear(r);
  return out;
}

// The tables' indexes with every referenced table before the tables referencing it (name
// order otherwise; the tables of a cycle keep name order).
std::vector<size_t> ParentsFirst(const std::vector<TableDiff>& tables,
                                 const std::set<std::pair<std::string, std::string>>& refs) {
  std::vector<size_t> out;
  std::vector<bool> placed(tables.size(), false);
  while (out.size() < tables.size()) {
    bool progress = false;
    for (size_t i = 0; i < tables.size(); ++i) {
      if (placed[i]) continue;
      bool ready = true;
      for (size_t j = 0; j < tables.size() && ready; ++j) {
        if (!placed[j] && j != i && refs.count({tables[i].shape.name, tables[j].shape.name})) {
          ready = false;
        }
      }
      if (!ready) continue;
      placed[i] = true;
      out.push_back(i);
      progress = true;
    }
    if (!progress) {  // a cycle: the rest in name order
      for (size_t i = 0; i < tables.size(); ++i) {
        if (!placed[i]) {
          placed[i] = true;
          out.push_back(i);
        }
      }
    }
  }
  return out;
}

// Locks (FOR UPDATE) the target's rows of the keys `d` writes and checks that they are still
// the ancestor's (absent for an insert): the target was read in an earlier snapshot, and a
// key written there since would otherwise be overwritten unseen. Adds "table key" to `*moved`
// for each key that changed; IOError when the query fails.
Status CheckTargetUnchanged(PGconn* conn, const TableDiff& d, std::vector<std::string>* moved) {
  const TableShape& s = d.shape;
  std::map<DataRow, std::optional<DataRow>> expect;
  auto key_of = [&](const DataRow& r) {
    DataRow k;
    for (size_t i : s.key) k.push_back(r[i]);
    return k;
  };
  for (const DataRow& r : d.only_from) expect[key_of(r)] = r;
  for (const RowChange& ch : d.changed) expect[key_of(ch.from)] = ch.from;
  for (const DataRow& r : d.only_to) expect[key_of(r)] = std::nullopt;
  std::string select = "SELECT ";
  for (size_t i = 0; i < s.sql_columns.size(); ++i) {
    select += (i ? ", " : "") + s.sql_columns[i] + "::text";
  }
  select += " FROM ONLY " + s.sql_name + " WHERE ";
  std::map<DataRow, DataRow> found;
  constexpr size_t kPerStatement = 500;
  auto it = expect.begin();
  while (it != expect.end()) {
    std::string where;
    for (size_t n = 0; n < kPerStatement && it != expect.end(); ++n, ++it) {
      std::string one;
      for (size_t k = 0; k < s.key.size(); ++k) {
        one += (k ? " AND " : "") + s.sql_columns[s.key[k]] + " = " + SqlLiteral(it->first[k]);
      }
      where += (where.empty() ? "(" : " OR (") + one + ")";
    }
    PGresult* r = PQexec(conn, (select + where + " FOR UPDATE").c_str());
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      std::string m = OneLine(PQresultErrorMessage(r));
      PQclear(r);
      return Status::IOError("the merge failed and was rolled back; PostgreSQL said: " + m);
    }
    for (int i = 0; i < PQntuples(r); ++i) {
      DataRow row;
      for (int j = 0; j < PQnfields(r); ++j) {
        if (PQgetisnull(r, i, j)) {
          row.push_back(std::nullopt);
        } else {
          row.push_back(std::string(PQgetvalue(r, i, j), PQgetlength(r, i, j)));
        }
      }
      DataRow k = key_of(row);
      found[std::move(k)] = std::move(row);
    }
    PQclear(r);
  }
  for (const auto& [key, want] : expect) {
    auto f = found.find(key);
    std::optional<DataRow> have;
    if (f != found.end()) have = f->second;
    if (have == want) continue;
    std::string k;
    for (size_t i = 0; i < s.key.size(); ++i) {
      k += (i ? ", " : "") + s.columns[s.key[i]] + "=" + SqlLiteral(key[i]);
    }
    moved->push_back(s.name + " " + k);
  }
  return Status::Ok();
}

}  // namespace

Result<MergeReport> Merge(Backend& backend, const MergeRequest& o) {
  const api::BranchName& src = o.source;
  const api::BranchName& tgt = o.target;
  MergeReport out;
  out.source = src.branch;
  out.target = tgt.branch;
  out.dry_run = o.dry_run;
  auto refuse = [&](Refusal why, std::string message) {
    out.refusal = why;
    out.message = std::move(message);
    return out;
  };
  ARBOR_ASSIGN_OR_RETURN(ForkPoint fork, backend.ForkOf(src));
  ARBOR_RETURN_IF_ERROR(backend.ForkOf(tgt).status());
  if (fork.parent != tgt.ToString()) {
    return refuse(Refusal::kUnsupported,
                  "cannot merge " + src.branch + " into " + tgt.branch +
                      ": only a merge into the "
                      "branch's parent is supported (the target must be the branch the source "
                      "was forked from; " +
                      src.branch + "'s parent is " +
                      (fork.parent.empty() ? std::string("none") : fork.parent) + ")");
  }
  // The target first: whether the caller may write it is checked before anything else.
  api::EndpointName tgt_ep{tgt.project, tgt.branch, kPrimaryEndpoint};
  api::EndpointName src_ep{src.project, src.branch, kPrimaryEndpoint};
  ARBOR_ASSIGN_OR_RETURN(std::string url_t, backend.Connect(tgt_ep, /*to_write=*/true));
  ARBOR_ASSIGN_OR_RETURN(std::string url_s, backend.Connect(src_ep, /*to_write=*/false));
  // The ancestor: the target pinned at the time (or LSN) the source was forked.
  std::optional<int64_t> at_time;
  std::optional<Lsn> at_lsn;
  if (fork.lsn && !fork.time_us) {
    at_lsn = fork.lsn;
  } else if (fork.time_us) {
    at_time = fork.time_us;
  } else {
    return Status::Internal("branch " + src.ToString() + " records no fork time or LSN");
  }
  ARBOR_ASSIGN_OR_RETURN(PinnedSide anc, backend.Pin(tgt, at_time, at_lsn));
  out.ancestor = anc.label;
  const api::EndpointName& anc_ep = anc.endpoint;
  ARBOR_ASSIGN_OR_RETURN(std::string url_a, backend.Connect(anc_ep, /*to_write=*/false));

  std::set<std::string> wanted;
  for (const std::string& t : o.tables) wanted.insert(QualifiedTable(t));
  ARBOR_ASSIGN_OR_RETURN(Catalog cs, ReadCatalog(url_s, o.database));
  ARBOR_ASSIGN_OR_RETURN(Catalog ct, ReadCatalog(url_t, o.database));
  std::vector<Change> schema = CompareCatalogs(ct, cs);
  if (!wanted.empty())
    std::erase_if(schema, [&](const Change& ch) { return !ConcernsTables(ch, wanted); });
  if (!schema.empty()) {
    return refuse(Refusal::kUnsupported,
                  "the schemas of " + src.branch + " and " + tgt.branch +
                      " differ; run the migration on the target first (arbor migrate-check "
                      "tests it), then merge the data\n" +
                      RenderDiff(schema, tgt.branch, src.branch, DiffFormat::kText));
  }

  // Snapshots first, then the change sets (as the data diff: docs/workflow.md).
  ARBOR_ASSIGN_OR_RETURN(auto ra, TableReader::Open(url_a, o.database));
  ARBOR_ASSIGN_OR_RETURN(auto rs, TableReader::Open(url_s, o.database));
  ARBOR_ASSIGN_OR_RETURN(auto rt, TableReader::Open(url_t, o.database));
  ARBOR_ASSIGN_OR_RETURN(auto ta, ra->Tables());
  ARBOR_ASSIGN_OR_RETURN(auto ts, rs->Tables());
  ARBOR_ASSIGN_OR_RETURN(auto tt, rt->Tables());
  for (const std::string& t : wanted) {
    if (!ts.count(t)) {
      out.bad_table = t;
      return refuse(Refusal::kBadTable, "no table " + t + " on " + src.branch);
    }
  }
  ARBOR_ASSIGN_OR_RETURN(auto idx_s,
                         IndexOf(backend, anc_ep, src_ep, ra->database_oid(), rs->database_oid()));
  ARBOR_ASSIGN_OR_RETURN(auto idx_t,
                         IndexOf(backend, anc_ep, tgt_ep, ra->database_oid(), rt->database_oid()));

  std::vector<TableMerge>& merges = out.merges;
  std::vector<std::string> unsupported;
  uint64_t& pages = out.pages;
  for (const auto& [name, info_s] : ts) {
    if (!wanted.empty() && !wanted.count(name)) continue;
    auto it_t = tt.find(name);
    if (it_t == tt.end()) continue;  // cannot be: the schemas are the same
    const TableInfo& info_t = it_t->second;
    auto it_a = ta.find(name);
    bool on_ancestor = it_a != ta.end();  // else created on both since the fork: no rows
    const TableInfo& info_a = on_ancestor ? it_a->second : info_s;
    TableShape shape = KeyedShape(info_s);
    if (on_ancestor && ColumnTypes(info_a) != ColumnTypes(info_s)) {
      unsupported.push_back(name + ": its columns changed since the fork");
      continue;
    }
    if (shape.key.empty() || shape.key.size() != info_s.primary_key.size()) {
      // Without a key only an unchanged table can be merged (nothing to do).
      TableShape whole = shape;
      whole.key.clear();
      TableDiff ds = CompareRows(whole, {}, {});
      if (on_ancestor) {
        ARBOR_ASSIGN_OR_RETURN(ds, DiffTable(*ra, info_a, *rs, info_s, whole, *idx_s, &pages));
      } else {
        ARBOR_ASSIGN_OR_RETURN(auto rows, rs->Rows(info_s, whole.sql_columns, nullptr, &pages));
        ds = CompareRows(whole, {}, std::move(rows));
      }
      if (ds.Differs())
        unsupported.push_back(name + ": it has no primary key, and the source changed its rows");
      continue;
    }
    TableDiff ds, dt;
    if (on_ancestor) {
      ARBOR_ASSIGN_OR_RETURN(ds, DiffTable(*ra, info_a, *rs, info_s, shape, *idx_s, &pages));
      ARBOR_ASSIGN_OR_RETURN(dt, DiffTable(*ra, info_a, *rt, info_t, shape, *idx_t, &pages));
    } else {
      ARBOR_ASSIGN_OR_RETURN(auto rows_s, rs->Rows(info_s, shape.sql_columns, nullptr, &pages));
      std::vector<std::string> cols_t;
      for (const std::string& col : shape.columns) {
        for (const TableColumn& tc : info_t.columns) {
          if (tc.name == col) cols_t.push_back(tc.sql_name);
        }
      }
      ARBOR_ASSIGN_OR_RETURN(auto rows_t, rt->Rows(info_t, cols_t, nullptr, &pages));
      ds = CompareRows(shape, {}, std::move(rows_s));
      dt = CompareRows(shape, {}, std::move(rows_t));
    }
    merges.push_back(ThreeWay(ds, dt));
  }
  if (!unsupported.empty()) {
    std::string m = "cannot merge " + src.branch + " into " + tgt.branch +
                    ": only tables with a primary key and the same columns since the fork "
                    "can be merged (leave others out with --table):";
    for (const std::string& u : unsupported) m += "\n  " + u;
    return refuse(Refusal::kUnsupported, m);
  }

  // Sequences the source advanced.
  ARBOR_ASSIGN_OR_RETURN(auto seq_a, Sequences(url_a, o.database, "the ancestor"));
  ARBOR_ASSIGN_OR_RETURN(auto seq_s, Sequences(url_s, o.database, "the source"));
  for (const auto& [name, st] : seq_s) {
    if (!st.last_value || !st.ascending) continue;
    auto a = seq_a.find(name);
    if (a != seq_a.end() && a->second.last_value && *a->second.last_value >= *st.last_value) {
      continue;
    }
    out.advance.push_back({name, *st.last_value});
  }

  for (const TableMerge& m : merges) {
    out.conflicts += m.conflicts.size();
    out.changes += m.apply.only_from.size() + m.apply.only_to.size() + m.apply.changed.size();
    out.same += m.same_on_both;
  }
  if (out.conflicts > 0 || o.dry_run || (out.changes == 0 && out.advance.empty())) return out;

  std::vector<TableDiff> applies;
  for (const TableMerge& m : merges) applies.push_back(m.apply);
  ARBOR_ASSIGN_OR_RETURN(ConnPtr w, Connect(url_t, o.database, "the target"));
  // Deletes (referencing tables first), then updates and inserts (referenced tables
  // first), so that foreign keys between the merged tables hold after each statement;
  // sequences last.
  ARBOR_ASSIGN_OR_RETURN(auto refs, ForeignKeys(w.get()));
  std::vector<size_t> order = ParentsFirst(applies, refs);
  std::string deletes, updates, inserts;
  for (size_t i : order) {
    SqlStatements st = RenderSqlStatements(applies[i]);
    deletes = st.deletes + deletes;
    updates += st.updates;
    inserts += st.inserts;
  }
  std::string sql = deletes + updates + inserts;
  for (const auto& [name, v] : out.advance) {
    std::string lit = SqlLiteral(name);
    std::string val = std::to_string(v);
    sql += "SELECT pg_catalog.setval(" + lit + ", " + val +
           ") WHERE (SELECT NOT is_called OR last_value < " + val + " FROM " + name + ");\n";
  }
  ARBOR_RETURN_IF_ERROR(Exec(w.get(), "BEGIN", "the merge failed"));
  std::vector<std::string> moved;
  for (const TableDiff& d : applies) {
    if (!d.Differs()) continue;
    Status st = CheckTargetUnchanged(w.get(), d, &moved);
    if (!st.ok()) {
      (void)Exec(w.get(), "ROLLBACK", "rollback");
      return refuse(Refusal::kApplyFailed, st.message());
    }
  }
  if (!moved.empty()) {
    (void)Exec(w.get(), "ROLLBACK", "rollback");
    return refuse(Refusal::kTargetMoved,
                  tgt.branch + " changed while it was being merged into (" +
                      std::to_string(moved.size()) + " key" + (moved.size() == 1 ? "" : "s") +
                      ", e.g. " + moved.front() + "); nothing was merged: run the merge again");
  }
  Status st = Exec(w.get(), sql, "the merge failed and was rolled back; PostgreSQL said");
  if (!st.ok()) {
    (void)Exec(w.get(), "ROLLBACK", "rollback");
    return refuse(Refusal::kApplyFailed, st.message());
  }
  st = Exec(w.get(), "COMMIT", "the merge failed at COMMIT and was rolled back; PostgreSQL said");
  if (!st.ok()) return refuse(Refusal::kApplyFailed, st.message());
  out.merged = true;
  return out;
}

api::Json MergeReportJson(const MergeReport& r) {
  api::Json seqs = api::Json::array();
  for (const auto& [name, v] : r.advance) seqs.push_back({{"sequence", name}, {"at_least", v}});
  std::vector<TableDiff> applies;
  for (const TableMerge& m : r.merges) applies.push_back(m.apply);
  api::Json tables = DataDiffToJson(applies);
  for (size_t i = 0; i < tables.size(); ++i) tables[i]["same_on_both"] = r.merges[i].same_on_both;
  return {{"source", r.source},
          {"target", r.target},
          {"ancestor", r.ancestor},
          {"dry_run", r.dry_run},
          {"merged", r.merged},
          {"conflict_count", r.conflicts},
          {"conflicts", ConflictsToJson(r.merges)},
          {"change_count", r.changes},
          {"tables", tables},
          {"sequences", seqs},
          {"pages_read", r.pages}};
}

std::string MergeReportText(const MergeReport& r) {
  std::vector<TableDiff> applies;
  for (const TableMerge& m : r.merges) applies.push_back(m.apply);
  std::string text =
      "Merge " + r.source + " into " + r.target + " (common ancestor " + r.ancestor + ")\n";
  if (r.conflicts > 0) {
    text +=
        "Conflicts: keys both branches changed since the fork, differently. Nothing was "
        "merged.\n" +
        RenderConflictsText(r.merges);
  }
  text += "Changes of " + r.source + " to apply:\n" + RenderDataText(applies, r.target, r.source);
  for (const auto& [name, v] : r.advance) {
    text += "sequence " + name + ": advanced to at least " + std::to_string(v) + "\n";
  }
  text += "Read " + std::to_string(r.pages) +
          " pages on the three sides (only those written since the fork, where the change index "
          "tells).\n";
  if (r.same > 0) {
    text += std::to_string(r.same) + " key" + (r.same == 1 ? "" : "s") +
            " changed alike on both branches: nothing to do for them.\n";
  }
  if (r.conflicts > 0) {
    text += std::to_string(r.conflicts) + " conflict" + (r.conflicts == 1 ? "" : "s") + "; " +
            r.target + " is unchanged.\n";
  } else if (r.dry_run) {
    text += "Dry run: nothing changed.\n";
  } else if (r.merged) {
    text += "Merged " + std::to_string(r.changes) + " row change" + (r.changes == 1 ? "" : "s") +
            " into " + r.target + " in one transaction.\n";
  } else {
    text += "Nothing to merge.\n";
  }
  return text;
}

}  // namespace arbor::datadiff
