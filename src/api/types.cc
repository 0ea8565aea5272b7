#include "api/types.h"

#include "api/names.h"

namespace arbor::api {
namespace {

// A short rendering of a JSON value for error messages.
std::string Show(const Json& v) {
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

// Reads the fields of one JSON object, remembering the first error. A missing object (null)
// reads as empty. Nothing throws: every access is type-checked first.
class Reader {
 public:
  Reader(const Json& j, std::string_view where) : where_(where) {
    if (j.is_object()) {
      obj_ = &j;
    } else if (!j.is_null()) {
      Fail(std::string(where) + ": expected an object, got " + Show(j));
    }
  }

  Status status() const { return status_; }

  // The field `key`, or nullptr if absent or null (and records `required`).
  const Json* Get(const char* key, bool required) {
    if (!status_.ok()) return nullptr;
    const Json* v = nullptr;
    if (obj_ != nullptr) {
      auto it = obj_->find(key);
      if (it != obj_->end() && !it->is_null()) v = &*it;
    }
    if (v == nullptr && required) Fail(Path(key) + " is required");
    return v;
  }

  void String(const char* key, std::string* out, bool required = false) {
    if (const Json* v = Typed(key, required, &Json::is_string, "a string")) {
      *out = v->get_ref<const std::string&>();
    }
  }
  void String(const char* key, std::optional<std::string>* out) {
    if (const Json* v = Typed(key, false, &Json::is_string, "a string")) {
      *out = v->get_ref<const std::string&>();
    }
  }
  void Bool(const char* key, bool* out) {
    if (const Json* v = Typed(key, false, &Json::is_boolean, "true or false")) {
      *out = v->get<bool>();
    }
  }
  void Bool(const char* key, std::optional<bool>* out) {
    if (const Json* v = Typed(key, false, &Json::is_boolean, "true or false")) {
      *out = v->get<bool>();
    }
  }
  void Int(const char* key, int64_t* out, bool required = false) {
    if (const Json* v = Typed(key, required, &Json::is_number_integer, "an integer")) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX) {
        Fail(Path(key) + ": " + Show(*v) + " is too large");
      } else {
        *out = v->get<int64_t>();
      }
    }
  }
  void Number(const char* key, std::optional<double>* out) {
    if (const Json* v = Typed(key, false, &Json::is_number, "a number")) *out = v->get<double>();
  }
  void Duration(const char* key, std::optional<int64_t>* out) {
    Text(key, false, [&](const std::string& s) {
      ARBOR_ASSIGN_OR_RETURN(*out, ParseDuration(s));
      return Status::Ok();
    });
  }
  void Time(const char* key, int64_t* out, bool required) {
    Text(key, required, [&](const std::string& s) {
      ARBOR_ASSIGN_OR_RETURN(*out, ParseTime(s));
      return Status::Ok();
    });
  }
  void Time(const char* key, std::optional<int64_t>* out) {
    Text(key, false, [&](const std::string& s) {
      ARBOR_ASSIGN_OR_RETURN(*out, ParseTime(s));
      return Status::Ok();
    });
  }
  void LsnField(const char* key, std::optional<Lsn>* out) {
    Text(key, false, [&](const std::string& s) {
      ARBOR_ASSIGN_OR_RETURN(*out, ParseLsn(s));
      return Status::Ok();
    });
  }
  // A nested object read by FromJson.
  template <typename T>
  void Object(const char* key, T* out) {
    const Json* v = Get(key, false);
    if (v != nullptr) Check(FromJson(*v, out, Path(key)));
  }

  void Fail(std::string message) {
    if (status_.ok()) status_ = Status::InvalidArgument(std::move(message));
  }
  void Check(const Status& st) {
    if (status_.ok() && !st.ok()) status_ = st;
  }
  std::string Path(const char* key) const { return where_ + "." + key; }

