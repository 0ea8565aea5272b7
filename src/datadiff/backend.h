#pragma once

// What the data diff and the data merge (diff.h, merge.h) need of Arbor: a postgres
// connection to an endpoint, an endpoint pinned in a branch's past, a branch's fork point, and
// which pages two endpoints may differ in. The CLI implements it over the REST API
// (src/cli), the daemon over its engine (src/control), so both run the same operation.
// An operation calls its backend from the one thread it runs on; implementations need not be
// thread-safe.

#include <cstdint>
#include <optional>
#include <string>

#include "api/names.h"
#include "api/types.h"
#include "common/status.h"

namespace arbor::datadiff {

// A branch's read-write endpoint, which the merge reads and writes.
inline constexpr const char* kPrimaryEndpoint = "primary";

// Where a branch was forked from its parent.
struct ForkPoint {
  std::string parent;  // the parent's full name, projects/P/branches/B; empty: a root branch
  std::optional<int64_t> time_us;
  std::optional<Lsn> lsn;  // only when the branch was made at an LSN
};

// An endpoint pinned at a branch's past state, and its label for people: BRANCH@TIME (RFC 3339)
// or BRANCH@lsn:X/Y.
struct PinnedSide {
  api::EndpointName endpoint;
  std::string label;
};

// BRANCH@lsn:X/Y when `lsn` is set, else BRANCH@TIME (RFC 3339).
std::string PinnedLabel(const std::string& branch, std::optional<int64_t> time_us,
                        std::optional<Lsn> lsn);

class Backend {
 public:
  virtual ~Backend() = default;
  // The branch's fork point. NotFound when there is no such branch.
  [[nodiscard]] virtual Result<ForkPoint> ForkOf(const api::BranchName& branch) = 0;
  // A postgresql:// URL that logs in to `endpoint` as the role owner (with a fresh token as
  // its password), once the endpoint is started. `to_write`: the endpoint is the merge's
  // target; whether the caller may write it is checked before it is started.
  [[nodiscard]] virtual Result<std::string> Connect(const api::EndpointName& endpoint,
                                                    bool to_write) = 0;
  // The branch's read-only endpoint pinned at `time_us` or `lsn` (exactly one), made if
  // missing; it deletes itself once idle.
  [[nodiscard]] virtual Result<PinnedSide> Pin(const api::BranchName& branch,
                                               std::optional<int64_t> time_us,
                                               std::optional<Lsn> lsn) = 0;
  // GET .../changed_pages between two endpoints of one project (docs/api.md).
  [[nodiscard]] virtual Result<api::ChangedPages> ChangedPages(const api::EndpointName& a,
                                                               const api::EndpointName& b) = 0;
  // A line saying what takes a while ("Reading public.t in full on both sides...").
  virtual void Note(const std::string& line) = 0;
};

// Why an operation did not do what was asked although nothing failed. The CLI and the API map
// each kind to an exit status and an HTTP status (docs/cli.md, docs/api.md).
enum class Refusal {
  kNone,
  kBadTable,     // a table asked for is not there: a usage error (2); 400
  kUnsupported,  // the merge cannot be done as asked (not the parent, schemas differ): 2; 412
  kTargetMoved,  // the target changed while it was merged into; nothing changed: 1; 409
  kApplyFailed,  // PostgreSQL refused the merge's statements; rolled back: 4; 409
};

}  // namespace arbor::datadiff
