#include "cli/mask_file.h"

#include <cctype>
#include <optional>

namespace arbor::cli {
namespace {

// One value after '=': a string, or a bare number, true or false (as text). Sets `rest` to what
// follows it. nullopt with `why` set if it is none of these.
std::optional<std::string> Value(const std::string& s, size_t i, size_t* rest, std::string* why,
                                 bool* quoted) {
  *quoted = true;
  if (i < s.size() && s[i] == '\'') {
    size_t end = s.find('\'', i + 1);
    if (end == std::string::npos) {
      *why = "a literal string '...' must end on its line";
      return std::nullopt;
    }
    *rest = end + 1;
    return s.substr(i + 1, end - i - 1);
  }
  if (i < s.size() && s[i] == '"') {
    std::string out;
    for (size_t k = i + 1; k < s.size(); ++k) {
      char c = s[k];
      if (c == '"') {
        *rest = k + 1;
        return out;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (++k >= s.size()) break;
      switch (s[k]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'u': {
          if (k + 4 >= s.size()) {
            *why = "\\u needs four hex digits";
            return std::nullopt;
          }
          unsigned cp = 0;
          for (int d = 1; d <= 4; ++d) {
            char h = s[k + d];
            if (!std::isxdigit(static_cast<unsigned char>(h))) {
              *why = "\\u needs four hex digits";
              return std::nullopt;
            }
            cp = cp * 16 + (std::isdigit(static_cast<unsigned char>(h))
                                ? h - '0'
                                : (std::tolower(h) - 'a' + 10));
          }
          k += 4;
          if (cp < 0x80) {
            out += static_cast<char>(cp);
          } else if (cp < 0x800) {
            out += static_cast<char>(0xc0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3f));
          } else {
            out += static_cast<char>(0xe0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
          }
          break;
        }
        default:
          *why = std::string("unknown escape \\") + s[k];
          return std::nullopt;
      }
    }
    *why = "a string \"...\" must end on its line";
    return std::nullopt;
  }
  *quoted = false;
  size_t end = i;
  while (end < s.size() && s[end] != ' ' && s[end] != '\t' && s[end] != '#') ++end;
  std::string bare = s.substr(i, end - i);
  bool number = !bare.empty();
  for (size_t k = 0; k < bare.size(); ++k) {
    char c = bare[k];
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
          ((c == '-' || c == '+') && k == 0))) {
      number = false;
    }
  }
  if (!number && bare != "true" && bare != "false") {
    *why = "expected a string in quotes, a number, true or false";
    return std::nullopt;
  }
  *rest = end;
  return bare;
}

}  // namespace

Result<std::vector<api::MaskRule>> ParseMaskFile(const std::string& text, const std::string& file) {
  std::vector<api::MaskRule> rules;
  struct Open {
    int line = 0;
    std::optional<std::string> column;
    std::optional<api::MaskRule> how;
  };
  std::optional<Open> cur;
  auto fail = [&](int line, const std::string& why) {
    return Status::InvalidArgument(file + ":" + std::to_string(line) + ": " + why);
  };
  auto close = [&]() -> Status {
    if (!cur) return Status::Ok();
    if (!cur->column)
      return fail(cur->line, "this [[rule]] has no column = \"schema.table.column\"");
    if (!cur->how) {
      return fail(cur->line,
                  "this [[rule]] says neither with = \"null|hash|email|name\", "
                  "fixed = VALUE nor sql = \"EXPR\"");
    }
    api::MaskRule r = *cur->how;
    r.column = *cur->column;
    rules.push_back(std::move(r));
    cur.reset();
    return Status::Ok();
  };
  size_t pos = 0;
  for (int line = 1; pos <= text.size(); ++line) {
    size_t nl = text.find('\n', pos);
    std::string s = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() + 1 : nl + 1;
    if (!s.empty() && s.back() == '\r') s.pop_back();
    size_t i = s.find_first_not_of(" \t");
    if (i == std::string::npos || s[i] == '#') continue;
    auto trailing = [&](size_t from) -> bool {
      size_t k = s.find_first_not_of(" \t", from);
      return k == std::string::npos || s[k] == '#';
    };
    if (s[i] == '[') {
      size_t end = s.find("]]", i);
      std::string name = end == std::string::npos ? "" : s.substr(i, end + 2 - i);
      std::string inner;
      for (char c : name) {
        if (c != ' ' && c != '\t') inner += c;
      }
      if (inner != "[[rule]]" || !trailing(end + 2)) {
        return fail(line, "expected [[rule]] (the only table this file has)");
      }
      ARBOR_RETURN_IF_ERROR(close());
      cur = Open{line, std::nullopt, std::nullopt};
      continue;
    }
    size_t eq = s.find('=', i);
    if (eq == std::string::npos) return fail(line, "expected key = value or [[rule]]");
    std::string key = s.substr(i, eq - i);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    if (!cur) return fail(line, key + " comes before the first [[rule]]");
    size_t v = s.find_first_not_of(" \t", eq + 1);
    if (v == std::string::npos) return fail(line, key + " has no value");
    size_t rest = 0;
    std::string why;
    bool quoted = false;
    auto value = Value(s, v, &rest, &why, &quoted);
    if (!value) return fail(line, why);
    if (!trailing(rest)) return fail(line, "unexpected text after the value");
    if (key == "column") {
      if (cur->column) return fail(line, "column is given twice in this rule");
      if (!quoted) return fail(line, "column must be a string: column = \"public.users.email\"");
      cur->column = *value;
      continue;
    }
    if (key != "with" && key != "fixed" && key != "sql") {
      return fail(line, "unknown key " + key + " (a rule has column, and with, fixed or sql)");
    }
    if (cur->how) return fail(line, "a rule has one of with, fixed and sql");
    api::MaskRule r;
    if (key == "fixed") {
      r.with = api::MaskStrategy::kFixed;
      r.value = *value;
    } else if (key == "sql") {
      if (!quoted) return fail(line, "sql must be a string: sql = \"left(col, 3)\"");
      r.with = api::MaskStrategy::kSql;
      r.value = *value;
    } else {
      std::optional<api::MaskStrategy> w;
      for (api::MaskStrategy s2 : {api::MaskStrategy::kNull, api::MaskStrategy::kHash,
                                   api::MaskStrategy::kEmail, api::MaskStrategy::kName}) {
        if (*value == api::MaskStrategyName(s2)) w = s2;
      }
      if (!quoted || !w) {
        return fail(line,
                    "with is \"null\", \"hash\", \"email\" or \"name\" (for a value use "
                    "fixed = ..., for an expression sql = ...)");
      }
      r.with = *w;
    }
    cur->how = r;
  }
  ARBOR_RETURN_IF_ERROR(close());
  if (rules.empty()) return Status::InvalidArgument(file + ": no [[rule]] in it");
  ARBOR_RETURN_IF_ERROR(api::ValidateMaskRules(rules, file));
  return rules;
}

}  // namespace arbor::cli
