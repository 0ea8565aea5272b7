#pragma once

// Where the CLI finds the daemon: the API's base URL and the admin token.

#include <functional>
#include <optional>
#include <string>

namespace arbor::cli {

using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

struct Settings {
  std::string home;     // $ARBOR_HOME, else ~/.arbor: the same default as `arbor up`
  std::string api_url;  // --api, else $ARBOR_API, else $ARBOR_HOME/api, else the default
  std::string token;    // $ARBOR_TOKEN, else $ARBOR_HOME/admin-token, else empty
  // Where the token came from, for error messages: "$ARBOR_TOKEN" or the file's path; empty
  // with `token_problem` saying why there is none (the file is missing or unreadable).
  std::string token_source;
  std::string token_problem;
};

inline constexpr const char* kDefaultApiUrl = "http://127.0.0.1:8432";

// Resolves the settings in the documented order. Missing files are not errors: the default
// URL then fails to connect with a hint to run `arbor up`, and a missing token gets the
// server's 401 message, to which AuthHint is added.
Settings ResolveSettings(const std::string& api_flag, const GetEnv& getenv);

// What to add to an authentication error: which token was sent, or why none was, and the
// home the CLI looked in, e.g. "the CLI sent no token: /home/me/.arbor/admin-token: No such
// file or directory (ARBOR_HOME is /home/me/.arbor; set it to the data directory `arbor up`
// printed)".
std::string AuthHint(const Settings& settings);

}  // namespace arbor::cli
