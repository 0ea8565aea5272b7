/*
 * arbor_guard: a PostgreSQL 15 module every Arbor compute loads (shared_preload_libraries).
 *
 * Clients log in as ordinary roles: `owner` has CREATEDB and CREATEROLE but is no superuser.
 * In PostgreSQL 15, CREATEROLE also lets a role grant membership in any non-superuser role,
 * the predefined ones included, and three of those reach outside the database:
 *   pg_execute_server_program  COPY ... TO/FROM PROGRAM: commands as the compute's OS user
 *   pg_read_server_files       COPY ... FROM '<file>', pg_read_file(): the server's files
 *   pg_write_server_files      COPY ... TO '<file>': writes them
 * A user's role must never reach the OS (docs/security.md), so this module refuses, for any
 * role that is not a superuser, every statement that would add a member to those roles:
 * GRANT <role> TO ..., CREATE ROLE ... IN ROLE <role>, and ALTER GROUP <role> ADD USER ....
 * Arbor's own superuser is not limited. Nothing else is changed: PostgreSQL itself is the
 * unmodified Debian build, and this is its documented extension point (ProcessUtility_hook).
 * The module also takes a client's socket from the proxy when asked to (arbor_handoff.c).
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"

PG_MODULE_MAGIC;

void _PG_init(void);
void arbor_handoff_init(void); /* arbor_handoff.c */

static ProcessUtility_hook_type previous_hook = NULL;

static const char *const kForbidden[] = {
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
};

static void
refuse_if_forbidden(const char *role)
{
    if (role == NULL)
        return;
    for (size_t i = 0; i < lengthof(kForbidden); i++)
    {
        if (strcmp(role, kForbidden[i]) == 0)
            ereport(ERROR,
                    (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                     errmsg("permission denied to grant role \"%s\"", role),
                     errdetail("On Arbor, no role but Arbor's own superuser may reach the "
                               "server's files or programs.")));
    }
}

static const char *
rolespec_name(Node *node)
{
    if (node == NULL || !IsA(node, RoleSpec))
        return NULL;
    RoleSpec *spec = (RoleSpec *) node;
    return spec->roletype == ROLESPEC_CSTRING ? spec->rolename : NULL;
}

static void
check_statement(Node *stmt)
{
    ListCell *lc;

    if (IsA(stmt, GrantRoleStmt))
    {
        GrantRoleStmt *grant = (GrantRoleStmt *) stmt;
        if (!grant->is_grant)
            return;
        foreach (lc, grant->granted_roles)
        {
            AccessPriv *priv = (AccessPriv *) lfirst(lc);
            refuse_if_forbidden(priv->priv_name);
        }
    }
    else if (IsA(stmt, CreateRoleStmt))
    {
        CreateRoleStmt *create = (CreateRoleStmt *) stmt;
        foreach (lc, create->options)
        {
            DefElem *opt = (DefElem *) lfirst(lc);
            ListCell *member;
            /* IN ROLE (and IN GROUP): the new role becomes a member of these. */
            if (strcmp(opt->defname, "addroleto") != 0 || opt->arg == NULL)
                continue;
            foreach (member, (List *) opt->arg)
                refuse_if_forbidden(rolespec_name(lfirst(member)));
        }
    }
    else if (IsA(stmt, AlterRoleStmt))
    {
        AlterRoleStmt *alter = (AlterRoleStmt *) stmt;
        foreach (lc, alter->options)
        {
            DefElem *opt = (DefElem *) lfirst(lc);
            /* ALTER GROUP <role> ADD USER ...: members are added to the altered role. */
            if (strcmp(opt->defname, "rolemembers") == 0 && alter->action > 0)
                refuse_if_forbidden(rolespec_name((Node *) alter->role));
        }
    }
}

static void
arbor_guard_utility(PlannedStmt *pstmt, const char *query_string, bool read_only_tree,
                    ProcessUtilityContext context, ParamListInfo params,
                    QueryEnvironment *query_env, DestReceiver *dest, QueryCompletion *qc)
{
    if (!superuser())
        check_statement(pstmt->utilityStmt);
    if (previous_hook)
        previous_hook(pstmt, query_string, read_only_tree, context, params, query_env, dest,
                      qc);
    else
        standard_ProcessUtility(pstmt, query_string, read_only_tree, context, params,
                                query_env, dest, qc);
}

void
_PG_init(void)
{
    if (!process_shared_preload_libraries_in_progress)
        ereport(ERROR,
                (errmsg("arbor_guard must be loaded by shared_preload_libraries")));
    previous_hook = ProcessUtility_hook;
    ProcessUtility_hook = arbor_guard_utility;
    arbor_handoff_init();
}
