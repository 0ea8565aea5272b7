#pragma once

// libpq handles that close themselves, and a server's message as one line: for src/datadiff
// and the daemon's own libpq clients (bisect's probes).

#include <libpq-fe.h>

#include <memory>
#include <string>

namespace arbor::datadiff {

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultCloser {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;
using ResultPtr = std::unique_ptr<PGresult, ResultCloser>;

// `m` without its trailing newline and spaces, its lines joined by spaces.
inline std::string OneLine(std::string m) {
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  for (char& c : m) {
    if (c == '\n') c = ' ';
  }
  return m;
}

}  // namespace arbor::datadiff
