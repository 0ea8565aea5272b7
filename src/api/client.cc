#include "api/client.h"

#include <httplib.h>

#include <utility>

#include "api/errors.h"

namespace arbor::api {
namespace {

const char kApiRoot[] = "/api/2.0/postgres/";
const char kStartHint[] = "is the Arbor daemon running? start it with `arbor up`";

// Percent-encodes everything but RFC 3986's unreserved characters, so that an id can never
// change the shape of a path ("../x", "a/b", "a?b").
std::string Escape(const std::string& text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The database inside an answer {"database": {...}}.
Result<Database> DatabaseOf(const Json& j, const std::string& what) {
  auto it = j.find("database");
  Database out;
  Status st = it == j.end() ? Status::InvalidArgument("database is required")
                            : FromJson(*it, &out, "database");
  if (!st.ok()) {
    return Status::Internal("the Arbor API's answer to " + what +
                            " is not as documented: " + st.message());
  }
  return out;
}

std::string ProjectPath(const std::string& project) { return "projects/" + Escape(project); }
std::string BranchPath(const BranchName& b) {
  return ProjectPath(b.project) + "/branches/" + Escape(b.branch);
}
std::string EndpointPath(const EndpointName& e) {
  return BranchPath(e.Parent()) + "/endpoints/" + Escape(e.endpoint);
}

// Splits "http://host:port/prefix/" into "http://host:port" and "/prefix".
Status SplitBaseUrl(const std::string& url, std::string* host_port, std::string* prefix) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0 || url.size() == scheme.size()) {
    return Status::InvalidArgument("the API address '" + url +
                                   "' must look like http://127.0.0.1:8432");
  }
  size_t slash = url.find('/', scheme.size());
  *host_port = url.substr(0, slash);
  *prefix = slash == std::string::npos ? "" : url.substr(slash);
  while (!prefix->empty() && prefix->back() == '/') prefix->pop_back();
  return Status::Ok();
}

std::string Snippet(const std::string& body) {
  std::string s = body.substr(0, 200);
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s.empty() ? "an empty body" : "'" + s + "'";
}

}  // namespace

ApiClient::ApiClient(ClientOptions options) : options_(std::move(options)) {}

Result<Json> ApiClient::Call(const char* method, const std::string& path, const Json* body) const {
  std::string host_port, prefix;
  ARBOR_RETURN_IF_ERROR(SplitBaseUrl(options_.base_url, &host_port, &prefix));
  // Paths are relative to /api/2.0/postgres/, except Arbor's own ("/tokens": /api/2.0/tokens).
  std::string full_path =
      path.rfind('/', 0) == 0 ? prefix + "/api/2.0" + path : prefix + kApiRoot + path;
  std::string where = std::string(method) + " " + full_path;

  httplib::Client http(host_port);
  if (!http.is_valid()) {
    return Status::InvalidArgument("the API address '" + options_.base_url + "' is not valid");
  }
  http.set_connection_timeout(options_.connect_timeout_s, 0);
  http.set_read_timeout(options_.read_timeout_s, 0);
  http.set_write_timeout(options_.read_timeout_s, 0);
  http.set_keep_alive(false);
  if (!options_.token.empty()) http.set_bearer_token_auth(options_.token);

  const std::string kJsonType = "application/json";
  std::string text = body != nullptr ? body->dump() : std::string();
  httplib::Result res{nullptr, httplib::Error::Unknown};
  std::string m = method;
  if (m == "GET") {
    res = http.Get(full_path.c_str());
  } else if (m == "POST") {
    res = http.Post(full_path.c_str(), text, kJsonType.c_str());
  } else if (m == "PATCH") {
    res = http.Patch(full_path.c_str(), text, kJsonType.c_str());
  } else if (m == "DELETE") {
    res = http.Delete(full_path.c_str());
  } else {
    return Status::Internal("unsupported HTTP method " + m);
  }

  if (!res) {
    httplib::Error err = res.error();
    if (err == httplib::Error::Connection) {
      return Status::Unavailable("cannot connect to the Arbor API at " + options_.base_url + ": " +
                                 kStartHint);
    }
    return Status::Unavailable("no answer from the Arbor API at " + options_.base_url + " to " +
                               where + " (" + httplib::to_string(err) + "): " + kStartHint);
  }

  const int http_status = res->status;
  if (http_status >= 200 && http_status < 300) {
    if (res->body.empty()) return Json::object();
    auto j = ParseJsonObject(res->body, "the answer");
    if (!j.ok()) {
      return Status::Internal("the Arbor API answered " + where + " with " + Snippet(res->body) +
                              ", which is not a JSON object");
    }
    return std::move(j).value();
  }

  // An error answer: {"error_code", "message"} when it comes from Arbor.
  ApiError error;
  auto j = ParseJsonObject(res->body, "the error");
  std::string hint =
      http_status == 401 && !options_.auth_hint.empty() ? "; " + options_.auth_hint : "";
  if (j.ok() && FromJson(*j, &error).ok()) {
    std::string message = error.message.empty() ? error.error_code : error.message;
    return Status(CodeForError(error.error_code, http_status), message + hint);
  }
  return Status(CodeForError("", http_status), "HTTP " + std::to_string(http_status) + " from " +
                                                   where + ": " + Snippet(res->body) + hint);
}

