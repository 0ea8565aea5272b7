#include "cli/settings.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/home.h"

namespace arbor::cli {
namespace {

std::optional<std::string> NonEmpty(const GetEnv& getenv, const std::string& name) {
  auto v = getenv(name);
  if (v && v->empty()) return std::nullopt;
  return v;
}

// The file's contents without surrounding whitespace; nullopt if it cannot be read or holds
// nothing, with the reason in `*why`.
std::optional<std::string> ReadTrimmed(const std::string& path, std::string* why = nullptr) {
  std::ifstream in(path);
  if (!in) {
    if (why) *why = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) {
    if (why) *why = path + " is empty";
    return std::nullopt;
  }
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

Settings ResolveSettings(const std::string& api_flag, const GetEnv& getenv) {
  Settings s;
  s.home = ArborHome(getenv);
  if (!api_flag.empty()) {
    s.api_url = api_flag;
  } else if (auto a = NonEmpty(getenv, "ARBOR_API")) {
    s.api_url = *a;
  } else if (auto f = ReadTrimmed(s.home + "/api")) {
    s.api_url = *f;
  } else {
    s.api_url = kDefaultApiUrl;
  }
  std::string token_file = s.home + "/admin-token";
  if (auto t = NonEmpty(getenv, "ARBOR_TOKEN")) {
    s.token = *t;
    s.token_source = "$ARBOR_TOKEN";
  } else if (auto f = ReadTrimmed(token_file, &s.token_problem)) {
    s.token = *f;
    s.token_source = token_file;
  }
  return s;
}

std::string AuthHint(const Settings& s) {
  std::string sent = s.token.empty() ? "the CLI sent no token: " + s.token_problem
                                     : "the CLI sent the token from " + s.token_source;
  return sent + " (ARBOR_HOME is " + s.home +
         "; set it to the data directory `arbor up` printed, or ARBOR_TOKEN to a token)";
}

}  // namespace arbor::cli
