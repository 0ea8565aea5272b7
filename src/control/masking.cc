// Masked branches: the Engine's masking of a new branch. See engine.h ("masked branches") for
// the contract, docs/api.md for the strategies and docs/security.md for why no user-written
// SQL runs with a superuser's rights.
#include <libpq-fe.h>

#include <cstdlib>
#include <map>
#include <set>

#include "common/clock.h"
#include "common/log.h"
#include "control/engine.h"
#include "control/sql_quote.h"
#include "datadiff/pq.h"
#include "proxy/auth/scram.h"

namespace arbor::control {
namespace {

// The login role the rules run as: a temporary, non-superuser role made for one masking and
// dropped after it. It is a member of the masked tables' owners (never of a superuser).
constexpr const char* kMaskingRole = "arbor_masking";

// Fake names: 32 first names and 32 last names, picked by two bytes of the keyed hash, and six
// hex digits of it after a hyphen so that distinct people stay distinct.
constexpr const char* kFirstNames =
    "'Ada','Alan','Alice','Ana','Ben','Carla','Chen','Dana','Eli','Emma','Farah','Grace',"
    "'Hugo','Ines','Ivan','Jon','Kai','Lena','Liam','Maya','Nina','Omar','Paula','Quinn',"
    "'Rosa','Sam','Tara','Umar','Vera','Wen','Yara','Zoe'";
constexpr const char* kLastNames =
    "'Adams','Berg','Costa','Diaz','Evans','Fischer','Garcia','Hansen','Ito','Jensen','Kim',"
    "'Lopez','Moreau','Novak','Okafor','Park','Quinn','Rossi','Silva','Tanaka','Ueda','Varga',"
    "'Wagner','Xu','Young','Zhang','Morgan','Nilsson','Patel','Reyes','Schmidt','Walsh'";

// What one rule needs from the branch's catalog.
struct ColumnInfo {
  api::MaskRule rule;
  api::MaskColumn col;
  std::string type;    // format_type
  int max_length = 0;  // varchar(n) and char(n): n; else 0
};

// The parameters of one UPDATE: the branch's key ($k, only when a rule uses it: PostgreSQL
// refuses a parameter it cannot type) and the fixed values, so that no value is ever part of
// the SQL text.
struct Params {
  const std::string& secret;
  std::vector<std::string> values;
  int key = 0;
  std::string Key() {
    if (key == 0) {
      values.push_back(secret);
      key = static_cast<int>(values.size());
    }
    return "$" + std::to_string(key) + "::text";
  }
  std::string Add(const std::string& v) {
    values.push_back(v);
    return "$" + std::to_string(values.size());
  }
};

// The expression that replaces column `c`.
std::string MaskExpression(const ColumnInfo& c, Params* params) {
  std::string col = QuoteIdent(c.col.column);
  auto digest = [&] {
    return "sha256(convert_to(" + params->Key() + " || " + col + "::text, 'UTF8'))";
  };
  auto hex = [&] { return "encode(" + digest() + ", 'hex')"; };
  auto fit = [&](const std::string& e) {
    return c.max_length > 0 ? "left(" + e + ", " + std::to_string(c.max_length) + ")" : e;
  };
  switch (c.rule.with) {
    case api::MaskStrategy::kNull:
      return "NULL";
    case api::MaskStrategy::kFixed:
      return params->Add(c.rule.value);
    case api::MaskStrategy::kHash:
      return fit(hex());
    case api::MaskStrategy::kEmail:
      return "'u' || left(" + hex() + ", 20) || '@example.com'";
    case api::MaskStrategy::kName:
      return fit("(ARRAY[" + std::string(kFirstNames) + "])[1 + get_byte(" + digest() +
                 ", 0) % 32] || ' ' || (ARRAY[" + kLastNames + "])[1 + get_byte(" + digest() +
                 ", 1) % 32] || '-' || substr(" + hex() + ", 5, 6)");
    case api::MaskStrategy::kSql:
      return "(" + c.rule.value + ")";
  }
  return "NULL";
}

// Runs `sql` with `params` (text, types inferred) on `conn`. PostgreSQL's message on failure.
Status Exec(PGconn* conn, const std::string& sql, const std::vector<std::string>& params = {}) {
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  datadiff::ResultPtr r(PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                     values.data(), nullptr, nullptr, 0));
  ExecStatusType st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    return Status::InvalidArgument(datadiff::OneLine(PQresultErrorMessage(r.get())));
  }
  return Status::Ok();
}

}  // namespace

