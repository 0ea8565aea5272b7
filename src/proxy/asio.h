#pragma once

// Boost.Asio for the proxy. Boost 1.74's awaitable.hpp uses std::exchange without including
// <utility>, so <utility> must come first; clang-format would sort it after.
// clang-format off
#include <utility>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
// clang-format on
