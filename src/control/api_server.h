#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "control/access.h"
#include "control/engine.h"

namespace httplib {
class Server;
struct Request;
}  // namespace httplib
namespace arbor::proxy::auth {
class TokenSigner;
}

namespace arbor::control {

// Facts about the running daemon, reported by GET status.
struct ServerInfo {
  std::string version;
  std::string data_dir;
  std::string api_url;
  std::string proxy_listen;
  std::string proxy_socket_dir;  // empty: the proxy has no unix sockets
  std::string endpoint_ports;
};

// The REST API of docs/api.md over HTTP (cpp-httplib). Maps every Status to an HTTP status
// and {"error_code", "message"} in exactly one place. Requests run on the server's thread
// pool; the Engine serializes them.
class ApiServer {
 public:
  // `tokens` signs the credentials of POST credentials; it must outlive the server.
  ApiServer(Engine* engine, std::string admin_token, ServerInfo info,
            const proxy::auth::TokenSigner* tokens);
  ~ApiServer();
  // Binds host:port; port 0 takes any free port. Returns the bound port. Unavailable (with
  // the reason) if the address is taken.
  [[nodiscard]] Result<uint16_t> Bind(const std::string& host, uint16_t port);
  // Serves until Stop(); blocks. REQUIRES: Bind succeeded.
  void Serve();
  void Stop();
  // The address clients use, reported by GET status (known once bound).
  void SetApiUrl(std::string url) { info_.api_url = std::move(url); }

 private:
  void Routes();
  // The caller of a request from its Authorization header: the admin token, or an API token.
  // PermissionDenied (answered 401) with what is wrong and where the admin token is.
  Result<Principal> Authenticate(const std::string& header) const;
  // Whether the caller (set by the pre-routing handler) may make this request; the one
  // place where the rules of access.h meet the routes.
  Status AuthorizeRequest(const httplib::Request& req) const;
  Engine* engine_;
  const proxy::auth::TokenSigner* tokens_;
  std::string token_;
  ServerInfo info_;
  std::unique_ptr<httplib::Server> http_;
};

}  // namespace arbor::control