 private:
  const Json* Typed(const char* key, bool required, bool (Json::*is)() const noexcept,
                    const char* expected) {
    const Json* v = Get(key, required);
    if (v != nullptr && !(v->*is)()) {
      Fail(Path(key) + ": expected " + expected + ", got " + Show(*v));
      return nullptr;
    }
    return v;
  }
  template <typename F>
  void Text(const char* key, bool required, F parse) {
    std::string s;
    const Json* v = Typed(key, required, &Json::is_string, "a string");
    if (v == nullptr) return;
    Status st = parse(v->get_ref<const std::string&>());
    if (!st.ok()) Fail(Path(key) + ": " + st.message());
  }

  const Json* obj_ = nullptr;
  std::string where_;
  Status status_;
};

template <typename T>
void Put(Json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}
void PutDuration(Json& j, const char* key, const std::optional<int64_t>& v) {
  if (v) j[key] = FormatDuration(*v);
}
void PutTime(Json& j, const char* key, const std::optional<int64_t>& v) {
  if (v) j[key] = FormatTime(*v);
}
void PutLsn(Json& j, const char* key, const std::optional<Lsn>& v) {
  if (v) j[key] = FormatLsn(*v);
}

}  // namespace

// ---- projects ----

Json ToJson(const ProjectSpec& v) {
  Json j = Json::object();
  PutDuration(j, "history_retention_duration", v.history_retention_s);
  PutDuration(j, "default_branch_ttl", v.default_branch_ttl_s);
  if (v.snapshot_schedule) {
    j["snapshot_schedule"] = {{"branch", v.snapshot_schedule->branch},
                              {"every", FormatDuration(v.snapshot_schedule->every_s)},
                              {"keep", v.snapshot_schedule->keep}};
  }
  return j;
}
Json ToJson(const Project& v) {
  return Json{{"name", v.name},
              {"uid", v.uid},
              {"create_time", FormatTime(v.create_time_us)},
              {"spec", ToJson(v.spec)},
              {"status", {{"default_branch", v.status.default_branch}}}};
}
Status FromJson(const Json& j, ProjectSpec* out, std::string_view where) {
  Reader r(j, where);
  r.Duration("history_retention_duration", &out->history_retention_s);
  r.Duration("default_branch_ttl", &out->default_branch_ttl_s);
  if (const Json* s = r.Get("snapshot_schedule", false)) {
    Reader sr(*s, r.Path("snapshot_schedule"));
    SnapshotScheduleSpec sched;
    sr.String("branch", &sched.branch, true);
    std::optional<int64_t> every;
    sr.Duration("every", &every);
    sched.every_s = every.value_or(0);
    sr.Int("keep", &sched.keep);
    r.Check(sr.status());
    out->snapshot_schedule = sched;
  }
  return r.status();
}
Status FromJson(const Json& j, Project* out, std::string_view where) {
  Reader r(j, where);
  r.String("name", &out->name, true);
  r.String("uid", &out->uid);
  r.Time("create_time", &out->create_time_us, false);
  r.Object("spec", &out->spec);
  if (const Json* st = r.Get("status", false)) {
    Reader s(*st, r.Path("status"));
    s.String("default_branch", &out->status.default_branch);
    r.Check(s.status());
  }
  return r.status();
}

// ---- branches ----

