#include "control/catalog.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>

namespace arbor::control {
namespace {

using nlohmann::json;

std::string RandomChars(size_t n, std::string_view alphabet) {
  std::random_device rd;
  std::string out;
  for (size_t i = 0; i < n; ++i) out.push_back(alphabet[rd() % alphabet.size()]);
  return out;
}

std::string Hex(const std::string& raw) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) out += kHex[c >> 4], out += kHex[c & 15];
  return out;
}

std::string Unhex(const std::string& hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw std::runtime_error("not hex");
  };
  if (hex.size() % 2) throw std::runtime_error("odd hex length");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    out.push_back(static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  }
  return out;
}

json SizeJson(const ComputeSize& s) { return {{"min_cu", s.min_cu}, {"max_cu", s.max_cu}}; }
ComputeSize SizeFrom(const json& j, const char* key) {
  ComputeSize s;
  if (auto it = j.find(key); it != j.end() && it->is_object()) {
    s.min_cu = it->value("min_cu", 0.0);
    s.max_cu = it->value("max_cu", 0.0);
  }
  return s;
}

json ToJson(const ProjectRecord& p) {
  json j{{"id", p.id},
         {"uid", p.uid},
         {"create_time_us", p.create_time_us},
         {"ready_time_us", p.ready_time_us},
         {"history_window_s", p.history_window_s},
         {"default_branch_ttl_s", p.default_branch_ttl_s},
         {"root", p.root.value()},
         {"default_branch", p.default_branch}};
  if (p.snapshot_schedule.every_s) {
    j["snapshot_schedule"] = {{"branch", p.snapshot_schedule.branch},
                              {"every_s", p.snapshot_schedule.every_s},
                              {"keep", p.snapshot_schedule.keep}};
  }
  j["max_connections_used"] = p.max_connections_used;
  if (p.branch_endpoint_size.set()) j["branch_endpoint_size"] = SizeJson(p.branch_endpoint_size);
  if (p.default_branch_endpoint_size.set()) {
    j["default_branch_endpoint_size"] = SizeJson(p.default_branch_endpoint_size);
  }
  return j;
}

json ToJson(const SnapshotRecord& s) {
  return {{"project", s.project},
          {"branch", s.branch},
          {"id", s.id},
          {"uid", s.uid},
          {"create_time_us", s.create_time_us},
          {"timeline", s.timeline.value()},
          {"source_timeline", s.source_timeline.value()},
          {"source_time_us", s.source_time_us},
          {"requested_time", s.requested_time},
          {"expiry", static_cast<int>(s.expiry)},
          {"ttl_s", s.ttl_s},
          {"expire_time_us", s.expire_time_us},
          {"scheduled", s.scheduled}};
}

json ToJson(const BranchRecord& b) {
  return {{"project", b.project},
          {"id", b.id},
          {"uid", b.uid},
          {"create_time_us", b.create_time_us},
          {"timeline", b.timeline.value()},
          {"parent", b.parent},
          {"source_time_us", b.source_time_us},
          {"source_lsn", b.source_lsn},
          {"requested_time", b.requested_time},
          {"requested_lsn", b.requested_lsn},
          {"expiry", static_cast<int>(b.expiry)},
          {"ttl_s", b.ttl_s},
          {"expire_time_us", b.expire_time_us},
          {"is_protected", b.is_protected},
          {"owner_ready", b.owner_ready},
          {"source_snapshot", b.source_snapshot},
          {"masking", api::ToJson(b.masking)},
          {"mask_key", b.mask_key},
          {"masking_pending", b.masking_pending},
          {"masked_seq", b.masked_seq},
          {"masked_time_us", b.masked_time_us}};
}

json ToJson(const RoleRecord& r) {
  return {{"project", r.project},
          {"branch", r.branch},
          {"name", r.name},
          {"create_time_us", r.create_time_us},
          {"password_time_us", r.password_time_us},
          {"salt", Hex(r.salt)},
          {"iterations", r.iterations},
          {"client_key", Hex(r.client_key)},
          {"stored_key", Hex(r.stored_key)},
          {"server_key", Hex(r.server_key)},
          {"applied", r.applied}};
}

json ToJson(const EndpointRecord& e) {
  return {{"project", e.project},
          {"branch", e.branch},
          {"id", e.id},
          {"uid", e.uid},
          {"create_time_us", e.create_time_us},
          {"port", e.port},
          {"suspend_timeout_s", e.suspend_timeout_s},
          {"no_suspension", e.no_suspension},
          {"running", e.running},
          {"pinned", e.pinned},
          {"replica", e.replica},
          {"timeline", e.timeline.value()},
          {"pin_time_us", e.pin_time_us},
          {"pin_lsn", e.pin_lsn},
          {"requested_lsn", e.requested_lsn},
          {"size", SizeJson(e.size)}};
}

