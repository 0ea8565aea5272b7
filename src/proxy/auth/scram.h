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

#include <string>
#include <string_view>

#include "common/status.h"

namespace arbor::proxy::auth {

class ScramClient {
 public:
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
  std::string client_nonce_;
  std::string expected_server_signature_;  // raw bytes, set by ClientFinal
};

}  // namespace arbor::proxy::auth
