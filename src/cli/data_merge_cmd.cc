// `arbor merge SOURCE --into TARGET` (docs/workflow.md, "Data merge"): the command's flow.
// The three-way logic is data_merge.h's, the row reads data_read.h's, the statements
// data_diff.h's.
//
// Exit status: 0 merged (with --dry-run: it would merge cleanly), 1 conflicts, or the target
// changed during the merge (nothing changed), 2 usage, or a merge that is not supported (branches
// not parent and child, schemas that differ, a changed table without a primary key), 3 daemon
// unreachable, 4 the transaction failed (PostgreSQL's message; rolled back) or a server failure, 5
// the server refused (no such branch, a protected target without an admin token).

#include <libpq-fe.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "cli/catalog.h"
#include "cli/data_diff.h"
#include "cli/data_merge.h"
#include "cli/data_read.h"
#include "cli/schema_diff.h"
#include "cli/workflow_internal.h"

namespace arbor::cli {
namespace {

constexpr int kConflictExit = 1;
constexpr int kUnsupportedExit = 2;

struct MergeOpts {
  std::string source, target, database;
  std::vector<std::string> tables;
  bool dry_run = false;
};

std::string QualifiedTable(const std::string& name) {
  return name.find('.') == std::string::npos ? "public." + name : name;
}

// Whether a schema change concerns one of `tables` (its columns, constraints, indexes,
// triggers and policies).
bool Concerns(const Change& ch, const std::set<std::string>& tables) {
  for (const std::string& t : tables) {
    if (ch.name == t || ch.name.rfind(t + ".", 0) == 0) return true;
    if (ch.kind == ObjectKind::kIndex) {
      auto def = ch.attrs.count("definition") ? ch.attrs.at("definition") : std::string();
      if (ch.changed.count("definition")) def = ch.changed.at("definition").to;
      if (def.find(" ON " + t + " ") != std::string::npos ||
          def.find(" ON ONLY " + t + " ") != std::string::npos) {
        return true;
      }
    }
  }
  return false;
}

// Which pages of which relation may differ between two endpoints; everything when the
// index cannot tell.
struct ChangeIndex {
  bool complete = false;
  std::map<uint32_t, const api::ChangedRelation*> rels;  // by relfilenode
  api::ChangedPages pages;
};

Result<std::unique_ptr<ChangeIndex>> IndexOf(const api::ApiClient& c, const api::EndpointName& a,
                                             const api::EndpointName& b, uint32_t db_a,
                                             uint32_t db_b) {
  auto idx = std::make_unique<ChangeIndex>();
  ARBOR_ASSIGN_OR_RETURN(idx->pages, c.GetChangedPages(a, b));
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

// A libpq connection, closed when it goes.
struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;

Result<ConnPtr> Connect(const std::string& url, const std::string& database, const char* what) {
  const char* keys[] = {"dbname", "connect_timeout", database.empty() ? nullptr : "dbname",
                        nullptr};
  const char* values[] = {url.c_str(), "10", database.empty() ? nullptr : database.c_str(),
                          nullptr};
  ConnPtr conn(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::IOError(std::string("cannot connect to ") + what + ": " +
                           (conn ? OneLineOf(PQerrorMessage(conn.get())) : "out of memory"));
  }
  return conn;
}

// Runs `sql`; IOError with `what` and the server's message (and its detail) on failure.
Status Exec(PGconn* conn, const std::string& sql, const std::string& what) {
  PGresult* r = PQexec(conn, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  Status out = Status::Ok();
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    std::string m = OneLineOf(PQresultErrorMessage(r));
    const char* detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    if (detail != nullptr) m += " (" + OneLineOf(detail) + ")";
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
    std::string m = OneLineOf(PQresultErrorMessage(r));
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
    std::string m = OneLineOf(PQresultErrorMessage(r));
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
      std::string m = OneLineOf(PQresultErrorMessage(r));
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

// As ConnectEndpoint, but asks for the credentials (POST credentials, where the protected
// branch rule is: a developer token gets none for a protected branch) before it starts the
// endpoint, so that a refusal says so.
Result<std::string> CredentialsFirst(const api::ApiClient& c, const api::EndpointName& name) {
  api::CredentialRequest req;
  req.endpoint = name.ToString();
  req.role = "owner";
  ARBOR_ASSIGN_OR_RETURN(api::Credential cred, c.GenerateCredential(req));
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, c.StartEndpoint(name));
  if (!e.status.connection_string) {
    return Status::Internal("endpoint " + name.ToString() + " has no connection string");
  }
  const std::string& base = *e.status.connection_string;
  size_t at = base.find('@');
  if (at == std::string::npos) return base;
  return base.substr(0, at) + ":" + cred.token + base.substr(at);
}

// The ancestor's endpoint: `target` pinned at the time (or LSN) `source` was forked.
Result<api::EndpointName> AncestorEndpoint(const api::ApiClient& c, const api::BranchName& target,
                                           const api::Branch& source) {
  api::EndpointSpec spec;
  spec.endpoint_type = api::kEndpointTypeReadOnly;
  std::optional<int64_t> time = source.status.source_branch_time_us
                                    ? source.status.source_branch_time_us
                                    : source.spec.source_branch_time_us;
  std::optional<Lsn> lsn = source.status.source_branch_lsn ? source.status.source_branch_lsn
                                                           : source.spec.source_branch_lsn;
  if (lsn && !time) {
    spec.source_branch_lsn = lsn;
  } else if (time) {
    spec.source_branch_time_us = time;
  } else {
    return Status::Internal("branch " + source.name + " records no fork time or LSN");
  }
  std::string id = api::PinnedEndpointId(spec.source_branch_time_us, spec.source_branch_lsn);
  api::EndpointName name{target.project, target.branch, id};
  auto made = c.CreateEndpoint(target, id, spec);
  if (!made.ok() && made.status().code() != Code::kAlreadyExists) return made.status();
  return name;
}

struct Outcome {
  int exit = 0;
  std::string message;  // for a refusal: why
};

Status CmdMerge(const Session& s, const MergeOpts& o) {
  auto c = s.Client();
  bool json = s.Json();
  Outcome outcome;
  auto run = [&]() -> Status {
    api::BranchName src = s.Branch(o.source);
    api::BranchName tgt = s.Branch(o.target);
    if (IsPinned(o.source) || IsPinned(o.target)) Usage("merge takes branches, not BRANCH@TIME");
    if (src.project != tgt.project) Usage("the source and the target must be in one project");
    if (src.branch == tgt.branch) Usage("the source and the target are the same branch");
    ARBOR_ASSIGN_OR_RETURN(api::Branch sb, c.GetBranch(src));
    ARBOR_RETURN_IF_ERROR(c.GetBranch(tgt).status());
    std::string parent = sb.status.source_branch.value_or(sb.spec.source_branch.value_or(""));
    if (parent != tgt.ToString()) {
      outcome = {kUnsupportedExit,
                 "cannot merge " + src.branch + " into " + tgt.branch +
                     ": only a merge into the "
                     "branch's parent is supported (the target must be the branch the source was "
                     "forked from; " +
                     src.branch + "'s parent is " +
                     (parent.empty() ? std::string("none") : parent) + ")"};
      return Status::Ok();
    }
    // The target's credentials first: POST credentials applies the protected-branch rule.
    api::EndpointName tgt_ep{tgt.project, tgt.branch, kPrimary};
    api::EndpointName src_ep{src.project, src.branch, kPrimary};
    ARBOR_ASSIGN_OR_RETURN(std::string url_t, CredentialsFirst(c, tgt_ep));
    ARBOR_ASSIGN_OR_RETURN(std::string url_s, ConnectEndpoint(c, src_ep));
    ARBOR_ASSIGN_OR_RETURN(api::EndpointName anc_ep, AncestorEndpoint(c, tgt, sb));
    ARBOR_ASSIGN_OR_RETURN(api::Endpoint anc_e, c.GetEndpoint(anc_ep));
    std::string anc_label = tgt.branch + "@" +
                            (anc_e.spec.source_branch_lsn
                                 ? "lsn:" + api::FormatLsn(*anc_e.spec.source_branch_lsn)
                                 : api::FormatTime(anc_e.spec.source_branch_time_us.value_or(0)));
    ARBOR_ASSIGN_OR_RETURN(std::string url_a, ConnectEndpoint(c, anc_ep));

    std::set<std::string> wanted;
    for (const std::string& t : o.tables) wanted.insert(QualifiedTable(t));
    ARBOR_ASSIGN_OR_RETURN(Catalog cs, ReadCatalog(url_s, o.database));
    ARBOR_ASSIGN_OR_RETURN(Catalog ct, ReadCatalog(url_t, o.database));
    std::vector<Change> schema = CompareCatalogs(ct, cs);
    if (!wanted.empty())
      std::erase_if(schema, [&](const Change& ch) { return !Concerns(ch, wanted); });
    if (!schema.empty()) {
      outcome = {kUnsupportedExit,
                 "the schemas of " + src.branch + " and " + tgt.branch +
                     " differ; run the migration on the target first (arbor migrate-check "
                     "tests it), then merge the data\n" +
                     RenderDiff(schema, tgt.branch, src.branch, DiffFormat::kText)};
      return Status::Ok();
    }

    // Snapshots first, then the change sets (as the data diff: docs/workflow.md).
    ARBOR_ASSIGN_OR_RETURN(auto ra, TableReader::Open(url_a, o.database));
    ARBOR_ASSIGN_OR_RETURN(auto rs, TableReader::Open(url_s, o.database));
    ARBOR_ASSIGN_OR_RETURN(auto rt, TableReader::Open(url_t, o.database));
    ARBOR_ASSIGN_OR_RETURN(auto ta, ra->Tables());
    ARBOR_ASSIGN_OR_RETURN(auto ts, rs->Tables());
    ARBOR_ASSIGN_OR_RETURN(auto tt, rt->Tables());
    for (const std::string& t : wanted) {
      if (!ts.count(t)) Usage("--table " + t + ": no table " + t + " on " + src.branch);
    }
    ARBOR_ASSIGN_OR_RETURN(auto idx_s,
                           IndexOf(c, anc_ep, src_ep, ra->database_oid(), rs->database_oid()));
    ARBOR_ASSIGN_OR_RETURN(auto idx_t,
                           IndexOf(c, anc_ep, tgt_ep, ra->database_oid(), rt->database_oid()));

    std::vector<TableMerge> merges;
    std::vector<std::string> unsupported;
    uint64_t pages = 0;
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
      outcome = {kUnsupportedExit, m};
      return Status::Ok();
    }

    // Sequences the source advanced.
    ARBOR_ASSIGN_OR_RETURN(auto seq_a, Sequences(url_a, o.database, "the ancestor"));
    ARBOR_ASSIGN_OR_RETURN(auto seq_s, Sequences(url_s, o.database, "the source"));
    std::vector<std::pair<std::string, long long>> advance;
    for (const auto& [name, st] : seq_s) {
      if (!st.last_value || !st.ascending) continue;
      auto a = seq_a.find(name);
      if (a != seq_a.end() && a->second.last_value && *a->second.last_value >= *st.last_value) {
        continue;
      }
      advance.push_back({name, *st.last_value});
    }

    size_t conflicts = 0, changes = 0, same = 0;
    for (const TableMerge& m : merges) {
      conflicts += m.conflicts.size();
      changes += m.apply.only_from.size() + m.apply.only_to.size() + m.apply.changed.size();
      same += m.same_on_both;
    }
    std::vector<TableDiff> applies;
    for (const TableMerge& m : merges) applies.push_back(m.apply);

    bool applied = false;
    if (conflicts == 0 && !o.dry_run && (changes > 0 || !advance.empty())) {
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
      for (const auto& [name, v] : advance) {
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
          return st;
        }
      }
      if (!moved.empty()) {
        (void)Exec(w.get(), "ROLLBACK", "rollback");
        std::string m = tgt.branch + " changed while it was being merged into (" +
                        std::to_string(moved.size()) + " key" + (moved.size() == 1 ? "" : "s") +
                        ", e.g. " + moved.front() + "); nothing was merged: run the merge again";
        outcome = {kConflictExit, m};
        return Status::Ok();
      }
      Status st = Exec(w.get(), sql, "the merge failed and was rolled back; PostgreSQL said");
      if (!st.ok()) {
        (void)Exec(w.get(), "ROLLBACK", "rollback");
        return st;
      }
      ARBOR_RETURN_IF_ERROR(Exec(
          w.get(), "COMMIT", "the merge failed at COMMIT and was rolled back; PostgreSQL said"));
      applied = true;
    }

    if (conflicts > 0) outcome.exit = kConflictExit;
    if (json) {
      api::Json seqs = api::Json::array();
      for (const auto& [name, v] : advance) seqs.push_back({{"sequence", name}, {"at_least", v}});
      api::Json tables = DataDiffToJson(applies);
      for (size_t i = 0; i < tables.size(); ++i) tables[i]["same_on_both"] = merges[i].same_on_both;
      s.PrintJson({{"source", src.branch},
                   {"target", tgt.branch},
                   {"ancestor", anc_label},
                   {"dry_run", o.dry_run},
                   {"merged", applied},
                   {"conflict_count", conflicts},
                   {"conflicts", ConflictsToJson(merges)},
                   {"change_count", changes},
                   {"tables", tables},
                   {"sequences", seqs},
                   {"pages_read", pages}});
      return Status::Ok();
    }
    std::string text =
        "Merge " + src.branch + " into " + tgt.branch + " (common ancestor " + anc_label + ")\n";
    if (conflicts > 0) {
      text +=
          "Conflicts: keys both branches changed since the fork, differently. Nothing was "
          "merged.\n" +
          RenderConflictsText(merges);
    }
    text += "Changes of " + src.branch + " to apply:\n" +
            RenderDataText(applies, tgt.branch, src.branch);
    for (const auto& [name, v] : advance) {
      text += "sequence " + name + ": advanced to at least " + std::to_string(v) + "\n";
    }
    text += "Read " + std::to_string(pages) +
            " pages on the three sides (only those written since the fork, where the change index "
            "tells).\n";
    if (same > 0) {
      text += std::to_string(same) + " key" + (same == 1 ? "" : "s") +
              " changed alike on both branches: nothing to do for them.\n";
    }
    if (conflicts > 0) {
      text += std::to_string(conflicts) + " conflict" + (conflicts == 1 ? "" : "s") + "; " +
              tgt.branch + " is unchanged.\n";
    } else if (o.dry_run) {
      text += "Dry run: nothing changed.\n";
    } else if (applied) {
      text += "Merged " + std::to_string(changes) + " row change" + (changes == 1 ? "" : "s") +
              " into " + tgt.branch + " in one transaction.\n";
    } else {
      text += "Nothing to merge.\n";
    }
    s.Print(text);
    return Status::Ok();
  };
  Status st = run();
  if (!st.ok()) FailDiffLike(st);
  if (!outcome.message.empty()) ExitWith(outcome.exit, outcome.message);
  if (outcome.exit != 0) ExitWith(outcome.exit, "");
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
