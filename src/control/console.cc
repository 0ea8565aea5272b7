#include "control/console.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "proxy/auth/crypto.h"

namespace arbor::control {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxAssetBytes = 64ull << 20;

std::string ContentType(const std::string& path) {
  static const std::map<std::string, std::string> kTypes = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
      {".woff2", "font/woff2"},
      {".txt", "text/plain; charset=utf-8"},
  };
  auto it = kTypes.find(fs::path(path).extension().string());
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

const char* kNotBuilt =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Arbor</title></head><body>"
    "<h1>Arbor</h1><p>The console is not built. Build it with <code>make console</code> "
    "(it needs node and npm), or start the daemon with <code>--console-dir DIR</code>. "
    "The REST API is at <code>/api/2.0/</code>.</p></body></html>";

std::string KeyOf(const std::string& secret) { return proxy::auth::Sha256(secret); }

// 32 random bytes as 64 hex digits. Internal when the system's random source fails.
Result<std::string> RandomHex32() {
  ARBOR_ASSIGN_OR_RETURN(std::string raw, proxy::auth::RandomBytes(32));
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) out += kHex[c >> 4], out += kHex[c & 15];
  return out;
}

// Erases the entry of `map` whose expiry (`expiry_of`) is earliest among those `pick` selects.
template <typename Map, typename Pick, typename Expiry>
void EraseOldest(Map* map, Pick pick, Expiry expiry_of) {
  auto oldest = map->end();
  for (auto it = map->begin(); it != map->end(); ++it) {
    if (pick(it->second) &&
        (oldest == map->end() || expiry_of(it->second) < expiry_of(oldest->second))) {
      oldest = it;
    }
  }
  if (oldest != map->end()) map->erase(oldest);
}

}  // namespace

ConsoleAssets ConsoleAssets::Load(const std::string& dir) {
  ConsoleAssets a;
  a.index_ = {kNotBuilt, "text/html; charset=utf-8"};
  std::error_code ec;
  if (dir.empty() || !fs::is_regular_file(fs::path(dir) / "index.html", ec)) return a;
  uint64_t total = 0;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    total += it->file_size(ec);
    if (total > kMaxAssetBytes) break;
    std::ifstream in(it->path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string url = "/" + fs::relative(it->path(), dir, ec).generic_string();
    a.files_[url] = {ss.str(), ContentType(url)};
  }
  auto index = a.files_.find("/index.html");
  if (index != a.files_.end()) {
    a.index_ = index->second;
    a.built_ = true;
  }
  return a;
}

const ConsoleAssets::File* ConsoleAssets::Find(const std::string& path) const {
  auto it = files_.find(path);
  return it == files_.end() ? nullptr : &it->second;
}

Result<std::string> ConsoleSessions::Create(const std::string& token, int64_t now_us,
                                            std::string* csrf) {
  ARBOR_ASSIGN_OR_RETURN(std::string id, RandomHex32());
  ARBOR_ASSIGN_OR_RETURN(*csrf, RandomHex32());
  auto expiry = [](const Session& x) { return x.expire_us; };
  std::lock_guard l(mu_);
  std::erase_if(sessions_, [&](const auto& e) { return e.second.expire_us <= now_us; });
  size_t mine = 0;
  for (const auto& [k, x] : sessions_) mine += x.token == token;
  if (mine >= kMaxSessionsPerToken) {
    EraseOldest(
        &sessions_, [&](const Session& x) { return x.token == token; }, expiry);
  } else if (sessions_.size() >= kMaxSessions) {
    EraseOldest(
        &sessions_, [](const Session&) { return true; }, expiry);
  }
  sessions_[KeyOf(id)] = {token, *csrf, now_us + kSessionLifeUs};
  return id;
}

std::optional<ConsoleSessions::Session> ConsoleSessions::Find(const std::string& id,
                                                              int64_t now_us) {
  std::lock_guard l(mu_);
  auto it = sessions_.find(KeyOf(id));
  if (it == sessions_.end()) return std::nullopt;
  if (it->second.expire_us <= now_us) {
    sessions_.erase(it);
    return std::nullopt;
  }
  return it->second;
}

void ConsoleSessions::Remove(const std::string& id) {
  std::lock_guard l(mu_);
  sessions_.erase(KeyOf(id));
}

Result<std::string> ConsoleSessions::CreateCode(const std::string& token, int64_t now_us) {
  ARBOR_ASSIGN_OR_RETURN(std::string code, RandomHex32());
  using Code = std::pair<std::string, int64_t>;
  auto expiry = [](const Code& c) { return c.second; };
  std::lock_guard l(mu_);
  std::erase_if(codes_, [&](const auto& e) { return e.second.second <= now_us; });
  size_t mine = 0;
  for (const auto& [k, c] : codes_) mine += c.first == token;
  if (mine >= kMaxCodesPerToken) {
    EraseOldest(
        &codes_, [&](const Code& c) { return c.first == token; }, expiry);
  } else if (codes_.size() >= kMaxCodes) {
    EraseOldest(
        &codes_, [](const Code&) { return true; }, expiry);
  }
  codes_[KeyOf(code)] = {token, now_us + kCodeLifeUs};
  return code;
}

Result<std::string> ConsoleSessions::RedeemCode(const std::string& code, int64_t now_us) {
  std::lock_guard l(mu_);
  auto it = codes_.find(KeyOf(code));
  if (it == codes_.end() || it->second.second <= now_us) {
    if (it != codes_.end()) codes_.erase(it);
    return Status::NotFound(
        "the login link is unknown, used or expired (links work once, for 2 minutes): run "
        "`arbor console` again, or log in with a token");
  }
  std::string token = it->second.first;
  codes_.erase(it);
  return token;
}

}  // namespace arbor::control
