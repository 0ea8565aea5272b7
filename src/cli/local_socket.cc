#include "cli/local_socket.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>

namespace arbor::cli {
namespace {

// The port of postgresql://...@HOST:PORT/..., or "" if it has none.
std::string PortOf(const std::string& url) {
  size_t at = url.rfind('@');
  size_t start = at == std::string::npos ? url.find("://") : at;
  if (start == std::string::npos) return "";
  size_t slash = url.find('/', start + (at == std::string::npos ? 3 : 1));
  std::string hostport =
      url.substr(start + 1, slash == std::string::npos ? slash : slash - start - 1);
  size_t colon = hostport.rfind(':');
  if (colon == std::string::npos || hostport.back() == ']') return "";
  std::string port = hostport.substr(colon + 1);
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) return "";
  return port;
}

bool LoopbackApi(const std::string& base_url) {
  for (const char* prefix : {"http://127.", "https://127.", "http://localhost", "https://localhost",
                             "http://[::1]", "https://[::1]"}) {
    if (base_url.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

std::string QueryEscape(const std::string& v) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : v) {
    if (std::isalnum(ch) || ch == '/' || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

}  // namespace

Result<std::string> LocalSocketDir(const Session& s, const api::ApiClient& c,
                                   const std::string& url) {
  if (s.io->getenv("ARBOR_LOCAL_SOCKET").value_or("") == "0") {
    return Status::FailedPrecondition("the local socket is turned off by ARBOR_LOCAL_SOCKET=0");
  }
  if (!LoopbackApi(c.base_url())) {
    return Status::FailedPrecondition("the API (" + c.base_url() +
                                      ") is not on this host's loopback address, so its proxy's "
                                      "unix socket is not either; use the TCP form");
  }
  std::string port = PortOf(url);
  if (port.empty()) return Status::Internal("the connection string " + url + " names no port");
  auto status = c.GetStatus();
  if (!status.ok()) return status.status();
  const std::string& dir = status->proxy_socket_dir;
  if (dir.empty()) {
    return Status::FailedPrecondition(
        "the daemon's proxy has no unix socket (started with --proxy-socket-dir none, or its "
        "log says why it could not make one)");
  }
  std::string socket = dir + "/.s.PGSQL." + port;
  struct stat st;
  if (stat(socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return Status::FailedPrecondition("the proxy's socket " + socket +
                                      " is not on this host: use the TCP form");
  }
  if (access(socket.c_str(), R_OK | W_OK) != 0) {
    return Status::FailedPrecondition("the proxy's socket " + socket +
                                      " belongs to the daemon's OS user, and this user cannot "
                                      "reach it: use the TCP form");
  }
  return dir;
}

std::string WithSocketDir(const std::string& url, const std::string& dir) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "host=" + QueryEscape(dir);
}

}  // namespace arbor::cli
