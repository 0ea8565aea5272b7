#include "cli/settings.h"

#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace arbor::cli {
namespace {

std::optional<std::string> NonEmpty(const GetEnv& getenv, const std::string& name) {
  auto v = getenv(name);
  if (v && v->empty()) return std::nullopt;
  return v;
}

// The file's contents without surrounding whitespace; nullopt if it cannot be read.
std::optional<std::string> ReadTrimmed(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return std::nullopt;
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string UserHome(const GetEnv& getenv) {
  if (auto h = NonEmpty(getenv, "HOME")) return *h;
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    return pw.pw_dir;
  }
  return ".";
}

}  // namespace

Settings ResolveSettings(const std::string& api_flag, const GetEnv& getenv) {
  Settings s;
  if (auto h = NonEmpty(getenv, "ARBOR_HOME")) {
    s.home = *h;
  } else {
    s.home = UserHome(getenv) + "/.arbor";
  }
  if (!api_flag.empty()) {
    s.api_url = api_flag;
  } else if (auto a = NonEmpty(getenv, "ARBOR_API")) {
    s.api_url = *a;
  } else if (auto f = ReadTrimmed(s.home + "/api")) {
    s.api_url = *f;
  } else {
    s.api_url = kDefaultApiUrl;
  }
  if (auto t = NonEmpty(getenv, "ARBOR_TOKEN")) {
    s.token = *t;
  } else if (auto f = ReadTrimmed(s.home + "/admin-token")) {
    s.token = *f;
  }
  return s;
}

}  // namespace arbor::cli
