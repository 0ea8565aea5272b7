#pragma once

// The web console's server side (docs/console.md): its built files, served from memory, and
// its login sessions. The page itself is a static single-page app (console/) that calls the
// REST API with a session cookie instead of a bearer token.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/status.h"

namespace arbor::control {

// The console's files, read once at start. Immutable after Load; thread-safe to read.
class ConsoleAssets {
 public:
  struct File {
    std::string body;
    std::string content_type;
  };
  // Reads every regular file under `dir` (at most 64 MiB in all). Empty `dir` or no
  // index.html there: an empty set, whose index says how to build the console.
  static ConsoleAssets Load(const std::string& dir);
  // The file at URL path `path` ("/assets/x.js"), or nullptr. Only files that were read are
  // served: no path reaches the file system.
  const File* Find(const std::string& path) const;
  // index.html, or a page that says the console was not built and how to build it.
  const File& Index() const { return index_; }
  bool built() const { return built_; }

 private:
  std::map<std::string, File> files_;
  File index_;
  bool built_ = false;
};

// Console logins. Thread-safe.
//
// A session is made from an API token (typed into the login form) or a one-time code made by
// `arbor console` for its caller's token. It keeps that token, so every request is checked
// against it again (a revoked or expired token ends its sessions at once), and a random CSRF
// token that every state change must send back in X-Arbor-CSRF. Sessions live in memory: a
// restart of the daemon logs everyone out.
class ConsoleSessions {
 public:
  static constexpr int64_t kSessionLifeUs = 12ll * 3600 * 1'000'000;
  static constexpr int64_t kCodeLifeUs = 120ll * 1'000'000;
  static constexpr size_t kMaxSessions = 1000;
  static constexpr size_t kMaxCodes = 100;
  // One token's share: its own oldest session or code goes first, so no token can push out
  // another's.
  static constexpr size_t kMaxSessionsPerToken = 20;
  static constexpr size_t kMaxCodesPerToken = 5;

  struct Session {
    std::string token;  // the API token it acts with
    std::string csrf;
    int64_t expire_us = 0;
  };
  // A new session for `token` (already authenticated by the caller); its id for the cookie.
  // The oldest session goes when there are kMaxSessions.
  // Internal if the system's random source fails.
  [[nodiscard]] Result<std::string> Create(const std::string& token, int64_t now_us,
                                           std::string* csrf);
  // The live session of `id`; nullopt if unknown or expired.
  std::optional<Session> Find(const std::string& id, int64_t now_us);
  void Remove(const std::string& id);
  // A one-time login code for `token`, valid kCodeLifeUs.
  [[nodiscard]] Result<std::string> CreateCode(const std::string& token, int64_t now_us);
  // The token of `code`, which is used up; NotFound if unknown, used or expired.
  Result<std::string> RedeemCode(const std::string& code, int64_t now_us);

 private:
  std::mutex mu_;
  // Keyed by the SHA-256 of the session id or code, so that a lookup's timing tells nothing
  // about a live secret. Guarded by mu_.
  std::map<std::string, Session> sessions_;
  std::map<std::string, std::pair<std::string, int64_t>> codes_;  // -> (token, expiry)
};

}  // namespace arbor::control
