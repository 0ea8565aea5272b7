#include "control/api_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "api/masking.h"
#include "api/names.h"
#include "common/clock.h"
#include "common/log.h"
#include "control/access.h"
#include "control/bisect.h"
#include "control/data_api.h"
#include "control/sizing.h"
#include "proxy/auth/crypto.h"
#include "proxy/auth/token.h"

namespace arbor::control {
namespace {

using api::FormatTime;
using api::ParseDuration;
using api::ParseTime;
using nlohmann::json;

// The engine keeps LSNs as plain integers in its records.
Result<uint64_t> ParseLsn(std::string_view text) {
  ARBOR_ASSIGN_OR_RETURN(Lsn lsn, api::ParseLsn(text));
  return lsn.value();
}
std::string FormatLsn(uint64_t lsn) { return api::FormatLsn(Lsn(lsn)); }
const std::string kPrefix = "/api/2.0/postgres/";
// JSON answers go uncompressed: cpp-httplib compresses "application/json" (this exact type)
// with brotli at its highest quality whenever a client accepts it, as browsers always do,
// which made the console's first paint of 1,000 branches 3.4 times slower
// (docs/console.md, "Speed"). The charset parameter (JSON is UTF-8 anyway) keeps the answer off the
// library's list of types to compress.
const char* const kJson = "application/json; charset=utf-8";
const std::string kTokensPath = "/api/2.0/tokens";

// The caller of the request this thread serves: cpp-httplib runs a request's pre-routing and
// its handler on one thread, and the pre-routing handler sets this before anything else.
thread_local Principal g_caller;
// The same request's bearer token (from its header or its console session), its console
// session id (empty: a bearer token), and when its handling began.
thread_local std::string g_token;
thread_local std::string g_session;
thread_local std::chrono::steady_clock::time_point g_request_start;

const std::string kConsolePath = "/api/2.0/console/";
const std::string kSessionPath = "/api/2.0/console/session";
// The session cookie's name carries the API's port ("arbor_console_8432"): browsers send a
// host's cookies to every port of it, and two daemons on one host must not log each other out.
const std::string kCookiePrefix = "arbor_console_";
const std::string kCsrfHeader = "X-Arbor-CSRF";
constexpr size_t kMaxRoutes = 100;  // distinct route labels of the request metrics
// The page loads only its own files and talks only to this listener.
const char* kConsoleCsp =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'";

// The value of cookie `name` in the request's Cookie header; empty if absent.
std::string CookieValue(const httplib::Request& req, const std::string& name) {
  std::string header = req.get_header_value("Cookie");
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string pair = header.substr(pos, end - pos);
    size_t first = pair.find_first_not_of(' ');
    if (first != std::string::npos) pair = pair.substr(first);
    if (pair.rfind(name + "=", 0) == 0) return pair.substr(name.size() + 1);
    pos = end + 1;
  }
  return "";
}

// The route pattern of a path, for the request metrics: ids become {id}, verbs stay
// ("projects/{id}/branches/{id}:reset"); anything unknown is "other", so the set of routes
// is bounded whatever clients send.
std::string RouteOf(const std::string& path) {
  if (path == "/metrics") return "/metrics";
  if (path.rfind("/api/", 0) != 0) return "console";
  if (path.rfind(kConsolePath, 0) == 0) {
    return path == kSessionPath             ? "console/session"
           : path == kConsolePath + "links" ? "console/links"
                                            : "other";
  }
  if (path == kTokensPath) return "tokens";
  if (path.rfind(kTokensPath + "/", 0) == 0) return "tokens/{id}";
  if (path.rfind(kPrefix, 0) != 0) return "other";
  std::string rest = path.substr(kPrefix.size());
  if (rest == "status" || rest == "credentials") return rest;
  static const std::set<std::string> kCollections = {"projects", "branches",  "endpoints",
                                                     "roles",    "databases", "snapshots",
                                                     "usage",    "history",   "changed_pages"};
  std::string out;
  size_t i = 0;
  for (size_t pos = 0; pos <= rest.size(); ++i) {
    size_t slash = rest.find('/', pos);
    std::string part =
        rest.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (i % 2 == 0) {
      if (!kCollections.count(part)) return "other";
      out += part;
    } else {
      static const std::set<std::string> kVerbs = {
          "",           ":reset", ":restore", ":undelete", ":bisect",
          ":diff_data", ":merge", ":start",   ":stop",     ":reset_password"};
      size_t colon = part.find(':');
      std::string verb = colon == std::string::npos ? "" : part.substr(colon);
      if (!kVerbs.count(verb)) return "other";
      out += "/{id}" + verb + "/";
    }
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  if (!out.empty() && out.back() == '/') out.pop_back();
  return i > 8 ? "other" : out;
}

// Whether an HTTP Host header names an IP address (with or without a port), or `listen_host`
// itself: what a scraper sends, and not what a page of a rebound domain name sends.
bool HostIsAddress(const std::string& header, const std::string& listen_host) {
  std::string h = header;
  if (!h.empty() && h.front() == '[') {
    size_t end = h.find(']');
    if (end == std::string::npos) return false;
    h = h.substr(1, end - 1);
  } else if (size_t colon = h.rfind(':'); colon != std::string::npos) {
    h = h.substr(0, colon);
  }
  if (h.empty()) return false;
  if (h == listen_host) return true;
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

json PrincipalJson(const Principal& p) {
  return {{"name", p.name}, {"role", AccessRoleName(p.role)}, {"project", p.project}};
}

// The single place where a Status becomes an HTTP answer.
void SendError(httplib::Response& res, const Status& st) {
  int http = 500;
  const char* code = "INTERNAL_ERROR";
  switch (st.code()) {
    case Code::kInvalidArgument:
      http = 400, code = "INVALID_PARAMETER_VALUE";
      break;
    case Code::kFailedPrecondition:
      http = 409, code = "FAILED_PRECONDITION";
      break;
    case Code::kOutOfRange:
      http = 400, code = "OUT_OF_RANGE";
      break;
    case Code::kPermissionDenied:
      http = 403, code = "PERMISSION_DENIED";
      break;
    case Code::kNotFound:
      http = 404, code = "RESOURCE_DOES_NOT_EXIST";
      break;
    case Code::kAlreadyExists:
      http = 409, code = "RESOURCE_ALREADY_EXISTS";
      break;
    case Code::kResourceExhausted:
    case Code::kUnavailable:
      http = 503, code = "TEMPORARILY_UNAVAILABLE";
      break;
    default:
      break;
  }
  if (http >= 500) log::error("api: {}", st.ToString());
  res.status = http;
  res.set_content(json{{"error_code", code}, {"message", st.message()}}.dump(), kJson);
}

void SendJson(httplib::Response& res, const json& j) {
  res.status = 200;
  res.set_content(j.dump(), kJson);
}

std::string Duration(int64_t s) { return std::to_string(s) + "s"; }

Result<json> Body(const httplib::Request& req) {
  if (req.body.empty()) return json::object();
  json j = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("the request body is not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument("the request body must be a JSON object");
  return j;
}

// Reads an optional field of `obj`, checking its JSON type.
template <typename T>
Result<std::optional<T>> Field(const json& obj, const char* name, const char* where) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return std::optional<T>();
  bool ok = false;
  if constexpr (std::is_same_v<T, std::string>) ok = it->is_string();
  if constexpr (std::is_same_v<T, bool>) ok = it->is_boolean();
  if constexpr (std::is_same_v<T, double>) ok = it->is_number();
  if (!ok) {
    return Status::InvalidArgument(std::string(where) + "." + name + " has the wrong type");
  }
  return std::optional<T>(it->get<T>());
}

// Reads autoscaling_limit_min_cu and autoscaling_limit_max_cu of `obj` into `size`, over its
// values (either may be given alone: a fixed size of 2 is {"autoscaling_limit_min_cu": 2,
// "autoscaling_limit_max_cu": 2}). Whether any was given; the caller validates the result.
Result<bool> SizeFields(const json& obj, const char* where, ComputeSize* size) {
  ARBOR_ASSIGN_OR_RETURN(auto lo, Field<double>(obj, "autoscaling_limit_min_cu", where));
  ARBOR_ASSIGN_OR_RETURN(auto hi, Field<double>(obj, "autoscaling_limit_max_cu", where));
  if (lo) size->min_cu = *lo;
  if (hi) size->max_cu = *hi;
  return lo.has_value() || hi.has_value();
}

json SizeJson(const ComputeSize& s) {
  return {{"autoscaling_limit_min_cu", s.min_cu}, {"autoscaling_limit_max_cu", s.max_cu}};
}

// Reads an optional array of strings of `obj`.
Result<std::vector<std::string>> Strings(const json& obj, const char* name, const char* where) {
  std::vector<std::string> out;
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array()) {
    return Status::InvalidArgument(std::string(where) + "." + name +
                                   " must be an array of strings");
  }
  for (const json& v : *it) {
    if (!v.is_string() || v.get<std::string>().empty()) {
      return Status::InvalidArgument(std::string(where) + "." + name +
                                     " must be an array of non-empty strings");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

// Refuses fields the API does not know: a typo must not be silently ignored.
Status OnlyFields(const json& obj, std::initializer_list<const char*> known, const char* where) {
  for (const auto& [k, v] : obj.items()) {
    bool ok = false;
    for (const char* f : known) ok = ok || k == f;
    if (!ok) return Status::InvalidArgument("unknown field " + std::string(where) + "." + k);
  }
  return Status::Ok();
}

Result<json> Spec(const json& body) {
  ARBOR_RETURN_IF_ERROR(OnlyFields(body, {"spec"}, "body"));
  auto it = body.find("spec");
  if (it == body.end() || it->is_null()) return json::object();
  if (!it->is_object()) return Status::InvalidArgument("spec must be an object");
  return *it;
}

constexpr std::initializer_list<const char*> kBranchSpecFields = {
    "source_branch", "source_branch_time", "source_branch_lsn", "ttl",    "expire_time",
    "no_expiry",     "is_protected",       "source_snapshot",   "masking"};

Result<std::string> BranchIdOf(const std::string& project, const std::string& name);

// "projects/P/branches/B/snapshots/S" or "B/S" -> (B, S), within project P.
Result<std::pair<std::string, std::string>> SnapshotOf(const std::string& project,
                                                       const std::string& name) {
  std::string rest = name;
  std::string prefix = "projects/" + project + "/branches/";
  if (name.rfind("projects/", 0) == 0) {
    if (name.rfind(prefix, 0) != 0) {
      return Status::InvalidArgument("source_snapshot " + name + " is not in projects/" + project);
    }
    rest = name.substr(prefix.size());
    size_t at = rest.find("/snapshots/");
    if (at == std::string::npos) {
      return Status::InvalidArgument("source_snapshot '" + name +
                                     "' must be projects/P/branches/B/snapshots/S or B/S");
    }
    rest = rest.substr(0, at) + "/" + rest.substr(at + 11);
  }
  size_t slash = rest.find('/');
  if (slash == std::string::npos || rest.find('/', slash + 1) != std::string::npos) {
    return Status::InvalidArgument("source_snapshot '" + name +
                                   "' must be projects/P/branches/B/snapshots/S or B/S");
  }
  std::string b = rest.substr(0, slash), snap = rest.substr(slash + 1);
  ARBOR_RETURN_IF_ERROR(api::ValidateId(b, "branch id"));
  ARBOR_RETURN_IF_ERROR(api::ValidateId(snap, "snapshot id"));
  return std::make_pair(b, snap);
}

// Parses spec.snapshot_schedule: {"branch": B or its full name, "every": "86400s", "keep": N};
// null or absent removes the schedule.
Result<SnapshotSchedule> ScheduleOf(const std::string& project, const json& spec) {
  auto it = spec.find("snapshot_schedule");
  if (it == spec.end() || it->is_null()) return SnapshotSchedule{};
  if (!it->is_object()) {
    return Status::InvalidArgument(
        "spec.snapshot_schedule must be an object like {\"branch\": \"production\", "
        "\"every\": \"86400s\", \"keep\": 7}");
  }
  ARBOR_RETURN_IF_ERROR(OnlyFields(*it, {"branch", "every", "keep"}, "spec.snapshot_schedule"));
  ARBOR_ASSIGN_OR_RETURN(auto branch, Field<std::string>(*it, "branch", "spec.snapshot_schedule"));
  ARBOR_ASSIGN_OR_RETURN(auto every, Field<std::string>(*it, "every", "spec.snapshot_schedule"));
  auto keep = it->find("keep");
  if (!branch || !every || keep == it->end()) {
    return Status::InvalidArgument(
        "spec.snapshot_schedule needs branch, every and keep, e.g. {\"branch\": "
        "\"production\", \"every\": \"86400s\", \"keep\": 7}");
  }
  if (!keep->is_number_integer()) {
    return Status::InvalidArgument("spec.snapshot_schedule.keep must be a whole number");
  }
  SnapshotSchedule sched;
  ARBOR_ASSIGN_OR_RETURN(sched.branch, BranchIdOf(project, *branch));
  ARBOR_ASSIGN_OR_RETURN(sched.every_s, ParseDuration(*every));
  if (sched.every_s == 0) {
    return Status::InvalidArgument("spec.snapshot_schedule.every must be at least 60s");
  }
  sched.keep = keep->get<int64_t>();
  return sched;
}

// "projects/P/branches/B" or "B" -> B, within project P.
Result<std::string> BranchIdOf(const std::string& project, const std::string& name) {
  std::string prefix = "projects/" + project + "/branches/";
  if (name.rfind("projects/", 0) == 0) {
    if (name.rfind(prefix, 0) != 0) {
      return Status::InvalidArgument("source_branch " + name + " is not in projects/" + project);
    }
    return name.substr(prefix.size());
  }
  return name;
}

// Parses the expiry fields of a branch spec. `required`: exactly one must be present.
Result<std::optional<BranchRequest>> ExpiryOf(const json& spec, bool required) {
  ARBOR_ASSIGN_OR_RETURN(auto ttl, Field<std::string>(spec, "ttl", "spec"));
  ARBOR_ASSIGN_OR_RETURN(auto expire, Field<std::string>(spec, "expire_time", "spec"));
  ARBOR_ASSIGN_OR_RETURN(auto never, Field<bool>(spec, "no_expiry", "spec"));
  int n = (ttl ? 1 : 0) + (expire ? 1 : 0) + (never && *never ? 1 : 0);
  if (n == 0) {
    if (!required) return std::optional<BranchRequest>();
    return Status::InvalidArgument(
        "Expiration must be specified: set spec.ttl, spec.expire_time or spec.no_expiry");
  }
  if (n > 1) {
    return Status::InvalidArgument("set only one of spec.ttl, spec.expire_time and spec.no_expiry");
  }
  BranchRequest r;
  if (ttl) {
    r.expiry = Expiry::kTtl;
    ARBOR_ASSIGN_OR_RETURN(r.ttl_s, ParseDuration(*ttl));
  } else if (expire) {
    r.expiry = Expiry::kExpireTime;
    ARBOR_ASSIGN_OR_RETURN(r.expire_time_us, ParseTime(*expire));
  } else {
    r.expiry = Expiry::kNever;
  }
  return std::optional<BranchRequest>(r);
}

}  // namespace

// ---- server ----

ApiServer::ApiServer(Engine* engine, std::string admin_token, ServerInfo info,
                     const proxy::auth::TokenSigner* tokens)
    : engine_(engine),
      tokens_(tokens),
      token_(std::move(admin_token)),
      info_(std::move(info)),
      http_(std::make_unique<httplib::Server>()),
      assets_(ConsoleAssets::Load(info_.console_dir)) {
  if (!assets_.built()) {
    log::info("api: no console files in '{}'; / says how to build them", info_.console_dir);
  }
  Routes();
  ConsoleRoutes();
}

ApiServer::~ApiServer() { Stop(); }

namespace {

// Binds `http` to host:port (port 0: any free port) and returns the bound port; Unavailable,
// starting with `what`, if the address is taken.
Result<uint16_t> BindServer(httplib::Server& http, const std::string& host, uint16_t port,
                            const std::string& what) {
  if (port == 0) {
    int any = http.bind_to_any_port(host);
    if (any <= 0) return Status::Unavailable(what + "cannot listen on " + host + " (any port)");
    return static_cast<uint16_t>(any);
  }
  if (!http.bind_to_port(host, port)) {
    return Status::Unavailable(what + "cannot listen on " + host + ":" + std::to_string(port) +
                               " (is another Arbor or program using it?)");
  }
  return port;
}

}  // namespace

Result<uint16_t> ApiServer::Bind(const std::string& host, uint16_t port) {
  ARBOR_ASSIGN_OR_RETURN(port, BindServer(*http_, host, port, ""));
  cookie_ = kCookiePrefix + std::to_string(port);
  return port;
}

void ApiServer::Serve() { http_->listen_after_bind(); }

void ApiServer::Stop() {
  if (http_) http_->stop();
  if (metrics_http_) metrics_http_->stop();
}

Result<uint16_t> ApiServer::BindMetrics(const std::string& host, uint16_t port) {
  metrics_http_ = std::make_unique<httplib::Server>();
  metrics_http_->Get("/metrics", [this, host](const httplib::Request& req, httplib::Response& res) {
    // No token here, so no name either: a Host that is not an address (or the listener's
    // own host) is a page of some site that had its name point here (DNS rebinding).
    if (!HostIsAddress(req.get_header_value("Host"), host)) {
      res.status = 403;
      res.set_content("the metrics listener answers requests to its address only\n",
                      "text/plain; charset=utf-8");
      return;
    }
    res.set_content(Metrics(""), "text/plain; version=0.0.4; charset=utf-8");
  });
  ARBOR_ASSIGN_OR_RETURN(port, BindServer(*metrics_http_, host, port, "--metrics-listen: "));
  const bool v6 = host.find(':') != std::string::npos;
  info_.metrics_url =
      "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/metrics";
  return port;
}

void ApiServer::ServeMetrics() {
  if (metrics_http_) metrics_http_->listen_after_bind();
}

std::string ApiServer::Metrics(const std::string& project) {
  metrics::Writer w;
  engine_->WriteMetrics(&w, project);
  if (!project.empty()) return w.Take();
  std::lock_guard l(requests_mu_);
  w.Family("arbor_api_requests_total", "counter", "API requests by method, route and status.");
  for (const auto& [k, n] : requests_) {
    const auto& [method, route, code] = k;
    w.Sample("arbor_api_requests_total",
             {{"method", method}, {"route", route}, {"code", std::to_string(code)}},
             static_cast<double>(n));
  }
  w.Family("arbor_api_request_seconds", "histogram", "API request latency by route.");
  for (const auto& [route, h] : latency_) {
    h.Write(&w, "arbor_api_request_seconds", {{"route", route}});
  }
  return w.Take();
}

void ApiServer::CountRequest(const httplib::Request& req, const httplib::Response& res) {
  // A request the HTTP layer refused before routing (a malformed request line, say) has no
  // start time of its own: it is counted without a latency.
  const auto start = std::exchange(g_request_start, {});
  // A refused caller's path says nothing it may choose: one route for all of them.
  std::string route = res.status == 401 ? "unauthenticated" : RouteOf(req.path);
  static const std::set<std::string> kMethods = {"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"};
  std::string method = kMethods.count(req.method) ? req.method : "other";
  std::lock_guard l(requests_mu_);
  // RouteOf's patterns are bounded, but their combinations are many: a hard cap as well.
  if (!latency_.count(route) && latency_.size() >= kMaxRoutes) route = "other";
  ++requests_[{method, route, res.status}];
  auto it = latency_.find(route);
  if (it == latency_.end()) {
    it = latency_.emplace(route, metrics::Histogram(metrics::LatencyBuckets())).first;
  }
  if (start != std::chrono::steady_clock::time_point{}) {
    it->second.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
}

void ApiServer::ServeConsole(const httplib::Request& req, httplib::Response& res) const {
  res.set_header("Content-Security-Policy", kConsoleCsp);
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("Referrer-Policy", "no-referrer");
  const ConsoleAssets::File* f = assets_.Find(req.path);
  if (f && req.path != "/index.html") {
    // Vite names built assets by their hash: a file never changes under its name.
    if (req.path.rfind("/assets/", 0) == 0) {
      res.set_header("Cache-Control", "public, max-age=31536000, immutable");
    }
    res.set_content(f->body, f->content_type);
    return;
  }
  if (req.path.rfind("/assets/", 0) == 0) {
    res.status = 404;
    res.set_content("no such console file\n", "text/plain; charset=utf-8");
    return;
  }
  // Every other path is the single-page app's own route.
  res.set_header("Cache-Control", "no-cache");
  res.set_content(assets_.Index().body, assets_.Index().content_type);
}

Result<Principal> ApiServer::Authenticate(const std::string& header) const {
  const std::string home_hint = " (the admin token is in " + info_.data_dir + "/admin-token)";
  if (header.rfind("Bearer ", 0) != 0) {
    return Status::PermissionDenied("missing token: send Authorization: Bearer <token>" +
                                    home_hint);
  }
  std::string got = header.substr(7);
  // Constant-time comparison: the admin token is a secret.
  unsigned diff = got.size() != token_.size();
  for (size_t i = 0; i < token_.size(); ++i) diff |= (i < got.size() ? got[i] : 0) ^ token_[i];
  if (diff == 0) return Principal{"admin-token", AccessRole::kAdmin, ""};
  auto t = engine_->FindApiToken(got, WallMicros());
  if (!t.ok()) return Status::PermissionDenied("wrong token: " + t.status().message() + home_hint);
  return Principal{t->name, t->role, t->project};
}

Status ApiServer::AuthorizeRequest(const httplib::Request& req) const {
  const Principal& who = g_caller;
  if (req.path.rfind(kTokensPath, 0) == 0) {
    return Authorize(who, Action::kManageTokens, "", false, "manage API tokens");
  }
  if (req.path.rfind(kPrefix, 0) != 0) return Status::Ok();  // no such route: a 404 follows
  std::string rest = req.path.substr(kPrefix.size());
  std::vector<std::string> parts;
  for (size_t pos = 0; pos <= rest.size();) {
    size_t slash = rest.find('/', pos);
    parts.push_back(rest.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos));
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  const std::string& m = req.method;
  // A branch's protection decides what a developer may do to it.
  auto on_branch = [&](Action a, const std::string& project, std::string branch,
                       const std::string& verb) {
    branch = branch.substr(0, branch.find(':'));
    auto b = engine_->GetBranch(project, branch);
    bool is_protected = b.ok() && b->is_protected;
    return Authorize(who, a, project, is_protected,
                     verb + " projects/" + project + "/branches/" + branch);
  };
  if (parts[0] == "status") return Status::Ok();
  if (parts[0] == "credentials") {
    auto body = json::parse(req.body, nullptr, false);
    std::string name = body.is_object() ? body.value("endpoint", "") : "";
    auto e = api::ParseEndpointName(name);
    if (!e.ok()) return Status::Ok();  // the handler answers the bad request
    return on_branch(Action::kCredentials, e->project, e->branch, "get credentials for");
  }
  if (parts[0] != "projects") return Status::Ok();
  if (parts.size() == 1) {
    if (m == "GET") return Status::Ok();  // the list shows what the caller may see
    return Authorize(who, Action::kCreateProject, "", false, "create projects");
  }
  const std::string& project = parts[1];
  if (parts.size() == 2) {
    if (m == "GET")
      return Authorize(who, Action::kRead, project, false, "read projects/" + project);
    return Authorize(who, Action::kAdminProject, project, false,
                     "change or delete projects/" + project);
  }
  if (m == "GET") return Authorize(who, Action::kRead, project, false, "read projects/" + project);
  if (parts[2] != "branches") return Status::Ok();
  if (parts.size() == 3) {
    // A new branch, from any parent (branching production is the point); protecting it is
    // an admin's decision.
    auto body = json::parse(req.body, nullptr, false);
    bool protect = body.is_object() && body.contains("spec") && body["spec"].is_object() &&
                   body["spec"].value("is_protected", false);
    if (protect) {
      return Authorize(who, Action::kProtect, project, false,
                       "create a protected branch in projects/" + project);
    }
    return Authorize(who, Action::kChange, project, false,
                     "create branches in projects/" + project);
  }
  const std::string& branch = parts[3];
  if (parts.size() == 4) {
    if (m == "PATCH" &&
        req.get_param_value("update_mask").find("is_protected") != std::string::npos) {
      return on_branch(Action::kProtect, project, branch, "protect or unprotect");
    }
    std::string verb = m == "DELETE" ? "delete" : m == "PATCH" ? "change" : "change";
    // A bisection reads the branch's data through credentials it issues itself.
    if (branch.find(":bisect") != std::string::npos) {
      return on_branch(Action::kCredentials, project, branch, "bisect");
    }
    // The data diff reads both sides: read access to each (`against` may be in another
    // project). The merge reads the source and writes the target (`into`), so the target's
    // protection decides, as for any change to it. A body that names no branch is answered by
    // the handler (400).
    if (branch.find(":diff_data") != std::string::npos ||
        branch.find(":merge") != std::string::npos) {
      const bool merge = branch.find(":merge") != std::string::npos;
      std::string base = branch.substr(0, branch.find(':'));
      ARBOR_RETURN_IF_ERROR(Authorize(who, Action::kRead, project, false,
                                      "read projects/" + project + "/branches/" + base));
      auto body = json::parse(req.body, nullptr, false);
      const char* field = merge ? "into" : "against";
      auto it = body.is_object() ? body.find(field) : body.end();
      if (!body.is_object() || it == body.end() || !it->is_string()) return Status::Ok();
      std::string other = it->get<std::string>();
      auto name = BranchNameIn(project, other.substr(0, other.find('@')));
      if (!name.ok()) return Status::Ok();
      if (merge) return on_branch(Action::kChange, name->project, name->branch, "merge into");
      return Authorize(who, Action::kRead, name->project, false, "read " + name->ToString());
    }
    // A purge is final: an admin's decision, whatever the branch.
    if (m == "DELETE" && req.get_param_value("purge") == "true") {
      return Authorize(who, Action::kAdminProject, project, false,
                       "purge projects/" + project + "/branches/" + branch);
    }
    if (branch.find(":undelete") != std::string::npos) verb = "undelete";
    if (branch.find(":reset") != std::string::npos) verb = "reset";
    if (branch.find(":restore") != std::string::npos) verb = "restore";
    return on_branch(Action::kChange, project, branch, verb);
  }
  bool password = parts.size() >= 6 && parts[4] == "roles" &&
                  parts[5].find(":reset_password") != std::string::npos;
  if (password) return on_branch(Action::kCredentials, project, branch, "reset role passwords of");
  if (parts[4] == "snapshots") {
    // Taking a snapshot changes nothing of the branch: a developer may snapshot a protected
    // one. Deleting one is a change to it, which its protection guards.
    if (m == "POST") {
      return Authorize(who, Action::kChange, project, false,
                       "take snapshots of projects/" + project + "/branches/" + branch);
    }
    return on_branch(Action::kChange, project, branch, "delete snapshots of");
  }
  if (parts[4] == "databases") {
    return on_branch(Action::kChange, project, branch,
                     m == "DELETE" ? "delete databases of" : "create databases on");
  }
  return on_branch(Action::kChange, project, branch, "change the " + parts[4] + " of");
}

void ApiServer::ConsoleRoutes() {
  httplib::Server& s = *http_;
  auto session_answer = [](httplib::Response& res, const Principal& who, const std::string& csrf) {
    SendJson(res, {{"csrf_token", csrf}, {"principal", PrincipalJson(who)}});
  };
  // Log in: {"token": T} (an API token) or {"code": C} (from `arbor console`).
  s.Post(kSessionPath, [this, session_answer](const httplib::Request& req, httplib::Response& res) {
    // No other site's page may log a browser in (to an attacker's token): a form cannot send
    // this content type without a CORS preflight, which this server never grants, and the
    // browser says where the request comes from.
    const std::string site = req.get_header_value("Sec-Fetch-Site");
    if (req.get_header_value("Content-Type").rfind("application/json", 0) != 0 ||
        (!site.empty() && site != "same-origin" && site != "none")) {
      return SendError(
          res, Status::InvalidArgument("log in with a JSON body (Content-Type: application/json) "
                                       "from the console's own page"));
    }
    auto body = Body(req);
    if (!body.ok()) return SendError(res, body.status());
    if (Status st = OnlyFields(*body, {"token", "code"}, "body"); !st.ok()) {
      return SendError(res, st);
    }
    auto token = Field<std::string>(*body, "token", "body");
    auto code = Field<std::string>(*body, "code", "body");
    if (!token.ok()) return SendError(res, token.status());
    if (!code.ok()) return SendError(res, code.status());
    if (token->has_value() == code->has_value()) {
      return SendError(res, Status::InvalidArgument("send either token or code"));
    }
    std::string secret;
    if (code->has_value()) {
      auto redeemed = sessions_.RedeemCode(**code, WallMicros());
      if (!redeemed.ok()) {
        res.status = 401;
        res.set_content(
            json{{"error_code", "UNAUTHENTICATED"}, {"message", redeemed.status().message()}}
                .dump(),
            kJson);
        return;
      }
      secret = *redeemed;
    } else {
      secret = **token;
    }
    auto who = Authenticate("Bearer " + secret);
    if (!who.ok()) {
      res.status = 401;
      res.set_content(
          json{{"error_code", "UNAUTHENTICATED"}, {"message", who.status().message()}}.dump(),
          kJson);
      return;
    }
    std::string csrf;
    auto id = sessions_.Create(secret, WallMicros(), &csrf);
    if (!id.ok()) return SendError(res, id.status());
    log::info("api: console login as {}", who->Describe());
    res.set_header("Set-Cookie", cookie_ + "=" + *id +
                                     "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" +
                                     std::to_string(ConsoleSessions::kSessionLifeUs / 1'000'000));
    res.set_header("Cache-Control", "no-store");
    session_answer(res, *who, csrf);
  });
  s.Get(kSessionPath, [this, session_answer](const httplib::Request&, httplib::Response& res) {
    auto session = g_session.empty() ? std::nullopt : sessions_.Find(g_session, WallMicros());
    if (!session) {
      return SendError(res, Status::NotFound("no console session: this call needs the "
                                             "console's cookie, not a bearer token"));
    }
    res.set_header("Cache-Control", "no-store");
    session_answer(res, g_caller, session->csrf);
  });
  s.Delete(kSessionPath, [this](const httplib::Request&, httplib::Response& res) {
    if (!g_session.empty()) sessions_.Remove(g_session);
    res.set_header("Set-Cookie", cookie_ + "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    SendJson(res, json::object());
  });
  // A one-time login link for the caller's own token (`arbor console`): the code goes in the
  // URL's fragment, which browsers never send to a server or put in a Referer.
  s.Post(kConsolePath + "links", [this](const httplib::Request&, httplib::Response& res) {
    const int64_t now = WallMicros();
    auto code = sessions_.CreateCode(g_token, now);
    if (!code.ok()) return SendError(res, code.status());
    SendJson(res, {{"code", *code},
                   {"url", info_.api_url + "/#login=" + *code},
                   {"expire_time", FormatTime(now + ConsoleSessions::kCodeLifeUs)}});
  });
  // Prometheus metrics: any token; a token limited to a project sees that project's series.
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(Metrics(g_caller.project), "text/plain; version=0.0.4; charset=utf-8");
  });
}

void ApiServer::Routes() {
  Engine* eng = engine_;
  httplib::Server& s = *http_;

  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    g_request_start = std::chrono::steady_clock::now();
    g_caller = Principal{"", AccessRole::kViewer, "\x01nobody"};  // no project has this id
    g_token.clear();
    g_session.clear();
    auto refuse = [&res](int http, const char* code, const std::string& message) {
      res.status = http;
      res.set_content(json{{"error_code", code}, {"message", message}}.dump(), kJson);
      return httplib::Server::HandlerResponse::Handled;
    };
    // The console's files hold no data: they need no token.
    if (req.path.rfind("/api/", 0) != 0 && req.path != "/metrics") {
      if (req.method != "GET" && req.method != "HEAD") {
        return httplib::Server::HandlerResponse::Unhandled;  // the 404 handler answers
      }
      ServeConsole(req, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    // Logging in to the console checks the token or code it is given.
    if (req.path == kSessionPath && req.method == "POST") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    std::string header = req.get_header_value("Authorization");
    if (header.empty()) {
      // The console: its session cookie stands for the token it logged in with, and a state
      // change must also carry the session's CSRF token (a page of another site cannot read
      // it, so it cannot send it).
      std::string id = CookieValue(req, cookie_);
      if (!id.empty()) {
        auto session = sessions_.Find(id, WallMicros());
        if (!session) {
          return refuse(401, "UNAUTHENTICATED",
                        "the console session has ended (logged out, expired, or the daemon "
                        "restarted): log in again");
        }
        if (req.method != "GET" && req.method != "HEAD" &&
            !proxy::auth::ConstantTimeEquals(req.get_header_value(kCsrfHeader), session->csrf)) {
          return refuse(403, "PERMISSION_DENIED",
                        "missing or wrong " + kCsrfHeader +
                            " header: a console request that changes something must send "
                            "its session's csrf_token");
        }
        header = "Bearer " + session->token;
        g_session = id;
      }
    }
    auto who = Authenticate(header);
    if (!who.ok()) {
      if (!g_session.empty()) sessions_.Remove(g_session);  // its token was revoked or expired
      return refuse(401, "UNAUTHENTICATED", who.status().message());
    }
    g_caller = *who;
    g_token = header.substr(7);
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    CountRequest(req, res);
  });
  // A body larger than any request needs is refused before it is read.
  s.set_payload_max_length(1 << 20);
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    SendError(res, Status::Internal("unexpected error while handling the request"));
  });

  auto project_json = [](const ProjectRecord& p) {
    json spec{{"history_retention_duration", Duration(p.history_window_s)}};
    if (p.default_branch_ttl_s) spec["default_branch_ttl"] = Duration(p.default_branch_ttl_s);
    if (p.snapshot_schedule.every_s) {
      spec["snapshot_schedule"] = {
          {"branch", "projects/" + p.id + "/branches/" + p.snapshot_schedule.branch},
          {"every", Duration(p.snapshot_schedule.every_s)},
          {"keep", p.snapshot_schedule.keep}};
    }
    spec["default_endpoint_settings"] =
        SizeJson(p.branch_endpoint_size.set() ? p.branch_endpoint_size : kBranchComputeSize);
    spec["default_branch_endpoint_settings"] =
        SizeJson(p.default_branch_endpoint_size.set() ? p.default_branch_endpoint_size
                                                      : kDefaultBranchComputeSize);
    return json{
        {"name", "projects/" + p.id},
        {"uid", p.uid},
        {"create_time", FormatTime(p.create_time_us)},
        {"spec", spec},
        {"status", {{"default_branch", "projects/" + p.id + "/branches/" + p.default_branch}}}};
  };
  auto branch_json = [eng](const BranchRecord& b) {
    std::string name = "projects/" + b.project + "/branches/" + b.id;
    json spec = json::object();
    json status = json::object();
    if (!b.parent.empty()) {
      std::string parent = "projects/" + b.project + "/branches/" + b.parent;
      spec["source_branch"] = parent;
      status["source_branch"] = parent;
      status["source_branch_time"] = FormatTime(b.source_time_us);
      if (b.requested_time) spec["source_branch_time"] = FormatTime(b.source_time_us);
      if (b.requested_lsn) {
        spec["source_branch_lsn"] = FormatLsn(b.source_lsn);
        status["source_branch_lsn"] = FormatLsn(b.source_lsn);
      }
      if (!b.source_snapshot.empty()) {
        std::string snap = parent + "/snapshots/" + b.source_snapshot;
        spec["source_snapshot"] = snap;
        status["source_snapshot"] = snap;
      }
    }
    if (b.expiry == Expiry::kTtl) spec["ttl"] = Duration(b.ttl_s);
    if (b.expiry == Expiry::kExpireTime) spec["expire_time"] = FormatTime(b.expire_time_us);
    if (b.expiry == Expiry::kNever) spec["no_expiry"] = true;
    spec["is_protected"] = b.is_protected;
    // The rules, never the key.
    if (!b.masking.empty()) spec["masking"] = arbor::api::ToJson(b.masking);
    if (b.masked_time_us) status["masked_time"] = FormatTime(b.masked_time_us);
    auto proj = eng->GetProject(b.project);
    status["current_state"] = b.masking_pending ? "INIT" : "READY";
    status["default"] = proj.ok() && proj->default_branch == b.id;
    auto usage = eng->BranchUsage(b.project, b.id);
    status["logical_size_bytes"] = usage.ok() ? usage->logical_size_bytes : 0;
    status["written_bytes"] = usage.ok() ? usage->written_bytes : 0;
    if (b.expire_time_us) status["expire_time"] = FormatTime(b.expire_time_us);
    return json{{"name", name},
                {"uid", b.uid},
                {"create_time", FormatTime(b.create_time_us)},
                {"spec", spec},
                {"status", status}};
  };
  // A deleted branch: the branch's JSON as it was, with status.deleted, the delete and purge
  // times, the space it holds and the endpoints (and ports) an undelete brings back.
  auto deleted_branch_json = [branch_json, eng](const DeletedBranchRecord& d) {
    json j = branch_json(d.branch);
    json& status = j["status"];
    status["current_state"] = "DELETED";
    status["default"] = false;
    status["deleted"] = true;
    status["delete_time"] = FormatTime(d.delete_time_us);
    status["purge_time"] = FormatTime(d.purge_time_us);
    auto usage = eng->DeletedBranchUsage(d.branch.project, d.branch.uid);
    status["logical_size_bytes"] = usage.ok() ? usage->logical_size_bytes : 0;
    status["written_bytes"] = usage.ok() ? usage->written_bytes : 0;
    json eps = json::array();
    for (const auto& e : d.endpoints) {
      eps.push_back(
          {{"name", "projects/" + e.project + "/branches/" + e.branch + "/endpoints/" + e.id},
           {"port", e.port}});
    }
    status["endpoints"] = eps;
    return j;
  };
  auto endpoint_json = [eng](const EndpointRecord& e) {
    json spec{
        {"endpoint_type", IsReadWrite(e) ? "ENDPOINT_TYPE_READ_WRITE" : "ENDPOINT_TYPE_READ_ONLY"},
        {"suspend_timeout_duration", Duration(e.suspend_timeout_s)}};
    if (e.no_suspension) spec["no_suspension"] = true;
    spec.update(SizeJson(eng->EffectiveSize(e)));
    if (e.pinned) {
      if (e.requested_lsn) {
        spec["source_branch_lsn"] = FormatLsn(e.pin_lsn);
      } else {
        spec["source_branch_time"] = FormatTime(e.pin_time_us);
      }
    }
    auto st = eng->GetEndpointState(e.project, e.branch, e.id);
    auto cs = eng->ConnectionString(e.project, e.branch, e.id);
    const char* state = !st.ok()       ? "IDLE"
                        : st->running  ? "ACTIVE"
                        : st->starting ? "STARTING"
                                       : "IDLE";
    json status{{"current_state", state}, {"host", "127.0.0.1"}, {"port", e.port}};
    if (st.ok() && st->running) status["current_cu"] = st->current_cu;
    if (e.pinned) status["source_branch_time"] = FormatTime(e.pin_time_us);
    if (e.replica) {
      // What a read replica serves: streaming (replay_lag is the primary's measure), waiting
      // for its primary (suspended: the replica serves the branch's state as of then), or
      // stopped (its next start forks the branch's head).
      auto r = eng->GetReplicaState(e.project, e.branch, e.id);
      if (r.ok() && r->running) {
        char lag[32];
        std::snprintf(lag, sizeof lag, "%.3fs", r->streaming ? r->replay_lag_s : 0.0);
        status["replication_state"] = r->streaming         ? "STREAMING"
                                      : r->primary_running ? "CONNECTING"
                                                           : "PRIMARY_SUSPENDED";
        if (r->streaming || !r->primary_running) status["replay_lag"] = lag;
        if (r->streaming) status["replay_lag_bytes"] = r->replay_lag_bytes;
      } else {
        status["replication_state"] = "STOPPED";
      }
    }
    if (cs.ok()) status["connection_string"] = *cs;
    return json{{"name", "projects/" + e.project + "/branches/" + e.branch + "/endpoints/" + e.id},
                {"uid", e.uid},
                {"create_time", FormatTime(e.create_time_us)},
                {"spec", spec},
                {"status", status}};
  };

  // Wraps a handler: a Status it returns becomes the error answer.
  // Every handler runs only once the caller is allowed to (AuthorizeRequest).
  using Handler = std::function<Status(const httplib::Request&, httplib::Response&)>;
  auto wrap = [this](Handler h) {
    return [this, h](const httplib::Request& req, httplib::Response& res) {
      Status st = AuthorizeRequest(req);
      if (st.ok()) st = h(req, res);
      if (!st.ok()) SendError(res, st);
    };
  };

  s.Get(kPrefix + "status", wrap([this](const httplib::Request&, httplib::Response& res) {
          json j{{"version", info_.version},
                 {"pid", static_cast<int64_t>(getpid())},
                 {"data_dir", info_.data_dir},
                 {"api", info_.api_url},
                 {"proxy", info_.proxy_listen},
                 {"proxy_socket_dir", info_.proxy_socket_dir},
                 {"endpoint_ports", info_.endpoint_ports},
                 {"compute_limits", engine_->ComputeLimits()},
                 {"console", assets_.built()}};
          // Shared by every project (and the way to all their metrics without a token): not
          // for a token limited to one project.
          if (g_caller.project.empty()) {
            j["store_bytes"] = engine_->store()->DiskBytes();
            j["metrics"] = info_.metrics_url;
          }
          SendJson(res, j);
          return Status::Ok();
        }));

  // ---- projects ----
  s.Post(kPrefix + "projects",
         wrap([eng, project_json](const httplib::Request& req, httplib::Response& res) {
           std::string id = req.get_param_value("project_id");
           if (id.empty()) return Status::InvalidArgument("project_id is required");
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_ASSIGN_OR_RETURN(json spec, Spec(body));
           ARBOR_RETURN_IF_ERROR(OnlyFields(spec, {"history_retention_duration"}, "spec"));
           int64_t window = 86'400;
           ARBOR_ASSIGN_OR_RETURN(auto w,
                                  Field<std::string>(spec, "history_retention_duration", "spec"));
           if (w) {
             ARBOR_ASSIGN_OR_RETURN(window, ParseDuration(*w));
           }
           ARBOR_ASSIGN_OR_RETURN(ProjectRecord p, eng->CreateProject(id, window));
           SendJson(res, project_json(p));
           return Status::Ok();
         }));
  s.Get(kPrefix + "projects",
        wrap([eng, project_json](const httplib::Request&, httplib::Response& res) {
          json list = json::array();
          for (const auto& p : eng->ListProjects()) {
            if (g_caller.project.empty() || g_caller.project == p.id)
              list.push_back(project_json(p));
          }
          SendJson(res, {{"projects", list}});
          return Status::Ok();
        }));
  s.Get(kPrefix + "projects/([^/:]+)",
        wrap([eng, project_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_ASSIGN_OR_RETURN(ProjectRecord p, eng->GetProject(req.matches[1]));
          SendJson(res, project_json(p));
          return Status::Ok();
        }));
  s.Patch(kPrefix + "projects/([^/:]+)",
          wrap([eng, project_json](const httplib::Request& req, httplib::Response& res) {
            std::string project = req.matches[1];
            ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
            ARBOR_ASSIGN_OR_RETURN(json spec, Spec(body));
            ARBOR_RETURN_IF_ERROR(
                OnlyFields(spec,
                           {"history_retention_duration", "default_branch_ttl", "snapshot_schedule",
                            "default_endpoint_settings", "default_branch_endpoint_settings"},
                           "spec"));
            std::string mask = req.get_param_value("update_mask");
            if (mask.empty()) return Status::InvalidArgument("update_mask is required");
            for (size_t pos = 0; pos <= mask.size();) {
              size_t comma = mask.find(',', pos);
              std::string f =
                  mask.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
              if (f == "spec.history_retention_duration") {
                ARBOR_ASSIGN_OR_RETURN(
                    auto w, Field<std::string>(spec, "history_retention_duration", "spec"));
                if (!w)
                  return Status::InvalidArgument("spec.history_retention_duration is required");
                ARBOR_ASSIGN_OR_RETURN(int64_t window, ParseDuration(*w));
                ARBOR_RETURN_IF_ERROR(eng->SetHistoryWindow(project, window));
              } else if (f == "spec.default_branch_ttl") {
                ARBOR_ASSIGN_OR_RETURN(auto t,
                                       Field<std::string>(spec, "default_branch_ttl", "spec"));
                int64_t ttl = 0;  // absent: remove the default
                if (t) {
                  ARBOR_ASSIGN_OR_RETURN(ttl, ParseDuration(*t));
                }
                ARBOR_RETURN_IF_ERROR(eng->SetDefaultBranchTtl(project, ttl));
              } else if (f == "spec.snapshot_schedule") {
                ARBOR_ASSIGN_OR_RETURN(SnapshotSchedule sched, ScheduleOf(project, spec));
                ARBOR_RETURN_IF_ERROR(eng->SetSnapshotSchedule(project, sched));
              } else if (f == "spec.default_endpoint_settings" ||
                         f == "spec.default_branch_endpoint_settings") {
                // Absent or null: back to Arbor's default.
                const std::string field = f.substr(5);
                ComputeSize size;
                auto it = spec.find(field);
                if (it != spec.end() && !it->is_null()) {
                  if (!it->is_object()) {
                    return Status::InvalidArgument(
                        f +
                        " must be an object like {\"autoscaling_limit_min_cu\": 0.25, "
                        "\"autoscaling_limit_max_cu\": 1}");
                  }
                  ARBOR_RETURN_IF_ERROR(OnlyFields(
                      *it, {"autoscaling_limit_min_cu", "autoscaling_limit_max_cu"}, f.c_str()));
                  ARBOR_RETURN_IF_ERROR(SizeFields(*it, f.c_str(), &size).status());
                  if (size.min_cu == 0) size.min_cu = size.max_cu;
                  if (size.max_cu == 0) size.max_cu = size.min_cu;
                  if (!size.set()) {
                    return Status::InvalidArgument(f +
                                                   " needs autoscaling_limit_min_cu or "
                                                   "autoscaling_limit_max_cu");
                  }
                }
                if (f == "spec.default_endpoint_settings") {
                  ARBOR_RETURN_IF_ERROR(eng->SetDefaultSizes(project, size, std::nullopt));
                } else {
                  ARBOR_RETURN_IF_ERROR(eng->SetDefaultSizes(project, std::nullopt, size));
                }
              } else {
                return Status::InvalidArgument("update_mask field '" + f +
                                               "' cannot be changed (use "
                                               "spec.history_retention_duration, "
                                               "spec.default_branch_ttl, "
                                               "spec.snapshot_schedule, "
                                               "spec.default_endpoint_settings or "
                                               "spec.default_branch_endpoint_settings)");
              }
              if (comma == std::string::npos) break;
              pos = comma + 1;
            }
            ARBOR_ASSIGN_OR_RETURN(ProjectRecord p, eng->GetProject(project));
            SendJson(res, project_json(p));
            return Status::Ok();
          }));
  // CU-seconds and written bytes per endpoint and hour (docs/compute-sizes.md, "Usage").
  // start and end are RFC 3339 or relative (-24h); default: the last 24 hours.
  s.Get(kPrefix + "projects/([^/:]+)/usage",
        wrap([eng](const httplib::Request& req, httplib::Response& res) {
          std::string project = req.matches[1];
          ARBOR_RETURN_IF_ERROR(eng->GetProject(project).status());
          const int64_t now = WallMicros();
          int64_t start = now - 86'400'000'000, end = now;
          if (req.has_param("start")) {
            ARBOR_ASSIGN_OR_RETURN(start, ParseTime(req.get_param_value("start")));
          }
          if (req.has_param("end")) {
            ARBOR_ASSIGN_OR_RETURN(end, ParseTime(req.get_param_value("end")));
          }
          if (end <= start) return Status::InvalidArgument("end must be after start");
          json rows = json::array();
          double cu_s = 0;
          uint64_t written = 0;
          for (const UsageRecord& u : eng->ProjectUsage(project, start, end)) {
            rows.push_back({{"hour", FormatTime(u.hour_us)},
                            {"branch", "projects/" + u.project + "/branches/" + u.branch},
                            {"endpoint", "projects/" + u.project + "/branches/" + u.branch +
                                             "/endpoints/" + u.endpoint},
                            {"cu_seconds", std::round(u.cu_seconds * 1000) / 1000},
                            {"written_bytes", u.written_bytes}});
            cu_s += u.cu_seconds;
            written += u.written_bytes;
          }
          SendJson(
              res,
              {{"start", FormatTime(start)},
               {"end", FormatTime(end)},
               {"usage", rows},
               {"total",
                {{"cu_seconds", std::round(cu_s * 1000) / 1000}, {"written_bytes", written}}}});
          return Status::Ok();
        }));
  s.Delete(kPrefix + "projects/([^/:]+)",
           wrap([eng](const httplib::Request& req, httplib::Response& res) {
             ARBOR_RETURN_IF_ERROR(eng->DeleteProject(req.matches[1]));
             SendJson(res, json::object());
             return Status::Ok();
           }));

  // ---- branches ----
  s.Post(kPrefix + "projects/([^/:]+)/branches",
         wrap([eng, branch_json](const httplib::Request& req, httplib::Response& res) {
           std::string project = req.matches[1];
           std::string id = req.get_param_value("branch_id");
           if (id.empty()) return Status::InvalidArgument("branch_id is required");
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_ASSIGN_OR_RETURN(json spec, Spec(body));
           ARBOR_RETURN_IF_ERROR(OnlyFields(spec, kBranchSpecFields, "spec"));
           ARBOR_ASSIGN_OR_RETURN(auto expiry, ExpiryOf(spec, /*required=*/true));
           BranchRequest r = *expiry;
           ARBOR_ASSIGN_OR_RETURN(auto source, Field<std::string>(spec, "source_branch", "spec"));
           if (source) {
             ARBOR_ASSIGN_OR_RETURN(r.source_branch, BranchIdOf(project, *source));
           }
           ARBOR_ASSIGN_OR_RETURN(auto t, Field<std::string>(spec, "source_branch_time", "spec"));
           ARBOR_ASSIGN_OR_RETURN(auto lsn, Field<std::string>(spec, "source_branch_lsn", "spec"));
           if (t && lsn) {
             return Status::InvalidArgument(
                 "set at most one of spec.source_branch_time and spec.source_branch_lsn");
           }
           if (t) {
             ARBOR_ASSIGN_OR_RETURN(r.time_us, ParseTime(*t));
           }
           if (lsn) {
             ARBOR_ASSIGN_OR_RETURN(r.lsn, ParseLsn(*lsn));
           }
           ARBOR_ASSIGN_OR_RETURN(auto prot, Field<bool>(spec, "is_protected", "spec"));
           r.is_protected = prot.value_or(false);
           ARBOR_ASSIGN_OR_RETURN(auto snap, Field<std::string>(spec, "source_snapshot", "spec"));
           if (snap) {
             ARBOR_ASSIGN_OR_RETURN(auto bs, SnapshotOf(project, *snap));
             r.source_snapshot_branch = bs.first;
             r.source_snapshot = bs.second;
           }
           if (auto m = spec.find("masking"); m != spec.end() && !m->is_null()) {
             ARBOR_RETURN_IF_ERROR(arbor::api::MaskRulesFromJson(*m, &r.masking));
           }
           ARBOR_ASSIGN_OR_RETURN(BranchRecord b, eng->CreateBranch(project, id, r));
           SendJson(res, branch_json(b));
           return Status::Ok();
         }));
  s.Get(kPrefix + "projects/([^/:]+)/branches",
        wrap([eng, branch_json, deleted_branch_json](const httplib::Request& req,
                                                     httplib::Response& res) {
          std::string project = req.matches[1];
          std::string show = req.get_param_value("show_deleted");
          if (!show.empty() && show != "true" && show != "false") {
            return Status::InvalidArgument("show_deleted must be true or false");
          }
          ARBOR_RETURN_IF_ERROR(eng->GetProject(project).status());
          json list = json::array();
          for (const auto& b : eng->ListBranches(project)) list.push_back(branch_json(b));
          if (show == "true") {
            ARBOR_ASSIGN_OR_RETURN(auto deleted, eng->ListDeletedBranches(project));
            for (const auto& d : deleted) list.push_back(deleted_branch_json(d));
          }
          SendJson(res, {{"branches", list}});
          return Status::Ok();
        }));
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)",
        wrap([eng, branch_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_ASSIGN_OR_RETURN(BranchRecord b, eng->GetBranch(req.matches[1], req.matches[2]));
          SendJson(res, branch_json(b));
          return Status::Ok();
        }));
  s.Patch(kPrefix + "projects/([^/:]+)/branches/([^/:]+)",
          wrap([eng, branch_json](const httplib::Request& req, httplib::Response& res) {
            std::string project = req.matches[1], id = req.matches[2];
            ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
            ARBOR_ASSIGN_OR_RETURN(json spec, Spec(body));
            std::string mask = req.get_param_value("update_mask");
            if (mask.empty()) return Status::InvalidArgument("update_mask is required");
            bool want_protect = false, want_expiry = false;
            for (size_t pos = 0; pos <= mask.size();) {
              size_t comma = mask.find(',', pos);
              std::string f =
                  mask.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
              if (f == "spec.is_protected") {
                want_protect = true;
              } else if (f == "spec.ttl" || f == "spec.expire_time" || f == "spec.no_expiry" ||
                         f == "spec.expiration") {
                want_expiry = true;
              } else {
                return Status::InvalidArgument("update_mask field '" + f +
                                               "' cannot be changed (use spec.is_protected or "
                                               "spec.expiration)");
              }
              if (comma == std::string::npos) break;
              pos = comma + 1;
            }
            std::optional<bool> prot;
            if (want_protect) {
              ARBOR_ASSIGN_OR_RETURN(prot, Field<bool>(spec, "is_protected", "spec"));
              if (!prot) return Status::InvalidArgument("spec.is_protected is required");
            }
            std::optional<BranchRequest> expiry;
            if (want_expiry) {
              ARBOR_ASSIGN_OR_RETURN(expiry, ExpiryOf(spec, true));
            }
            ARBOR_RETURN_IF_ERROR(eng->UpdateBranch(project, id, prot, expiry));
            ARBOR_ASSIGN_OR_RETURN(BranchRecord b, eng->GetBranch(project, id));
            SendJson(res, branch_json(b));
            return Status::Ok();
          }));
  s.Delete(kPrefix + "projects/([^/:]+)/branches/([^/:]+)",
           wrap([eng](const httplib::Request& req, httplib::Response& res) {
             std::string purge = req.get_param_value("purge");
             if (!purge.empty() && purge != "true" && purge != "false") {
               return Status::InvalidArgument("purge must be true or false");
             }
             if (purge == "true") {
               ARBOR_RETURN_IF_ERROR(eng->PurgeBranch(req.matches[1], req.matches[2]));
             } else {
               ARBOR_RETURN_IF_ERROR(eng->DeleteBranch(req.matches[1], req.matches[2]));
             }
             SendJson(res, json::object());
             return Status::Ok();
           }));
  s.Post(
      kPrefix + "projects/([^/:]+)/branches/([^/:]+):undelete",
      wrap([eng, branch_json, endpoint_json](const httplib::Request& req, httplib::Response& res) {
        std::string project = req.matches[1];
        ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
        ARBOR_RETURN_IF_ERROR(OnlyFields(body, {}, "body"));
        std::optional<std::string> new_id;
        if (req.has_param("new_branch_id")) new_id = req.get_param_value("new_branch_id");
        ARBOR_ASSIGN_OR_RETURN(auto u, eng->UndeleteBranch(project, req.matches[2], new_id));
        json eps = json::array();
        for (const auto& e : eng->ListEndpoints(project, u.branch.id)) {
          eps.push_back(endpoint_json(e));
        }
        SendJson(res, {{"branch", branch_json(u.branch)}, {"endpoints", eps}, {"notes", u.notes}});
        return Status::Ok();
      }));
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+):reset",
         wrap([eng, branch_json](const httplib::Request& req, httplib::Response& res) {
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_RETURN_IF_ERROR(OnlyFields(body, {"source_branch_time"}, "body"));
           ARBOR_ASSIGN_OR_RETURN(auto t, Field<std::string>(body, "source_branch_time", "body"));
           std::optional<int64_t> time_us;
           if (t) {
             ARBOR_ASSIGN_OR_RETURN(time_us, ParseTime(*t));
           }
           ARBOR_ASSIGN_OR_RETURN(BranchRecord b,
                                  eng->ResetBranch(req.matches[1], req.matches[2], time_us));
           SendJson(res, branch_json(b));
           return Status::Ok();
         }));
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+):restore",
         wrap([eng, branch_json](const httplib::Request& req, httplib::Response& res) {
           std::string project = req.matches[1];
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_RETURN_IF_ERROR(
               OnlyFields(body, {"source_branch_time", "source_branch_lsn"}, "body"));
           ARBOR_ASSIGN_OR_RETURN(auto t, Field<std::string>(body, "source_branch_time", "body"));
           ARBOR_ASSIGN_OR_RETURN(auto l, Field<std::string>(body, "source_branch_lsn", "body"));
           if ((t && l) || (!t && !l)) {
             return Status::InvalidArgument(
                 "set exactly one of source_branch_time and source_branch_lsn");
           }
           std::optional<int64_t> time_us;
           std::optional<uint64_t> lsn;
           if (t) {
             ARBOR_ASSIGN_OR_RETURN(time_us, ParseTime(*t));
           }
           if (l) {
             ARBOR_ASSIGN_OR_RETURN(lsn, ParseLsn(*l));
           }
           ARBOR_ASSIGN_OR_RETURN(auto r,
                                  eng->RestoreBranch(project, req.matches[2], time_us, lsn));
           SendJson(res, {{"branch", branch_json(r.first)},
                          {"backup_branch", "projects/" + project + "/branches/" + r.second}});
           return Status::Ok();
         }));

  // The branch's history: each write of its WAL in [since, until], oldest first. No
  // transaction commits between two consecutive points; `arbor bisect` searches them, and a
  // pinned endpoint at a point's LSN serves exactly that state.
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/history",
        wrap([eng](const httplib::Request& req, httplib::Response& res) {
          int64_t since = Engine::kEarliest, until = WallMicros();
          if (req.has_param("since")) {
            ARBOR_ASSIGN_OR_RETURN(since, ParseTime(req.get_param_value("since")));
          }
          if (req.has_param("until")) {
            ARBOR_ASSIGN_OR_RETURN(until, ParseTime(req.get_param_value("until")));
          }
          ARBOR_ASSIGN_OR_RETURN(auto points,
                                 eng->HistoryPoints(req.matches[1], req.matches[2], since, until));
          json list = json::array();
          for (const auto& p : points) {
            list.push_back({{"time", FormatTime(p.time_us)},
                            {"time_us", p.time_us},
                            {"lsn", FormatLsn(p.end.value())}});
          }
          SendJson(res, {{"points", list}});
          return Status::Ok();
        }));

  // Bisect: runs the whole search and answers its outcome (it may take a while).
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+):bisect",
         wrap([eng, tokens = tokens_](const httplib::Request& req, httplib::Response& res) {
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_RETURN_IF_ERROR(OnlyFields(body, {"check", "since", "until", "database"}, "body"));
           BisectRequest r;
           ARBOR_ASSIGN_OR_RETURN(auto check, Field<std::string>(body, "check", "body"));
           if (!check || check->empty()) {
             return Status::InvalidArgument("check is required: a query returning one boolean");
           }
           r.check = *check;
           ARBOR_ASSIGN_OR_RETURN(auto since, Field<std::string>(body, "since", "body"));
           if (since) {
             ARBOR_ASSIGN_OR_RETURN(r.since_us, ParseTime(*since));
           }
           ARBOR_ASSIGN_OR_RETURN(auto until, Field<std::string>(body, "until", "body"));
           if (until) {
             ARBOR_ASSIGN_OR_RETURN(r.until_us, ParseTime(*until));
           }
           ARBOR_ASSIGN_OR_RETURN(auto db, Field<std::string>(body, "database", "body"));
           if (db) r.database = *db;
           ARBOR_ASSIGN_OR_RETURN(json out,
                                  RunBisect(eng, tokens, req.matches[1], req.matches[2], r));
           SendJson(res, out);
           return Status::Ok();
         }));

  // The data diff and merge (docs/api.md, "Data diff and merge"): they run to the end and
  // answer what `arbor -o json diff --data` and `arbor -o json merge` print.
  auto send = [](httplib::Response& res, const DataAnswer& a) {
    res.status = a.http_status;
    res.set_content(a.body.dump(), kJson);
  };
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+):diff_data",
         wrap([eng, tokens = tokens_, send](const httplib::Request& req, httplib::Response& res) {
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_RETURN_IF_ERROR(OnlyFields(
               body, {"against", "tables", "database", "format", "schema_only"}, "body"));
           DataDiffCall call;
           ARBOR_ASSIGN_OR_RETURN(auto against, Field<std::string>(body, "against", "body"));
           call.against = against.value_or("");
           ARBOR_ASSIGN_OR_RETURN(call.tables, Strings(body, "tables", "body"));
           ARBOR_ASSIGN_OR_RETURN(auto db, Field<std::string>(body, "database", "body"));
           call.database = db.value_or("");
           ARBOR_ASSIGN_OR_RETURN(auto format, Field<std::string>(body, "format", "body"));
           if (format && *format != "json" && *format != "sql" && *format != "markdown") {
             return Status::InvalidArgument("format: expected json, sql or markdown, got '" +
                                            *format + "'");
           }
           call.sql = format && *format == "sql";
           call.markdown = format && *format == "markdown";
           ARBOR_ASSIGN_OR_RETURN(auto schema_only, Field<bool>(body, "schema_only", "body"));
           call.schema_only = schema_only.value_or(false);
           ARBOR_ASSIGN_OR_RETURN(DataAnswer a,
                                  RunDataDiff(eng, tokens, req.matches[1], req.matches[2], call));
           send(res, a);
           return Status::Ok();
         }));
  s.Post(
      kPrefix + "projects/([^/:]+)/branches/([^/:]+):merge",
      wrap([eng, tokens = tokens_, send](const httplib::Request& req, httplib::Response& res) {
        ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
        ARBOR_RETURN_IF_ERROR(OnlyFields(body, {"into", "dry_run", "tables", "database"}, "body"));
        MergeCall call;
        ARBOR_ASSIGN_OR_RETURN(auto into, Field<std::string>(body, "into", "body"));
        call.into = into.value_or("");
        ARBOR_ASSIGN_OR_RETURN(auto dry, Field<bool>(body, "dry_run", "body"));
        call.dry_run = dry.value_or(false);
        ARBOR_ASSIGN_OR_RETURN(call.tables, Strings(body, "tables", "body"));
        ARBOR_ASSIGN_OR_RETURN(auto db, Field<std::string>(body, "database", "body"));
        call.database = db.value_or("");
        ARBOR_ASSIGN_OR_RETURN(DataAnswer a,
                               RunMerge(eng, tokens, req.matches[1], req.matches[2], call));
        send(res, a);
        return Status::Ok();
      }));

  // The pages of relation files that may differ between two endpoints of one project, for
  // `arbor diff --data` (docs/api.md). `against` is the other endpoint's full name.
  s.Get(
      kPrefix + "projects/([^/:]+)/branches/([^/:]+)/endpoints/([^/:]+)/changed_pages",
      wrap([eng](const httplib::Request& req, httplib::Response& res) {
        std::string project = req.matches[1];
        if (!req.has_param("against")) {
          return Status::InvalidArgument(
              "against is required: the other endpoint, "
              "projects/P/branches/B/endpoints/E");
        }
        auto other = api::ParseEndpointName(req.get_param_value("against"));
        if (!other.ok()) return Status::InvalidArgument("against: " + other.status().message());
        if (other->project != project) {
          return Status::InvalidArgument("against must be an endpoint of projects/" + project);
        }
        ARBOR_ASSIGN_OR_RETURN(ChangedPages cp,
                               eng->ChangedPagesBetween(project, req.matches[2], req.matches[3],
                                                        other->branch, other->endpoint));
        json dbs = json::array();
        for (const auto& [oid, rels] : cp.databases) {
          json list = json::array();
          for (const ChangedRelation& r : rels) {
            json ranges = json::array();
            for (const auto& [lo, hi] : r.pages) ranges.push_back(json::array({lo, hi}));
            list.push_back({{"relfilenode", r.relfilenode}, {"whole", r.whole}, {"pages", ranges}});
          }
          dbs.push_back({{"oid", oid}, {"relations", list}});
        }
        json answer{{"complete", cp.complete}, {"databases", dbs}};
        if (!cp.complete) answer["reason"] = cp.reason;
        SendJson(res, answer);
        return Status::Ok();
      }));

  // ---- endpoints ----
  s.Post(
      kPrefix + "projects/([^/:]+)/branches/([^/:]+)/endpoints",
      wrap([eng, endpoint_json](const httplib::Request& req, httplib::Response& res) {
        std::string id = req.get_param_value("endpoint_id");
        if (id.empty()) return Status::InvalidArgument("endpoint_id is required");
        ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
        ARBOR_ASSIGN_OR_RETURN(json spec, Spec(body));
        ARBOR_RETURN_IF_ERROR(OnlyFields(
            spec,
            {"endpoint_type", "suspend_timeout_duration", "no_suspension", "source_branch_time",
             "source_branch_lsn", "autoscaling_limit_min_cu", "autoscaling_limit_max_cu"},
            "spec"));
        ComputeSize size;
        ARBOR_ASSIGN_OR_RETURN(bool sized, SizeFields(spec, "spec", &size));
        if (sized) {
          if (size.min_cu == 0) size.min_cu = size.max_cu;
          if (size.max_cu == 0) size.max_cu = size.min_cu;
          ARBOR_RETURN_IF_ERROR(ValidateSize(size, "spec"));
        }
        // Made, then sized: a size is a property of the record, set before any start.
        auto made = [&](EndpointRecord e) -> Result<EndpointRecord> {
          if (!sized) return e;
          return eng->SetEndpointSize(e.project, e.branch, e.id, size);
        };
        int64_t timeout = 300;
        ARBOR_ASSIGN_OR_RETURN(auto t,
                               Field<std::string>(spec, "suspend_timeout_duration", "spec"));
        if (t) {
          ARBOR_ASSIGN_OR_RETURN(timeout, ParseDuration(*t));
        }
        ARBOR_ASSIGN_OR_RETURN(auto never, Field<bool>(spec, "no_suspension", "spec"));
        ARBOR_ASSIGN_OR_RETURN(auto type, Field<std::string>(spec, "endpoint_type", "spec"));
        ARBOR_ASSIGN_OR_RETURN(auto at, Field<std::string>(spec, "source_branch_time", "spec"));
        ARBOR_ASSIGN_OR_RETURN(auto lsn_text,
                               Field<std::string>(spec, "source_branch_lsn", "spec"));
        if (type && *type != "ENDPOINT_TYPE_READ_WRITE" && *type != "ENDPOINT_TYPE_READ_ONLY") {
          return Status::InvalidArgument(
              "endpoint_type must be ENDPOINT_TYPE_READ_WRITE or ENDPOINT_TYPE_READ_ONLY");
        }
        bool read_only = type && *type == "ENDPOINT_TYPE_READ_ONLY";
        if ((at || lsn_text) && !read_only) {
          return Status::InvalidArgument(
              "spec.source_branch_time and spec.source_branch_lsn need endpoint_type "
              "ENDPOINT_TYPE_READ_ONLY");
        }
        if (read_only) {
          if (at && lsn_text) {
            return Status::InvalidArgument(
                "set at most one of spec.source_branch_time and spec.source_branch_lsn");
          }
          if (!at && !lsn_text) {
            // A read replica: a hot standby that follows the branch.
            ARBOR_ASSIGN_OR_RETURN(EndpointRecord e,
                                   eng->CreateEndpoint(req.matches[1], req.matches[2], id, timeout,
                                                       never.value_or(false), /*replica=*/true));
            ARBOR_ASSIGN_OR_RETURN(e, made(e));
            SendJson(res, endpoint_json(e));
            return Status::Ok();
          }
          if (never.value_or(false)) {
            return Status::InvalidArgument(
                "a pinned endpoint always deletes itself when idle; no_suspension is not "
                "allowed");
          }
          std::optional<int64_t> time_us;
          std::optional<uint64_t> lsn;
          if (at) {
            ARBOR_ASSIGN_OR_RETURN(time_us, ParseTime(*at));
          }
          if (lsn_text) {
            ARBOR_ASSIGN_OR_RETURN(lsn, ParseLsn(*lsn_text));
          }
          ARBOR_ASSIGN_OR_RETURN(
              EndpointRecord e,
              eng->CreatePinnedEndpoint(req.matches[1], req.matches[2], id, time_us, lsn, timeout));
          ARBOR_ASSIGN_OR_RETURN(e, made(e));
          SendJson(res, endpoint_json(e));
          return Status::Ok();
        }
        ARBOR_ASSIGN_OR_RETURN(EndpointRecord e,
                               eng->CreateEndpoint(req.matches[1], req.matches[2], id, timeout,
                                                   never.value_or(false)));
        ARBOR_ASSIGN_OR_RETURN(e, made(e));
        SendJson(res, endpoint_json(e));
        return Status::Ok();
      }));
  // Every endpoint of the project in one call (the console's tree shows their states).
  s.Get(kPrefix + "projects/([^/:]+)/endpoints",
        wrap([eng, endpoint_json](const httplib::Request& req, httplib::Response& res) {
          const std::string project = req.matches[1];
          ARBOR_RETURN_IF_ERROR(eng->GetProject(project).status());
          json list = json::array();
          for (const BranchRecord& b : eng->ListBranches(project)) {
            for (const auto& e : eng->ListEndpoints(project, b.id))
              list.push_back(endpoint_json(e));
          }
          SendJson(res, {{"endpoints", list}});
          return Status::Ok();
        }));
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/endpoints",
        wrap([eng, endpoint_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_RETURN_IF_ERROR(eng->GetBranch(req.matches[1], req.matches[2]).status());
          json list = json::array();
          for (const auto& e : eng->ListEndpoints(req.matches[1], req.matches[2])) {
            list.push_back(endpoint_json(e));
          }
          SendJson(res, {{"endpoints", list}});
          return Status::Ok();
        }));
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/endpoints/([^/:]+)",
        wrap([eng, endpoint_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_ASSIGN_OR_RETURN(EndpointRecord e,
                                 eng->GetEndpoint(req.matches[1], req.matches[2], req.matches[3]));
          SendJson(res, endpoint_json(e));
          return Status::Ok();
        }));
  // Its size: {"spec": {"autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 2}}.
  s.Patch(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/endpoints/([^/:]+)",
          wrap([eng, endpoint_json](const httplib::Request& req, httplib::Response& res) {
            ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
            ARBOR_ASSIGN_OR_RETURN(json spec, Spec(body));
            ARBOR_RETURN_IF_ERROR(
                OnlyFields(spec, {"autoscaling_limit_min_cu", "autoscaling_limit_max_cu"}, "spec"));
            ARBOR_ASSIGN_OR_RETURN(
                EndpointRecord e, eng->GetEndpoint(req.matches[1], req.matches[2], req.matches[3]));
            ComputeSize size = eng->EffectiveSize(e);
            ARBOR_ASSIGN_OR_RETURN(bool sized, SizeFields(spec, "spec", &size));
            if (!sized) {
              return Status::InvalidArgument(
                  "nothing to change: give spec.autoscaling_limit_min_cu and/or "
                  "spec.autoscaling_limit_max_cu");
            }
            ARBOR_ASSIGN_OR_RETURN(
                e, eng->SetEndpointSize(req.matches[1], req.matches[2], req.matches[3], size));
            SendJson(res, endpoint_json(e));
            return Status::Ok();
          }));
  s.Delete(
      kPrefix + "projects/([^/:]+)/branches/([^/:]+)/endpoints/([^/:]+)",
      wrap([eng](const httplib::Request& req, httplib::Response& res) {
        ARBOR_RETURN_IF_ERROR(eng->DeleteEndpoint(req.matches[1], req.matches[2], req.matches[3]));
        SendJson(res, json::object());
        return Status::Ok();
      }));
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/endpoints/([^/:]+):start",
         wrap([eng, endpoint_json](const httplib::Request& req, httplib::Response& res) {
           ARBOR_RETURN_IF_ERROR(
               eng->StartEndpoint(req.matches[1], req.matches[2], req.matches[3]).status());
           ARBOR_ASSIGN_OR_RETURN(EndpointRecord e,
                                  eng->GetEndpoint(req.matches[1], req.matches[2], req.matches[3]));
           SendJson(res, endpoint_json(e));
           return Status::Ok();
         }));
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/endpoints/([^/:]+):stop",
         wrap([eng, endpoint_json](const httplib::Request& req, httplib::Response& res) {
           ARBOR_RETURN_IF_ERROR(eng->StopEndpoint(req.matches[1], req.matches[2], req.matches[3]));
           ARBOR_ASSIGN_OR_RETURN(EndpointRecord e,
                                  eng->GetEndpoint(req.matches[1], req.matches[2], req.matches[3]));
           SendJson(res, endpoint_json(e));
           return Status::Ok();
         }));

  // ---- roles ----
  auto role_json = [](const RoleRecord& r) {
    return json{{"name", "projects/" + r.project + "/branches/" + r.branch + "/roles/" + r.name},
                {"create_time", FormatTime(r.create_time_us)},
                {"status",
                 {{"postgres_role", r.name},
                  {"password_update_time", FormatTime(r.password_time_us)},
                  {"password_applied", r.applied}}}};
  };
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/roles",
         wrap([eng, role_json](const httplib::Request& req, httplib::Response& res) {
           std::string id = req.get_param_value("role_id");
           if (id.empty()) return Status::InvalidArgument("role_id is required");
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_ASSIGN_OR_RETURN(json spec, Spec(body));
           ARBOR_RETURN_IF_ERROR(OnlyFields(spec, {}, "spec"));
           ARBOR_ASSIGN_OR_RETURN(auto made, eng->CreateRole(req.matches[1], req.matches[2], id));
           json j = role_json(made.first);
           j["password"] = made.second;  // shown this once
           SendJson(res, j);
           return Status::Ok();
         }));
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/roles",
        wrap([eng, role_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_RETURN_IF_ERROR(eng->GetBranch(req.matches[1], req.matches[2]).status());
          json list = json::array();
          for (const auto& r : eng->ListRoles(req.matches[1], req.matches[2])) {
            list.push_back(role_json(r));
          }
          SendJson(res, {{"roles", list}});
          return Status::Ok();
        }));
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/roles/([^/:]+)",
        wrap([eng, role_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_ASSIGN_OR_RETURN(RoleRecord r,
                                 eng->GetRole(req.matches[1], req.matches[2], req.matches[3]));
          SendJson(res, role_json(r));
          return Status::Ok();
        }));
  s.Delete(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/roles/([^/:]+)",
           wrap([eng](const httplib::Request& req, httplib::Response& res) {
             ARBOR_RETURN_IF_ERROR(eng->DeleteRole(req.matches[1], req.matches[2], req.matches[3]));
             SendJson(res, json::object());
             return Status::Ok();
           }));
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/roles/([^/:]+):reset_password",
         wrap([eng, role_json](const httplib::Request& req, httplib::Response& res) {
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_RETURN_IF_ERROR(OnlyFields(body, {}, "body"));
           ARBOR_ASSIGN_OR_RETURN(
               auto reset, eng->ResetRolePassword(req.matches[1], req.matches[2], req.matches[3]));
           json j = role_json(reset.first);
           j["password"] = reset.second;  // shown this once
           SendJson(res, j);
           return Status::Ok();
         }));

  // ---- databases ----
  auto database_json = [](const DatabaseInfo& d) {
    return json{{"name", d.name},
                {"owner_name", d.owner},
                {"branch", "projects/" + d.project + "/branches/" + d.branch}};
  };
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/databases",
         wrap([eng, database_json](const httplib::Request& req, httplib::Response& res) {
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_RETURN_IF_ERROR(OnlyFields(body, {"database"}, "body"));
           auto it = body.find("database");
           if (it == body.end() || !it->is_object()) {
             return Status::InvalidArgument("body.database must be an object with a name");
           }
           ARBOR_RETURN_IF_ERROR(OnlyFields(*it, {"name", "owner_name"}, "database"));
           ARBOR_ASSIGN_OR_RETURN(auto name, Field<std::string>(*it, "name", "database"));
           if (!name) return Status::InvalidArgument("database.name is required");
           ARBOR_ASSIGN_OR_RETURN(auto owner, Field<std::string>(*it, "owner_name", "database"));
           ARBOR_ASSIGN_OR_RETURN(DatabaseInfo d,
                                  eng->CreateDatabase(req.matches[1], req.matches[2], *name,
                                                      owner.value_or(compute::kOwnerRole)));
           SendJson(res, {{"database", database_json(d)}});
           return Status::Ok();
         }));
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/databases",
        wrap([eng, database_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_ASSIGN_OR_RETURN(auto dbs, eng->ListDatabases(req.matches[1], req.matches[2]));
          json list = json::array();
          for (const auto& d : dbs) list.push_back(database_json(d));
          SendJson(res, {{"databases", list}});
          return Status::Ok();
        }));
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/databases/([^/:]+)",
        wrap([eng, database_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_ASSIGN_OR_RETURN(DatabaseInfo d,
                                 eng->GetDatabase(req.matches[1], req.matches[2], req.matches[3]));
          SendJson(res, {{"database", database_json(d)}});
          return Status::Ok();
        }));
  s.Delete(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/databases/([^/:]+)",
           wrap([eng](const httplib::Request& req, httplib::Response& res) {
             std::string force = req.get_param_value("force");
             if (!force.empty() && force != "true" && force != "false") {
               return Status::InvalidArgument("force must be true or false");
             }
             ARBOR_RETURN_IF_ERROR(eng->DeleteDatabase(req.matches[1], req.matches[2],
                                                       req.matches[3], force == "true"));
             SendJson(res, json::object());
             return Status::Ok();
           }));

  // ---- snapshots ----
  auto snapshot_json = [eng](const SnapshotRecord& sn) {
    std::string branch = "projects/" + sn.project + "/branches/" + sn.branch;
    json spec = json::object();
    if (sn.requested_time) spec["source_branch_time"] = FormatTime(sn.source_time_us);
    if (sn.expiry == Expiry::kTtl) spec["ttl"] = Duration(sn.ttl_s);
    if (sn.expiry == Expiry::kExpireTime) spec["expire_time"] = FormatTime(sn.expire_time_us);
    if (sn.expiry == Expiry::kNever) spec["no_expiry"] = true;
    json status{{"source_branch", branch},
                {"source_branch_time", FormatTime(sn.source_time_us)},
                {"scheduled", sn.scheduled}};
    auto usage = eng->store()->GetUsage(sn.timeline);
    status["logical_size_bytes"] = usage.ok() ? usage->logical_size_bytes : 0;
    auto excl = eng->SnapshotExclusiveSize(sn.project, sn.branch, sn.id);
    status["exclusive_size_bytes"] = excl.ok() ? excl->bytes : 0;
    if (sn.expire_time_us) status["expire_time"] = FormatTime(sn.expire_time_us);
    return json{{"name", branch + "/snapshots/" + sn.id},
                {"uid", sn.uid},
                {"create_time", FormatTime(sn.create_time_us)},
                {"spec", spec},
                {"status", status}};
  };
  s.Post(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/snapshots",
         wrap([eng, snapshot_json](const httplib::Request& req, httplib::Response& res) {
           std::string id = req.get_param_value("snapshot_id");
           if (id.empty()) return Status::InvalidArgument("snapshot_id is required");
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_ASSIGN_OR_RETURN(json spec, Spec(body));
           ARBOR_RETURN_IF_ERROR(
               OnlyFields(spec, {"source_branch_time", "ttl", "expire_time", "no_expiry"}, "spec"));
           ARBOR_ASSIGN_OR_RETURN(auto expiry, ExpiryOf(spec, /*required=*/true));
           SnapshotRequest r;
           r.expiry = expiry->expiry;
           r.ttl_s = expiry->ttl_s;
           r.expire_time_us = expiry->expire_time_us;
           ARBOR_ASSIGN_OR_RETURN(auto t, Field<std::string>(spec, "source_branch_time", "spec"));
           if (t) {
             ARBOR_ASSIGN_OR_RETURN(r.time_us, ParseTime(*t));
           }
           ARBOR_ASSIGN_OR_RETURN(SnapshotRecord sn,
                                  eng->CreateSnapshot(req.matches[1], req.matches[2], id, r));
           SendJson(res, snapshot_json(sn));
           return Status::Ok();
         }));
  auto list_snapshots = [eng, snapshot_json](const std::string& project, const std::string& branch,
                                             httplib::Response& res) -> Status {
    ARBOR_ASSIGN_OR_RETURN(auto snaps, eng->ListSnapshots(project, branch));
    json list = json::array();
    for (const auto& sn : snaps) list.push_back(snapshot_json(sn));
    SendJson(res, {{"snapshots", list}});
    return Status::Ok();
  };
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/snapshots",
        wrap([list_snapshots](const httplib::Request& req, httplib::Response& res) {
          return list_snapshots(req.matches[1], req.matches[2], res);
        }));
  s.Get(kPrefix + "projects/([^/:]+)/snapshots",
        wrap([list_snapshots](const httplib::Request& req, httplib::Response& res) {
          return list_snapshots(req.matches[1], "", res);
        }));
  s.Get(kPrefix + "projects/([^/:]+)/branches/([^/:]+)/snapshots/([^/:]+)",
        wrap([eng, snapshot_json](const httplib::Request& req, httplib::Response& res) {
          ARBOR_ASSIGN_OR_RETURN(SnapshotRecord sn,
                                 eng->GetSnapshot(req.matches[1], req.matches[2], req.matches[3]));
          SendJson(res, snapshot_json(sn));
          return Status::Ok();
        }));
  s.Delete(
      kPrefix + "projects/([^/:]+)/branches/([^/:]+)/snapshots/([^/:]+)",
      wrap([eng](const httplib::Request& req, httplib::Response& res) {
        ARBOR_RETURN_IF_ERROR(eng->DeleteSnapshot(req.matches[1], req.matches[2], req.matches[3]));
        SendJson(res, json::object());
        return Status::Ok();
      }));

  // ---- API tokens (outside /postgres/: they are Arbor's own) ----
  auto token_json = [](const ApiTokenRecord& t) {
    json j{{"name", t.name},
           {"role", AccessRoleName(t.role)},
           {"create_time", FormatTime(t.create_time_us)}};
    if (!t.project.empty()) j["project"] = "projects/" + t.project;
    if (t.expire_time_us) j["expire_time"] = FormatTime(t.expire_time_us);
    return j;
  };
  s.Post(kTokensPath, wrap([eng, token_json](const httplib::Request& req, httplib::Response& res) {
           ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
           ARBOR_RETURN_IF_ERROR(OnlyFields(body, {"name", "role", "project", "ttl"}, "body"));
           ARBOR_ASSIGN_OR_RETURN(auto name, Field<std::string>(body, "name", "body"));
           ARBOR_ASSIGN_OR_RETURN(auto role, Field<std::string>(body, "role", "body"));
           ARBOR_ASSIGN_OR_RETURN(auto project, Field<std::string>(body, "project", "body"));
           ARBOR_ASSIGN_OR_RETURN(auto ttl, Field<std::string>(body, "ttl", "body"));
           if (!name) return Status::InvalidArgument("name is required");
           auto access = ParseAccessRole(role.value_or(""));
           if (!access) {
             return Status::InvalidArgument("role must be admin, developer or viewer");
           }
           std::string project_id = project.value_or("");
           if (project_id.rfind("projects/", 0) == 0) project_id = project_id.substr(9);
           int64_t ttl_s = 0;
           if (ttl) {
             ARBOR_ASSIGN_OR_RETURN(ttl_s, ParseDuration(*ttl));
           }
           ARBOR_ASSIGN_OR_RETURN(auto made,
                                  eng->CreateApiToken(*name, *access, project_id, ttl_s));
           json j = token_json(made.first);
           j["token"] = made.second;  // shown this once; only its hash is kept
           SendJson(res, j);
           return Status::Ok();
         }));
  s.Get(kTokensPath, wrap([eng, token_json](const httplib::Request&, httplib::Response& res) {
          json list = json::array();
          for (const auto& t : eng->ListApiTokens()) list.push_back(token_json(t));
          SendJson(res, {{"tokens", list}});
          return Status::Ok();
        }));
  s.Delete(kTokensPath + "/([^/:]+)",
           wrap([eng](const httplib::Request& req, httplib::Response& res) {
             ARBOR_RETURN_IF_ERROR(eng->RevokeApiToken(req.matches[1]));
             SendJson(res, json::object());
             return Status::Ok();
           }));

  s.Post(
      kPrefix + "credentials",
      wrap([eng, tokens = tokens_](const httplib::Request& req, httplib::Response& res) {
        ARBOR_ASSIGN_OR_RETURN(json body, Body(req));
        ARBOR_RETURN_IF_ERROR(OnlyFields(body, {"endpoint", "ttl", "role"}, "body"));
        ARBOR_ASSIGN_OR_RETURN(auto name, Field<std::string>(body, "endpoint", "body"));
        if (!name) {
          return Status::InvalidArgument("endpoint is required: projects/P/branches/B/endpoints/E");
        }
        ARBOR_ASSIGN_OR_RETURN(api::EndpointName e, api::ParseEndpointName(*name));
        int64_t ttl = proxy::auth::TokenSigner::kMaxTtlSeconds;
        ARBOR_ASSIGN_OR_RETURN(auto t, Field<std::string>(body, "ttl", "body"));
        if (t) {
          ARBOR_ASSIGN_OR_RETURN(ttl, ParseDuration(*t));
        }
        ARBOR_ASSIGN_OR_RETURN(auto role, Field<std::string>(body, "role", "body"));
        std::string role_name = role.value_or(compute::kOwnerRole);
        // The signer refuses a ttl outside 300-3600 s (InvalidArgument, so 400).
        ARBOR_ASSIGN_OR_RETURN(EndpointRecord ep,
                               eng->GetEndpoint(e.project, e.branch, e.endpoint));
        // A token for a pinned endpoint is one for its branch's read-write endpoint: the
        // proxy accepts those for every pinned endpoint of the branch (BRANCH@TIME).
        if (ep.pinned) {
          ARBOR_ASSIGN_OR_RETURN(ep, eng->DefaultEndpoint(e.project, e.branch));
          e.endpoint = ep.id;
        }
        if (role_name == compute::kSuperuser) {
          return Status::InvalidArgument(
              "role postgres is Arbor's own superuser; credentials are for owner or another "
              "role of the branch");
        }
        ARBOR_RETURN_IF_ERROR(eng->GetRole(e.project, e.branch, role_name).status());
        if (tokens == nullptr) return Status::Unavailable("this server issues no credentials");
        int64_t now_s = WallMicros() / 1'000'000;
        ARBOR_ASSIGN_OR_RETURN(std::string token,
                               tokens->Issue(e.ToString(), role_name, ttl, now_s, ep.uid));
        SendJson(res, {{"token", token},
                       {"role", role_name},
                       {"expire_time", FormatTime((now_s + ttl) * 1'000'000)}});
        return Status::Ok();
      }));
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 413) {
      res.set_content(json{{"error_code", "INVALID_PARAMETER_VALUE"},
                           {"message", "the request body is larger than 1 MiB"}}
                          .dump(),
                      kJson);
    } else if (res.status == 400 && res.body.empty()) {
      // The HTTP layer refused the request before routing: a POST without Content-Length.
      res.set_content(json{{"error_code", "INVALID_PARAMETER_VALUE"},
                           {"message",
                            "a POST needs a body or Content-Length: 0 (with curl: "
                            "-d '' or -d '{}')"}}
                          .dump(),
                      kJson);
    } else if (res.status == 404 && res.body.empty()) {
      res.set_content(json{{"error_code", "ENDPOINT_NOT_FOUND"},
                           {"message", "no API method " + req.method + " " + req.path}}
                          .dump(),
                      kJson);
    }
  });
}

}  // namespace arbor::control