Json ToJson(const BranchSpec& v) {
  Json j = Json::object();
  Put(j, "source_branch", v.source_branch);
  PutTime(j, "source_branch_time", v.source_branch_time_us);
  PutLsn(j, "source_branch_lsn", v.source_branch_lsn);
  PutDuration(j, "ttl", v.ttl_s);
  PutTime(j, "expire_time", v.expire_time_us);
  Put(j, "no_expiry", v.no_expiry);
  Put(j, "is_protected", v.is_protected);
  Put(j, "source_snapshot", v.source_snapshot);
  if (v.masking) j["masking"] = ToJson(*v.masking);
  return j;
}
Json ToJson(const BranchStatus& v) {
  Json j{{"current_state", v.current_state},
         {"default", v.is_default},
         {"logical_size_bytes", v.logical_size_bytes},
         {"written_bytes", v.written_bytes}};
  PutTime(j, "expire_time", v.expire_time_us);
  Put(j, "source_branch", v.source_branch);
  PutTime(j, "source_branch_time", v.source_branch_time_us);
  PutLsn(j, "source_branch_lsn", v.source_branch_lsn);
  Put(j, "source_snapshot", v.source_snapshot);
  if (v.deleted) j["deleted"] = true;
  PutTime(j, "delete_time", v.delete_time_us);
  PutTime(j, "purge_time", v.purge_time_us);
  PutTime(j, "masked_time", v.masked_time_us);
  return j;
}
Json ToJson(const Branch& v) {
  return Json{{"name", v.name},
              {"uid", v.uid},
              {"create_time", FormatTime(v.create_time_us)},
              {"spec", ToJson(v.spec)},
              {"status", ToJson(v.status)}};
}
Status FromJson(const Json& j, BranchSpec* out, std::string_view where) {
  Reader r(j, where);
  r.String("source_branch", &out->source_branch);
  r.Time("source_branch_time", &out->source_branch_time_us);
  r.LsnField("source_branch_lsn", &out->source_branch_lsn);
  r.Duration("ttl", &out->ttl_s);
  r.Time("expire_time", &out->expire_time_us);
  r.Bool("no_expiry", &out->no_expiry);
  r.Bool("is_protected", &out->is_protected);
  r.String("source_snapshot", &out->source_snapshot);
  if (const Json* m = r.Get("masking", false)) {
    std::vector<MaskRule> rules;
    r.Check(MaskRulesFromJson(*m, &rules, r.Path("masking")));
    out->masking = std::move(rules);
  }
  return r.status();
}
Status FromJson(const Json& j, BranchStatus* out, std::string_view where) {
  Reader r(j, where);
  r.String("current_state", &out->current_state);
  r.Bool("default", &out->is_default);
  r.Int("logical_size_bytes", &out->logical_size_bytes);
  r.Int("written_bytes", &out->written_bytes);
  r.Time("expire_time", &out->expire_time_us);
  r.String("source_branch", &out->source_branch);
  r.Time("source_branch_time", &out->source_branch_time_us);
  r.LsnField("source_branch_lsn", &out->source_branch_lsn);
  r.String("source_snapshot", &out->source_snapshot);
  r.Bool("deleted", &out->deleted);
  r.Time("delete_time", &out->delete_time_us);
  r.Time("purge_time", &out->purge_time_us);
  r.Time("masked_time", &out->masked_time_us);
  return r.status();
}
Status FromJson(const Json& j, Branch* out, std::string_view where) {
  Reader r(j, where);
  r.String("name", &out->name, true);
  r.String("uid", &out->uid);
  r.Time("create_time", &out->create_time_us, false);
  r.Object("spec", &out->spec);
  r.Object("status", &out->status);
  return r.status();
}

// ---- snapshots ----

Json ToJson(const SnapshotSpec& v) {
  Json j = Json::object();
  PutTime(j, "source_branch_time", v.source_branch_time_us);
  PutDuration(j, "ttl", v.ttl_s);
  PutTime(j, "expire_time", v.expire_time_us);
  Put(j, "no_expiry", v.no_expiry);
  return j;
}
Json ToJson(const Snapshot& v) {
  Json status{{"source_branch", v.status.source_branch},
              {"source_branch_time", FormatTime(v.status.source_branch_time_us)},
              {"scheduled", v.status.scheduled},
              {"logical_size_bytes", v.status.logical_size_bytes},
              {"exclusive_size_bytes", v.status.exclusive_size_bytes}};
  PutTime(status, "expire_time", v.status.expire_time_us);
  return Json{{"name", v.name},
              {"uid", v.uid},
              {"create_time", FormatTime(v.create_time_us)},
              {"spec", ToJson(v.spec)},
              {"status", status}};
}
Status FromJson(const Json& j, SnapshotSpec* out, std::string_view where) {
  Reader r(j, where);
  r.Time("source_branch_time", &out->source_branch_time_us);
  r.Duration("ttl", &out->ttl_s);
  r.Time("expire_time", &out->expire_time_us);
  r.Bool("no_expiry", &out->no_expiry);
  return r.status();
}
Status FromJson(const Json& j, Snapshot* out, std::string_view where) {
  Reader r(j, where);
  r.String("name", &out->name, true);
  r.String("uid", &out->uid);
  r.Time("create_time", &out->create_time_us, false);
  r.Object("spec", &out->spec);
  if (const Json* st = r.Get("status", false)) {
    Reader s(*st, r.Path("status"));
    s.String("source_branch", &out->status.source_branch);
    s.Time("source_branch_time", &out->status.source_branch_time_us, false);
    s.Bool("scheduled", &out->status.scheduled);
    s.Int("logical_size_bytes", &out->status.logical_size_bytes);
    s.Int("exclusive_size_bytes", &out->status.exclusive_size_bytes);
    s.Time("expire_time", &out->status.expire_time_us);
    r.Check(s.status());
  }
  return r.status();
}