json ToJson(const UsageRecord& u) {
  return {{"project", u.project}, {"branch", u.branch},         {"endpoint", u.endpoint},
          {"hour_us", u.hour_us}, {"cu_seconds", u.cu_seconds}, {"written_bytes", u.written_bytes}};
}

UsageRecord UsageFrom(const json& j) {
  UsageRecord u;
  u.project = j.at("project");
  u.branch = j.at("branch");
  u.endpoint = j.at("endpoint");
  u.hour_us = j.at("hour_us");
  u.cu_seconds = j.at("cu_seconds");
  u.written_bytes = j.at("written_bytes");
  return u;
}

std::string UsageKey(const UsageRecord& u) {
  // Hours as fixed-width numbers, so that a project's keys sort by time.
  char hour[24];
  std::snprintf(hour, sizeof hour, "%020lld", static_cast<long long>(u.hour_us));
  return "usage/" + u.project + "/" + hour + "/" + u.branch + "/" + u.endpoint;
}

json ToJson(const ApiTokenRecord& t) {
  return {{"name", t.name},
          {"role", AccessRoleName(t.role)},
          {"project", t.project},
          {"project_uid", t.project_uid},
          {"hash", t.hash},
          {"create_time_us", t.create_time_us},
          {"expire_time_us", t.expire_time_us}};
}

}  // namespace

const char* AccessRoleName(AccessRole role) {
  switch (role) {
    case AccessRole::kAdmin:
      return "admin";
    case AccessRole::kDeveloper:
      return "developer";
    case AccessRole::kViewer:
      return "viewer";
  }
  return "viewer";
}

std::optional<AccessRole> ParseAccessRole(const std::string& name) {
  if (name == "admin") return AccessRole::kAdmin;
  if (name == "developer") return AccessRole::kDeveloper;
  if (name == "viewer") return AccessRole::kViewer;
  return std::nullopt;
}

std::string NewUid(const std::string& prefix) {
  return prefix + "-" + RandomChars(16, "0123456789abcdef");
}

