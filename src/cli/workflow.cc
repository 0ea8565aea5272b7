#include "cli/workflow.h"

namespace arbor::cli {

void AddWorkflowCommands(CLI::App& app, Session& s, Action* action) {
  (void)app;
  (void)s;
  (void)action;
}

}  // namespace arbor::cli