// ---- endpoints ----

Json ToJson(const EndpointSpec& v) {
  Json j = Json::object();
  Put(j, "endpoint_type", v.endpoint_type);
  PutDuration(j, "suspend_timeout_duration", v.suspend_timeout_s);
  Put(j, "no_suspension", v.no_suspension);
  PutTime(j, "source_branch_time", v.source_branch_time_us);
  PutLsn(j, "source_branch_lsn", v.source_branch_lsn);
  Put(j, "autoscaling_limit_min_cu", v.autoscaling_limit_min_cu);
  Put(j, "autoscaling_limit_max_cu", v.autoscaling_limit_max_cu);
  return j;
}
Json ToJson(const EndpointStatus& v) {
  Json j{{"current_state", v.current_state}, {"host", v.host}, {"port", v.port}};
  Put(j, "current_cu", v.current_cu);
  Put(j, "connection_string", v.connection_string);
  Put(j, "replication_state", v.replication_state);
  Put(j, "replay_lag", v.replay_lag);
  return j;
}
Json ToJson(const Endpoint& v) {
  return Json{{"name", v.name},
              {"uid", v.uid},
              {"create_time", FormatTime(v.create_time_us)},
              {"spec", ToJson(v.spec)},
              {"status", ToJson(v.status)}};
}
Status FromJson(const Json& j, EndpointSpec* out, std::string_view where) {
  Reader r(j, where);
  r.String("endpoint_type", &out->endpoint_type);
  r.Duration("suspend_timeout_duration", &out->suspend_timeout_s);
  r.Bool("no_suspension", &out->no_suspension);
  r.Time("source_branch_time", &out->source_branch_time_us);
  r.LsnField("source_branch_lsn", &out->source_branch_lsn);
  r.Number("autoscaling_limit_min_cu", &out->autoscaling_limit_min_cu);
  r.Number("autoscaling_limit_max_cu", &out->autoscaling_limit_max_cu);
  return r.status();
}
Status FromJson(const Json& j, EndpointStatus* out, std::string_view where) {
  Reader r(j, where);
  r.String("current_state", &out->current_state);
  r.String("host", &out->host);
  int64_t port = 0;
  r.Int("port", &port);
  if (port < 0 || port > 65535)
    r.Fail(r.Path("port") + ": " + std::to_string(port) + " is not a TCP port");
  out->port = static_cast<int>(port);
  r.String("connection_string", &out->connection_string);
  r.String("replication_state", &out->replication_state);
  r.String("replay_lag", &out->replay_lag);
  r.Number("current_cu", &out->current_cu);
  return r.status();
}
Status FromJson(const Json& j, Endpoint* out, std::string_view where) {
  Reader r(j, where);
  r.String("name", &out->name, true);
  r.String("uid", &out->uid);
  r.Time("create_time", &out->create_time_us, false);
  r.Object("spec", &out->spec);
  r.Object("status", &out->status);
  return r.status();
}

// ---- credentials, reset/restore, status, errors ----

