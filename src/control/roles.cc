// Roles: the Engine's role methods and the bootstrap that runs at each compute start. See
// engine.h ("roles") for the contract and docs/security.md for why Arbor holds SCRAM secrets.
#include <algorithm>
#include <regex>

#include "common/clock.h"
#include "common/log.h"
#include "control/engine.h"
#include "proxy/auth/scram.h"

namespace arbor::control {
namespace {

std::string RoleName(const std::string& p, const std::string& b, const std::string& r) {
  return "projects/" + p + "/branches/" + b + "/roles/" + r;
}

// Names Arbor puts into SQL: quoted as identifiers, and limited so that no quoting can be
// escaped. Roles made with SQL may have other names; they just cannot get an Arbor password.
Status ValidateRoleName(const std::string& name) {
  static const std::regex kName("[a-z_][a-z0-9_-]{0,62}");
  if (!std::regex_match(name, kName)) {
    return Status::InvalidArgument("role name '" + name +
                                   "' must be 1-63 lowercase letters, digits, '_' or '-', "
                                   "starting with a letter or '_'");
  }
  if (name == compute::kSuperuser || name.rfind("pg_", 0) == 0) {
    return Status::InvalidArgument("role name '" + name +
                                   "' is reserved (postgres is Arbor's superuser; pg_ names "
                                   "are PostgreSQL's)");
  }
  return Status::Ok();
}

// Makes `owner` and hands it what the bootstrap superuser owns outside the system schemas:
// branches made before roles existed had every user object owned by `postgres`.
constexpr const char* kMakeOwner = R"sql(
DO $arbor$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'owner') THEN
    CREATE ROLE owner LOGIN CREATEDB CREATEROLE;
  ELSE
    ALTER ROLE owner LOGIN CREATEDB CREATEROLE NOSUPERUSER;
  END IF;
END $arbor$;
SELECT datname FROM pg_database WHERE datallowconn AND datname <> 'template1'
)sql";

constexpr const char* kGiveToOwner = R"sql(
DO $arbor$
DECLARE r record;
BEGIN
  IF (SELECT datdba FROM pg_database WHERE datname = current_database()) = 10 THEN
    EXECUTE format('ALTER DATABASE %I OWNER TO owner', current_database());
  END IF;
  FOR r IN
    SELECT format('ALTER SCHEMA %I OWNER TO owner', nspname) AS cmd FROM pg_namespace
     WHERE nspowner = 10 AND nspname NOT IN ('pg_catalog', 'information_schema')
       AND nspname NOT LIKE 'pg\_%'
    UNION ALL
    SELECT format('ALTER %s %s OWNER TO owner',
                  CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                 ELSE 'TABLE' END, c.oid::regclass)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relowner = 10 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                         AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
    UNION ALL
    SELECT format('ALTER ROUTINE %s OWNER TO owner', p.oid::regprocedure)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.proowner = 10
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                         AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT format('ALTER TYPE %s OWNER TO owner', t.oid::regtype)
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.typowner = 10
       AND (t.typtype IN ('d', 'e', 'r')
            OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                         AND d.objid = t.oid AND d.deptype = 'e')
  LOOP
    BEGIN
      EXECUTE r.cmd;
    EXCEPTION WHEN others THEN
      RAISE WARNING 'arbor: % failed: %', r.cmd, SQLERRM;
    END;
  END LOOP;
END $arbor$
)sql";

}  // namespace

namespace {

// A role's record holding `secret`, not applied to postgres yet.
RoleRecord RoleWithSecret(const std::string& project, const std::string& branch,
                          const std::string& name, const proxy::auth::ScramSecret& secret) {
  RoleRecord r;
  r.project = project;
  r.branch = branch;
  r.name = name;
  r.create_time_us = WallMicros();
  r.password_time_us = r.create_time_us;
  r.salt = secret.salt;
  r.iterations = secret.iterations;
  r.client_key = secret.client_key;
  r.stored_key = secret.stored_key;
  r.server_key = secret.server_key;
  r.applied = false;
  return r;
}

}  // namespace

Result<std::pair<RoleRecord, std::string>> Engine::FreshRole(const std::string& project,
                                                             const std::string& branch,
                                                             const std::string& name) {
  std::string password = NewPassword();
  ARBOR_ASSIGN_OR_RETURN(proxy::auth::ScramSecret secret,
                         proxy::auth::ScramSecret::FromPassword(password));
  return std::make_pair(RoleWithSecret(project, branch, name, secret), password);
}

Result<std::vector<RoleRecord>> Engine::FreshRolesLocked(const std::string& project,
                                                         const std::string& from,
                                                         const std::string& to) {
  std::vector<RoleRecord> out;
  for (const auto& [k, r] : catalog_.roles) {
    if (r.project != project || r.branch != from) continue;
    // The password is known to no one (tokens log in, or a reset gives one), so no PBKDF2:
    // it would cost every create milliseconds of CPU under the engine's lock.
    ARBOR_ASSIGN_OR_RETURN(proxy::auth::ScramSecret secret,
                           proxy::auth::ScramSecret::Unguessable());
    RoleRecord fresh = RoleWithSecret(project, to, r.name, secret);
    fresh.create_time_us = r.create_time_us;
    out.push_back(fresh);
  }
  return out;
}