template <typename T>
Result<T> ApiClient::CallAs(const char* method, const std::string& path, const Json* body,
                            const char* what) const {
  ARBOR_ASSIGN_OR_RETURN(Json j, Call(method, path, body));
  T out;
  Status st = FromJson(j, &out, what);
  if (!st.ok()) {
    return Status::Internal("the Arbor API's answer to " + std::string(method) + " " + path +
                            " is not as documented: " + st.message());
  }
  return out;
}

Result<ServerStatus> ApiClient::GetStatus() const {
  return CallAs<ServerStatus>("GET", "status", nullptr, "status");
}

// ---- projects ----

Result<Project> ApiClient::CreateProject(const std::string& project_id,
                                         const ProjectSpec& spec) const {
  Json body{{"spec", ToJson(spec)}};
  return CallAs<Project>("POST", "projects?project_id=" + Escape(project_id), &body, "project");
}

Result<std::vector<Project>> ApiClient::ListProjects() const {
  ARBOR_ASSIGN_OR_RETURN(Json j, Call("GET", "projects", nullptr));
  std::vector<Project> out;
  Status st = FromJsonList(j, "projects", &out);
  if (!st.ok())
    return Status::Internal("the Arbor API's project list is not as documented: " + st.message());
  return out;
}

Result<Project> ApiClient::GetProject(const std::string& project) const {
  return CallAs<Project>("GET", ProjectPath(project), nullptr, "project");
}

Result<Project> ApiClient::UpdateProject(const std::string& project,
                                         const ProjectSpec& spec) const {
  Json body{{"spec", ToJson(spec)}};
  std::string mask;
  if (spec.history_retention_s) mask = "spec.history_retention_duration";
  if (spec.default_branch_ttl_s) {
    mask += (mask.empty() ? "" : ",") + std::string("spec.default_branch_ttl");
  }
  return CallAs<Project>("PATCH", ProjectPath(project) + "?update_mask=" + mask, &body, "project");
}

Status ApiClient::DeleteProject(const std::string& project) const {
  return Call("DELETE", ProjectPath(project), nullptr).status();
}

// ---- branches ----

Result<Branch> ApiClient::CreateBranch(const std::string& project, const std::string& branch_id,
                                       const BranchSpec& spec) const {
  return CreateBranchRaw(project, branch_id, Json{{"spec", ToJson(spec)}});
}

Result<Branch> ApiClient::CreateBranchRaw(const std::string& project, const std::string& branch_id,
                                          const Json& body) const {
  return CallAs<Branch>("POST", ProjectPath(project) + "/branches?branch_id=" + Escape(branch_id),
                        &body, "branch");
}

Result<std::vector<Branch>> ApiClient::ListBranches(const std::string& project,
                                                    bool show_deleted) const {
  ARBOR_ASSIGN_OR_RETURN(
      Json j,
      Call("GET", ProjectPath(project) + "/branches" + (show_deleted ? "?show_deleted=true" : ""),
           nullptr));
  std::vector<Branch> out;
  Status st = FromJsonList(j, "branches", &out);
  if (!st.ok())
    return Status::Internal("the Arbor API's branch list is not as documented: " + st.message());
  return out;
}

Result<Branch> ApiClient::GetBranch(const BranchName& branch) const {
  return CallAs<Branch>("GET", BranchPath(branch), nullptr, "branch");
}

Result<Branch> ApiClient::UpdateBranch(const BranchName& branch, const BranchSpec& spec,
                                       const std::string& update_mask) const {
  Json body{{"spec", ToJson(spec)}};
  return CallAs<Branch>("PATCH", BranchPath(branch) + "?update_mask=" + Escape(update_mask), &body,
                        "branch");
}

