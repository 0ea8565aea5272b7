#pragma once

// Thin wrappers over OpenSSL's primitives, as used by tokens and SCRAM. Thread-safe.

#include <string>
#include <string_view>

#include "common/status.h"

namespace arbor::proxy::auth {

std::string HmacSha256(std::string_view key, std::string_view data);
std::string Sha256(std::string_view data);
// MD5 as 32 lowercase hex digits, for PostgreSQL's legacy md5 password method only.
std::string HexMd5(std::string_view data);
// PBKDF2-HMAC-SHA256 with a 32-byte output.
std::string Pbkdf2Sha256(std::string_view password, std::string_view salt, int iterations);
// `n` bytes from OpenSSL's CSPRNG; Internal if it fails.
[[nodiscard]] Result<std::string> RandomBytes(size_t n);
// Constant-time comparison; false when the sizes differ (the size is not secret).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace arbor::proxy::auth
