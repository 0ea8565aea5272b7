#include "proxy/auth/scram.h"

#include <charconv>
#include <optional>

#include "proxy/auth/base64.h"
#include "proxy/auth/crypto.h"

namespace arbor::proxy::auth {
namespace {

std::string EscapeSaslName(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '=') {
      out += "=3D";
    } else if (c == ',') {
      out += "=2C";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Splits "a=x,b=y" and returns the value of attribute `key` at position `index`, or nullopt.
std::optional<std::string_view> Attribute(std::string_view msg, size_t index, char key) {
  size_t start = 0;
  for (size_t i = 0; i < index; ++i) {
    size_t comma = msg.find(',', start);
    if (comma == std::string_view::npos) return std::nullopt;
    start = comma + 1;
  }
  size_t end = msg.find(',', start);
  std::string_view part =
      msg.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  if (part.size() < 2 || part[0] != key || part[1] != '=') return std::nullopt;
  return part.substr(2);
}

std::string Xor(std::string_view a, std::string_view b) {
  std::string out(a);
  for (size_t i = 0; i < out.size() && i < b.size(); ++i) out[i] = static_cast<char>(out[i] ^ b[i]);
  return out;
}

}  // namespace

ScramClient::ScramClient(std::string user, std::string password, std::string client_nonce)
    : user_(std::move(user)),
      password_(std::move(password)),
      client_nonce_(std::move(client_nonce)) {}

ScramClient::ScramClient(std::string user, ScramSecret secret, std::string client_nonce)
    : user_(std::move(user)), secret_(std::move(secret)), client_nonce_(std::move(client_nonce)) {}

Result<ScramSecret> ScramSecret::FromPassword(std::string_view password, int iterations) {
  ARBOR_ASSIGN_OR_RETURN(std::string salt, RandomBytes(16));
  return Derive(password, salt, iterations);
}

Result<ScramSecret> ScramSecret::Unguessable(int iterations) {
  ScramSecret s;
  ARBOR_ASSIGN_OR_RETURN(s.salt, RandomBytes(16));
  ARBOR_ASSIGN_OR_RETURN(std::string salted, RandomBytes(32));
  s.iterations = iterations;
  s.client_key = HmacSha256(salted, "Client Key");
  s.stored_key = Sha256(s.client_key);
  s.server_key = HmacSha256(salted, "Server Key");
  return s;
}

ScramSecret ScramSecret::Derive(std::string_view password, std::string_view salt, int iterations) {
  ScramSecret s;
  s.salt = std::string(salt);
  s.iterations = iterations;
  std::string salted = Pbkdf2Sha256(password, salt, iterations);
  s.client_key = HmacSha256(salted, "Client Key");
  s.stored_key = Sha256(s.client_key);
  s.server_key = HmacSha256(salted, "Server Key");
  return s;
}

std::string ScramSecret::Verifier() const {
  return "SCRAM-SHA-256$" + std::to_string(iterations) + ":" + Base64Encode(salt) + "$" +
         Base64Encode(stored_key) + ":" + Base64Encode(server_key);
}

bool ScramSecret::Matches(std::string_view password) const {
  if (salt.empty() || stored_key.empty()) return false;
  std::string salted = Pbkdf2Sha256(password, salt, iterations);
  return ConstantTimeEquals(Sha256(HmacSha256(salted, "Client Key")), stored_key);
}

Result<std::string> ScramClient::NewNonce() {
  ARBOR_ASSIGN_OR_RETURN(std::string raw, RandomBytes(18));
  return Base64Encode(raw);
}

std::string ScramClient::ClientFirstBare() const {
  return "n=" + EscapeSaslName(user_) + ",r=" + client_nonce_;
}

std::string ScramClient::ClientFirst() const { return "n,," + ClientFirstBare(); }

Result<std::string> ScramClient::ClientFinal(std::string_view server_first) {
  auto bad = [](const std::string& why) {
    return Status::InvalidArgument("SCRAM server-first-message " + why);
  };
  auto nonce = Attribute(server_first, 0, 'r');
  auto salt_b64 = Attribute(server_first, 1, 's');
  auto iter_text = Attribute(server_first, 2, 'i');
  if (!nonce || !salt_b64 || !iter_text) return bad("is malformed");
  if (nonce->size() <= client_nonce_.size() ||
      nonce->substr(0, client_nonce_.size()) != client_nonce_) {
    return bad("has a nonce that does not extend the client's");
  }
  auto salt = Base64Decode(*salt_b64);
  if (!salt.ok() || salt->empty()) return bad("has an invalid salt");
  int iterations = 0;
  auto [ptr, ec] =
      std::from_chars(iter_text->data(), iter_text->data() + iter_text->size(), iterations);
  if (ec != std::errc() || ptr != iter_text->data() + iter_text->size() || iterations < 1 ||
      iterations > kMaxIterations) {
    return bad("has an invalid iteration count");
  }

  ScramSecret keys;
  if (secret_) {
    if (*salt != secret_->salt || iterations != secret_->iterations) {
      return bad("names another salt or iteration count than the role's password has");
    }
    keys = *secret_;
  } else {
    keys = ScramSecret::Derive(password_, *salt, iterations);
  }
  std::string without_proof = "c=biws,r=" + std::string(*nonce);
  std::string auth_message =
      ClientFirstBare() + "," + std::string(server_first) + "," + without_proof;
  std::string proof = Xor(keys.client_key, HmacSha256(keys.stored_key, auth_message));
  expected_server_signature_ = HmacSha256(keys.server_key, auth_message);
  return without_proof + ",p=" + Base64Encode(proof);
}

Status ScramClient::VerifyServerFinal(std::string_view server_final) const {
  if (auto err = Attribute(server_final, 0, 'e')) {
    return Status::FailedPrecondition("SCRAM server reported an error: " + std::string(*err));
  }
  auto v = Attribute(server_final, 0, 'v');
  if (!v) return Status::FailedPrecondition("SCRAM server-final-message is malformed");
  auto sig = Base64Decode(*v);
  if (expected_server_signature_.empty() || !sig.ok() ||
      !ConstantTimeEquals(*sig, expected_server_signature_)) {
    return Status::FailedPrecondition(
        "SCRAM server signature does not match: the server does "
        "not know the password");
  }
  return Status::Ok();
}

}  // namespace arbor::proxy::auth
