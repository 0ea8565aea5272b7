#include "common/home.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <map>

namespace arbor {
namespace {

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string PasswdHome() {
  struct passwd* pw = getpwuid(geteuid());
  return pw != nullptr ? pw->pw_dir : ".";
}

TEST(ArborHome, ArborHomeWinsThenDotArborInHome) {
  EXPECT_EQ(ArborHome(Env({{"ARBOR_HOME", "/srv/a"}, {"HOME", "/tmp"}})), "/srv/a");
  char dir[] = "/tmp/arbor-home-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);  // ours, as a user's home is
  EXPECT_EQ(ArborHome(Env({{"HOME", dir}})), std::string(dir) + "/.arbor");
  EXPECT_EQ(ArborHome(Env({{"ARBOR_HOME", ""}, {"HOME", dir}})), std::string(dir) + "/.arbor");
  rmdir(dir);
}

TEST(ArborHome, WithoutHomeThePasswordDatabaseAnswers) {
  EXPECT_EQ(ArborHome(Env({})), PasswdHome() + "/.arbor");
  EXPECT_EQ(ArborHome(Env({{"HOME", ""}})), PasswdHome() + "/.arbor");
}

// chroot --userspec and sudo -E keep root's HOME for an ordinary user, who cannot use it.
TEST(ArborHome, AnOrdinaryUserIgnoresAHomeOwnedBySomeoneElse) {
  if (geteuid() == 0) {
    EXPECT_EQ(ArborHome(Env({{"HOME", "/"}})), "//.arbor");  // root's own
  } else {
    EXPECT_EQ(ArborHome(Env({{"HOME", "/"}})), PasswdHome() + "/.arbor");
  }
}

}  // namespace
}  // namespace arbor