Status ApiClient::DeleteBranch(const BranchName& branch) const {
  return Call("DELETE", BranchPath(branch), nullptr).status();
}

Status ApiClient::PurgeBranch(const BranchName& branch) const {
  return Call("DELETE", BranchPath(branch) + "?purge=true", nullptr).status();
}

Result<UndeleteResult> ApiClient::UndeleteBranch(
    const BranchName& branch, const std::optional<std::string>& new_branch_id) const {
  std::string path = BranchPath(branch) + ":undelete";
  if (new_branch_id) path += "?new_branch_id=" + Escape(*new_branch_id);
  return CallAs<UndeleteResult>("POST", path, nullptr, "undelete");
}

Result<Branch> ApiClient::ResetBranch(const BranchName& branch, const PointInTime& at) const {
  Json body = ToJson(at);
  return CallAs<Branch>("POST", BranchPath(branch) + ":reset", &body, "branch");
}

Result<RestoreResult> ApiClient::RestoreBranch(const BranchName& branch,
                                               const PointInTime& at) const {
  Json body = ToJson(at);
  return CallAs<RestoreResult>("POST", BranchPath(branch) + ":restore", &body, "restore");
}

// ---- endpoints ----

Result<Endpoint> ApiClient::CreateEndpoint(const BranchName& branch, const std::string& endpoint_id,
                                           const EndpointSpec& spec) const {
  Json body{{"spec", ToJson(spec)}};
  return CallAs<Endpoint>("POST",
                          BranchPath(branch) + "/endpoints?endpoint_id=" + Escape(endpoint_id),
                          &body, "endpoint");
}

Result<std::vector<Endpoint>> ApiClient::ListEndpoints(const BranchName& branch) const {
  ARBOR_ASSIGN_OR_RETURN(Json j, Call("GET", BranchPath(branch) + "/endpoints", nullptr));
  std::vector<Endpoint> out;
  Status st = FromJsonList(j, "endpoints", &out);
  if (!st.ok())
    return Status::Internal("the Arbor API's endpoint list is not as documented: " + st.message());
  return out;
}

Result<std::vector<HistoryPoint>> ApiClient::History(const BranchName& branch,
                                                     std::optional<int64_t> since_us,
                                                     std::optional<int64_t> until_us) const {
  std::string query;
  if (since_us) query += "since=" + Escape(FormatTime(*since_us));
  if (until_us)
    query += std::string(query.empty() ? "" : "&") + "until=" + Escape(FormatTime(*until_us));
  ARBOR_ASSIGN_OR_RETURN(
      Json j,
      Call("GET", BranchPath(branch) + "/history" + (query.empty() ? "" : "?" + query), nullptr));
  std::vector<HistoryPoint> out;
  const Json* points = j.is_object() && j.contains("points") ? &j["points"] : nullptr;
  if (points == nullptr || !points->is_array()) {
    return Status::Internal("the Arbor API's history is not as documented: no points");
  }
  for (const Json& p : *points) {
    if (!p.is_object() || !p.contains("time_us") || !p["time_us"].is_number_integer() ||
        !p.contains("lsn") || !p["lsn"].is_string()) {
      return Status::Internal("the Arbor API's history is not as documented: " + p.dump());
    }
    ARBOR_ASSIGN_OR_RETURN(Lsn lsn, ParseLsn(p["lsn"].get<std::string>()));
    out.push_back({p["time_us"].get<int64_t>(), lsn});
  }
  return out;
}

Result<Json> ApiClient::Bisect(const BranchName& branch, const Json& body) const {
  return Call("POST", BranchPath(branch) + ":bisect", &body);
}

