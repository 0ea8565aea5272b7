#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "common/metrics.h"
#include "common/status.h"
#include "control/access.h"
#include "control/console.h"
#include "control/engine.h"

namespace httplib {
class Server;
struct Request;
struct Response;
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
  std::string console_dir;  // the console's built files; empty or unbuilt: a page says so
  std::string metrics_url;  // the --metrics-listen URL, once bound; empty: none
};

// The REST API of docs/api.md over HTTP (cpp-httplib). Maps every Status to an HTTP status
// and {"error_code", "message"} in exactly one place. Requests run on the server's thread
// pool; the Engine serializes them. The same listener serves the web console's files at `/`
// (docs/console.md) and Prometheus metrics at `/metrics` (docs/metrics.md); BindMetrics adds
// a second listener with the metrics alone, without a token.
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
  // The metrics-only listener (--metrics-listen): GET /metrics without a token, every
  // project's series. Returns the bound port, as Bind does. ServeMetrics blocks until Stop().
  [[nodiscard]] Result<uint16_t> BindMetrics(const std::string& host, uint16_t port);
  void ServeMetrics();
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
  void ConsoleRoutes();
  // Answers a GET of the console's files (any path outside /api/ and /metrics).
  void ServeConsole(const httplib::Request& req, httplib::Response& res) const;
  // The exposition for `project` ("" for all): the engine's families, and the API's own when
  // `project` is empty.
  std::string Metrics(const std::string& project);
  // Counts a finished request (the logger calls it) under its route's pattern.
  void CountRequest(const httplib::Request& req, const httplib::Response& res);
  Engine* engine_;
  const proxy::auth::TokenSigner* tokens_;
  std::string token_;
  ServerInfo info_;
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<httplib::Server> metrics_http_;  // --metrics-listen; null without it
  ConsoleAssets assets_;
  ConsoleSessions sessions_;
  std::string cookie_ = "arbor_console";  // "arbor_console_<port>" once bound
  std::mutex requests_mu_;
  // (method, route, HTTP status) -> count, and latency by route; routes are patterns
  // ("projects/{id}/branches/{id}:reset"), a bounded set. Guarded by requests_mu_.
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;
  std::map<std::string, metrics::Histogram> latency_;
};

}  // namespace arbor::control
