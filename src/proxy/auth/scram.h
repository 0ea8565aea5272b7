#pragma once

// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding, as the
// proxy uses it to log in to a compute. The exchange, as PostgreSQL runs it over SASL:
//   client-first  "n,,n=<user>,r=<client nonce>"
//   server-first  "r=<client nonce + server nonce>,s=<salt b64>,i=<iterations>"
//   client-final  "c=biws,r=<nonce>,p=<proof b64>"
//   server-final  "v=<server signature b64>"   (or "e=<error>")
// The password is used as given: SASLprep is not applied, which is the identity for ASCII
// passwords (the role passwords arbor generates are ASCII).
//
// Not thread-safe; one object per login attempt. Call the three steps in order.

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace arbor::proxy::auth {

// The SCRAM-SHA-256 secrets of one password: what Arbor keeps in place of the password.
// With them the proxy checks a password a client sends (Matches) and logs in to a compute
// whose role holds Verifier() (ScramClient's second constructor). The password itself is never
// stored. `client_key` is the secret part: it logs in (to a compute only, never through the
// proxy's front door, which wants the password). Value type.
struct ScramSecret {
  static constexpr int kDefaultIterations = 4096;  // PostgreSQL's scram_iterations default
  std::string salt;                                // raw bytes
  int iterations = kDefaultIterations;
  std::string client_key;  // HMAC(SaltedPassword, "Client Key"), raw
  std::string stored_key;  // H(ClientKey), raw
  std::string server_key;  // HMAC(SaltedPassword, "Server Key"), raw

  // The secrets of `password` with a fresh 16-byte random salt. Internal if the RNG fails.
  [[nodiscard]] static Result<ScramSecret> FromPassword(std::string_view password,
                                                        int iterations = kDefaultIterations);
  static ScramSecret Derive(std::string_view password, std::string_view salt, int iterations);
  // The secrets of a password no one knows: a random salted password in place of PBKDF2 over
  // one (which would only slow the guessing of a password that does not exist). What a
  // branch's roles get at its create: they log in with tokens until a password is reset.
  // Internal if the RNG fails.
  [[nodiscard]] static Result<ScramSecret> Unguessable(int iterations = kDefaultIterations);
  // PostgreSQL's stored form, "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
  // which `ALTER ROLE ... PASSWORD '<verifier>'` stores as it is.
  std::string Verifier() const;
  // Whether `password` is the one these secrets were made from (constant-time comparison).
  bool Matches(std::string_view password) const;
};

class ScramClient {
 public:
  // Logs in with the keys of `secret` instead of a password: the server must hold exactly
  // secret.Verifier() (same salt and iteration count), or ClientFinal fails.
  ScramClient(std::string user, ScramSecret secret, std::string client_nonce);
  // PostgreSQL ignores the SCRAM user name in favour of the startup packet's, and libpq sends
  // an empty one; pass "" unless reproducing a test vector. `client_nonce` must be printable
  // ASCII without ','; use NewNonce() outside tests.
  ScramClient(std::string user, std::string password, std::string client_nonce);

  // A fresh 18-byte random nonce, base64-encoded. Internal if the RNG fails.
  [[nodiscard]] static Result<std::string> NewNonce();

  // The client-first-message.
  std::string ClientFirst() const;

  // Consumes the server-first-message and returns the client-final-message with the proof.
  // InvalidArgument if the message is malformed, the server nonce does not extend ours, the
  // salt is not base64, or the iteration count is outside 1..kMaxIterations.
  [[nodiscard]] Result<std::string> ClientFinal(std::string_view server_first);

  // Checks the server-final-message: Ok when the server proved it knows the password;
  // FailedPrecondition if it reports an error or its signature is wrong.
  // REQUIRES: ClientFinal succeeded.
  [[nodiscard]] Status VerifyServerFinal(std::string_view server_final) const;

  static constexpr int kMaxIterations = 1'000'000;

 private:
  std::string ClientFirstBare() const;

  std::string user_;
  std::string password_;
  std::optional<ScramSecret> secret_;  // set: log in with its keys, not a password
  std::string client_nonce_;
  std::string expected_server_signature_;  // raw bytes, set by ClientFinal
};

}  // namespace arbor::proxy::auth