Result<ChangedPages> ApiClient::GetChangedPages(const EndpointName& endpoint,
                                                const EndpointName& against) const {
  ARBOR_ASSIGN_OR_RETURN(
      Json j,
      Call("GET", EndpointPath(endpoint) + "/changed_pages?against=" + Escape(against.ToString()),
           nullptr));
  auto bad = [&] {
    return Status::Internal("the Arbor API's changed_pages is not as documented: " + j.dump());
  };
  if (!j.is_object() || !j.contains("complete") || !j["complete"].is_boolean() ||
      !j.contains("databases") || !j["databases"].is_array()) {
    return bad();
  }
  ChangedPages out;
  out.complete = j["complete"].get<bool>();
  if (j.contains("reason") && j["reason"].is_string()) out.reason = j["reason"].get<std::string>();
  for (const Json& d : j["databases"]) {
    if (!d.is_object() || !d.contains("oid") || !d["oid"].is_number_unsigned() ||
        !d.contains("relations") || !d["relations"].is_array()) {
      return bad();
    }
    auto& rels = out.databases[d["oid"].get<uint32_t>()];
    for (const Json& r : d["relations"]) {
      if (!r.is_object() || !r.contains("relfilenode") || !r["relfilenode"].is_number_unsigned() ||
          !r.contains("pages") || !r["pages"].is_array()) {
        return bad();
      }
      ChangedRelation rel;
      rel.relfilenode = r["relfilenode"].get<uint32_t>();
      rel.whole = r.value("whole", false);
      for (const Json& p : r["pages"]) {
        if (!p.is_array() || p.size() != 2 || !p[0].is_number_unsigned() ||
            !p[1].is_number_unsigned()) {
          return bad();
        }
        rel.pages.push_back({p[0].get<uint64_t>(), p[1].get<uint64_t>()});
      }
      rels.push_back(std::move(rel));
    }
  }
  return out;
}

Result<Endpoint> ApiClient::GetEndpoint(const EndpointName& endpoint) const {
  return CallAs<Endpoint>("GET", EndpointPath(endpoint), nullptr, "endpoint");
}

Status ApiClient::DeleteEndpoint(const EndpointName& endpoint) const {
  return Call("DELETE", EndpointPath(endpoint), nullptr).status();
}

Result<Endpoint> ApiClient::UpdateEndpointSize(const EndpointName& endpoint,
                                               std::optional<double> min_cu,
                                               std::optional<double> max_cu) const {
  Json spec = Json::object();
  if (min_cu) spec["autoscaling_limit_min_cu"] = *min_cu;
  if (max_cu) spec["autoscaling_limit_max_cu"] = *max_cu;
  Json body{{"spec", spec}};
  return CallAs<Endpoint>("PATCH", EndpointPath(endpoint), &body, "endpoint");
}

Result<Project> ApiClient::SetSnapshotSchedule(
    const std::string& project, const std::optional<SnapshotScheduleSpec>& schedule) const {
  ProjectSpec spec;
  spec.snapshot_schedule = schedule;
  Json body{{"spec", ToJson(spec)}};
  return CallAs<Project>("PATCH", ProjectPath(project) + "?update_mask=spec.snapshot_schedule",
                         &body, "project");
}

Result<Json> ApiClient::GetUsage(const std::string& project, const std::string& start,
                                 const std::string& end) const {
  std::string q;
  if (!start.empty()) q += "start=" + Escape(start);
  if (!end.empty()) q += (q.empty() ? "" : "&") + std::string("end=") + Escape(end);
  return Call("GET", "projects/" + Escape(project) + "/usage" + (q.empty() ? "" : "?" + q),
              nullptr);
}

Result<Endpoint> ApiClient::StartEndpoint(const EndpointName& endpoint) const {
  Json body = Json::object();
  return CallAs<Endpoint>("POST", EndpointPath(endpoint) + ":start", &body, "endpoint");
}

Result<Endpoint> ApiClient::StopEndpoint(const EndpointName& endpoint) const {
  Json body = Json::object();
  return CallAs<Endpoint>("POST", EndpointPath(endpoint) + ":stop", &body, "endpoint");
}

// ---- credentials ----

// ---- databases ----

Result<Database> ApiClient::CreateDatabase(const BranchName& branch, const std::string& name,
                                           const std::string& owner) const {
  Json db{{"name", name}};
  if (!owner.empty()) db["owner_name"] = owner;
  Json body{{"database", db}};
  ARBOR_ASSIGN_OR_RETURN(Json j, Call("POST", BranchPath(branch) + "/databases", &body));
  return DatabaseOf(j, "POST databases");
}

Result<std::vector<Database>> ApiClient::ListDatabases(const BranchName& branch) const {
  ARBOR_ASSIGN_OR_RETURN(Json j, Call("GET", BranchPath(branch) + "/databases", nullptr));
  std::vector<Database> out;
  Status st = FromJsonList(j, "databases", &out);
  if (!st.ok())
    return Status::Internal("the Arbor API's database list is not as documented: " + st.message());
  return out;
}

