#pragma once

// Base64 (RFC 4648): the standard alphabet with padding, for SCRAM, and the URL-safe alphabet
// without padding, for JWT. Pure functions.

#include <string>
#include <string_view>

#include "common/status.h"

namespace arbor::proxy::auth {

std::string Base64Encode(std::string_view bytes);
// InvalidArgument unless `text` is canonical padded standard base64.
[[nodiscard]] Result<std::string> Base64Decode(std::string_view text);

std::string Base64UrlEncode(std::string_view bytes);
// InvalidArgument unless `text` is unpadded URL-safe base64.
[[nodiscard]] Result<std::string> Base64UrlDecode(std::string_view text);

}  // namespace arbor::proxy::auth
