#pragma once

// The proxy's local front door (docs/proxy.md, "Clients on this host"): a client on the
// daemon's host reaches an endpoint through a unix socket in the daemon's socket directory
// instead of TCP. The CLI uses it for `arbor psql`, `arbor run` and the git hook, and prints it
// with `arbor connection-string --local`.

#include <string>

#include "api/client.h"
#include "cli/session.h"
#include "common/status.h"

namespace arbor::cli {

// The socket directory through which this client reaches `url`'s endpoint (its port), or
// FailedPrecondition saying why it cannot: the daemon has no local socket, its API is not on
// loopback, the socket is not on this host or not reachable by this OS user, or
// ARBOR_LOCAL_SOCKET=0 turned it off.
[[nodiscard]] Result<std::string> LocalSocketDir(const Session& s, const api::ApiClient& c,
                                                 const std::string& url);

// `url` (postgresql://USER[:PASSWORD]@HOST:PORT/DB) through the socket directory `dir`: libpq
// and node-postgres take `?host=DIR` over the address, which stays as the fallback for a
// client that ignores it.
std::string WithSocketDir(const std::string& url, const std::string& dir);

}  // namespace arbor::cli
