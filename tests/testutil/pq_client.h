#pragma once

// Test helpers, header-only, for a raw libpq connection: one query's first value, and what
// the client sees when the server ends its session while the client is idle (used by the
// proxy's library-level and end-to-end tests).

#include <libpq-fe.h>
#include <poll.h>

#include <string>

namespace arbor::testutil {

// The first value of `sql`'s result on `c`, or "ERROR: " and the server's message.
inline std::string QueryOne(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  std::string out = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0
                        ? PQgetvalue(r, 0, 0)
                        : std::string("ERROR: ") + PQresultErrorMessage(r);
  PQclear(r);
  return out;
}

// Collects what the server says on `c` (libpq reports an error that arrives while the client
// is idle as a notice) into `*into`, which must outlive `c`.
inline void CollectNotices(PGconn* c, std::string* into) {
  PQsetNoticeReceiver(
      c,
      [](void* arg, const PGresult* r) {
        *static_cast<std::string*>(arg) += PQresultErrorMessage(r);
      },
      into);
}

// Waits, sending nothing, until the server closes `c` (at most ~10 s), parsing what arrives
// so that a FATAL reaches the notice receiver. True if the connection was closed.
inline bool AwaitServerClose(PGconn* c) {
  for (int i = 0; i < 100; ++i) {
    pollfd p{PQsocket(c), POLLIN, 0};
    poll(&p, 1, 100);
    bool closed = PQconsumeInput(c) == 0;
    PQisBusy(c);  // parses what arrived, which reports the FATAL
    if (closed) return true;
  }
  return false;
}

}  // namespace arbor::testutil