Result<Database> ApiClient::GetDatabase(const BranchName& branch, const std::string& name) const {
  ARBOR_ASSIGN_OR_RETURN(Json j,
                         Call("GET", BranchPath(branch) + "/databases/" + Escape(name), nullptr));
  return DatabaseOf(j, "GET database");
}

Status ApiClient::DeleteDatabase(const BranchName& branch, const std::string& name,
                                 bool force) const {
  return Call("DELETE",
              BranchPath(branch) + "/databases/" + Escape(name) + (force ? "?force=true" : ""),
              nullptr)
      .status();
}

// ---- snapshots ----

Result<Snapshot> ApiClient::CreateSnapshot(const BranchName& branch, const std::string& snapshot_id,
                                           const SnapshotSpec& spec) const {
  Json body{{"spec", ToJson(spec)}};
  return CallAs<Snapshot>("POST",
                          BranchPath(branch) + "/snapshots?snapshot_id=" + Escape(snapshot_id),
                          &body, "snapshot");
}

Result<std::vector<Snapshot>> ApiClient::ListSnapshots(const BranchName& branch) const {
  std::string path = branch.branch.empty() ? ProjectPath(branch.project) + "/snapshots"
                                           : BranchPath(branch) + "/snapshots";
  ARBOR_ASSIGN_OR_RETURN(Json j, Call("GET", path, nullptr));
  std::vector<Snapshot> out;
  Status st = FromJsonList(j, "snapshots", &out);
  if (!st.ok())
    return Status::Internal("the Arbor API's snapshot list is not as documented: " + st.message());
  return out;
}

Result<Snapshot> ApiClient::GetSnapshot(const BranchName& branch,
                                        const std::string& snapshot_id) const {
  return CallAs<Snapshot>("GET", BranchPath(branch) + "/snapshots/" + Escape(snapshot_id), nullptr,
                          "snapshot");
}

Status ApiClient::DeleteSnapshot(const BranchName& branch, const std::string& snapshot_id) const {
  return Call("DELETE", BranchPath(branch) + "/snapshots/" + Escape(snapshot_id), nullptr).status();
}

Result<Role> ApiClient::CreateRole(const BranchName& branch, const std::string& role) const {
  Json body = Json::object();
  return CallAs<Role>("POST", BranchPath(branch) + "/roles?role_id=" + role, &body, "role");
}

Result<std::vector<Role>> ApiClient::ListRoles(const BranchName& branch) const {
  ARBOR_ASSIGN_OR_RETURN(Json j, Call("GET", BranchPath(branch) + "/roles", nullptr));
  std::vector<Role> out;
  Status st = FromJsonList(j, "roles", &out);
  if (!st.ok())
    return Status::Internal("the Arbor API's role list is not as documented: " + st.message());
  return out;
}

Status ApiClient::DeleteRole(const BranchName& branch, const std::string& role) const {
  return Call("DELETE", BranchPath(branch) + "/roles/" + role, nullptr).status();
}

Result<Role> ApiClient::ResetRolePassword(const BranchName& branch, const std::string& role) const {
  Json body = Json::object();
  return CallAs<Role>("POST", BranchPath(branch) + "/roles/" + role + ":reset_password", &body,
                      "role");
}

Result<ApiToken> ApiClient::CreateApiToken(const ApiTokenRequest& request) const {
  Json body{{"name", request.name}, {"role", request.role}};
  if (!request.project.empty()) body["project"] = request.project;
  if (request.ttl_s) body["ttl"] = std::to_string(*request.ttl_s) + "s";
  return CallAs<ApiToken>("POST", "/tokens", &body, "token");
}

Result<std::vector<ApiToken>> ApiClient::ListApiTokens() const {
  ARBOR_ASSIGN_OR_RETURN(Json j, Call("GET", "/tokens", nullptr));
  std::vector<ApiToken> out;
  Status st = FromJsonList(j, "tokens", &out);
  if (!st.ok())
    return Status::Internal("the Arbor API's token list is not as documented: " + st.message());
  return out;
}

Result<Json> ApiClient::ConsoleLink() const {
  Json body = Json::object();
  return Call("POST", "/console/links", &body);
}

Status ApiClient::RevokeApiToken(const std::string& name) const {
  return Call("DELETE", "/tokens/" + name, nullptr).status();
}

Result<Credential> ApiClient::GenerateCredential(const CredentialRequest& request) const {
  Json body = ToJson(request);
  return CallAs<Credential>("POST", "credentials", &body, "credential");
}

}  // namespace arbor::api
