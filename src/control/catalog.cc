#include "control/catalog.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

namespace arbor::control {
namespace {

using nlohmann::json;

std::string RandomChars(size_t n, std::string_view alphabet) {
  std::random_device rd;
  std::string out;
  for (size_t i = 0; i < n; ++i) out.push_back(alphabet[rd() % alphabet.size()]);
  return out;
}

json ToJson(const ProjectRecord& p) {
  return {{"id", p.id},
          {"uid", p.uid},
          {"create_time_us", p.create_time_us},
          {"history_window_s", p.history_window_s},
          {"root", p.root.value()},
          {"default_branch", p.default_branch},
          {"password", p.password}};
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
          {"is_protected", b.is_protected}};
}

json ToJson(const EndpointRecord& e) {
  return {{"project", e.project},
          {"branch", e.branch},
          {"id", e.id},
          {"uid", e.uid},
          {"create_time_us", e.create_time_us},
          {"port", e.port},
          {"suspend_timeout_s", e.suspend_timeout_s},
          {"no_suspension", e.no_suspension}};
}

}  // namespace

std::string NewUid(const std::string& prefix) {
  return prefix + "-" + RandomChars(16, "0123456789abcdef");
}

std::string NewPassword() {
  return RandomChars(32, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
}

Result<Catalog> Catalog::Load(const std::string& path) {
  Catalog c;
  c.path_ = path;
  std::ifstream in(path);
  if (!in) return c;  // a new installation
  try {
    json j = json::parse(in);
    if (j.value("version", 0) != 1) {
      return Status::FailedPrecondition("catalog " + path + " has an unknown version");
    }
    for (const json& p : j.at("projects")) {
      ProjectRecord r;
      r.id = p.at("id");
      r.uid = p.at("uid");
      r.create_time_us = p.at("create_time_us");
      r.history_window_s = p.at("history_window_s");
      r.root = TimelineId(p.at("root").get<uint64_t>());
      r.default_branch = p.at("default_branch");
      r.password = p.at("password");
      c.projects[r.id] = r;
    }
    for (const json& b : j.at("branches")) {
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
      c.branches[{r.project, r.id}] = r;
    }
    for (const json& e : j.at("endpoints")) {
      EndpointRecord r;
      r.project = e.at("project");
      r.branch = e.at("branch");
      r.id = e.at("id");
      r.uid = e.at("uid");
      r.create_time_us = e.at("create_time_us");
      r.port = e.at("port");
      r.suspend_timeout_s = e.at("suspend_timeout_s");
      r.no_suspension = e.at("no_suspension");
      c.endpoints[{r.project, r.branch, r.id}] = r;
    }
  } catch (const std::exception& e) {
    return Status::Corruption("catalog " + path + " cannot be read: " + e.what());
  }
  return c;
}

Status Catalog::Save() const {
  json j;
  j["version"] = 1;
  j["projects"] = json::array();
  j["branches"] = json::array();
  j["endpoints"] = json::array();
  for (const auto& [id, p] : projects) j["projects"].push_back(ToJson(p));
  for (const auto& [id, b] : branches) j["branches"].push_back(ToJson(b));
  for (const auto& [id, e] : endpoints) j["endpoints"].push_back(ToJson(e));
  std::string text = j.dump(1);
  std::string tmp = path_ + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("writing catalog: " + std::string(std::strerror(errno)));
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      int err = errno;
      close(fd);
      unlink(tmp.c_str());
      std::string msg = "writing catalog: " + std::string(std::strerror(err));
      return err == ENOSPC ? Status::ResourceExhausted(msg) : Status::IOError(msg);
    }
    off += n;
  }
  if (fsync(fd) != 0) {
    close(fd);
    unlink(tmp.c_str());
    return Status::IOError("syncing catalog: " + std::string(std::strerror(errno)));
  }
  close(fd);
  if (rename(tmp.c_str(), path_.c_str()) != 0) {
    unlink(tmp.c_str());
    return Status::IOError("replacing catalog: " + std::string(std::strerror(errno)));
  }
  std::string dir = path_.substr(0, path_.find_last_of('/'));
  int dfd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return Status::Ok();
}

}  // namespace arbor::control
