// API tokens: the Engine's token methods. See engine.h ("API tokens") and docs/security.md.
#include "common/clock.h"
#include "control/engine.h"
#include "proxy/auth/base64.h"
#include "proxy/auth/crypto.h"

namespace arbor::control {
namespace {

constexpr const char* kTokenPrefix = "arbor_";

std::string HexSha256(const std::string& text) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : proxy::auth::Sha256(text)) out += kHex[c >> 4], out += kHex[c & 15];
  return out;
}

}  // namespace

Result<std::pair<ApiTokenRecord, std::string>> Engine::CreateApiToken(const std::string& name,
                                                                      AccessRole role,
                                                                      const std::string& project,
                                                                      int64_t ttl_s) {
  ARBOR_RETURN_IF_ERROR(ValidateId("token", name));
  if (ttl_s < 0) return Status::InvalidArgument("a token's ttl must be positive");
  ARBOR_ASSIGN_OR_RETURN(std::string secret, proxy::auth::RandomBytes(32));
  std::string token = kTokenPrefix + proxy::auth::Base64UrlEncode(secret);
  std::lock_guard l(mu_);
  if (catalog_.api_tokens.count(name)) {
    return Status::AlreadyExists("token " + name + " already exists; revoke it first");
  }
  ApiTokenRecord t;
  t.name = name;
  t.role = role;
  if (!project.empty()) {
    auto p = catalog_.projects.find(project);
    if (p == catalog_.projects.end()) {
      return Status::NotFound("project projects/" + project + " does not exist");
    }
    t.project = project;
    t.project_uid = p->second.uid;
  }
  t.hash = HexSha256(token);
  t.create_time_us = WallMicros();
  t.expire_time_us = ttl_s > 0 ? t.create_time_us + ttl_s * 1'000'000 : 0;
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(t)}));
  catalog_.api_tokens[name] = t;
  return std::make_pair(t, token);
}

std::vector<ApiTokenRecord> Engine::ListApiTokens() {
  std::lock_guard l(mu_);
  std::vector<ApiTokenRecord> out;
  for (const auto& [k, t] : catalog_.api_tokens) out.push_back(t);
  return out;
}

Status Engine::RevokeApiToken(const std::string& name) {
  std::lock_guard l(mu_);
  if (!catalog_.api_tokens.count(name))
    return Status::NotFound("token " + name + " does not exist");
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::EraseApiToken(name)}));
  catalog_.api_tokens.erase(name);
  return Status::Ok();
}

Result<ApiTokenRecord> Engine::FindApiToken(const std::string& token, int64_t now_us) {
  if (token.rfind(kTokenPrefix, 0) != 0) return Status::NotFound("not an Arbor API token");
  // The hash of a 256-bit random secret: looking it up leaks nothing a guess could use.
  std::string hash = HexSha256(token);
  std::lock_guard l(mu_);
  for (const auto& [name, t] : catalog_.api_tokens) {
    if (t.hash != hash) continue;
    if (t.expire_time_us != 0 && t.expire_time_us <= now_us) {
      return Status::NotFound("token " + name + " has expired");
    }
    if (!t.project.empty()) {
      auto p = catalog_.projects.find(t.project);
      if (p == catalog_.projects.end() || p->second.uid != t.project_uid) {
        return Status::NotFound("token " + name + " was made for a project that was deleted");
      }
    }
    return t;
  }
  return Status::NotFound("unknown or revoked token");
}

}  // namespace arbor::control
