// Time travel: read-only endpoints pinned at a point of their branch's history (engine.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "api/names.h"
#include "common/clock.h"
#include "common/log.h"
#include "control/engine.h"
#include "proxy/auth/scram.h"

namespace arbor::control {
namespace {

std::string BranchName(const std::string& p, const std::string& b) {
  return "projects/" + p + "/branches/" + b;
}

}  // namespace

namespace {

// DBState of pg_control (u64 system identifier, u32 version, u32 catalog version, state).
Result<uint32_t> ClusterState(const std::string& pgdata) {
  std::string control = pgdata + "/global/pg_control";
  int fd = open(control.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::FailedPrecondition("the branch holds no PostgreSQL cluster at that point (" +
                                      control + ": " + std::strerror(errno) + ")");
  }
  unsigned char head[20];
  ssize_t n = read(fd, head, sizeof head);
  close(fd);
  if (n != static_cast<ssize_t>(sizeof head)) {
    return Status::FailedPrecondition("the branch's pg_control at that point is incomplete");
  }
  uint32_t state;
  std::memcpy(&state, head + 16, 4);
  return state;
}

// standby.signal in PGDATA, owned as PGDATA is; `present` false removes it.
Status StandbySignal(const std::string& pgdata, bool present) {
  std::string path = pgdata + "/standby.signal";
  if (!present) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Status::IOError("removing " + path + ": " + std::strerror(errno));
    }
    return Status::Ok();
  }
  struct stat st;
  if (stat(pgdata.c_str(), &st) != 0) {
    return Status::IOError("stat " + pgdata + ": " + std::strerror(errno));
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("creating " + path + ": " + std::strerror(errno));
  bool ok = fchown(fd, st.st_uid, st.st_gid) == 0;
  close(fd);
  if (!ok) return Status::IOError("chown " + path + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

Result<bool> Engine::RolesMatch(const std::string& cid, const StartPlan& plan) {
  ARBOR_ASSIGN_OR_RETURN(auto rows,
                         supervisor_->Query(cid, "postgres",
                                            "select rolname, coalesce(rolpassword, '') from "
                                            "pg_authid where rolcanlogin and not rolsuper"));
  std::map<std::string, std::string> held;
  for (const auto& row : rows) {
    if (row.size() == 2) held[row[0]] = row[1];
  }
  for (const RoleRecord& r : plan.roles) {
    proxy::auth::ScramSecret secret;
    secret.salt = r.salt;
    secret.iterations = r.iterations;
    secret.stored_key = r.stored_key;
    secret.server_key = r.server_key;
    auto it = held.find(r.name);
    if (it == held.end() || it->second != secret.Verifier()) return false;
  }
  return true;
}

Status Engine::StartStandby(StartPlan& plan) {
  const std::string& pgdata = plan.mountpoint;
  const std::string& cid = plan.spec.id;
  constexpr uint32_t kShutdowned = 1;  // DB_SHUTDOWNED
  ARBOR_ASSIGN_OR_RETURN(uint32_t state, ClusterState(pgdata));
  if (state != kShutdowned) {
    ARBOR_RETURN_IF_ERROR(StandbySignal(pgdata, true));
    ARBOR_RETURN_IF_ERROR(supervisor_->Start(plan.spec, options_.start_timeout));
    auto match = RolesMatch(cid, plan);
    if (match.ok() && *match) return Status::Ok();
    ARBOR_RETURN_IF_ERROR(supervisor_->Stop(cid, std::chrono::milliseconds(0)));
    ARBOR_RETURN_IF_ERROR(StandbySignal(pgdata, false));
  }
  // As a primary, once: the passwords Arbor holds now, then an immediate stop.
  ARBOR_RETURN_IF_ERROR(supervisor_->Start(plan.spec, options_.start_timeout));
  Status applied = [&]() -> Status {
    ARBOR_ASSIGN_OR_RETURN(bool match, RolesMatch(cid, plan));
    if (match) return Status::Ok();
    ARBOR_ASSIGN_OR_RETURN(auto owner, supervisor_->Query(cid, "postgres",
                                                          "select 1 from pg_roles where "
                                                          "rolname = 'owner'"));
    plan.owner_ready = !owner.empty();
    return Bootstrap(plan);
  }();
  Status stopped = supervisor_->Stop(cid, std::chrono::milliseconds(0));
  ARBOR_RETURN_IF_ERROR(applied);
  ARBOR_RETURN_IF_ERROR(stopped);
  ARBOR_RETURN_IF_ERROR(StandbySignal(pgdata, true));
  return supervisor_->Start(plan.spec, options_.start_timeout);
}

Result<EndpointRecord> Engine::CreatePinnedEndpoint(
    const std::string& project, const std::string& branch, const std::string& id,
    std::optional<int64_t> time_us, std::optional<uint64_t> lsn, int64_t suspend_timeout_s) {
  if (time_us.has_value() == lsn.has_value()) {
    return Status::InvalidArgument(
        "a pinned endpoint needs exactly one of source_branch_time and source_branch_lsn");
  }
  std::unique_lock l(mu_);
  ARBOR_RETURN_IF_ERROR(WaitBranchFreeLocked(l, project, branch));
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, branch));
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord e,
                         NewEndpointLocked(project, branch, id, suspend_timeout_s,
                                           /*no_suspension=*/false, /*pinned=*/true));
  int64_t pin_time = 0;
  ARBOR_ASSIGN_OR_RETURN(Seq at, ForkPointLocked(*b, time_us, lsn, &pin_time));
  e.pin_time_us = pin_time;
  e.pin_lsn = lsn.value_or(0);
  e.requested_lsn = lsn.has_value();
  // The timeline and the record appear together: no ephemeral timeline without its endpoint.
  ARBOR_ASSIGN_OR_RETURN(e.timeline, store_->Branch(b->timeline, at, [&](TimelineId tl) {
    e.timeline = tl;
    return storage::MetaWrites{Catalog::Put(e)};
  }));
  catalog_.endpoints[{project, branch, id}] = e;
  if (ports_ != nullptr) ports_->Listen(e.port);
  log::info("engine: {}/endpoints/{} pinned at {} (timeline {})", BranchName(project, branch), id,
            pin_time, e.timeline.value());
  return e;
}

