#pragma once

// The error table of docs/api.md, in one place for both sides: which HTTP status and
// error_code a Status code becomes (the server), and which Status code an error_code comes
// back as (the client). No HTTP library here.

#include <string_view>

#include "common/status.h"

namespace arbor::api {

// "RESOURCE_DOES_NOT_EXIST" for kNotFound, ... REQUIRES: !ok.
const char* ErrorCodeFor(Code code);
// 404 for kNotFound, ... REQUIRES: !ok.
int HttpStatusFor(Code code);

// The inverse, for the client: RESOURCE_DOES_NOT_EXIST -> kNotFound. UNAUTHENTICATED has no
// Code of its own and comes back as kFailedPrecondition (the caller's setup is wrong).
// TEMPORARILY_UNAVAILABLE comes back as kResourceExhausted, so that kUnavailable keeps
// meaning "the API could not be reached at all". Unknown codes fall back on `http_status`:
// 4xx -> kInvalidArgument, anything else -> kInternal.
Code CodeForError(std::string_view error_code, int http_status);

}  // namespace arbor::api
