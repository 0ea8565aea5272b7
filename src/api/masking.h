#pragma once

// Masked branches (docs/api.md, "Masked branches"): the rules of `spec.masking` as values,
// their JSON form, and the checks that need no database. Shared by the daemon (which applies
// them) and the CLI (which reads them from a TOML file).

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace arbor::api {

using Json = nlohmann::json;

// How a masked column's values are replaced.
enum class MaskStrategy { kNull, kFixed, kHash, kEmail, kName, kSql };

// "null", "fixed", "hash", "email", "name" or "sql".
const char* MaskStrategyName(MaskStrategy s);

// One rule: `column` is "schema.table.column"; `value` is the literal of kFixed (as text; it is
// cast to the column's type by PostgreSQL) or the expression of kSql, and empty otherwise.
struct MaskRule {
  std::string column;
  MaskStrategy with = MaskStrategy::kNull;
  std::string value;
  bool operator==(const MaskRule&) const = default;
};

// The three parts of a rule's column, as PostgreSQL's catalog spells them (an unquoted name
// in SQL is folded to lower case: write it in lower case here).
struct MaskColumn {
  std::string schema;
  std::string table;
  std::string column;
};

// Splits "schema.table.column". InvalidArgument with a sentence naming `where` unless there
// are exactly three non-empty parts of at most 63 bytes without control characters or dots.
[[nodiscard]] Result<MaskColumn> ParseMaskColumn(const std::string& column,
                                                 std::string_view where = "column");

// Reads `spec.masking`: an array of {"column": ..., "with": "null" | "hash" | "email" | "name" |
// {"fixed": V} | {"sql": EXPR}}, V a string, number or boolean. InvalidArgument naming the
// rule ("spec.masking[2].with: ...") for anything else: unknown fields, an empty list, a
// column named twice, an empty expression.
[[nodiscard]] Status MaskRulesFromJson(const Json& j, std::vector<MaskRule>* out,
                                       std::string_view where = "spec.masking");
Json ToJson(const MaskRule& r);
Json ToJson(const std::vector<MaskRule>& rules);

// Checks a list built by other means (the CLI's TOML file): what MaskRulesFromJson checks.
[[nodiscard]] Status ValidateMaskRules(const std::vector<MaskRule>& rules,
                                       std::string_view where = "spec.masking");

}  // namespace arbor::api
