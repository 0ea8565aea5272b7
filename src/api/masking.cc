#include "api/masking.h"

#include <set>

namespace arbor::api {
namespace {

std::string Show(const Json& v) {
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

std::optional<MaskStrategy> StrategyOf(std::string_view name) {
  for (MaskStrategy s :
       {MaskStrategy::kNull, MaskStrategy::kHash, MaskStrategy::kEmail, MaskStrategy::kName}) {
    if (name == MaskStrategyName(s)) return s;
  }
  return std::nullopt;
}

constexpr const char* kWithForms =
    "expected \"null\", \"hash\", \"email\", \"name\", {\"fixed\": VALUE} or {\"sql\": EXPR}";

}  // namespace

const char* MaskStrategyName(MaskStrategy s) {
  switch (s) {
    case MaskStrategy::kNull:
      return "null";
    case MaskStrategy::kFixed:
      return "fixed";
    case MaskStrategy::kHash:
      return "hash";
    case MaskStrategy::kEmail:
      return "email";
    case MaskStrategy::kName:
      return "name";
    case MaskStrategy::kSql:
      return "sql";
  }
  return "?";
}

Result<MaskColumn> ParseMaskColumn(const std::string& column, std::string_view where) {
  std::vector<std::string> parts(1);
  for (char c : column) {
    if (c == '.') {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(std::string(where) + ": '" + column + "' " + why);
  };
  if (parts.size() != 3) {
    return bad("is not schema.table.column (three names joined by dots, e.g. public.users.email)");
  }
  for (const std::string& p : parts) {
    if (p.empty()) return bad("has an empty name; write schema.table.column");
    if (p.size() > 63) return bad("has a name longer than PostgreSQL's 63 bytes");
    for (unsigned char c : p) {
      if (c < 0x20 || c == 0x7f || c == '"') {
        return bad("has a control character or a double quote in a name");
      }
    }
  }
  return MaskColumn{parts[0], parts[1], parts[2]};
}

Status ValidateMaskRules(const std::vector<MaskRule>& rules, std::string_view where) {
  if (rules.empty()) {
    return Status::InvalidArgument(std::string(where) +
                                   " is empty: give at least one rule, or leave it out");
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < rules.size(); ++i) {
    std::string at = std::string(where) + "[" + std::to_string(i) + "]";
    ARBOR_RETURN_IF_ERROR(ParseMaskColumn(rules[i].column, at + ".column").status());
    if (!seen.insert(rules[i].column).second) {
      return Status::InvalidArgument(at + ".column: " + rules[i].column +
                                     " has a rule already; give each column one rule");
    }
    if (rules[i].with == MaskStrategy::kSql &&
        rules[i].value.find_first_not_of(" \t\r\n") == std::string::npos) {
      return Status::InvalidArgument(at + ".with.sql: the expression is empty");
    }
    if (rules[i].with == MaskStrategy::kSql) {
      const std::string& e = rules[i].value;
      for (size_t k = 0; k + 1 < e.size(); ++k) {
        if (e[k] == '$' && e[k + 1] >= '0' && e[k + 1] <= '9') {
          return Status::InvalidArgument(at +
                                         ".with.sql: parameters such as $1 are not allowed "
                                         "in an expression");
        }
      }
    }
    if (rules[i].value.find('\0') != std::string::npos) {
      return Status::InvalidArgument(at + ".with: a value must not hold a NUL byte");
    }
  }
  return Status::Ok();
}

Status MaskRulesFromJson(const Json& j, std::vector<MaskRule>* out, std::string_view where) {
  if (!j.is_array()) {
    return Status::InvalidArgument(std::string(where) + ": expected an array of rules, got " +
                                   Show(j));
  }
  std::vector<MaskRule> rules;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string at = std::string(where) + "[" + std::to_string(i) + "]";
    const Json& r = j[i];
    if (!r.is_object()) {
      return Status::InvalidArgument(at + ": expected {\"column\": ..., \"with\": ...}, got " +
                                     Show(r));
    }
    for (const auto& [k, v] : r.items()) {
      if (k != "column" && k != "with") {
        return Status::InvalidArgument(at + ": unknown field " + k +
                                       " (a rule has column and with)");
      }
    }
    MaskRule rule;
    auto col = r.find("column");
    if (col == r.end() || !col->is_string()) {
      return Status::InvalidArgument(at + ".column is required: a string schema.table.column");
    }
    rule.column = col->get<std::string>();
    auto with = r.find("with");
    if (with == r.end() || with->is_null()) {
      return Status::InvalidArgument(at + ".with is required: " + kWithForms);
    }
    if (with->is_string()) {
      auto s = StrategyOf(with->get<std::string>());
      if (!s) return Status::InvalidArgument(at + ".with: " + kWithForms + ", got " + Show(*with));
      rule.with = *s;
    } else if (with->is_object() && with->size() == 1 && with->contains("fixed")) {
      const Json& v = with->at("fixed");
      rule.with = MaskStrategy::kFixed;
      if (v.is_string()) {
        rule.value = v.get<std::string>();
      } else if (v.is_number() || v.is_boolean()) {
        rule.value = v.dump();
      } else {
        return Status::InvalidArgument(at +
                                       ".with.fixed: expected a string, number or boolean, "
                                       "got " +
                                       Show(v) + " (for NULL use \"null\")");
      }
    } else if (with->is_object() && with->size() == 1 && with->contains("sql")) {
      const Json& v = with->at("sql");
      if (!v.is_string()) {
        return Status::InvalidArgument(at + ".with.sql: expected a string, got " + Show(v));
      }
      rule.with = MaskStrategy::kSql;
      rule.value = v.get<std::string>();
    } else {
      return Status::InvalidArgument(at + ".with: " + kWithForms + ", got " + Show(*with));
    }
    rules.push_back(std::move(rule));
  }
  ARBOR_RETURN_IF_ERROR(ValidateMaskRules(rules, where));
  *out = std::move(rules);
  return Status::Ok();
}

Json ToJson(const MaskRule& r) {
  Json with;
  switch (r.with) {
    case MaskStrategy::kFixed:
      with = Json{{"fixed", r.value}};
      break;
    case MaskStrategy::kSql:
      with = Json{{"sql", r.value}};
      break;
    default:
      with = MaskStrategyName(r.with);
  }
  return Json{{"column", r.column}, {"with", with}};
}

Json ToJson(const std::vector<MaskRule>& rules) {
  Json j = Json::array();
  for (const MaskRule& r : rules) j.push_back(ToJson(r));
  return j;
}

}  // namespace arbor::api