std::string NewPassword() {
  return RandomChars(32, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
}

namespace {

ProjectRecord ProjectFrom(const json& p) {
  ProjectRecord r;
  r.id = p.at("id");
  r.uid = p.at("uid");
  r.create_time_us = p.at("create_time_us");
  r.ready_time_us = p.value("ready_time_us", int64_t{0});
  r.history_window_s = p.at("history_window_s");
  r.default_branch_ttl_s = p.value("default_branch_ttl_s", int64_t{0});
  r.root = TimelineId(p.at("root").get<uint64_t>());
  r.default_branch = p.at("default_branch");
  if (auto it = p.find("snapshot_schedule"); it != p.end()) {
    r.snapshot_schedule.branch = it->at("branch");
    r.snapshot_schedule.every_s = it->at("every_s");
    r.snapshot_schedule.keep = it->at("keep");
  }
  r.branch_endpoint_size = SizeFrom(p, "branch_endpoint_size");
  r.max_connections_used = p.value("max_connections_used", 0);
  r.default_branch_endpoint_size = SizeFrom(p, "default_branch_endpoint_size");
  // Records from before roles carry the superuser's password; Arbor no longer uses it (it
  // reaches its computes by peer authentication), and it is dropped at the next write.
  return r;
}

BranchRecord BranchFrom(const json& b) {
  BranchRecord r;
  r.project = b.at("project");
  r.id = b.at("id");
  r.uid = b.at("uid");
  r.create_time_us = b.at("create_time_us");
  r.timeline = TimelineId(b.at("timeline").get<uint64_t>());
  r.parent = b.at("parent");
  r.source_time_us = b.at("source_time_us");
  r.source_lsn = b.at("source_lsn");
  r.requested_time = b.at("requested_time");
  r.requested_lsn = b.at("requested_lsn");
  r.expiry = static_cast<Expiry>(b.at("expiry").get<int>());
  r.ttl_s = b.at("ttl_s");
  r.expire_time_us = b.at("expire_time_us");
  r.is_protected = b.at("is_protected");
  r.owner_ready = b.value("owner_ready", false);
  r.source_snapshot = b.value("source_snapshot", "");
  // Records from before masked branches have none of these.
  if (b.contains("masking") && !b.at("masking").empty()) {
    Status st = api::MaskRulesFromJson(b.at("masking"), &r.masking);
    if (!st.ok()) throw std::runtime_error(st.message());
  }
  r.mask_key = b.value("mask_key", "");
  r.masking_pending = b.value("masking_pending", false);
  r.masked_seq = b.value("masked_seq", uint64_t{0});
  r.masked_time_us = b.value("masked_time_us", int64_t{0});
  return r;
}

SnapshotRecord SnapshotFrom(const json& j) {
  SnapshotRecord s;
  s.project = j.at("project");
  s.branch = j.at("branch");
  s.id = j.at("id");
  s.uid = j.at("uid");
  s.create_time_us = j.at("create_time_us");
  s.timeline = TimelineId(j.at("timeline").get<uint64_t>());
  s.source_timeline = TimelineId(j.at("source_timeline").get<uint64_t>());
  s.source_time_us = j.at("source_time_us");
  s.requested_time = j.at("requested_time");
  s.expiry = static_cast<Expiry>(j.at("expiry").get<int>());
  s.ttl_s = j.at("ttl_s");
  s.expire_time_us = j.at("expire_time_us");
  s.scheduled = j.at("scheduled");
  return s;
}

ApiTokenRecord ApiTokenFrom(const json& j) {
  ApiTokenRecord t;
  t.name = j.at("name");
  auto role = ParseAccessRole(j.at("role"));
  if (!role) throw std::runtime_error("unknown token role");
  t.role = *role;
  t.project = j.at("project");
  t.project_uid = j.at("project_uid");
  t.hash = j.at("hash");
  t.create_time_us = j.at("create_time_us");
  t.expire_time_us = j.at("expire_time_us");
  return t;
}

RoleRecord RoleFrom(const json& j) {
  RoleRecord r;
  r.project = j.at("project");
  r.branch = j.at("branch");
  r.name = j.at("name");
  r.create_time_us = j.at("create_time_us");
  r.password_time_us = j.at("password_time_us");
  r.salt = Unhex(j.at("salt"));
  r.iterations = j.at("iterations");
  r.client_key = Unhex(j.at("client_key"));
  r.stored_key = Unhex(j.at("stored_key"));
  r.server_key = Unhex(j.at("server_key"));
  r.applied = j.at("applied");
  return r;
}

EndpointRecord EndpointFrom(const json& e) {
  EndpointRecord r;
  r.project = e.at("project");
  r.branch = e.at("branch");
  r.id = e.at("id");
  r.uid = e.at("uid");
  r.create_time_us = e.at("create_time_us");
  r.port = e.at("port");
  r.suspend_timeout_s = e.at("suspend_timeout_s");
  r.no_suspension = e.at("no_suspension");
  r.running = e.value("running", false);
  // Records from before pinned endpoints have none of these.
  r.pinned = e.value("pinned", false);
  r.replica = e.value("replica", false);  // and from before read replicas
  r.timeline = TimelineId(e.value("timeline", uint64_t{0}));
  r.pin_time_us = e.value("pin_time_us", int64_t{0});
  r.pin_lsn = e.value("pin_lsn", uint64_t{0});
  r.requested_lsn = e.value("requested_lsn", false);
  r.size = SizeFrom(e, "size");  // records from before sizes have none
  return r;
}

json ToJson(const DeletedBranchRecord& d) {
  json eps = json::array(), roles = json::array();
  for (const auto& e : d.endpoints) eps.push_back(ToJson(e));
  for (const auto& r : d.roles) roles.push_back(ToJson(r));
  return {{"branch", ToJson(d.branch)},
          {"parent_uid", d.parent_uid},
          {"endpoints", eps},
          {"roles", roles},
          {"delete_time_us", d.delete_time_us},
          {"purge_time_us", d.purge_time_us},
          {"expired", d.expired}};
}

DeletedBranchRecord DeletedBranchFrom(const json& j) {
  DeletedBranchRecord d;
  d.branch = BranchFrom(j.at("branch"));
  d.parent_uid = j.at("parent_uid");
  for (const json& e : j.at("endpoints")) d.endpoints.push_back(EndpointFrom(e));
  for (const json& r : j.at("roles")) d.roles.push_back(RoleFrom(r));
  d.delete_time_us = j.at("delete_time_us");
  d.purge_time_us = j.at("purge_time_us");
  d.expired = j.value("expired", false);
  return d;
}

}  // namespace

Result<Catalog> Catalog::Load(const storage::Store& store) {
  Catalog c;
  ARBOR_ASSIGN_OR_RETURN(auto rows, store.ScanMeta(""));
  for (const auto& [key, value] : rows) {
    try {
      json j = json::parse(value);
      if (key.rfind("project/", 0) == 0) {
        ProjectRecord r = ProjectFrom(j);
        c.projects[r.id] = r;
      } else if (key.rfind("branch/", 0) == 0) {
        BranchRecord r = BranchFrom(j);
        c.branches[{r.project, r.id}] = r;
      } else if (key.rfind("endpoint/", 0) == 0) {
        EndpointRecord r = EndpointFrom(j);
        c.endpoints[{r.project, r.branch, r.id}] = r;
      } else if (key.rfind("apitoken/", 0) == 0) {
        ApiTokenRecord t = ApiTokenFrom(j);
        c.api_tokens[t.name] = t;
      } else if (key.rfind("snapshot/", 0) == 0) {
        SnapshotRecord s = SnapshotFrom(j);
        c.snapshots[{s.project, s.branch, s.id}] = s;
      } else if (key.rfind("deleted_branch/", 0) == 0) {
        DeletedBranchRecord d = DeletedBranchFrom(j);
        c.deleted_branches[{d.branch.project, d.branch.uid}] = d;
      } else if (key.rfind("usage/", 0) == 0) {
        UsageRecord u = UsageFrom(j);
        c.usage[{u.project, u.hour_us, u.branch, u.endpoint}] = u;
      } else if (key.rfind("role/", 0) == 0) {
        RoleRecord r = RoleFrom(j);
        c.roles[{r.project, r.branch, r.name}] = r;
      }
    } catch (const std::exception& e) {
      return Status::Corruption("catalog record " + key + " cannot be read: " + e.what());
    }
  }
  return c;
}

storage::MetaWrite Catalog::Put(const ProjectRecord& p) {
  return {"project/" + p.id, ToJson(p).dump()};
}
storage::MetaWrite Catalog::Put(const BranchRecord& b) {
  return {"branch/" + b.project + "/" + b.id, ToJson(b).dump()};
}
storage::MetaWrite Catalog::Put(const EndpointRecord& e) {
  return {"endpoint/" + e.project + "/" + e.branch + "/" + e.id, ToJson(e).dump()};
}
storage::MetaWrite Catalog::Put(const RoleRecord& r) {
  return {"role/" + r.project + "/" + r.branch + "/" + r.name, ToJson(r).dump()};
}
storage::MetaWrite Catalog::EraseRole(const std::string& project, const std::string& branch,
                                      const std::string& role) {
  return {"role/" + project + "/" + branch + "/" + role, std::nullopt};
}
storage::MetaWrite Catalog::Put(const ApiTokenRecord& t) {
  return {"apitoken/" + t.name, ToJson(t).dump()};
}
storage::MetaWrite Catalog::Put(const SnapshotRecord& s) {
  return {"snapshot/" + s.project + "/" + s.branch + "/" + s.id, ToJson(s).dump()};
}
storage::MetaWrite Catalog::EraseSnapshot(const std::string& project, const std::string& branch,
                                          const std::string& snapshot) {
  return {"snapshot/" + project + "/" + branch + "/" + snapshot, std::nullopt};
}
storage::MetaWrite Catalog::Put(const DeletedBranchRecord& d) {
  return {"deleted_branch/" + d.branch.project + "/" + d.branch.uid, ToJson(d).dump()};
}
storage::MetaWrite Catalog::EraseDeletedBranch(const std::string& project, const std::string& uid) {
  return {"deleted_branch/" + project + "/" + uid, std::nullopt};
}
storage::MetaWrite Catalog::Put(const UsageRecord& u) { return {UsageKey(u), ToJson(u).dump()}; }
storage::MetaWrite Catalog::EraseUsage(const UsageRecord& u) { return {UsageKey(u), std::nullopt}; }
storage::MetaWrite Catalog::EraseApiToken(const std::string& name) {
  return {"apitoken/" + name, std::nullopt};
}
storage::MetaWrite Catalog::EraseProject(const std::string& project) {
  return {"project/" + project, std::nullopt};
}
storage::MetaWrite Catalog::EraseBranch(const std::string& project, const std::string& branch) {
  return {"branch/" + project + "/" + branch, std::nullopt};
}
storage::MetaWrite Catalog::EraseEndpoint(const std::string& project, const std::string& branch,
                                          const std::string& endpoint) {
  return {"endpoint/" + project + "/" + branch + "/" + endpoint, std::nullopt};
}

}  // namespace arbor::control