Result<EndpointRecord> Engine::EnsurePinnedEndpoint(const std::string& project,
                                                    const std::string& branch,
                                                    std::optional<int64_t> time_us,
                                                    std::optional<uint64_t> lsn) {
  std::optional<Lsn> at_lsn;
  if (lsn) at_lsn = Lsn(*lsn);
  std::string id = api::PinnedEndpointId(time_us, at_lsn);
  auto made = CreatePinnedEndpoint(project, branch, id, time_us, lsn, 300);
  if (made.status().code() != Code::kAlreadyExists) return made;
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord e, GetEndpoint(project, branch, id));
  if (!e.pinned) {
    return Status::FailedPrecondition("endpoint " + BranchName(project, branch) + "/endpoints/" +
                                      id + " exists and is not a pinned endpoint");
  }
  return e;
}

Result<EndpointRecord> Engine::DefaultEndpoint(const std::string& project,
                                               const std::string& branch) {
  std::lock_guard l(mu_);
  ARBOR_RETURN_IF_ERROR(FindBranch(project, branch).status());
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project == project && e.branch == branch && !e.pinned) return e;
  }
  return Status::NotFound("branch " + BranchName(project, branch) + " has no read-write endpoint");
}

Result<std::vector<storage::Store::WalPoint>> Engine::HistoryPoints(const std::string& project,
                                                                    const std::string& branch,
                                                                    int64_t since_us,
                                                                    int64_t until_us) {
  TimelineId tl;
  int64_t ready_us = 0;
  {
    std::lock_guard l(mu_);
    ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, branch));
    tl = b->timeline;
    ready_us = catalog_.projects.at(project).ready_time_us;
  }
  if (since_us == kEarliest) {
    ARBOR_ASSIGN_OR_RETURN(auto range, store_->TimeRange(tl));
    since_us = range.first;
  }
  // Nothing before the project was ready: those states are initdb's, with no cluster yet.
  since_us = std::max(since_us, ready_us);
  if (until_us < since_us) return Status::InvalidArgument("until is before since");
  return store_->WalPoints(tl, since_us, until_us);
}

Status Engine::ErasePinnedEndpointLocked(const EndpointRecord& ep) {
  EndpointKey key{ep.project, ep.branch, ep.id};
  Status st =
      store_->DeleteTimeline(ep.timeline, {Catalog::EraseEndpoint(ep.project, ep.branch, ep.id)});
  if (st.code() == Code::kNotFound) {
    st = store_->WriteMeta({Catalog::EraseEndpoint(ep.project, ep.branch, ep.id)});
  }
  ARBOR_RETURN_IF_ERROR(st);
  if (ports_ != nullptr) ports_->Unlisten(ep.port);
  ForgetActivity(key);
  live_.erase(key);
  catalog_.endpoints.erase(key);
  return Status::Ok();
}

Status Engine::ErasePinnedLocked(const std::string& project, const std::string& branch) {
  std::vector<EndpointRecord> pinned;
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project == project && e.branch == branch && e.pinned) pinned.push_back(e);
  }
  for (const EndpointRecord& e : pinned) ARBOR_RETURN_IF_ERROR(ErasePinnedEndpointLocked(e));
  return Status::Ok();
}

void Engine::ReapIdlePinnedLocked(int64_t now_us, std::vector<std::string>* gone) {
  std::vector<EndpointRecord> idle;
  for (const auto& [k, e] : catalog_.endpoints) {
    if (!e.pinned || busy_.count({e.project, e.branch})) continue;
    auto live = live_.find(k);
    int64_t idle_since = e.create_time_us;
    if (live != live_.end()) {
      if (live->second.running || live->second.starting || live->second.stopping) continue;
      idle_since = std::max(idle_since, live->second.started_us);
    }
    {
      std::lock_guard a(activity_mu_);
      auto it = activity_.find(k);
      if (it != activity_.end()) {
        if (it->second.connections > 0) continue;
        idle_since = std::max(idle_since, it->second.last_close_us);
      }
    }
    if (now_us - idle_since >= e.suspend_timeout_s * 1'000'000) idle.push_back(e);
  }
  for (const EndpointRecord& e : idle) {
    Status st = ErasePinnedEndpointLocked(e);
    if (!st.ok()) {
      log::warn("engine: deleting idle {}: {}", ComputeId(e), st.ToString());
      continue;
    }
    log::info("engine: {} was idle for {} s; deleted", ComputeId(e), e.suspend_timeout_s);
    gone->push_back(ComputeId(e));
  }
}

}  // namespace arbor::control
