#pragma once

// Reads a database's catalog into a schema_diff.h snapshot, through libpq. Everything the
// diff covers is read in one read-only, repeatable-read transaction, so the snapshot is
// consistent; system schemas and the objects of extensions (other than the extension
// itself) are left out. Not thread-safe; one connection per call.

#include <map>
#include <string>

#include "common/status.h"
#include "datadiff/schema_diff.h"

namespace arbor::datadiff {

// `conninfo` is a postgresql:// URL; `database`, when not empty, replaces its database.
// IOError naming the server's message when it cannot connect or a query fails.
[[nodiscard]] Result<Catalog> ReadCatalog(const std::string& conninfo, const std::string& database);

// The parts of a connection string (host, port, user, password, dbname, ...) as libpq
// reads them; InvalidArgument when it is not one.
[[nodiscard]] Result<std::map<std::string, std::string>> ConnInfoParts(const std::string& conninfo);

}  // namespace arbor::datadiff