Result<std::vector<RoleRecord>> Engine::RolesAfterReplaceLocked(const std::string& project,
                                                                const std::string& id,
                                                                const std::string& parent) {
  std::vector<RoleRecord> out;
  for (const auto& [k, r] : catalog_.roles) {
    if (r.project != project || r.branch != id) continue;
    RoleRecord again = r;
    again.applied = false;
    out.push_back(again);
  }
  if (parent.empty()) return out;
  ARBOR_ASSIGN_OR_RETURN(std::vector<RoleRecord> theirs, FreshRolesLocked(project, parent, id));
  for (const RoleRecord& r : theirs) {
    if (!catalog_.roles.count({project, id, r.name})) out.push_back(r);
  }
  return out;
}

std::optional<std::string> Engine::RunningComputeLocked(const std::string& project,
                                                        const std::string& branch) {
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project != project || e.branch != branch) continue;
    auto live = live_.find(k);
    if (live == live_.end() || !live->second.running) continue;
    if (supervisor_->State(ComputeId(e)) == compute::ComputeState::kRunning) return ComputeId(e);
  }
  return std::nullopt;
}

Status Engine::ApplyRole(const std::string& cid, const RoleRecord& role) {
  proxy::auth::ScramSecret secret;
  secret.salt = role.salt;
  secret.iterations = role.iterations;
  secret.stored_key = role.stored_key;
  secret.server_key = role.server_key;
  // The name passed ValidateRoleName and the verifier is base64 with '$' and ':', so neither
  // can leave its quotes.
  const std::string& n = role.name;
  std::string sql =
      "DO $arbor$ BEGIN\n"
      "  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '" +
      n +
      "' AND rolsuper) THEN\n"
      "    RAISE EXCEPTION 'role \"" +
      n +
      "\" is a superuser; Arbor gives no superuser a password';\n"
      "  END IF;\n"
      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '" +
      n +
      "') THEN\n"
      "    CREATE ROLE \"" +
      n +
      "\" LOGIN;\n"
      "  END IF;\n"
      "  ALTER ROLE \"" +
      n + "\" LOGIN PASSWORD '" + secret.Verifier() +
      "';\n"
      "END $arbor$";
  auto r = supervisor_->Query(cid, "postgres", sql);
  if (!r.ok()) {
    return Status::FailedPrecondition("setting the password of role " + n + ": " +
                                      r.status().message());
  }
  return Status::Ok();
}

Status Engine::Bootstrap(StartPlan& plan) {
  const std::string& cid = plan.spec.id;
  if (!plan.owner_ready) {
    auto dbs = supervisor_->Query(cid, "postgres", kMakeOwner);
    if (!dbs.ok()) return Status::Internal("making the role owner: " + dbs.status().message());
    for (const auto& row : *dbs) {
      auto given = supervisor_->Query(cid, row.at(0), kGiveToOwner);
      if (!given.ok()) {
        return Status::Internal("giving the objects of database " + row.at(0) +
                                " to owner: " + given.status().message());
      }
    }
  }
  for (const RoleRecord& r : plan.roles) {
    Status st = ApplyRole(cid, r);
    if (!st.ok()) {
      log::warn("engine: {}: {}", RoleName(r.project, r.branch, r.name), st.message());
      plan.refused.push_back(r.name);
    }
  }
  return Status::Ok();
}

void Engine::RecordBootstrapLocked(const StartPlan& plan) {
  const EndpointRecord& ep = plan.ep;
  storage::MetaWrites writes;
  auto b = catalog_.branches.find({ep.project, ep.branch});
  BranchRecord branch;
  if (b != catalog_.branches.end() && !b->second.owner_ready) {
    branch = b->second;
    branch.owner_ready = true;
    writes.push_back(Catalog::Put(branch));
  }
  std::vector<RoleRecord> applied;
  std::vector<std::string> dropped;
  for (const RoleRecord& r : plan.roles) {
    auto it = catalog_.roles.find({r.project, r.branch, r.name});
    // Changed again while starting: that change is not applied yet.
    if (it == catalog_.roles.end() || it->second.stored_key != r.stored_key) continue;
    bool refused =
        std::find(plan.refused.begin(), plan.refused.end(), r.name) != plan.refused.end();
    if (refused) {
      // A password that cannot be applied must not be accepted by the proxy either.
      writes.push_back(Catalog::EraseRole(r.project, r.branch, r.name));
      dropped.push_back(r.name);
    } else {
      RoleRecord done = it->second;
      done.applied = true;
      writes.push_back(Catalog::Put(done));
      applied.push_back(done);
    }
  }
  if (writes.empty()) return;
  Status st = store_->WriteMeta(writes);
  if (!st.ok()) {
    log::warn("engine: recording the roles of {}: {}", ComputeId(ep), st.ToString());
    return;
  }
  if (!branch.id.empty()) b->second = branch;
  for (const RoleRecord& r : applied) catalog_.roles[{r.project, r.branch, r.name}] = r;
  for (const std::string& n : dropped) catalog_.roles.erase({ep.project, ep.branch, n});
}

