#pragma once

#include <CLI/CLI.hpp>

namespace arbor::app {

// Registers the commands that run the server in this process: `up` and `down`.
void AddServerCommands(CLI::App& app);

}  // namespace arbor::app
