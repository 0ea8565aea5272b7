#pragma once

// Where an Arbor installation keeps its state when no flag names it: one answer for the
// daemon (`arbor up`, `arbor down`) and every client command, so that they always meet.

#include <functional>
#include <optional>
#include <string>

namespace arbor {

// Looks up an environment variable; nullopt when it is unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process's real environment.
std::optional<std::string> RealEnv(const std::string& name);

// $ARBOR_HOME if set and not empty, else `~/.arbor`. `~` is $HOME, unless it is unset or,
// for an ordinary user, a directory owned by someone else (as after `chroot --userspec` or
// `sudo -E`, which keep root's HOME); then it is the user's home from the password database.
// Not made absolute.
std::string ArborHome(const EnvLookup& getenv);

}  // namespace arbor
