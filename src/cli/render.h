#pragma once

// Human output: aligned tables, field lists and the branch tree. Pure functions of their
// input (and `now_us`), so that tests can compare whole screens.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "api/types.h"

namespace arbor::cli {

using Row = std::vector<std::string>;

// Columns left-aligned and separated by two spaces; widths count UTF-8 code points, so
// tree lines align. No trailing spaces. Every row ends with '\n'.
std::string RenderTable(const Row& header, const std::vector<Row>& rows);

// "key   value" lines, keys padded to the longest.
std::string RenderFields(const std::vector<std::pair<std::string, std::string>>& fields);

// The last part of a resource name: "projects/p/branches/dev" -> "dev".
std::string ShortName(const std::string& name);

// "in 55m", "never", "expired 3m ago".
std::string ExpiryText(const api::Branch& b, int64_t now_us);

// The project's branches drawn as a tree (parent -> children, with ├── └── │), one line each
// with the default marker, protection, state, endpoint state, age, expiry, logical size and
// bytes written. Roots: the default branch first, then by creation time; children by
// creation time. `endpoint_states` maps a branch's full name to its endpoints' states
// ("ACTIVE"; "-" when missing). A branch whose parent is not listed is drawn as a root.
std::string RenderBranchTree(const std::vector<api::Branch>& branches,
                             const std::map<std::string, std::string>& endpoint_states,
                             int64_t now_us);

// The fields of one branch, for get/create/reset.
std::string RenderBranch(const api::Branch& b, const std::vector<api::Endpoint>& endpoints,
                         int64_t now_us);

// A table of endpoints: BRANCH ENDPOINT STATE ADDRESS SUSPEND.
std::string RenderEndpoints(const std::vector<api::Endpoint>& endpoints);

}  // namespace arbor::cli