Status Engine::ApplyMasking(const std::string& cid, const EndpointState& state,
                            const std::vector<api::MaskRule>& rules, const std::string& key,
                            const std::string& source) {
  // 1. Every rule's column, checked against the catalog before anything changes.
  std::vector<ColumnInfo> columns;
  std::map<std::string, std::vector<size_t>> by_table;  // "schema"."table" -> columns
  std::map<std::string, std::string> table_owner;       // "schema"."table" -> its owner
  for (size_t i = 0; i < rules.size(); ++i) {
    std::string at = "spec.masking[" + std::to_string(i) + "]";
    ARBOR_ASSIGN_OR_RETURN(api::MaskColumn col, api::ParseMaskColumn(rules[i].column, at));
    auto rows = supervisor_->Query(
        cid, "postgres",
        "SELECT c.relkind, format_type(a.atttypid, a.atttypmod), t.typcategory, a.attnotnull, "
        "r.rolname, r.rolsuper, CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) "
        "AND a.atttypmod > 4 THEN a.atttypmod - 4 ELSE 0 END "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_roles r ON r.oid = c.relowner "
        "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        "WHERE n.nspname = " +
            QuoteLiteral(col.schema) + " AND c.relname = " + QuoteLiteral(col.table) +
            " AND a.attname = " + QuoteLiteral(col.column) +
            " AND a.attnum > 0 AND NOT a.attisdropped");
    if (!rows.ok()) return rows.status();
    if (rows->empty()) {
      return Status::InvalidArgument(at + ".column: column " + rules[i].column +
                                     " does not exist in database postgres of branch " + source +
                                     " (names are as the catalog has them: lower case unless "
                                     "created quoted)");
    }
    const auto& row = rows->at(0);
    if (row[0] != "r" && row[0] != "p") {
      return Status::InvalidArgument(at + ".column: " + col.schema + "." + col.table +
                                     " is not a table (only a table's columns can be masked)");
    }
    bool text = row[2] == "S";
    if (!text &&
        (rules[i].with == api::MaskStrategy::kHash || rules[i].with == api::MaskStrategy::kEmail ||
         rules[i].with == api::MaskStrategy::kName)) {
      return Status::InvalidArgument(at + ".with: " + api::MaskStrategyName(rules[i].with) +
                                     " makes text, and column " + rules[i].column + " is " +
                                     row[1] + "; use null, fixed or sql for it");
    }
    if (row[3] == "t" && rules[i].with == api::MaskStrategy::kNull) {
      return Status::InvalidArgument(at + ".with: column " + rules[i].column +
                                     " is NOT NULL; use fixed, hash or sql for it");
    }
    int max_length = std::atoi(row[6].c_str());
    if (rules[i].with == api::MaskStrategy::kEmail && max_length > 0 && max_length < 33) {
      return Status::InvalidArgument(at + ".with: email makes 33 characters, and column " +
                                     rules[i].column + " is " + row[1]);
    }
    if (row[5] == "t") {
      return Status::InvalidArgument(
          at + ".column: table " + col.schema + "." + col.table + " belongs to the superuser " +
          row[4] + "; masking runs as the table's owner and never as a superuser");
    }
    std::string table = QuoteIdent(col.schema) + "." + QuoteIdent(col.table);
    table_owner[table] = row[4];
    by_table[table].push_back(columns.size());
    columns.push_back(ColumnInfo{rules[i], col, row[1], max_length});
  }

  // 2. The masked tables' triggers (foreign-key checks and actions included) are off while
  // the rules run: a rule's rewrite must not cascade into another table or be checked half
  // done (mask both ends of a reference with the same strategy: they stay equal). Each is
  // put back as it was, whatever happens.
  struct Trigger {
    std::string table, name, enabled;
  };
  std::vector<Trigger> triggers;
  for (const auto& [table, idx] : by_table) {
    auto rows = supervisor_->Query(cid, "postgres",
                                   "SELECT tgname, tgenabled FROM pg_catalog.pg_trigger WHERE "
                                   "tgrelid = " +
                                       QuoteLiteral(table) + "::regclass AND tgenabled <> 'D'");
    if (!rows.ok()) return rows.status();
    for (const auto& r : *rows) triggers.push_back(Trigger{table, r[0], r[1]});
  }
  std::string password = NewPassword();
  ARBOR_ASSIGN_OR_RETURN(proxy::auth::ScramSecret secret,
                         proxy::auth::ScramSecret::FromPassword(password));
  std::string setup = "SET client_min_messages = warning; DROP ROLE IF EXISTS " +
                      std::string(kMaskingRole) + "; CREATE ROLE " + kMaskingRole +
                      " LOGIN NOINHERIT PASSWORD '" + secret.Verifier() + "';";
  std::set<std::string> owners;
  for (const auto& [t, o] : table_owner) owners.insert(o);
  for (const std::string& o : owners)
    setup += " GRANT " + QuoteIdent(o) + " TO " + kMaskingRole + ";";
  for (const Trigger& t : triggers) {
    setup += " ALTER TABLE " + t.table + " DISABLE TRIGGER " + QuoteIdent(t.name) + ";";
  }
  auto undo = [&]() -> Status {
    std::string sql;
    for (const Trigger& t : triggers) {
      const char* how = t.enabled == "A"   ? " ENABLE ALWAYS TRIGGER "
                        : t.enabled == "R" ? " ENABLE REPLICA TRIGGER "
                                           : " ENABLE TRIGGER ";
      sql += "ALTER TABLE " + t.table + how + QuoteIdent(t.name) + "; ";
    }
    sql += "SET client_min_messages = warning; DROP ROLE IF EXISTS " + std::string(kMaskingRole);
    auto r = supervisor_->Query(cid, "postgres", sql);
    return r.status();
  };
  {
    auto r = supervisor_->Query(cid, "postgres", setup);
    if (!r.ok()) {
      (void)undo();
      return Status::Internal("preparing the masking: " + r.status().message());
    }
  }

  // 3. The rules, in one transaction, in a session whose login role is not a superuser: no
  // expression, trigger, index or function can take a superuser's rights (SET ROLE back to a
  // superuser needs a superuser session). Each table is rewritten once, by its owner.
  Status masked = [&]() -> Status {
    std::string conninfo = "host='" + state.socket_dir + "' port=" + std::to_string(state.port) +
                           " user=" + kMaskingRole + " dbname=postgres connect_timeout=10" +
                           " application_name=arbor-masking";
    // The password goes as a separate keyword value, never into a log.
    const char* keys[] = {"dbname", "password", nullptr};
    const char* values[] = {conninfo.c_str(), password.c_str(), nullptr};
    datadiff::ConnPtr conn(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      return Status::Internal("connecting for the masking: " +
                              datadiff::OneLine(PQerrorMessage(conn.get())));
    }
    ARBOR_RETURN_IF_ERROR(Exec(conn.get(), "BEGIN"));
    for (const auto& [table, idx] : by_table) {
      Params params{key, {}, 0};
      std::string sql = "UPDATE " + table + " SET ";
      for (size_t k = 0; k < idx.size(); ++k) {
        const ColumnInfo& c = columns[idx[k]];
        sql += (k ? ", " : "") + QuoteIdent(c.col.column) + " = " + MaskExpression(c, &params);
      }
      ARBOR_RETURN_IF_ERROR(
          Exec(conn.get(), "SET LOCAL ROLE " + QuoteIdent(table_owner.at(table))));
      Status st = Exec(conn.get(), sql, params.values);
      if (!st.ok()) return Status::InvalidArgument("masking " + table + ": " + st.message());
    }
    return Exec(conn.get(), "COMMIT");
  }();
  Status undone = undo();
  ARBOR_RETURN_IF_ERROR(masked);
  if (!undone.ok()) return Status::Internal("after the masking: " + undone.message());
  // 4. The masked state into the store: what a pinned endpoint at or after the masking point
  // starts from.
  return supervisor_->Checkpoint(cid);
}

