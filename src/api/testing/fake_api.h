#pragma once

// Test-only: an in-process HTTP server on 127.0.0.1 (cpp-httplib) that answers the REST
// API's paths with canned bodies and records every request, so that tests of the client and
// the CLI see real HTTP without a daemon. It stands below the unit under test; it is not a
// model of the server's behaviour. Include only from *_test.cc files that link cpp-httplib.

#include <httplib.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace arbor::api::testing {

class FakeApi {
 public:
  struct Request {
    std::string method;
    std::string path;  // without the /api/2.0/postgres/ prefix and without the query
    std::map<std::string, std::string> params;
    std::string body;
    std::string authorization;
  };

  FakeApi() {
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      Handle(req, res);
    };
    server_.Get(".*", handler);
    server_.Post(".*", handler);
    server_.Patch(".*", handler);
    server_.Delete(".*", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() is a no-op until the loop runs; wait for it so the destructor cannot hang.
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeApi() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Answers `method path` (path relative to /api/2.0/postgres/, no query) with `status` and
  // `body` from now on.
  void On(const std::string& method, const std::string& path, int status, std::string body) {
    std::lock_guard<std::mutex> lock(mu_);
    routes_[method + " " + path] = {status, std::move(body)};
  }

  std::vector<Request> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // How many requests for `method path` arrived.
  int Count(const std::string& method, const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& r : requests_) n += r.method == method && r.path == path;
    return n;
  }
  // The last request for `method path`; an empty Request if there was none.
  Request Last(const std::string& method, const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = requests_.rbegin(); it != requests_.rend(); ++it) {
      if (it->method == method && it->path == path) return *it;
    }
    return {};
  }

 private:
  void Handle(const httplib::Request& req, httplib::Response& res) {
    const std::string prefix = "/api/2.0/postgres/";
    Request r{req.method, req.path, {}, req.body, req.get_header_value("Authorization")};
    if (r.path.rfind(prefix, 0) == 0) r.path = r.path.substr(prefix.size());
    for (const auto& [k, v] : req.params) r.params[k] = v;
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(r);
    auto it = routes_.find(r.method + " " + r.path);
    if (it == routes_.end()) {
      res.status = 404;
      res.set_content(R"({"error_code": "ENDPOINT_NOT_FOUND", "message": "no such route"})",
                      "application/json");
      return;
    }
    res.status = it->second.first;
    res.set_content(it->second.second, "application/json");
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::map<std::string, std::pair<int, std::string>> routes_;
  std::vector<Request> requests_;
};

}  // namespace arbor::api::testing
