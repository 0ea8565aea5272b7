#pragma once

// Quoting of names and values in SQL that the control plane writes itself (databases.cc,
// masking.cc). Values that come from users go as parameters wherever PostgreSQL takes them.

#include <string>

namespace arbor::control {

// PostgreSQL's quote_ident, always quoting: "name" with each '"' doubled.
inline std::string QuoteIdent(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// PostgreSQL's quote_literal: '...' with quotes and backslashes doubled, and E'...' when there
// is a backslash, so it reads the same whatever standard_conforming_strings is.
inline std::string QuoteLiteral(const std::string& s) {
  std::string out = "'";
  bool backslash = false;
  for (char c : s) {
    if (c == '\'' || c == '\\') out += c;
    backslash = backslash || c == '\\';
    out += c;
  }
  return (backslash ? "E" : "") + out + "'";
}

}  // namespace arbor::control