// ---- the roles resource ----

Result<std::pair<RoleRecord, std::string>> Engine::CreateRole(const std::string& project,
                                                              const std::string& branch,
                                                              const std::string& name) {
  ARBOR_RETURN_IF_ERROR(ValidateRoleName(name));
  std::unique_lock l(mu_);
  // The claim keeps the compute from being suspended under the SQL, and other role changes
  // of the branch out, so postgres and the catalog see them in the same order.
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, branch, Work::kRoles));
  if (catalog_.roles.count({project, branch, name})) {
    return Status::AlreadyExists("role " + RoleName(project, branch, name) + " already exists");
  }
  ARBOR_ASSIGN_OR_RETURN(auto fresh, FreshRole(project, branch, name));
  if (auto cid = RunningComputeLocked(project, branch)) {
    ARBOR_RETURN_IF_ERROR(Unlocked(l, [&] { return ApplyRole(*cid, fresh.first); }));
    fresh.first.applied = true;
  }
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(fresh.first)}));
  catalog_.roles[{project, branch, name}] = fresh.first;
  return fresh;
}

std::vector<RoleRecord> Engine::ListRoles(const std::string& project, const std::string& branch) {
  std::lock_guard l(mu_);
  std::vector<RoleRecord> out;
  for (const auto& [k, r] : catalog_.roles) {
    if (r.project == project && r.branch == branch) out.push_back(r);
  }
  return out;
}

Result<RoleRecord> Engine::GetRole(const std::string& project, const std::string& branch,
                                   const std::string& name) {
  std::lock_guard l(mu_);
  ARBOR_RETURN_IF_ERROR(FindBranch(project, branch).status());
  auto it = catalog_.roles.find({project, branch, name});
  if (it == catalog_.roles.end()) {
    return Status::NotFound("role " + RoleName(project, branch, name) + " does not exist");
  }
  return it->second;
}

Status Engine::DeleteRole(const std::string& project, const std::string& branch,
                          const std::string& name) {
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, branch, Work::kRoles));
  if (!catalog_.roles.count({project, branch, name})) {
    return Status::NotFound("role " + RoleName(project, branch, name) + " does not exist");
  }
  if (name == compute::kOwnerRole) {
    return Status::FailedPrecondition("role owner is the project's own role and cannot be deleted");
  }
  // Dropping needs the branch's postgres; start it (without the lock) if it is suspended.
  std::optional<std::string> cid = RunningComputeLocked(project, branch);
  if (!cid) {
    std::vector<EndpointRecord> eps = BranchEndpointsLocked(project, branch);
    if (eps.empty()) {
      return Status::FailedPrecondition("branch has no endpoint to drop the role on");
    }
    ARBOR_RETURN_IF_ERROR(StartWithLock(l, project, branch, eps.front().id, true).status());
    cid = ComputeId(eps.front());
  }
  auto dropped = Unlocked(l, [&] {
    return supervisor_->Query(*cid, "postgres",
                              "DROP ROLE IF EXISTS \"" + name + "\"");  // name: ValidateRoleName
  });
  if (!dropped.ok()) {
    return Status::FailedPrecondition("cannot drop role " + name + ": " +
                                      dropped.status().message());
  }
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::EraseRole(project, branch, name)}));
  catalog_.roles.erase({project, branch, name});
  return Status::Ok();
}

Result<std::pair<RoleRecord, std::string>> Engine::ResetRolePassword(const std::string& project,
                                                                     const std::string& branch,
                                                                     const std::string& name) {
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, branch, Work::kRoles));
  auto it = catalog_.roles.find({project, branch, name});
  if (it == catalog_.roles.end()) {
    return Status::NotFound("role " + RoleName(project, branch, name) +
                            " does not exist (a role made with SQL gets an Arbor password with "
                            "`arbor role create`)");
  }
  ARBOR_ASSIGN_OR_RETURN(auto fresh, FreshRole(project, branch, name));
  fresh.first.create_time_us = it->second.create_time_us;
  if (auto cid = RunningComputeLocked(project, branch)) {
    ARBOR_RETURN_IF_ERROR(Unlocked(l, [&] { return ApplyRole(*cid, fresh.first); }));
    fresh.first.applied = true;
  }
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(fresh.first)}));
  catalog_.roles[{project, branch, name}] = fresh.first;
  return fresh;
}

}  // namespace arbor::control
