#include "common/home.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace arbor {
namespace {

std::optional<std::string> NonEmpty(const EnvLookup& getenv, const std::string& name) {
  auto v = getenv(name);
  if (v && v->empty()) return std::nullopt;
  return v;
}

std::optional<std::string> PasswdHome() {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) == 0 && found != nullptr &&
      pw.pw_dir != nullptr && *pw.pw_dir != '\0') {
    return std::string(pw.pw_dir);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> RealEnv(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

std::string ArborHome(const EnvLookup& getenv) {
  if (auto h = NonEmpty(getenv, "ARBOR_HOME")) return *h;
  auto home = NonEmpty(getenv, "HOME");
  if (home && geteuid() != 0) {
    // Someone else's directory cannot be this user's home: its ~/.arbor is not theirs to use.
    struct stat st;
    if (stat(home->c_str(), &st) == 0 && st.st_uid != geteuid()) {
      if (auto pw = PasswdHome()) home = pw;
    }
  }
  if (!home) home = PasswdHome();
  return (home ? *home : std::string(".")) + "/.arbor";
}

}  // namespace arbor
