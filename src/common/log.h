#pragma once

// Logging goes through spdlog's default logger; the daemon configures its sinks.
#include <spdlog/spdlog.h>

namespace arbor {
namespace log = spdlog;
}  // namespace arbor