Json ToJson(const CredentialRequest& v) {
  Json j{{"endpoint", v.endpoint}};
  PutDuration(j, "ttl", v.ttl_s);
  if (v.role) j["role"] = *v.role;
  return j;
}
Json ToJson(const Credential& v) {
  Json j{{"token", v.token}, {"expire_time", FormatTime(v.expire_time_us)}};
  if (!v.role.empty()) j["role"] = v.role;
  return j;
}
Json ToJson(const ApiToken& v) {
  Json j{{"name", v.name}, {"role", v.role}, {"create_time", FormatTime(v.create_time_us)}};
  if (v.project) j["project"] = *v.project;
  if (v.expire_time_us) j["expire_time"] = FormatTime(v.expire_time_us);
  if (v.token) j["token"] = *v.token;
  return j;
}

Json ToJson(const Role& v) {
  Json j{{"name", v.name},
         {"create_time", FormatTime(v.create_time_us)},
         {"status",
          {{"postgres_role", v.postgres_role},
           {"password_update_time", FormatTime(v.password_update_time_us)},
           {"password_applied", v.password_applied}}}};
  if (v.password) j["password"] = *v.password;
  return j;
}
Json ToJson(const Database& v) {
  return Json{{"name", v.name}, {"owner_name", v.owner_name}, {"branch", v.branch}};
}
Json ToJson(const PointInTime& v) {
  Json j = Json::object();
  PutTime(j, "source_branch_time", v.source_branch_time_us);
  PutLsn(j, "source_branch_lsn", v.source_branch_lsn);
  return j;
}
Json ToJson(const RestoreResult& v) {
  return Json{{"branch", ToJson(v.branch)}, {"backup_branch", v.backup_branch}};
}
Json ToJson(const UndeleteResult& v) {
  Json eps = Json::array();
  for (const auto& e : v.endpoints) eps.push_back(ToJson(e));
  return Json{{"branch", ToJson(v.branch)}, {"endpoints", eps}, {"notes", v.notes}};
}
Json ToJson(const ServerStatus& v) {
  return Json{{"version", v.version},
              {"pid", v.pid},
              {"data_dir", v.data_dir},
              {"api", v.api},
              {"proxy", v.proxy},
              {"proxy_socket_dir", v.proxy_socket_dir},
              {"endpoint_ports", v.endpoint_ports},
              {"compute_limits", v.compute_limits},
              {"metrics", v.metrics},
              {"console", v.console}};
}
Json ToJson(const ApiError& v) {
  return Json{{"error_code", v.error_code}, {"message", v.message}};
}

Status FromJson(const Json& j, CredentialRequest* out, std::string_view where) {
  Reader r(j, where);
  r.String("endpoint", &out->endpoint, true);
  r.Duration("ttl", &out->ttl_s);
  return r.status();
}
Status FromJson(const Json& j, Credential* out, std::string_view where) {
  Reader r(j, where);
  r.String("token", &out->token, true);
  r.Time("expire_time", &out->expire_time_us, true);
  r.String("role", &out->role);
  return r.status();
}
Status FromJson(const Json& j, ApiToken* out, std::string_view where) {
  Reader r(j, where);
  r.String("name", &out->name, true);
  r.String("role", &out->role, true);
  r.String("project", &out->project);
  r.Time("create_time", &out->create_time_us, true);
  r.Time("expire_time", &out->expire_time_us, false);
  r.String("token", &out->token);
  return r.status();
}

