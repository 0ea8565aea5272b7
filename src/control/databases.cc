// Databases: the Engine's database methods. See engine.h ("databases") for the contract and
// docs/security.md for why the SQL runs as Arbor's superuser.
#include <string_view>

#include "control/engine.h"
#include "control/sql_quote.h"

namespace arbor::control {
namespace {

std::string DatabaseName(const std::string& p, const std::string& b, const std::string& d) {
  return "projects/" + p + "/branches/" + b + "/databases/" + d;
}

bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t n = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

// Any PostgreSQL identifier that fits its 63-byte limit (longer ones PostgreSQL would
// truncate, so the database made would not be the one named) and that an API path can
// carry. Every use in SQL is quoted (QuoteIdent, QuoteLiteral), so no name can leave its
// quotes.
Status ValidateDatabaseName(const std::string& name, const char* what) {
  if (name.empty() || name.size() > 63) {
    return Status::InvalidArgument(std::string(what) + " '" + name + "' must be 1 to 63 bytes");
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f || c == '/' || c == ':') {
      return Status::InvalidArgument(std::string(what) +
                                     " must not hold control characters, '/' or ':'");
    }
  }
  if (!ValidUtf8(name)) return Status::InvalidArgument(std::string(what) + " must be UTF-8");
  return Status::Ok();
}

constexpr const char* kListSql =
    "SELECT d.datname, pg_get_userbyid(d.datdba) FROM pg_database d "
    "WHERE d.datname NOT IN ('template0', 'template1')";

}  // namespace

Result<std::string> Engine::BranchComputeLocked(std::unique_lock<std::mutex>& l,
                                                const std::string& project,
                                                const std::string& branch, const std::string& why) {
  for (const EndpointRecord& e : BranchEndpointsLocked(project, branch)) {
    if (!IsReadWrite(e)) continue;  // a hot standby: read only
    ARBOR_RETURN_IF_ERROR(StartWithLock(l, project, branch, e.id, true).status());
    return ComputeId(e);
  }
  return Status::FailedPrecondition("branch projects/" + project + "/branches/" + branch +
                                    " has no read-write endpoint to " + why +
                                    " on (create one with `arbor endpoint create`)");
}

Result<DatabaseInfo> Engine::CreateDatabase(const std::string& project, const std::string& branch,
                                            const std::string& name, const std::string& owner) {
  ARBOR_RETURN_IF_ERROR(ValidateDatabaseName(name, "database name"));
  ARBOR_RETURN_IF_ERROR(ValidateDatabaseName(owner, "owner_name"));
  if (owner.rfind("pg_", 0) == 0) {
    return Status::InvalidArgument("owner_name: pg_ roles are PostgreSQL's own");
  }
  std::unique_lock l(mu_);
  // The claim keeps the compute from being suspended under the SQL.
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim,
                         ClaimBranchLocked(l, project, branch, Work::kDatabases));
  ARBOR_ASSIGN_OR_RETURN(std::string cid,
                         BranchComputeLocked(l, project, branch, "create the database"));
  return Unlocked(l, [&]() -> Result<DatabaseInfo> {
    auto role = supervisor_->Query(
        cid, "postgres", "SELECT rolsuper FROM pg_roles WHERE rolname = " + QuoteLiteral(owner));
    if (!role.ok()) return role.status();
    if (role->empty()) {
      return Status::InvalidArgument("owner_name: role " + owner + " does not exist on branch " +
                                     branch + " (create it with `arbor role create`)");
    }
    if (role->at(0).at(0) == "t") {
      return Status::InvalidArgument("owner_name: role " + owner +
                                     " is a superuser; a database must belong to an ordinary "
                                     "role such as owner");
    }
    auto exists = supervisor_->Query(
        cid, "postgres", "SELECT 1 FROM pg_database WHERE datname = " + QuoteLiteral(name));
    if (!exists.ok()) return exists.status();
    if (!exists->empty()) {
      return Status::AlreadyExists("database " + DatabaseName(project, branch, name) +
                                   " already exists");
    }
    auto made = supervisor_->Query(
        cid, "postgres", "CREATE DATABASE " + QuoteIdent(name) + " OWNER " + QuoteIdent(owner));
    if (!made.ok()) {
      return Status::FailedPrecondition("cannot create database " + name + ": " +
                                        made.status().message());
    }
    return DatabaseInfo{project, branch, name, owner};
  });
}

