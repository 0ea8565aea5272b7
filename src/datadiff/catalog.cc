#include "datadiff/catalog.h"

#include <libpq-fe.h>

#include <memory>

#include "datadiff/pq.h"

namespace arbor::datadiff {
namespace {

// Objects in user schemas only.
#define ARBOR_USER_SCHEMA(n)                                                      \
  " " n ".nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and " n \
  ".nspname not like 'pg_temp_%' and " n ".nspname not like 'pg_toast_temp_%' "
// Not a member of an extension (those are the extension's, listed as the extension).
#define ARBOR_NOT_EXT(catalog, oid)                                        \
  " not exists (select 1 from pg_depend dep where dep.classid = '" catalog \
  "'::regclass and dep.objid = " oid " and dep.deptype = 'e') "

// Privileges that differ from the object's defaults (acldefault: the owner's own, and what
// PUBLIC gets on functions and types): one "grantee: PRIV, PRIV" per grantee for what was
// granted, "grantee: PRIV revoked" for defaults taken away; "public" is PUBLIC and
// "(grantable)" marks WITH GRANT OPTION. Grantors are left out. Never granted, or granted
// and revoked again, reads as absent. `kind` is acldefault's object type: r relation,
// s sequence, f function, n schema, T type, c column.
#define ARBOR_PRIVILEGES(acl, kind, owner)                                                      \
  " (select string_agg(g, '; ' order by g) from (select case when e.grantee = 0 then "          \
  "'public' else pg_get_userbyid(e.grantee)::text end || ': ' || string_agg("                   \
  "e.privilege_type || case when e.is_grantable then ' (grantable)' else '' end, ', ' "         \
  "order by e.privilege_type) || case when e.revoked then ' revoked' else '' end as g "         \
  "from ((select a.grantee, a.privilege_type, a.is_grantable, false as revoked "                \
  "from aclexplode(" acl                                                                        \
  ") a except select d.grantee, d.privilege_type, d.is_grantable, "                             \
  "false from aclexplode(acldefault('" kind "', " owner                                         \
  ")) d) union all "                                                                            \
  "(select d.grantee, d.privilege_type, d.is_grantable, true from aclexplode(acldefault('" kind \
  "', " owner ")) d where " acl                                                                 \
  " is not null except select a.grantee, a.privilege_type, "                                    \
  "a.is_grantable, true from aclexplode(" acl                                                   \
  ") a)) e "                                                                                    \
  "group by e.grantee, e.revoked) grants) as privileges "

struct Query {
  ObjectKind kind;
  const char* sql;  // first column: the name; the others: attributes (NULL: absent)
};

const Query kQueries[] = {
    {ObjectKind::kSchema,
     "select n.nspname, pg_get_userbyid(n.nspowner) as owner, "
     "obj_description(n.oid, 'pg_namespace') as comment, " ARBOR_PRIVILEGES(
         "n.nspacl", "n", "n.nspowner") "from pg_namespace n "
                                        "where " ARBOR_USER_SCHEMA("n") "and" ARBOR_NOT_EXT(
                                            "pg_namespace", "n.oid")},
    {ObjectKind::kExtension,
     "select e.extname, e.extversion as version, n.nspname as schema from pg_extension e "
     "join pg_namespace n on n.oid = e.extnamespace"},
    {ObjectKind::kType,
     "select n.nspname || '.' || t.typname, "
     "case t.typtype when 'e' then 'enum' when 'c' then 'composite' when 'd' then 'domain' "
     "  when 'r' then 'range' when 'b' then 'base' else t.typtype::text end as kind, "
     "case when t.typtype = 'e' then (select string_agg(quote_literal(e.enumlabel), ', ' "
     "  order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid) end as labels, "
     "case when t.typtype = 'c' then (select string_agg(quote_ident(a.attname) || ' ' || "
     "  format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum) from pg_attribute a "
     "  where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped) end "
     "  as attributes, "
     "case when t.typtype = 'd' then format_type(t.typbasetype, t.typtypmod) end "
     "  as base_type, "
     "case when t.typtype = 'd' then case when t.typnotnull then 'yes' else 'no' end end "
     "  as not_null, "
     "t.typdefault as default, "
     "case when t.typtype = 'd' then (select string_agg(k.conname || ' ' || "
     "  pg_get_constraintdef(k.oid), '; ' order by k.conname) from pg_constraint k "
     "  where k.contypid = t.oid) end as constraints, "
     "case when t.typtype = 'r' then (select format_type(r.rngsubtype, null) from pg_range r "
     "  where r.rngtypid = t.oid) end as subtype, "
     "pg_get_userbyid(t.typowner) as owner, obj_description(t.oid, 'pg_type') as "
     "comment, " ARBOR_PRIVILEGES(
         "t.typacl", "T",
         "t.typowner") "from pg_type t join pg_namespace n on n.oid = t.typnamespace "
                       "where " ARBOR_USER_SCHEMA("n") "and" ARBOR_NOT_EXT("pg_type",
                                                                           "t.oid") "and t.typtype "
                                                                                    "in ('e', 'c', "
                                                                                    "'d', 'r', "
                                                                                    "'b') "
                                                                                    "and "
                                                                                    "(t.typtype <> "
                                                                                    "'c' or "
                                                                                    "(select "
                                                                                    "c.relkind "
                                                                                    "from "
                                                                                    "pg_class c "
                                                                                    "where c.oid = "
                                                                                    "t.typrelid) = "
                                                                                    "'c') "
                                                                                    "and not "
                                                                                    "exists "
                                                                                    "(select 1 "
                                                                                    "from pg_type "
                                                                                    "el where "
                                                                                    "el.typarray = "
                                                                                    "t.oid)"},
    {ObjectKind::kSequence,
     "select n.nspname || '.' || c.relname, format_type(s.seqtypid, null) as type, "
     "s.seqstart::text as start, s.seqincrement::text as increment, s.seqmin::text as min, "
     "s.seqmax::text as max, s.seqcache::text as cache, "
     "case when s.seqcycle then 'yes' else 'no' end as cycle, "
     "pg_get_userbyid(c.relowner) as owner, obj_description(c.oid, 'pg_class') as "
     "comment, " ARBOR_PRIVILEGES(
         "c.relacl", "s",
         "c.relowner") "from pg_sequence s join pg_class c on c.oid = s.seqrelid "
                       "join pg_namespace n on n.oid = c.relnamespace where " ARBOR_USER_SCHEMA(
                           "n") "and" ARBOR_NOT_EXT("pg_class", "c.oid")},
    {ObjectKind::kTable,
     "select n.nspname || '.' || c.relname, "
     "case c.relkind when 'r' then 'table' when 'p' then 'partitioned table' "
     "  else 'foreign table' end as kind, "
     "case when c.relpersistence = 'u' then 'unlogged' end as persistence, "
     "case when c.relrowsecurity then 'enabled' end as row_security, "
     "case when c.relforcerowsecurity then 'forced' end as force_row_security, "
     "case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end as partition_key, "
     "case when c.relispartition then (select pn.nspname || '.' || pc.relname from pg_inherits i "
     "  join pg_class pc on pc.oid = i.inhparent join pg_namespace pn on "
     "  pn.oid = pc.relnamespace where i.inhrelid = c.oid limit 1) || ' ' || "
     "  pg_get_expr(c.relpartbound, c.oid) end as partition_of, "
     "pg_get_userbyid(c.relowner) as owner, obj_description(c.oid, 'pg_class') as "
     "comment, " ARBOR_PRIVILEGES(
         "c.relacl", "r",
         "c.relowner") "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                       "where c.relkind in ('r', 'p', 'f') and" ARBOR_USER_SCHEMA(
                           "n") "and" ARBOR_NOT_EXT("pg_class", "c.oid")},
    {ObjectKind::kColumn,
     "select n.nspname || '.' || c.relname || '.' || a.attname, "
     "format_type(a.atttypid, a.atttypmod) as type, "
     "case when a.attgenerated = '' then pg_get_expr(d.adbin, d.adrelid) end as default, "
     "case when a.attnotnull then 'yes' else 'no' end as not_null, "
     "case a.attidentity when 'a' then 'always' when 'd' then 'by default' end as identity, "
     "case when a.attgenerated = 's' then pg_get_expr(d.adbin, d.adrelid) end as generated, "
     "case when a.attcollation <> 0 and a.attcollation <> t.typcollation then "
     "  (select collname from pg_collation where oid = a.attcollation) end as collation, "
     "col_description(c.oid, a.attnum) as comment, " ARBOR_PRIVILEGES(
         "a.attacl", "c",
         "c.relowner") "from pg_attribute a join pg_class c on c.oid = a.attrelid "
                       "join pg_namespace n on n.oid = c.relnamespace join pg_type t on t.oid = "
                       "a.atttypid "
                       "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
                       "where a.attnum > 0 and not a.attisdropped and c.relkind in ('r', 'p', 'f') "
                       "and" ARBOR_USER_SCHEMA("n") "and" ARBOR_NOT_EXT("pg_class", "c.oid")},
    {ObjectKind::kConstraint,
     "select n.nspname || '.' || c.relname || '.' || k.conname, "
     "case k.contype when 'p' then 'primary key' when 'u' then 'unique' "
     "  when 'f' then 'foreign key' when 'c' then 'check' when 'x' then 'exclusion' "
     "  when 't' then 'trigger' else k.contype::text end as type, "
     "pg_get_constraintdef(k.oid) as definition, "
     "obj_description(k.oid, 'pg_constraint') as comment "
     "from pg_constraint k join pg_class c on c.oid = k.conrelid "
     "join pg_namespace n on n.oid = c.relnamespace where" ARBOR_USER_SCHEMA(
         "n") "and" ARBOR_NOT_EXT("pg_class", "c.oid")},
    {ObjectKind::kIndex,
     "select n.nspname || '.' || ic.relname, pg_get_indexdef(i.indexrelid) as definition, "
     "obj_description(ic.oid, 'pg_class') as comment "
     "from pg_index i join pg_class ic on ic.oid = i.indexrelid "
     "join pg_namespace n on n.oid = ic.relnamespace where" ARBOR_USER_SCHEMA(
         "n") "and" ARBOR_NOT_EXT("pg_class", "i.indrelid")},
    {ObjectKind::kView,
     "select n.nspname || '.' || c.relname, "
     "case c.relkind when 'v' then 'view' else 'materialized view' end as kind, "
     "rtrim(ltrim(pg_get_viewdef(c.oid, true), ' '), E'\\n') as definition, "
     "pg_get_userbyid(c.relowner) as owner, obj_description(c.oid, 'pg_class') as "
     "comment, " ARBOR_PRIVILEGES(
         "c.relacl", "r",
         "c.relowner") "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                       "where c.relkind in ('v', 'm') and" ARBOR_USER_SCHEMA(
                           "n") "and" ARBOR_NOT_EXT("pg_class", "c.oid")},
    {ObjectKind::kFunction,
     "select n.nspname || '.' || p.proname || '(' || "
     "pg_get_function_identity_arguments(p.oid) || ')', "
     "case p.prokind when 'f' then 'function' when 'p' then 'procedure' "
     "  when 'a' then 'aggregate' else 'window function' end as kind, "
     "case when p.prokind = 'a' then (select format('sfunc %s, stype %s, finalfunc %s, "
     "  initcond %s', g.aggtransfn, format_type(g.aggtranstype, null), g.aggfinalfn, "
     "  g.agginitval) from pg_aggregate g where g.aggfnoid = p.oid) "
     "  else rtrim(pg_get_functiondef(p.oid), E'\\n') end as definition, "
     "pg_get_userbyid(p.proowner) as owner, obj_description(p.oid, 'pg_proc') as "
     "comment, " ARBOR_PRIVILEGES(
         "p.proacl", "f",
         "p.proowner") "from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                       "where" ARBOR_USER_SCHEMA("n") "and" ARBOR_NOT_EXT("pg_proc", "p.oid")
     // Not made by the system for another object (a range type's constructors).
     "and not exists (select 1 from pg_depend dep where dep.classid = 'pg_proc'::regclass "
     "and dep.objid = p.oid and dep.deptype = 'i')"},
    {ObjectKind::kTrigger,
     "select n.nspname || '.' || c.relname || '.' || t.tgname, "
     "pg_get_triggerdef(t.oid, true) as definition, "
     "case t.tgenabled when 'O' then 'enabled' when 'D' then 'disabled' "
     "  when 'R' then 'replica' when 'A' then 'always' end as enabled, "
     "obj_description(t.oid, 'pg_trigger') as comment "
     "from pg_trigger t join pg_class c on c.oid = t.tgrelid "
     "join pg_namespace n on n.oid = c.relnamespace where not t.tgisinternal and" ARBOR_USER_SCHEMA(
         "n") "and" ARBOR_NOT_EXT("pg_class", "c.oid")},
    {ObjectKind::kPolicy,
     "select n.nspname || '.' || c.relname || '.' || p.polname, "
     "case p.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT' when 'w' then 'UPDATE' "
     "  when 'd' then 'DELETE' else 'ALL' end as command, "
     "case when p.polpermissive then 'permissive' else 'restrictive' end as mode, "
     "(select string_agg(rn, ', ' order by rn) from (select case when r = 0 then 'public' "
     "  else pg_get_userbyid(r)::text end as rn from unnest(p.polroles) r) s) as roles, "
     "pg_get_expr(p.polqual, p.polrelid) as using, "
     "pg_get_expr(p.polwithcheck, p.polrelid) as with_check, "
     "obj_description(p.oid, 'pg_policy') as comment "
     "from pg_policy p join pg_class c on c.oid = p.polrelid "
     "join pg_namespace n on n.oid = c.relnamespace where" ARBOR_USER_SCHEMA("n")},
};

