#pragma once

// The masking rules file of `arbor branch create --mask FILE` (docs/cli.md, "Masked
// branches"): a small subset of TOML, one [[rule]] table per rule.
//
//   # comments and blank lines are fine
//   [[rule]]
//   column = "public.users.email"
//   with = "email"              # null, hash, email or name
//   [[rule]]
//   column = "public.users.ssn"
//   fixed = "000-00-0000"       # or a bare number or true/false
//   [[rule]]
//   column = "public.users.note"
//   sql = 'left(note, 3)'       # an expression over the row's columns
//
// Strings are TOML basic ("...", with \" \\ \n \t \uXXXX escapes) or literal ('...') strings
// on one line. Anything else is refused with the line's number.

#include <string>
#include <vector>

#include "api/masking.h"
#include "common/status.h"

namespace arbor::cli {

// Parses `text` (read from `file`, named in messages). InvalidArgument "FILE:LINE: why".
[[nodiscard]] Result<std::vector<api::MaskRule>> ParseMaskFile(const std::string& text,
                                                               const std::string& file);

}  // namespace arbor::cli
