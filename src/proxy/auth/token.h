#pragma once

// Short-lived login tokens: JWTs signed with HMAC-SHA256 (RFC 7519, "HS256"), used as the
// PostgreSQL password. The payload carries:
//   sub       the role the token logs in as
//   endpoint  "projects/P/branches/B/endpoints/E", the only endpoint it opens
//   euid      that endpoint's uid: a later endpoint of the same name is another endpoint
//   iat, exp  issue and expiry times, seconds since the Unix epoch
// Expiry is checked at login only; a session outlives its token.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace arbor::proxy::auth {

struct TokenClaims {
  std::string role;
  std::string endpoint;
  // The uid of the endpoint it was issued for ("euid"), so that a token never opens a later
  // endpoint that reuses a deleted one's name. Empty in tokens issued without one.
  std::string endpoint_uid;
  int64_t issued_at = 0;
  int64_t expires_at = 0;
};

// Issues and verifies tokens with one 32-byte secret key. Immutable after construction, so
// thread-safe.
class TokenSigner {
 public:
  static constexpr int64_t kMinTtlSeconds = 300;
  static constexpr int64_t kMaxTtlSeconds = 3600;
  static constexpr size_t kKeyBytes = 32;
  // Tokens issued up to this far in the future (clock skew) are accepted.
  static constexpr int64_t kClockSkewSeconds = 60;

  // REQUIRES: key.size() >= kKeyBytes.
  explicit TokenSigner(std::string key);

  // Reads the key at `path` (e.g. $ARBOR_HOME/jwt.key), or creates it with 32 random bytes and
  // mode 0600 when it is missing. IOError if it cannot be read or created; Corruption if the
  // file holds fewer than 32 bytes.
  [[nodiscard]] static Result<TokenSigner> LoadOrCreate(const std::string& path);

  // A token for `role` on `endpoint` valid from `now` for `ttl_seconds`.
  // InvalidArgument if ttl_seconds is outside [kMinTtlSeconds, kMaxTtlSeconds] or the role or
  // endpoint is empty.
  [[nodiscard]] Result<std::string> Issue(const std::string& endpoint, const std::string& role,
                                          int64_t ttl_seconds, int64_t now,
                                          const std::string& endpoint_uid = "") const;

  // The claims of `token` if it is well formed, signed with this key (checked in constant
  // time), not expired at `now`, and scoped to `endpoint`. Otherwise FailedPrecondition
  // with a message for the user (malformed, bad signature, expired, issued
  // in the future, or made for another endpoint).
  [[nodiscard]] Result<TokenClaims> Verify(std::string_view token, const std::string& endpoint,
                                           int64_t now) const;

  // Whether a password has the shape of a JWT ("eyJ...", three base64url parts). Role
  // passwords that look like this are treated as tokens.
  static bool LooksLikeToken(std::string_view password);

 private:
  std::string key_;
};

}  // namespace arbor::proxy::auth