Status FromJson(const Json& j, Database* out, std::string_view where) {
  Reader r(j, where);
  r.String("name", &out->name, true);
  r.String("owner_name", &out->owner_name, true);
  r.String("branch", &out->branch, true);
  return r.status();
}
Status FromJson(const Json& j, Role* out, std::string_view where) {
  Reader r(j, where);
  r.String("name", &out->name, true);
  r.Time("create_time", &out->create_time_us, true);
  r.String("password", &out->password);
  if (!r.status().ok()) return r.status();
  auto st = j.find("status");
  if (st == j.end() || !st->is_object()) {
    return Status::InvalidArgument(std::string(where) + ".status is required");
  }
  Reader s(*st, std::string(where) + ".status");
  s.String("postgres_role", &out->postgres_role, true);
  s.Time("password_update_time", &out->password_update_time_us, false);
  s.Bool("password_applied", &out->password_applied);
  return s.status();
}
Status FromJson(const Json& j, PointInTime* out, std::string_view where) {
  Reader r(j, where);
  r.Time("source_branch_time", &out->source_branch_time_us);
  r.LsnField("source_branch_lsn", &out->source_branch_lsn);
  return r.status();
}
Status FromJson(const Json& j, RestoreResult* out, std::string_view where) {
  Reader r(j, where);
  if (r.Get("branch", true) != nullptr) r.Object("branch", &out->branch);
  r.String("backup_branch", &out->backup_branch, true);
  return r.status();
}
Status FromJson(const Json& j, UndeleteResult* out, std::string_view where) {
  Reader r(j, where);
  if (r.Get("branch", true) != nullptr) r.Object("branch", &out->branch);
  if (!r.status().ok()) return r.status();
  Status st = FromJsonList(j, "endpoints", &out->endpoints);
  if (!st.ok()) return st;
  if (const Json* notes = r.Get("notes", false)) {
    if (!notes->is_array())
      return Status::InvalidArgument(std::string(where) + ".notes: expected an array");
    for (const Json& n : *notes) {
      if (!n.is_string()) {
        return Status::InvalidArgument(std::string(where) + ".notes: expected strings");
      }
      out->notes.push_back(n.get<std::string>());
    }
  }
  return r.status();
}
Status FromJson(const Json& j, ServerStatus* out, std::string_view where) {
  Reader r(j, where);
  r.String("version", &out->version);
  r.Int("pid", &out->pid);
  r.String("data_dir", &out->data_dir);
  r.String("api", &out->api);
  r.String("proxy", &out->proxy);
  r.String("proxy_socket_dir", &out->proxy_socket_dir);
  r.String("endpoint_ports", &out->endpoint_ports);
  r.String("compute_limits", &out->compute_limits);
  r.String("metrics", &out->metrics);
  r.Bool("console", &out->console);
  return r.status();
}
Status FromJson(const Json& j, ApiError* out, std::string_view where) {
  Reader r(j, where);
  r.String("error_code", &out->error_code, true);
  r.String("message", &out->message);
  return r.status();
}

template <typename T>
Status FromJsonList(const Json& j, std::string_view key, std::vector<T>* out) {
  out->clear();
  std::string k(key);
  if (!j.is_object()) return Status::InvalidArgument("expected an object with \"" + k + "\"");
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return Status::Ok();  // an empty list may be omitted
  if (!it->is_array()) {
    return Status::InvalidArgument(k + ": expected an array, got " + Show(*it));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    T item;
    ARBOR_RETURN_IF_ERROR(FromJson((*it)[i], &item, k + "[" + std::to_string(i) + "]"));
    out->push_back(std::move(item));
  }
  return Status::Ok();
}
template Status FromJsonList(const Json&, std::string_view, std::vector<Project>*);
template Status FromJsonList(const Json&, std::string_view, std::vector<Branch>*);
template Status FromJsonList(const Json&, std::string_view, std::vector<Endpoint>*);
template Status FromJsonList(const Json&, std::string_view, std::vector<Role>*);
template Status FromJsonList(const Json&, std::string_view, std::vector<Database>*);
template Status FromJsonList(const Json&, std::string_view, std::vector<Snapshot>*);
template Status FromJsonList(const Json&, std::string_view, std::vector<ApiToken>*);

Result<Json> ParseJsonObject(std::string_view text, std::string_view what) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument(std::string(what) + " is not valid JSON");
  if (!j.is_object()) {
    return Status::InvalidArgument(std::string(what) + " must be a JSON object, got " + Show(j));
  }
  return j;
}

Status UnknownFields(const Json& j, std::initializer_list<std::string_view> known,
                     std::string_view where) {
  if (!j.is_object()) return Status::Ok();
  for (const auto& [key, value] : j.items()) {
    bool found = false;
    for (std::string_view k : known) found = found || k == key;
    if (!found) {
      return Status::InvalidArgument(std::string(where) + "." + key + " is not a known field");
    }
  }
  return Status::Ok();
}

}  // namespace arbor::api