#undef ARBOR_USER_SCHEMA
#undef ARBOR_NOT_EXT
#undef ARBOR_PRIVILEGES

}  // namespace

Result<Catalog> ReadCatalog(const std::string& conninfo, const std::string& database) {
  const char* keys[] = {"dbname", database.empty() ? nullptr : "dbname", nullptr, nullptr};
  const char* values[] = {conninfo.c_str(), database.empty() ? nullptr : database.c_str(), nullptr,
                          nullptr};
  if (database.empty()) {
    keys[1] = "connect_timeout";
    values[1] = "10";
  } else {
    keys[2] = "connect_timeout";
    values[2] = "10";
  }
  std::unique_ptr<PGconn, ConnCloser> conn(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::IOError("cannot connect to read the catalog: " +
                           OneLine(conn ? PQerrorMessage(conn.get()) : "out of memory"));
  }
  auto exec = [&](const char* sql) -> Result<ResultPtr> {
    ResultPtr r(PQexec(conn.get(), sql));
    ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      return Status::IOError("reading the catalog failed: " +
                             OneLine(PQresultErrorMessage(r.get())));
    }
    return r;
  };
  // Names qualified the same way on both sides, whatever the role's search_path.
  ARBOR_RETURN_IF_ERROR(
      exec("begin isolation level repeatable read read only; set local search_path = pg_catalog")
          .status());
  Catalog out;
  for (const Query& q : kQueries) {
    ARBOR_ASSIGN_OR_RETURN(ResultPtr r, exec(q.sql));
    int rows = PQntuples(r.get()), cols = PQnfields(r.get());
    for (int i = 0; i < rows; ++i) {
      CatalogObject o{q.kind, PQgetvalue(r.get(), i, 0), {}};
      for (int j = 1; j < cols; ++j) {
        if (PQgetisnull(r.get(), i, j)) continue;
        o.attrs[PQfname(r.get(), j)] = PQgetvalue(r.get(), i, j);
      }
      AddObject(&out, std::move(o));
    }
  }
  ARBOR_RETURN_IF_ERROR(exec("commit").status());
  return out;
}

Result<std::map<std::string, std::string>> ConnInfoParts(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    std::string m = err != nullptr ? OneLine(err) : "out of memory";
    PQfreemem(err);
    return Status::InvalidArgument("not a connection string: " + m);
  }
  std::map<std::string, std::string> out;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr && o->val[0] != '\0') out[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  return out;
}

}  // namespace arbor::datadiff