Status Engine::MaskBranchLocked(std::unique_lock<std::mutex>& l, const std::string& project,
                                const std::string& id) {
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
  std::vector<api::MaskRule> rules = b->masking;
  std::string key = b->mask_key;
  std::string source = b->parent;
  std::optional<EndpointRecord> ep;
  for (const EndpointRecord& e : BranchEndpointsLocked(project, id)) {
    if (IsReadWrite(e)) ep = e;
  }
  if (!ep) return Status::Internal("masked branch has no read-write endpoint");
  ARBOR_ASSIGN_OR_RETURN(EndpointState state, StartWithLock(l, project, id, ep->id, true));
  std::string cid = ComputeId(*ep);
  int64_t started = WallMicros();
  ARBOR_RETURN_IF_ERROR(Unlocked(l, [&] { return ApplyMasking(cid, state, rules, key, source); }));
  ARBOR_ASSIGN_OR_RETURN(b, FindBranch(project, id));
  // The masking point: every state of the timeline from here on holds masked data only.
  // It is the timeline's last write once the CHECKPOINT returned, and its time is the
  // masking point's: a state at any earlier time is an earlier seq.
  int64_t now = WallMicros();
  ARBOR_ASSIGN_OR_RETURN(Seq at, store_->SeqAtTime(b->timeline, now));
  auto at_time = store_->TimeOfSeq(b->timeline, at);
  BranchRecord updated = *b;
  updated.masking_pending = false;
  updated.masked_seq = at.value();
  updated.masked_time_us = at_time.ok() ? *at_time : now;
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(updated)}));
  *b = updated;
  log::info("engine: projects/{}/branches/{} masked ({} rules) in {} ms", project, id, rules.size(),
            (now - started) / 1000);
  return Status::Ok();
}

}  // namespace arbor::control