Result<std::vector<DatabaseInfo>> Engine::ListDatabases(const std::string& project,
                                                        const std::string& branch) {
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim,
                         ClaimBranchLocked(l, project, branch, Work::kDatabases));
  ARBOR_ASSIGN_OR_RETURN(std::string cid,
                         BranchComputeLocked(l, project, branch, "list the databases"));
  auto rows = Unlocked(l, [&] {
    return supervisor_->Query(cid, "postgres", std::string(kListSql) + " ORDER BY 1");
  });
  if (!rows.ok()) return rows.status();
  std::vector<DatabaseInfo> out;
  for (const auto& row : *rows) out.push_back(DatabaseInfo{project, branch, row.at(0), row.at(1)});
  return out;
}

Result<DatabaseInfo> Engine::GetDatabase(const std::string& project, const std::string& branch,
                                         const std::string& name) {
  ARBOR_RETURN_IF_ERROR(ValidateDatabaseName(name, "database name"));
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim,
                         ClaimBranchLocked(l, project, branch, Work::kDatabases));
  ARBOR_ASSIGN_OR_RETURN(std::string cid,
                         BranchComputeLocked(l, project, branch, "read the database"));
  auto rows = Unlocked(l, [&] {
    return supervisor_->Query(cid, "postgres",
                              std::string(kListSql) + " AND d.datname = " + QuoteLiteral(name));
  });
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    return Status::NotFound("database " + DatabaseName(project, branch, name) + " does not exist");
  }
  return DatabaseInfo{project, branch, name, rows->at(0).at(1)};
}

Status Engine::DeleteDatabase(const std::string& project, const std::string& branch,
                              const std::string& name, bool force) {
  ARBOR_RETURN_IF_ERROR(ValidateDatabaseName(name, "database name"));
  if (name == "postgres" || name == "template0" || name == "template1") {
    return Status::FailedPrecondition(
        "database " + name +
        (name == "postgres" ? " is the branch's default database (the one clients and Arbor "
                              "connect to) and cannot be deleted"
                            : " is a PostgreSQL template and cannot be deleted"));
  }
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim,
                         ClaimBranchLocked(l, project, branch, Work::kDatabases));
  ARBOR_ASSIGN_OR_RETURN(std::string cid,
                         BranchComputeLocked(l, project, branch, "drop the database"));
  const std::string busy = "database " + DatabaseName(project, branch, name) +
                           " has open connections; close them, or delete it with force "
                           "(?force=true, `arbor database delete --force`), which ends them";
  return Unlocked(l, [&]() -> Status {
    auto rows = supervisor_->Query(
        cid, "postgres",
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = " + QuoteLiteral(name) +
            ") FROM pg_database WHERE datname = " + QuoteLiteral(name));
    if (!rows.ok()) return rows.status();
    if (rows->empty()) {
      return Status::NotFound("database " + DatabaseName(project, branch, name) +
                              " does not exist");
    }
    if (!force && rows->at(0).at(0) != "0") return Status::FailedPrecondition(busy);
    auto dropped = supervisor_->Query(
        cid, "postgres", "DROP DATABASE " + QuoteIdent(name) + (force ? " WITH (FORCE)" : ""));
    if (!dropped.ok()) {
      // A session that connected after the count.
      if (dropped.status().message().find("being accessed by other users") != std::string::npos) {
        return Status::FailedPrecondition(busy);
      }
      return Status::FailedPrecondition("cannot drop database " + name + ": " +
                                        dropped.status().message());
    }
    return Status::Ok();
  });
}

}  // namespace arbor::control
