#pragma once

// POST projects/P/branches/B:bisect (docs/api.md, "Bisect"): finds the commit that made a
// check go false, by a search over the branch's WAL writes (Engine::HistoryPoints), each
// probe on a read-only endpoint pinned at one state.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/status.h"
#include "control/engine.h"
#include "proxy/auth/token.h"

namespace arbor::control {

struct BisectRequest {
  std::string check;  // one boolean: true is good
  std::optional<int64_t> since_us, until_us;
  std::string database = "postgres";
};

// Runs the bisection. Each probe logs in as the role `owner` through the proxy with a token
// for the branch's endpoint, exactly as a client would, so the check has no more rights than
// the caller's credentials give; one probe a round, on standbys walked forward
// (Engine::AdvancePinnedEndpoint); each pinned endpoint it made is deleted after. Answers {"found":
// true, last_good_time, last_good_time_us, last_good_lsn?, first_bad_time, first_bad_time_us,
// first_bad_lsn, first_bad_commit_time?, points, probes, standbys, walks} or {"found": false,
// "reason": ...} when the check never turns false in the window (or is already false at its start).
// InvalidArgument for a check that is not one boolean, or that fails at the window's start;
// NotFound and OutOfRange as Engine::HistoryPoints.
[[nodiscard]] Result<nlohmann::json> RunBisect(Engine* engine,
                                               const proxy::auth::TokenSigner* tokens,
                                               const std::string& project,
                                               const std::string& branch,
                                               const BisectRequest& request);

}  // namespace arbor::control
