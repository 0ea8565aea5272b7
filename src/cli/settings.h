#pragma once

// Where the CLI finds the daemon: the API's base URL and the admin token.

#include <functional>
#include <optional>
#include <string>

namespace arbor::cli {

using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

struct Settings {
  std::string home;     // $ARBOR_HOME, else ~/.arbor
  std::string api_url;  // --api, else $ARBOR_API, else $ARBOR_HOME/api, else the default
  std::string token;    // $ARBOR_TOKEN, else $ARBOR_HOME/admin-token, else empty
};

inline constexpr const char* kDefaultApiUrl = "http://127.0.0.1:8432";

// Resolves the settings in the documented order. Missing files are not errors: the default
// URL then fails to connect with a hint to run `arbor up`, and a missing token gets the
// server's 401 message.
Settings ResolveSettings(const std::string& api_flag, const GetEnv& getenv);

}  // namespace arbor::cli
