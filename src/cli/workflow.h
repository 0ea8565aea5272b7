#pragma once

// The developer workflow commands: git, ci, diff and migrate-check (docs/workflow.md).

#include "cli/session.h"

namespace arbor::cli {

// Registers the workflow commands on the root app.
void AddWorkflowCommands(CLI::App& app, Session& s, Action* action);

}  // namespace arbor::cli
