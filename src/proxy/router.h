#pragma once

// Routing rules: how a connection names its endpoint. Pure functions over what the client
// sent; the session applies them in the order DESIGN.md gives:
//   1. the first label of the TLS SNI host: "<project>--<branch>[--<endpoint>]", or
//      "<branch>" for the project "default" (ignored for IP addresses and one-label hosts such
//      as "localhost", and when it names no endpoint);
//   2. the startup option endpoint=<project>/<branch>[/<endpoint>], inside the `options`
//      parameter as "endpoint=...", "-c endpoint=..." or "--endpoint=...";
//   3. a password "endpoint=<project>/<branch>[/<endpoint>];<password>";
//   4. the port the client connected to, when it is an endpoint's dedicated port.
// An empty endpoint id means the branch's default endpoint (Backend::Resolve decides).

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace arbor::proxy {

struct EndpointName {
  std::string project;
  std::string branch;
  std::string endpoint;          // "" = the branch's default endpoint
  std::string ToString() const;  // "P/B" or "P/B/E"
  bool operator==(const EndpointName&) const = default;
};

// Whether `id` is a valid resource id: 1-63 of [a-z0-9-], starting with a letter.
bool IsValidId(std::string_view id);

// Parses "P/B", "P/B/E", or a full resource name "projects/P/branches/B[/endpoints/E]".
// "P/B@<when>" names the branch's past: `branch` keeps "B@<when>" for Backend::Resolve, which
// reads <when> (an RFC 3339 time, a relative "-10m", or "lsn:X/Y"). InvalidArgument with a
// message naming the accepted forms otherwise.
[[nodiscard]] Result<EndpointName> ParseEndpointName(std::string_view text);

// The endpoint an SNI host names, or nullopt if the host does not name one (see rule 1).
std::optional<EndpointName> EndpointFromSni(std::string_view host);

// The `options` startup parameter with any endpoint= setting taken out.
struct OptionsSplit {
  std::optional<std::string> endpoint;  // the raw value after "endpoint="
  std::string rest;                     // the other options, to pass on to the compute
};
OptionsSplit SplitOptions(std::string_view options);

// A password with an optional "endpoint=...;" prefix taken off.
struct PasswordSplit {
  std::optional<std::string> endpoint;  // the raw value between "endpoint=" and ';'
  std::string password;
};
PasswordSplit SplitPassword(std::string_view password);

}  // namespace arbor::proxy
