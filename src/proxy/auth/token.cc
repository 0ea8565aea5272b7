#include "proxy/auth/token.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "proxy/auth/base64.h"
#include "proxy/auth/crypto.h"

namespace arbor::proxy::auth {
namespace {

constexpr std::string_view kHeader = R"({"alg":"HS256","typ":"JWT"})";

Status Refuse(const std::string& why) { return Status::FailedPrecondition(why); }

bool IsBase64UrlChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

Result<std::string> ReadAll(int fd, const std::string& path) {
  std::string out;
  char buf[256];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError("read " + path + ": " + strerror(errno));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 4096) return Status::Corruption(path + " is too large for a key file");
  }
  return out;
}

}  // namespace

TokenSigner::TokenSigner(std::string key) : key_(std::move(key)) {}

Result<TokenSigner> TokenSigner::LoadOrCreate(const std::string& path) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      // Whoever can write the key can mint tokens, and whoever can read it can too: it must
      // be this process's own file, readable by nobody else.
      struct stat st;
      if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
          (st.st_mode & 077) != 0) {
        close(fd);
        return Status::FailedPrecondition(
            path + " must be a regular file owned by uid " + std::to_string(geteuid()) +
            " with mode 0600 (no group or other bits); fix it or remove it to make a new key");
      }
      auto data = ReadAll(fd, path);
      close(fd);
      if (!data.ok()) return data.status();
      // A creator may be between open and write; give it a moment, once.
      if (data->empty() && attempt == 0) {
        usleep(100 * 1000);
        continue;
      }
      if (data->size() < kKeyBytes) {
        return Status::Corruption(path + " holds " + std::to_string(data->size()) +
                                  " bytes; a token key needs " + std::to_string(kKeyBytes));
      }
      return TokenSigner(std::move(*data));
    }
    if (errno != ENOENT) return Status::IOError("open " + path + ": " + strerror(errno));
    ARBOR_ASSIGN_OR_RETURN(std::string key, RandomBytes(kKeyBytes));
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return Status::IOError("create " + tmp + ": " + strerror(errno));
    bool ok =
        write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && fsync(fd) == 0;
    close(fd);
    // link() fails if another process created the key first; then that key wins.
    if (ok && link(tmp.c_str(), path.c_str()) == 0) {
      unlink(tmp.c_str());
      return TokenSigner(std::move(key));
    }
    int err = errno;
    unlink(tmp.c_str());
    if (!ok) return Status::IOError("write " + tmp + ": " + strerror(err));
    if (err != EEXIST) return Status::IOError("link " + path + ": " + strerror(err));
  }
  return Status::IOError(path + " stayed empty");
}

Result<std::string> TokenSigner::Issue(const std::string& endpoint, const std::string& role,
                                       int64_t ttl_seconds, int64_t now,
                                       const std::string& endpoint_uid) const {
  if (ttl_seconds < kMinTtlSeconds || ttl_seconds > kMaxTtlSeconds) {
    return Status::InvalidArgument("token ttl must be between " + std::to_string(kMinTtlSeconds) +
                                   "s and " + std::to_string(kMaxTtlSeconds) + "s, got " +
                                   std::to_string(ttl_seconds) + "s");
  }
  if (endpoint.empty() || role.empty()) {
    return Status::InvalidArgument("a token needs an endpoint and a role");
  }
  nlohmann::json claims = {
      {"sub", role}, {"endpoint", endpoint}, {"iat", now}, {"exp", now + ttl_seconds}};
  if (!endpoint_uid.empty()) claims["euid"] = endpoint_uid;
  std::string signing_input = Base64UrlEncode(kHeader) + "." + Base64UrlEncode(claims.dump());
  return signing_input + "." + Base64UrlEncode(HmacSha256(key_, signing_input));
}

Result<TokenClaims> TokenSigner::Verify(std::string_view token, const std::string& endpoint,
                                        int64_t now) const {
  size_t dot1 = token.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Refuse("malformed token: expected header.payload.signature");
  }
  std::string_view signing_input = token.substr(0, dot2);
  auto header = Base64UrlDecode(token.substr(0, dot1));
  auto payload = Base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = Base64UrlDecode(token.substr(dot2 + 1));
  if (!header.ok() || !payload.ok() || !signature.ok()) {
    return Refuse("malformed token: a part is not base64url");
  }
  // The signature is checked before anything in the payload is believed.
  if (!ConstantTimeEquals(*signature, HmacSha256(key_, signing_input))) {
    return Refuse("token signature is invalid (forged, or signed by another arbor installation)");
  }
  auto h = nlohmann::json::parse(*header, nullptr, /*allow_exceptions=*/false);
  if (!h.is_object() || !h.contains("alg") || h["alg"] != "HS256") {
    return Refuse("malformed token: the algorithm must be HS256");
  }
  auto p = nlohmann::json::parse(*payload, nullptr, /*allow_exceptions=*/false);
  if (!p.is_object()) return Refuse("malformed token: the payload is not a JSON object");
  auto str = [&](const char* k) -> const nlohmann::json* {
    auto it = p.find(k);
    return it != p.end() && it->is_string() ? &*it : nullptr;
  };
  auto num = [&](const char* k) -> const nlohmann::json* {
    auto it = p.find(k);
    return it != p.end() && it->is_number_integer() ? &*it : nullptr;
  };
  if (!str("sub") || !str("endpoint") || !num("iat") || !num("exp")) {
    return Refuse("malformed token: it needs sub, endpoint, iat and exp");
  }
  TokenClaims c;
  c.role = str("sub")->get<std::string>();
  c.endpoint = str("endpoint")->get<std::string>();
  c.issued_at = num("iat")->get<int64_t>();
  c.expires_at = num("exp")->get<int64_t>();
  if (str("euid")) c.endpoint_uid = str("euid")->get<std::string>();
  if (now >= c.expires_at) {
    return Refuse("token expired " + std::to_string(now - c.expires_at) +
                  "s ago; get a new one with `arbor credential`");
  }
  if (c.issued_at > now + kClockSkewSeconds) return Refuse("token is issued in the future");
  if (c.endpoint != endpoint) {
    return Refuse("token is for " + c.endpoint + ", not " + endpoint);
  }
  return c;
}

bool TokenSigner::LooksLikeToken(std::string_view password) {
  if (password.substr(0, 3) != "eyJ") return false;
  int dots = 0;
  for (char c : password) {
    if (c == '.') {
      ++dots;
    } else if (!IsBase64UrlChar(c)) {
      return false;
    }
  }
  return dots == 2;
}

}  // namespace arbor::proxy::auth
