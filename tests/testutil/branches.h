#pragma once

// Branch and SQL helpers for the integration tests that compare branches' rows (data diff,
// merge, the data API): each opens a fresh connection as `owner` through the proxy.

#include <gtest/gtest.h>

#include <string>

#include "testutil/daemon.h"

namespace arbor::testutil {

// A branch of `parent`, made now (at the parent's head), that never expires.
inline void Fork(Daemon* daemon, const std::string& branch, const std::string& parent) {
  auto made = daemon->Call(
      "POST", "projects/default/branches?branch_id=" + branch,
      {{"spec", {{"source_branch", "projects/default/branches/" + parent}, {"no_expiry", true}}}});
  ASSERT_EQ(made.status, 200) << made.body.dump();
}

inline void ExecOn(Daemon* daemon, const std::string& branch, const std::string& sql) {
  Pg pg(daemon->Connect(branch));
  ASSERT_EQ(pg.TryExec(sql), "") << branch << ": " << sql;
}

inline std::string OneOn(Daemon* daemon, const std::string& branch, const std::string& sql) {
  Pg pg(daemon->Connect(branch));
  return pg.One(sql);
}

// A checksum of every row of `table` on `branch`.
inline std::string RowsSum(Daemon* daemon, const std::string& branch, const std::string& table) {
  return OneOn(
      daemon, branch,
      "select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from " + table + " t");
}

}  // namespace arbor::testutil
