#include "control/engine.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <system_error>
#include <thread>

#include "api/names.h"
#include "common/clock.h"
#include "common/log.h"
#include "control/sizing.h"

namespace arbor::control {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kMinWindowS = 3600;
constexpr int64_t kMaxWindowS = 3'024'000;

std::string BranchName(const std::string& p, const std::string& b) {
  return "projects/" + p + "/branches/" + b;
}

std::string CompactTime(int64_t us) {
  time_t secs = us / 1'000'000;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dt%H%M%Sz", &tm);
  return buf;
}

// The phases of one operation; when the whole took longer than a second, the log says where
// the time went (an API call is meant to answer within one).
class PhaseLog {
 public:
  explicit PhaseLog(std::string what) : what_(std::move(what)) {}
  void Mark(const char* phase) { marks_.emplace_back(phase, MonoNanos()); }
  ~PhaseLog() {
    const int64_t total_ms = (MonoNanos() - start_) / 1'000'000;
    if (total_ms <= 1000) return;
    std::string phases;
    int64_t last = start_;
    for (const auto& [phase, at] : marks_) {
      phases += (phases.empty() ? "" : ", ") + std::string(phase) + " " +
                std::to_string((at - last) / 1'000'000) + " ms";
      last = at;
    }
    log::info("engine: {} took {} ms ({})", what_, total_ms, phases);
  }

 private:
  std::string what_;
  int64_t start_ = MonoNanos();
  std::vector<std::pair<const char*, int64_t>> marks_;  // each phase and when it ended
};

}  // namespace

Status ValidateId(const std::string& what, const std::string& id) {
  return api::ValidateId(id, what + " id");
}

Engine::Engine(EngineOptions options, storage::Store* store, Mounter* mounter,
               compute::Supervisor* supervisor)
    : options_(std::move(options)), store_(store), mounter_(mounter), supervisor_(supervisor) {}

Engine::~Engine() { Shutdown(); }

Status Engine::Open() {
  std::lock_guard l(mu_);
  if (options_.runtime_dir.empty()) options_.runtime_dir = options_.data_dir;
  for (const std::string& d : {options_.data_dir + "/logs", options_.runtime_dir + "/mnt",
                               options_.runtime_dir + "/run"}) {
    std::error_code ec;
    fs::create_directories(d, ec);
    if (ec) return Status::IOError("creating " + d + ": " + ec.message());
  }
  // The compute user must be able to reach its mountpoints and socket directories. When it
  // is the daemon's own user, the runtime directory is the private data directory and stays
  // 0700.
  if (options_.runtime_dir != options_.data_dir) {
    for (const std::string& d :
         {options_.runtime_dir, options_.runtime_dir + "/mnt", options_.runtime_dir + "/run"}) {
      chmod(d.c_str(), 0711);
    }
  }
  // Computes read their client authentication rules from here rather than from PGDATA, so
  // every branch, however old its files, asks for a SCRAM password on its private socket.
  // Arbor's own superuser logs in by peer authentication: only a process of the daemon's OS
  // user gets `postgres`, with no password to keep or leak. Every other role proves a SCRAM
  // password, which the proxy also checks before it connects.
  struct passwd* me = getpwuid(geteuid());
  if (me == nullptr) return Status::Internal("the daemon's own OS user has no name");
  std::string daemon_user = me->pw_name;
  auto write_conf = [](const std::string& path, const std::string& text) -> Status {
    std::string tmp = path + ".tmp";
    unlink(tmp.c_str());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IOError("writing " + tmp + ": " + std::strerror(errno));
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ok = fchmod(fd, 0644) == 0 && ok;  // the compute user reads it; it holds no secret
    close(fd);
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
      unlink(tmp.c_str());
      return Status::IOError("writing " + path + ": " + std::strerror(errno));
    }
    return Status::Ok();
  };
  ARBOR_RETURN_IF_ERROR(write_conf(
      HbaFile(),
      "# Written by Arbor at each start. Computes listen only on a private unix socket.\n"
      "# Arbor's superuser: the daemon's OS user only, by peer authentication.\n"
      "local all " +
          std::string(compute::kSuperuser) +
          " peer map=arbor\n"
          "# A read replica's WAL receiver: a compute (the compute's OS user) streaming from\n"
          "# its primary. A replication connection runs no SQL.\n"
          "local replication " +
          std::string(compute::kSuperuser) +
          " peer map=arbor_replication\n"
          "# Everyone else, the proxy's logins included, proves the role's SCRAM password.\n"
          "local all all scram-sha-256\n"));
  ARBOR_ASSIGN_OR_RETURN(compute::OsUser compute_user, compute::ComputeUser());
  ARBOR_RETURN_IF_ERROR(write_conf(IdentFile(), "# Written by Arbor at each start.\narbor " +
                                                    daemon_user + " " + compute::kSuperuser +
                                                    "\narbor_replication " + compute_user.name +
                                                    " " + compute::kSuperuser + "\n"));
  ARBOR_ASSIGN_OR_RETURN(catalog_, Catalog::Load(*store_));
  // A masked branch whose masking did not finish (a crash) holds raw values: it goes.
  std::vector<BranchKey> unmasked;
  for (const auto& [k, b] : catalog_.branches) {
    if (b.masking_pending) unmasked.push_back(k);
  }
  for (const BranchKey& k : unmasked) {
    for (const auto& [ek, e] : catalog_.endpoints) {
      if (e.project == k.first && e.branch == k.second) live_.erase(ek);
    }
    ARBOR_RETURN_IF_ERROR(CommitDeleteLocked(k.first, k.second));
    log::warn("engine: deleted branch {}, whose masking did not finish",
              BranchName(k.first, k.second));
  }
  // Pinned endpoints are ephemeral: none outlives the daemon that made it.
  std::vector<EndpointRecord> pinned;
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.pinned) pinned.push_back(e);
  }
  for (const EndpointRecord& e : pinned) ARBOR_RETURN_IF_ERROR(ErasePinnedEndpointLocked(e));
  // A replica's fork was of the branch's head when it last started: a start forks afresh, so
  // the old one is left unreferenced here and deleted below.
  for (auto& [k, e] : catalog_.endpoints) {
    if (!e.replica || e.timeline.value() == 0) continue;
    EndpointRecord cleared = e;
    cleared.timeline = TimelineId(0);
    ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(cleared)}));
    e = cleared;
  }

  // Timelines no branch refers to were left by an operation cut short (a crash between the
  // store's change and the catalog's): delete them, children first.
  std::set<TimelineId> used;
  for (const auto& [k, b] : catalog_.branches) used.insert(b.timeline);
  for (const auto& [k, d] : catalog_.deleted_branches) used.insert(d.branch.timeline);
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.pinned || (e.replica && e.timeline.value() != 0)) used.insert(e.timeline);
  }
  for (const auto& [k, s] : catalog_.snapshots) used.insert(s.timeline);
  bool again = true;
  while (again) {
    again = false;
    auto all = store_->ListTimelines();
    std::set<TimelineId> parents;
    for (const auto& t : all) parents.insert(t.parent);
    for (const auto& t : all) {
      if (used.count(t.id) || parents.count(t.id)) continue;
      Status st = store_->DeleteTimeline(t.id);
      if (st.ok()) {
        log::info("engine: deleted timeline {} that no branch refers to", t.id.value());
        again = true;
      }
    }
  }
  // Branches from before roles get the `owner` role, made at their next start.
  for (const auto& [k, b] : catalog_.branches) {
    if (catalog_.roles.count({b.project, b.id, compute::kOwnerRole})) continue;
    ARBOR_ASSIGN_OR_RETURN(auto owner, FreshRole(b.project, b.id, compute::kOwnerRole));
    ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(owner.first)}));
    catalog_.roles[{b.project, b.id, owner.first.name}] = owner.first;
    log::info("engine: branch {} gets the role owner at its next start",
              BranchName(b.project, b.id));
  }
  for (const auto& [k, b] : catalog_.branches) {
    if (!store_->GetTimeline(b.timeline).ok()) {
      log::error("engine: branch {} refers to missing timeline {}", BranchName(b.project, b.id),
                 b.timeline.value());
    }
  }
  return Status::Ok();
}

// ---- lookups ----

Result<BranchRecord*> Engine::FindBranch(const std::string& project, const std::string& id) {
  if (!catalog_.projects.count(project)) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  auto it = catalog_.branches.find({project, id});
  if (it == catalog_.branches.end()) {
    return Status::NotFound("branch " + BranchName(project, id) + " does not exist");
  }
  return &it->second;
}

Result<EndpointRecord*> Engine::FindEndpoint(const std::string& project, const std::string& branch,
                                             const std::string& id) {
  ARBOR_RETURN_IF_ERROR(FindBranch(project, branch).status());
  auto it = catalog_.endpoints.find({project, branch, id});
  if (it == catalog_.endpoints.end()) {
    return Status::NotFound("endpoint " + BranchName(project, branch) + "/endpoints/" + id +
                            " does not exist");
  }
  return &it->second;
}

bool Engine::HasChildren(const std::string& project, const std::string& id) const {
  for (const auto& [k, b] : catalog_.branches) {
    if (b.project == project && b.parent == id) return true;
  }
  return false;
}

bool Engine::HasDeletedChildren(const std::string& project, const std::string& uid) const {
  for (const auto& [k, d] : catalog_.deleted_branches) {
    if (k.first == project && d.parent_uid == uid) return true;
  }
  return false;
}

// ---- projects ----

Result<ProjectRecord> Engine::CreateProject(const std::string& id, int64_t history_window_s) {
  ARBOR_RETURN_IF_ERROR(ValidateId("project", id));
  if (history_window_s < kMinWindowS || history_window_s > kMaxWindowS) {
    return Status::InvalidArgument(
        "history_retention_duration must be between 3600s and "
        "3024000s (35 days), not " +
        std::to_string(history_window_s) + "s");
  }
  std::unique_lock l(mu_);
  if (catalog_.projects.count(id) || creating_projects_.count(id)) {
    return Status::AlreadyExists("project projects/" + id + " already exists");
  }
  creating_projects_.insert(id);
  ProjectRecord p;
  p.id = id;
  p.uid = NewUid("prj");
  p.create_time_us = WallMicros();
  p.history_window_s = history_window_s;
  // initdb once, as the compute user, on a new root timeline, without the lock: it takes
  // seconds. Nothing refers to the root until the commit below; a crash before it leaves an
  // unreferenced timeline, which Open deletes.
  std::string mnt = options_.runtime_dir + "/mnt/init-" + p.uid;
  std::string log_file = options_.data_dir + "/logs/initdb-" + id + ".log";
  Result<TimelineId> root = Unlocked(l, [&]() -> Result<TimelineId> {
    const compute::OsUser& user = supervisor_->user();
    ARBOR_ASSIGN_OR_RETURN(TimelineId tl,
                           store_->CreateRoot(history_window_s * 1'000'000, user.uid, user.gid));
    std::error_code ec;
    fs::create_directories(mnt, ec);
    Status st;
    auto mount = mounter_->Mount(tl, mnt);
    if (!mount.ok()) {
      st = mount.status();
    } else {
      // The superuser's password is thrown away: Arbor logs in by peer authentication.
      st = supervisor_->InitDb(mnt, NewPassword(), log_file);
      mount->reset();
    }
    fs::remove(mnt, ec);
    if (st.ok()) st = store_->Sync(tl);
    if (!st.ok()) {
      (void)store_->DeleteTimeline(tl);
      return st;
    }
    return tl;
  });
  creating_projects_.erase(id);
  ARBOR_RETURN_IF_ERROR(root.status());
  p.root = *root;

  BranchRecord b;
  b.project = id;
  b.id = p.default_branch;
  b.uid = NewUid("br");
  b.create_time_us = p.create_time_us;
  b.timeline = p.root;
  // The history starts here, once initdb is done: the states before hold no cluster.
  p.ready_time_us = WallMicros();
  b.expiry = Expiry::kNever;
  auto ep = NewEndpointLocked(id, b.id, "primary", 300, false);
  auto owner = FreshRole(id, b.id, compute::kOwnerRole);
  Status st;
  if (ep.ok() && owner.ok()) {
    st = store_->WriteMeta(
        {Catalog::Put(p), Catalog::Put(b), Catalog::Put(*ep), Catalog::Put(owner->first)});
  }
  if (!ep.ok() || !owner.ok() || !st.ok()) {
    (void)store_->DeleteTimeline(p.root);
    return !ep.ok() ? ep.status() : !owner.ok() ? owner.status() : st;
  }
  catalog_.roles[{id, b.id, owner->first.name}] = owner->first;
  catalog_.projects[id] = p;
  catalog_.branches[{id, b.id}] = b;
  catalog_.endpoints[{id, b.id, ep->id}] = *ep;
  if (ports_ != nullptr) ports_->Listen(ep->port);
  return p;
}

Result<ProjectRecord> Engine::GetProject(const std::string& id) {
  std::lock_guard l(mu_);
  auto it = catalog_.projects.find(id);
  if (it == catalog_.projects.end()) {
    return Status::NotFound("project projects/" + id + " does not exist");
  }
  return it->second;
}

std::vector<ProjectRecord> Engine::ListProjects() {
  std::lock_guard l(mu_);
  std::vector<ProjectRecord> out;
  for (const auto& [k, p] : catalog_.projects) out.push_back(p);
  return out;
}

Status Engine::DeleteProject(const std::string& id) {
  std::unique_lock l(mu_);
  // Claims every branch at once, when none is claimed by another operation.
  std::vector<BranchClaim> claims;
  std::vector<EndpointRecord> eps;
  while (true) {
    if (!catalog_.projects.count(id)) {
      return Status::NotFound("project projects/" + id + " does not exist");
    }
    bool busy = false;
    for (const auto& [k, w] : busy_) busy |= k.first == id;
    if (!busy) break;
    changed_.wait(l);
  }
  for (const auto& [k, b] : catalog_.branches) {
    if (b.project != id) continue;
    busy_[k] = Work::kDeleting;
    claims.emplace_back(this, k);
  }
  changed_.wait(l, [&] {
    for (const auto& [k, e] : catalog_.endpoints) {
      if (e.project == id && EndpointsBusyLocked(id, e.branch)) return false;
    }
    return true;
  });
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project == id) eps.push_back(e);
  }
  StopEndpointsWithLock(l, eps);
  // Deleted branches first: their timelines are children of live ones.
  std::vector<std::string> deleted;
  for (const auto& [k, d] : catalog_.deleted_branches) {
    if (k.first == id) deleted.push_back(k.second);
  }
  ARBOR_RETURN_IF_ERROR(PurgeDeletedLocked(id, deleted));
  // Leaves first, so every timeline is childless when it goes.
  while (true) {
    std::string leaf;
    for (const auto& [k, b] : catalog_.branches) {
      if (b.project == id && !HasChildren(id, b.id)) {
        leaf = b.id;
        break;
      }
    }
    if (leaf.empty()) break;
    // Its snapshots first (every branch made from them is gone: they were its children).
    std::vector<std::tuple<std::string, std::string, std::string>> snaps;
    TimelineId leaf_tl = catalog_.branches.at({id, leaf}).timeline;
    for (const auto& [k, s] : catalog_.snapshots) {
      if (s.project == id && (s.branch == leaf || s.source_timeline == leaf_tl)) snaps.push_back(k);
    }
    for (const auto& [p, b, s] : snaps) ARBOR_RETURN_IF_ERROR(EraseSnapshotLocked(p, b, s));
    ARBOR_RETURN_IF_ERROR(CommitDeleteLocked(id, leaf));
  }
  storage::MetaWrites gone{Catalog::EraseProject(id)};
  for (auto u = catalog_.usage.begin(); u != catalog_.usage.end();) {
    if (std::get<0>(u->first) != id) {
      ++u;
      continue;
    }
    gone.push_back(Catalog::EraseUsage(u->second));
    usage_dirty_.erase(u->first);
    u = catalog_.usage.erase(u);
  }
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta(gone));
  catalog_.projects.erase(id);
  return Status::Ok();
}

Status Engine::SetHistoryWindow(const std::string& project, int64_t history_window_s) {
  if (history_window_s < kMinWindowS || history_window_s > kMaxWindowS) {
    return Status::InvalidArgument(
        "history_retention_duration must be between 3600s and 3024000s (35 days)");
  }
  std::lock_guard l(mu_);
  auto it = catalog_.projects.find(project);
  if (it == catalog_.projects.end()) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  ARBOR_RETURN_IF_ERROR(store_->SetHistoryWindow(it->second.root, history_window_s * 1'000'000));
  ProjectRecord updated = it->second;
  updated.history_window_s = history_window_s;
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(updated)}));
  it->second = updated;
  return Status::Ok();
}

// ---- branches ----

Result<Seq> Engine::ForkPointLocked(const BranchRecord& parent, std::optional<int64_t> time_us,
                                    std::optional<uint64_t> lsn, int64_t* fork_time_us) {
  // A masked branch's history before its masking point holds the raw values: no way in.
  auto masked = [&](Seq s) -> Status {
    if (parent.masked_seq == 0 && !parent.masking_pending) return Status::Ok();
    if (!parent.masking_pending && s.value() >= parent.masked_seq) return Status::Ok();
    return Status::FailedPrecondition(
        "branch " + BranchName(parent.project, parent.id) +
        " is masked: its history before the masking point (" +
        api::FormatTime(parent.masked_time_us) +
        ") holds the raw values and cannot be reached; choose a time at or after it");
  };
  if (time_us) {
    ARBOR_ASSIGN_OR_RETURN(Seq s, store_->SeqAtTime(parent.timeline, *time_us));
    ARBOR_RETURN_IF_ERROR(masked(s));
    *fork_time_us = *time_us;
    return s;
  }
  if (lsn) {
    ARBOR_ASSIGN_OR_RETURN(Seq s, store_->SeqAtLsn(parent.timeline, Lsn(*lsn)));
    ARBOR_RETURN_IF_ERROR(masked(s));
    auto t = store_->TimeOfSeq(parent.timeline, s);
    *fork_time_us = t.ok() ? *t : WallMicros();
    return s;
  }
  ARBOR_RETURN_IF_ERROR(masked(store_->Head()));
  // At the head: every mutation applied so far, so every commit acknowledged so far.
  *fork_time_us = WallMicros();
  return store_->Head();
}

std::vector<std::string> Engine::CheckpointTargetsLocked(const std::string& project,
                                                         const std::string& id,
                                                         std::vector<EndpointKey>* lifted) {
  std::vector<std::string> out;
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project != project || e.branch != id || !IsReadWrite(e)) continue;
    auto live = live_.find(k);
    if (live == live_.end() || !live->second.running || live->second.stopping) continue;
    out.push_back(ComputeId(e));
    if (live->second.checkpoints++ == 0 && live->second.write_rate != 0) {
      log::info("engine: {}: write budget lifted for the CHECKPOINT before a fork", ComputeId(e));
    }
    lifted->push_back(k);
  }
  if (!lifted->empty()) RefreshWriteRatesLocked();
  return out;
}

void Engine::EndCheckpointsLocked(const std::vector<EndpointKey>& lifted) {
  if (lifted.empty()) return;
  for (const EndpointKey& k : lifted) {
    auto live = live_.find(k);
    if (live != live_.end() && live->second.checkpoints > 0) --live->second.checkpoints;
  }
  RefreshWriteRatesLocked();
}

void Engine::Checkpoint(const std::vector<std::string>& computes) {
  // A running parent checkpoints before a fork at its head, so the branch's first start has
  // almost nothing to redo (measured: a parent busy with autovacuum left seconds of redo
  // without it).
  // Paced only while some compute commits or starts: an idle daemon has no one to protect.
  double pace = 0;
  if (options_.checkpoint_pace_cpus > 0) {
    std::lock_guard g(mu_);
    for (const auto& [k, live] : live_) {
      if (ProtectedLocked(live)) {
        pace = options_.checkpoint_pace_cpus;
        break;
      }
    }
  }
  for (const std::string& cid : computes) {
    Status st = supervisor_->Checkpoint(cid, options_.checkpoint_min_wal_bytes, pace);
    if (!st.ok()) log::warn("engine: {} (branching without it)", st.ToString());
  }
}

void Engine::CheckpointForFork(const std::vector<std::string>& computes,
                               std::vector<EndpointKey>* lifted) {
  const int64_t wait_ms = options_.checkpoint_wait_ms;
  struct Shared {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;                // the CHECKPOINTs ended
    std::vector<EndpointKey> handed;  // budgets the thread gives back
  };
  auto shared = std::make_shared<Shared>();
  // In the background only with a bounded wait, and not while shutting down (nothing new is
  // left running behind it); otherwise, and if no thread can be had, the call waits in place.
  bool background = wait_ms >= 0;
  if (background) {
    std::lock_guard g(mu_);
    background = !shutting_down_;
    if (background) ++background_checkpoints_;
  }
  auto run = [this, computes, shared] {
    Checkpoint(computes);
    std::vector<EndpointKey> keys;
    {
      std::lock_guard g(shared->m);
      shared->done = true;
      keys = std::move(shared->handed);
    }
    shared->cv.notify_all();
    std::lock_guard g(mu_);
    EndCheckpointsLocked(keys);
    --background_checkpoints_;
    changed_.notify_all();  // Shutdown waits for this thread; it touches nothing after.
  };
  if (background) {
    try {
      std::thread(run).detach();
    } catch (const std::system_error& e) {
      log::warn("engine: no thread for the CHECKPOINT before a fork ({}); waiting for it",
                e.what());
      std::lock_guard g(mu_);
      --background_checkpoints_;
      changed_.notify_all();
      background = false;
    }
  }
  if (!background) {
    Checkpoint(computes);
    return;
  }
  std::unique_lock g(shared->m);
  if (shared->cv.wait_for(g, std::chrono::milliseconds(wait_ms), [&] { return shared->done; })) {
    return;
  }
  // Decided under shared->m: the thread either ended before (and gave nothing back) or
  // finds the budgets here when it ends.
  shared->handed = std::move(*lifted);
  lifted->clear();
  std::string names;
  for (const std::string& c : computes) names += (names.empty() ? "" : ", ") + c;
  log::info(
      "engine: the CHECKPOINT of {} outlasted {} ms; the branch forks the head now (it replays "
      "from the last completed checkpoint), and the CHECKPOINT goes on",
      names, wait_ms);
}

Result<BranchRecord> Engine::CreateBranch(const std::string& project, const std::string& id,
                                          const BranchRequest& request) {
  ARBOR_RETURN_IF_ERROR(ValidateId("branch", id));
  PhaseLog phases("the create of " + BranchName(project, id));
  std::unique_lock l(mu_);
  phases.Mark("lock");
  auto pit = catalog_.projects.find(project);
  if (pit == catalog_.projects.end()) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  if (catalog_.branches.count({project, id}) || creating_.count({project, id})) {
    return Status::AlreadyExists("branch " + BranchName(project, id) + " already exists");
  }
  std::string parent_id =
      request.source_branch.empty() ? pit->second.default_branch : request.source_branch;
  const bool from_snapshot = !request.source_snapshot.empty();
  if (from_snapshot) {
    if (!request.source_branch.empty() && request.source_branch != request.source_snapshot_branch) {
      return Status::InvalidArgument(
          "spec.source_branch and spec.source_snapshot name different "
          "branches; set only spec.source_snapshot");
    }
    if (request.time_us || request.lsn) {
      return Status::InvalidArgument(
          "spec.source_snapshot cannot be combined with spec.source_branch_time or "
          "spec.source_branch_lsn: a snapshot holds one state");
    }
    parent_id = request.source_snapshot_branch;
  }
  auto parent_ok = [&]() -> Status {
    ARBOR_ASSIGN_OR_RETURN(BranchRecord * p, FindBranch(project, parent_id));
    if (p->masking_pending) {
      return Status::FailedPrecondition("branch " + BranchName(project, parent_id) +
                                        " is being masked; branch from it once it is ready");
    }
    auto busy = busy_.find({project, parent_id});
    if (busy != busy_.end() && busy->second == Work::kDeleting) {
      return Status::FailedPrecondition("branch " + BranchName(project, parent_id) +
                                        " is being deleted");
    }
    return Status::Ok();
  };
  ARBOR_RETURN_IF_ERROR(parent_ok());
  int64_t now = WallMicros();
  if (request.expiry == Expiry::kExpireTime && request.expire_time_us <= now) {
    return Status::InvalidArgument("expire_time must be in the future");
  }
  if (request.expiry == Expiry::kTtl && request.ttl_s <= 0) {
    return Status::InvalidArgument("ttl must be positive");
  }
  if (request.is_protected && request.expiry != Expiry::kNever) {
    return Status::FailedPrecondition("a protected branch cannot expire; set spec.no_expiry");
  }
  // With checkpoint_parent, the parent's CHECKPOINT runs without the lock, with the name
  // reserved meanwhile.
  if (options_.checkpoint_parent && !request.time_us && !request.lsn && !from_snapshot) {
    LiftedBudgets lifted{this, {}};
    std::vector<std::string> targets = CheckpointTargetsLocked(project, parent_id, &lifted.keys);
    if (!targets.empty()) {
      creating_.insert({project, id});
      Unlocked(l, [&] {
        CheckpointForFork(targets, &lifted.keys);
        return 0;
      });
      phases.Mark("parent's checkpoint");
      creating_.erase({project, id});
      ARBOR_RETURN_IF_ERROR(parent_ok());
    }
  }
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * parent, FindBranch(project, parent_id));
  int64_t fork_time = 0;
  Seq at;
  TimelineId fork_from = parent->timeline;
  if (from_snapshot) {
    // The snapshot's timeline is never written: its head is the state it holds.
    auto snap = catalog_.snapshots.find({project, parent_id, request.source_snapshot});
    if (snap == catalog_.snapshots.end()) {
      return Status::NotFound("snapshot " + BranchName(project, parent_id) + "/snapshots/" +
                              request.source_snapshot + " does not exist");
    }
    fork_from = snap->second.timeline;
    fork_time = snap->second.source_time_us;
    at = store_->Head();
  } else {
    ARBOR_ASSIGN_OR_RETURN(at, ForkPointLocked(*parent, request.time_us, request.lsn, &fork_time));
  }

  BranchRecord b;
  b.project = project;
  b.id = id;
  b.uid = NewUid("br");
  b.create_time_us = now;
  b.parent = parent_id;
  b.source_time_us = fork_time;
  b.source_lsn = request.lsn.value_or(0);
  b.requested_time = request.time_us.has_value();
  b.requested_lsn = request.lsn.has_value();
  b.expiry = request.expiry;
  b.ttl_s = request.ttl_s;
  b.expire_time_us = request.expiry == Expiry::kTtl          ? now + request.ttl_s * 1'000'000
                     : request.expiry == Expiry::kExpireTime ? request.expire_time_us
                                                             : 0;
  b.is_protected = request.is_protected;
  b.source_snapshot = request.source_snapshot;
  // A branch of a masked branch keeps its masking point (its history starts after it anyway).
  b.masked_seq = parent->masked_seq;
  b.masked_time_us = parent->masked_time_us;
  if (!request.masking.empty()) {
    b.masking = request.masking;
    b.mask_key = NewPassword();
    b.masking_pending = true;
  }
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord ep, NewEndpointLocked(project, id, "primary", 300, false));
  // Every role with a password gets a fresh one on the new branch, so no password works on
  // both: one leaked from a throwaway branch does not open its parent.
  ARBOR_ASSIGN_OR_RETURN(std::vector<RoleRecord> roles, FreshRolesLocked(project, parent_id, id));
  // The timeline and its catalog records appear in one atomic, synced store write.
  ARBOR_ASSIGN_OR_RETURN(b.timeline, store_->Branch(fork_from, at, [&](TimelineId tl) {
    b.timeline = tl;
    storage::MetaWrites w{Catalog::Put(b), Catalog::Put(ep)};
    for (const RoleRecord& r : roles) w.push_back(Catalog::Put(r));
    return w;
  }));
  phases.Mark("fork");
  for (const RoleRecord& r : roles) catalog_.roles[{project, id, r.name}] = r;
  catalog_.branches[{project, id}] = b;
  catalog_.endpoints[{project, id, ep.id}] = ep;
  if (ports_ != nullptr) ports_->Listen(ep.port);
  if (b.masking_pending) {
    // Claimed before the lock is let go: no start, reset or fork gets in before the masking.
    busy_[{project, id}] = Work::kMasking;
    BranchClaim claim(this, {project, id});
    Status masked = MaskBranchLocked(l, project, id);
    if (!masked.ok()) {
      StopEndpointsWithLock(l, BranchEndpointsLocked(project, id));
      Status gone = CommitDeleteLocked(project, id);
      if (!gone.ok()) {
        log::error("engine: deleting {} after its masking failed: {}", BranchName(project, id),
                   gone.ToString());
      }
      return masked;
    }
    ARBOR_ASSIGN_OR_RETURN(BranchRecord * made, FindBranch(project, id));
    return *made;
  }
  return b;
}

Status Engine::SetDefaultBranchTtl(const std::string& project, int64_t ttl_s) {
  if (ttl_s < 0) return Status::InvalidArgument("default_branch_ttl must not be negative");
  std::lock_guard l(mu_);
  auto it = catalog_.projects.find(project);
  if (it == catalog_.projects.end()) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  ProjectRecord updated = it->second;
  updated.default_branch_ttl_s = ttl_s;
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(updated)}));
  it->second = updated;
  return Status::Ok();
}

Result<BranchRecord> Engine::GetBranch(const std::string& project, const std::string& id) {
  std::lock_guard l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
  return *b;
}

std::vector<BranchRecord> Engine::ListBranches(const std::string& project) {
  std::lock_guard l(mu_);
  std::vector<BranchRecord> out;
  for (const auto& [k, b] : catalog_.branches) {
    if (b.project == project) out.push_back(b);
  }
  return out;
}

Status Engine::DeleteBranch(const std::string& project, const std::string& id) {
  return DeleteBranchImpl(project, id, std::nullopt);
}

Status Engine::DeleteBranchImpl(const std::string& project, const std::string& id,
                                std::optional<int64_t> expired_at) {
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, id, Work::kDeleting));
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
  if (b->parent.empty()) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " is the project's root branch and cannot be deleted");
  }
  if (b->is_protected) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " is protected; unprotect it first");
  }
  if (expired_at && (b->expire_time_us == 0 || b->expire_time_us > *expired_at)) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) + " has not expired");
  }
  if (HasChildren(project, id)) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " has child branches; delete them first");
  }
  if (auto snaps = SnapshotsOfLocked(project, id, b->timeline); !snaps.empty()) {
    std::string names;
    for (const std::string& n : snaps) names += (names.empty() ? "" : ", ") + n;
    return Status::FailedPrecondition("branch " + BranchName(project, id) + " has snapshots (" +
                                      names + "); delete the snapshots first");
  }
  // Postgres stops and the mounts go without the lock; the branch's endpoints refuse to
  // start meanwhile, and no child can be made of it. An immediate shutdown: an undelete
  // starts it as after a crash (every commit is in its synced WAL), and the delete does not
  // wait for a shutdown checkpoint of its dirty buffers.
  StopEndpointsWithLock(l, BranchEndpointsLocked(project, id), /*discard=*/true);
  return CommitSoftDeleteLocked(project, id, expired_at.has_value());
}

Status Engine::CommitSoftDeleteLocked(const std::string& project, const std::string& id,
                                      bool expired) {
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
  if (HasChildren(project, id)) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " has child branches; delete them first");
  }
  auto proj = catalog_.projects.find(project);
  if (proj == catalog_.projects.end()) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  // Pinned endpoints serve past states through their own timelines; they are not kept.
  ARBOR_RETURN_IF_ERROR(ErasePinnedLocked(project, id));
  DeletedBranchRecord d;
  d.branch = *b;
  if (!b->parent.empty()) {
    auto parent = catalog_.branches.find({project, b->parent});
    if (parent != catalog_.branches.end()) d.parent_uid = parent->second.uid;
  }
  d.expired = expired;
  d.delete_time_us = WallMicros();
  d.purge_time_us = d.delete_time_us + proj->second.history_window_s * 1'000'000;
  storage::MetaWrites writes{Catalog::EraseBranch(project, id)};
  std::vector<EndpointKey> gone_roles;
  for (const auto& [k, r] : catalog_.roles) {
    if (r.project == project && r.branch == id) {
      writes.push_back(Catalog::EraseRole(project, id, r.name));
      gone_roles.push_back(k);
      d.roles.push_back(r);
    }
  }
  std::vector<EndpointKey> gone;
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project == project && e.branch == id) {
      writes.push_back(Catalog::EraseEndpoint(project, id, e.id));
      gone.push_back(k);
      d.endpoints.push_back(e);
      d.endpoints.back().running = false;
    }
  }
  writes.push_back(Catalog::Put(d));
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta(writes));
  for (const auto& k : gone) {
    if (ports_ != nullptr) ports_->Unlisten(catalog_.endpoints.at(k).port);
    ForgetActivity(k);
    live_.erase(k);
    catalog_.endpoints.erase(k);
  }
  for (const auto& k : gone_roles) catalog_.roles.erase(k);
  catalog_.branches.erase({project, id});
  catalog_.deleted_branches[{project, d.branch.uid}] = d;
  log::info("engine: branch {} deleted; recoverable until its purge", BranchName(project, id));
  return Status::Ok();
}

DeletedBranchRecord* Engine::LatestDeletedLocked(const std::string& project,
                                                 const std::string& id) {
  DeletedBranchRecord* latest = nullptr;
  for (auto& [k, d] : catalog_.deleted_branches) {
    if (k.first != project || d.branch.id != id) continue;
    if (latest == nullptr || d.delete_time_us >= latest->delete_time_us) latest = &d;
  }
  return latest;
}

std::vector<std::string> Engine::DeletedDescendantsLocked(const std::string& project,
                                                          const std::string& uid) const {
  std::vector<std::string> out;
  std::vector<std::string> todo{uid};
  while (!todo.empty()) {
    std::string parent = todo.back();
    todo.pop_back();
    for (const auto& [k, d] : catalog_.deleted_branches) {
      if (k.first == project && d.parent_uid == parent) {
        out.push_back(k.second);
        todo.push_back(k.second);
      }
    }
  }
  return out;
}

Status Engine::PurgeDeletedLocked(const std::string& project, std::vector<std::string> uids) {
  // Leaves first: the store refuses to delete a timeline that has children.
  while (!uids.empty()) {
    std::set<TimelineId> parents;
    for (const auto& t : store_->ListTimelines()) parents.insert(t.parent);
    bool progress = false;
    for (auto it = uids.begin(); it != uids.end();) {
      auto d = catalog_.deleted_branches.find({project, *it});
      if (d == catalog_.deleted_branches.end()) {
        it = uids.erase(it);
        continue;
      }
      TimelineId tl = d->second.branch.timeline;
      if (parents.count(tl)) {
        ++it;
        continue;
      }
      storage::MetaWrites writes{Catalog::EraseDeletedBranch(project, *it)};
      // One atomic write: the record and the timeline (a range delete; its compaction frees
      // the space later, on the store's own thread).
      TimelineId up;
      if (auto info = store_->GetTimeline(tl); info.ok()) up = info->parent;
      Status st = store_->DeleteTimeline(tl, writes);
      if (st.code() == Code::kNotFound) st = store_->WriteMeta(writes);
      ARBOR_RETURN_IF_ERROR(st);
      log::info("engine: deleted branch {} (uid {}) purged",
                BranchName(project, d->second.branch.id), *it);
      catalog_.deleted_branches.erase(d);
      // A deleted snapshot it was made from goes with it.
      DeleteUnusedAncestorsLocked(up);
      it = uids.erase(it);
      progress = true;
    }
    if (!progress && !uids.empty()) {
      return Status::FailedPrecondition("deleted branch " + uids.front() + " of projects/" +
                                        project + " still has child timelines");
    }
  }
  return Status::Ok();
}

Result<Engine::Undeleted> Engine::UndeleteBranch(const std::string& project, const std::string& id,
                                                 const std::optional<std::string>& new_id) {
  const std::string target = new_id.value_or(id);
  if (new_id) {
    ARBOR_RETURN_IF_ERROR(ValidateId("new branch", *new_id));
  }
  std::unique_lock l(mu_);
  if (!catalog_.projects.count(project)) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  DeletedBranchRecord* found = LatestDeletedLocked(project, id);
  if (found == nullptr) {
    return Status::NotFound("there is no deleted branch " + BranchName(project, id) +
                            " (a deleted branch can be undeleted until its purge time; list "
                            "them with ?show_deleted=true)");
  }
  auto taken = catalog_.branches.find({project, target});
  if (taken != catalog_.branches.end() || creating_.count({project, target})) {
    if (!new_id) {
      return Status::AlreadyExists(
          "the id " + BranchName(project, id) +
          " was taken again by a newer branch, so the deleted branch (uid " + found->branch.uid +
          ") cannot come back under it; undelete it under another id with ?new_branch_id=NEW");
    }
    return Status::AlreadyExists("branch " + BranchName(project, target) +
                                 " already exists; choose another new_branch_id");
  }
  DeletedBranchRecord d = *found;
  if (!d.branch.parent.empty()) {
    auto parent = catalog_.branches.find({project, d.branch.parent});
    bool parent_live = parent != catalog_.branches.end() &&
                       (d.parent_uid.empty() || parent->second.uid == d.parent_uid);
    if (!parent_live) {
      if (catalog_.deleted_branches.count({project, d.parent_uid})) {
        const auto& p = catalog_.deleted_branches.at({project, d.parent_uid});
        return Status::FailedPrecondition("the parent of " + BranchName(project, id) + ", " +
                                          BranchName(project, p.branch.id) +
                                          ", is deleted too; undelete the parent first");
      }
      return Status::FailedPrecondition("the parent of " + BranchName(project, id) +
                                        " no longer exists");
    }
    auto busy = busy_.find({project, d.branch.parent});
    if (busy != busy_.end() && busy->second == Work::kDeleting) {
      return Status::FailedPrecondition("the parent of " + BranchName(project, id) + ", " +
                                        BranchName(project, d.branch.parent) +
                                        ", is being deleted");
    }
  }
  Undeleted out;
  BranchRecord b = d.branch;
  b.id = target;
  // An expired branch would be deleted again by the next pass of the reaper.
  if (d.expired || (b.expire_time_us != 0 && b.expire_time_us <= WallMicros())) {
    b.expiry = Expiry::kNever;
    b.ttl_s = 0;
    b.expire_time_us = 0;
    out.notes.push_back(
        "its expiry had passed, so it no longer expires; give it a new one "
        "with PATCH (spec.ttl or spec.expire_time)");
  }
  // Ports: each endpoint's was reserved for it; one outside today's range is replaced.
  std::set<uint16_t> used;
  for (const auto& [k, e] : catalog_.endpoints) used.insert(e.port);
  std::vector<EndpointRecord> eps;
  for (EndpointRecord e : d.endpoints) {
    e.branch = target;
    e.running = false;
    if (used.count(e.port) || e.port < options_.port_lo || e.port > options_.port_hi) {
      ARBOR_ASSIGN_OR_RETURN(uint16_t port, AllocatePort());
      out.notes.push_back("endpoint " + e.id + " had port " + std::to_string(e.port) +
                          ", which is no longer available; it now has port " +
                          std::to_string(port));
      e.port = port;
    }
    used.insert(e.port);
    eps.push_back(e);
  }
  std::vector<RoleRecord> roles;
  for (RoleRecord r : d.roles) {
    r.branch = target;
    roles.push_back(r);
  }
  storage::MetaWrites writes{Catalog::Put(b), Catalog::EraseDeletedBranch(project, b.uid)};
  for (const auto& e : eps) writes.push_back(Catalog::Put(e));
  for (const auto& r : roles) writes.push_back(Catalog::Put(r));
  // Deleted children follow their parent's new id.
  std::vector<DeletedBranchRecord> children;
  if (target != id) {
    for (const auto& [k, c] : catalog_.deleted_branches) {
      if (k.first == project && c.parent_uid == b.uid) {
        children.push_back(c);
        children.back().branch.parent = target;
        writes.push_back(Catalog::Put(children.back()));
      }
    }
  }
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta(writes));
  catalog_.deleted_branches.erase({project, b.uid});
  for (const auto& c : children) catalog_.deleted_branches[{project, c.branch.uid}] = c;
  catalog_.branches[{project, target}] = b;
  for (const auto& e : eps) {
    catalog_.endpoints[{project, target, e.id}] = e;
    if (ports_ != nullptr) ports_->Listen(e.port);
  }
  for (const auto& r : roles) catalog_.roles[{project, target, r.name}] = r;
  log::info("engine: branch {} undeleted as {}", BranchName(project, id),
            BranchName(project, target));
  out.branch = b;
  return out;
}

Result<std::vector<DeletedBranchRecord>> Engine::ListDeletedBranches(const std::string& project) {
  std::lock_guard l(mu_);
  if (!catalog_.projects.count(project)) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  std::vector<DeletedBranchRecord> out;
  for (const auto& [k, d] : catalog_.deleted_branches) {
    if (k.first == project) out.push_back(d);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.delete_time_us < b.delete_time_us; });
  return out;
}

Result<storage::Usage> Engine::DeletedBranchUsage(const std::string& project,
                                                  const std::string& uid) {
  TimelineId tl;
  {
    std::lock_guard l(mu_);
    auto it = catalog_.deleted_branches.find({project, uid});
    if (it == catalog_.deleted_branches.end()) {
      return Status::NotFound("no deleted branch of uid " + uid + " in projects/" + project);
    }
    tl = it->second.branch.timeline;
  }
  return store_->GetUsage(tl);
}

Status Engine::PurgeBranch(const std::string& project, const std::string& id) {
  std::unique_lock l(mu_);
  if (!catalog_.projects.count(project)) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  if (!catalog_.branches.count({project, id})) {
    DeletedBranchRecord* d = LatestDeletedLocked(project, id);
    if (d == nullptr) {
      return Status::NotFound("branch " + BranchName(project, id) +
                              " does not exist, live or deleted");
    }
    std::vector<std::string> uids = DeletedDescendantsLocked(project, d->branch.uid);
    uids.push_back(d->branch.uid);
    return PurgeDeletedLocked(project, uids);
  }
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, id, Work::kDeleting));
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
  if (b->parent.empty()) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " is the project's root branch and cannot be deleted");
  }
  if (b->is_protected) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " is protected; unprotect it first");
  }
  if (HasChildren(project, id)) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " has child branches; delete them first");
  }
  StopEndpointsWithLock(l, BranchEndpointsLocked(project, id), /*discard=*/true);
  ARBOR_ASSIGN_OR_RETURN(b, FindBranch(project, id));
  ARBOR_RETURN_IF_ERROR(PurgeDeletedLocked(project, DeletedDescendantsLocked(project, b->uid)));
  return CommitDeleteLocked(project, id);
}

std::vector<std::string> Engine::PurgeDeleted(int64_t now_us) {
  std::lock_guard l(mu_);
  std::vector<std::string> gone;
  std::set<std::pair<std::string, std::string>> failed;
  while (true) {
    // Children first: one whose deleted children are not due yet waits for them.
    std::pair<std::string, std::string> next;
    for (const auto& [k, d] : catalog_.deleted_branches) {
      if (d.purge_time_us > now_us || failed.count(k) || HasDeletedChildren(k.first, k.second)) {
        continue;
      }
      next = k;
      break;
    }
    if (next.first.empty()) break;
    std::string name = BranchName(next.first, catalog_.deleted_branches.at(next).branch.id);
    Status st = PurgeDeletedLocked(next.first, {next.second});
    if (st.ok()) {
      gone.push_back(name);
    } else {
      log::warn("engine: purging deleted branch {}: {}", name, st.ToString());
      failed.insert(next);
    }
  }
  return gone;
}

Status Engine::CommitDeleteLocked(const std::string& project, const std::string& id) {
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
  if (HasChildren(project, id)) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " has child branches; delete them first");
  }
  // Its pinned endpoints' timelines are children of its timeline: they go first.
  ARBOR_RETURN_IF_ERROR(ErasePinnedLocked(project, id));
  TimelineId tl = b->timeline;
  storage::MetaWrites writes{Catalog::EraseBranch(project, id)};
  std::vector<EndpointKey> gone_roles;
  for (const auto& [k, r] : catalog_.roles) {
    if (r.project == project && r.branch == id) {
      writes.push_back(Catalog::EraseRole(project, id, r.name));
      gone_roles.push_back(k);
    }
  }
  std::vector<EndpointKey> gone;
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project == project && e.branch == id) {
      writes.push_back(Catalog::EraseEndpoint(project, id, e.id));
      gone.push_back(k);
    }
  }
  // The records and the timeline go in one atomic store write. It is one range delete; the
  // compaction that frees the space runs later on the store's own thread.
  Status st = store_->DeleteTimeline(tl, writes);
  if (st.code() == Code::kNotFound) st = store_->WriteMeta(writes);
  ARBOR_RETURN_IF_ERROR(st);
  for (const auto& k : gone) {
    if (ports_ != nullptr) ports_->Unlisten(catalog_.endpoints.at(k).port);
    ForgetActivity(k);
    live_.erase(k);
    catalog_.endpoints.erase(k);
  }
  for (const auto& k : gone_roles) catalog_.roles.erase(k);
  catalog_.branches.erase({project, id});
  return Status::Ok();
}

Result<BranchRecord> Engine::ResetBranch(const std::string& project, const std::string& id,
                                         std::optional<int64_t> time_us) {
  PhaseLog phases("the reset of " + BranchName(project, id));
  std::unique_lock l(mu_);
  phases.Mark("lock");
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, id, Work::kReplacing));
  phases.Mark("claim");
  auto check = [&]() -> Result<BranchRecord*> {
    ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
    if (b->parent.empty()) {
      return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                        " is the root branch; it has no parent to reset to");
    }
    if (b->is_protected) {
      return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                        " is protected; unprotect it before a reset");
    }
    if (HasChildren(project, id)) {
      return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                        " has child branches; a reset would orphan them");
    }
    if (HasDeletedChildren(project, b->uid)) {
      return Status::FailedPrecondition(
          "branch " + BranchName(project, id) +
          " has deleted child branches that can still be undeleted; a reset would orphan "
          "them: purge them first (DELETE .../branches/CHILD?purge=true)");
    }
    return b;
  };
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, check());
  if (options_.checkpoint_parent && !time_us) {
    LiftedBudgets lifted{this, {}};
    std::vector<std::string> targets = CheckpointTargetsLocked(project, b->parent, &lifted.keys);
    if (!targets.empty()) {
      Unlocked(l, [&] {
        CheckpointForFork(targets, &lifted.keys);
        return 0;
      });
      phases.Mark("parent's checkpoint");
      ARBOR_ASSIGN_OR_RETURN(b, check());  // a child may have been made meanwhile
    }
  }
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * parent, FindBranch(project, b->parent));
  int64_t fork_time = 0;
  ARBOR_ASSIGN_OR_RETURN(Seq at, ForkPointLocked(*parent, time_us, std::nullopt, &fork_time));
  BranchRecord updated = *b;
  updated.source_time_us = fork_time;
  updated.source_lsn = 0;
  updated.source_snapshot.clear();
  updated.requested_time = time_us.has_value();
  updated.requested_lsn = false;
  updated.owner_ready = false;
  // A masked branch takes its parent's state and is masked again, with its rules and key
  // (the same input gives the same mask as before), before any client reaches it. Until
  // then the new timeline holds raw values: pending, as at its create (Open deletes it).
  const bool masked = !b->masking.empty();
  if (masked) {
    updated.masking_pending = true;
    updated.masked_seq = 0;
    updated.masked_time_us = 0;
  }
  // The branch keeps its own passwords (its .env and tokens go on working), applied again to
  // the parent's catalog it now has; the parent's other roles get fresh ones.
  ARBOR_ASSIGN_OR_RETURN(std::vector<RoleRecord> roles,
                         RolesAfterReplaceLocked(project, id, b->parent));
  // The new timeline and the record pointing at it appear together; the old timeline is
  // deleted after (a crash in between leaves it unreferenced, and Open deletes it).
  ARBOR_ASSIGN_OR_RETURN(updated.timeline, store_->Branch(parent->timeline, at, [&](TimelineId tl) {
    updated.timeline = tl;
    storage::MetaWrites w{Catalog::Put(updated)};
    for (const RoleRecord& r : roles) w.push_back(Catalog::Put(r));
    return w;
  }));
  for (const RoleRecord& r : roles) catalog_.roles[{project, id, r.name}] = r;
  phases.Mark("fork");
  TimelineId old = b->timeline;
  *b = updated;
  // Its computes stop only now, without the lock: a failed fork above leaves the branch
  // running as it was. Immediately: they run on the replaced timeline, which goes (or is
  // read only at a snapshot's point, before this stop).
  std::vector<StopJob> stopped =
      StopEndpointsWithLock(l, BranchEndpointsLocked(project, id), /*discard=*/true);
  phases.Mark("stop");
  // Pinned endpoints served the replaced state; they go with it.
  Status del = ErasePinnedLocked(project, id);
  // The replaced timeline stays while snapshots were taken of it; the last one to go takes it.
  bool snapshotted = false;
  for (const auto& [k, s] : catalog_.snapshots) snapshotted |= s.source_timeline == old;
  if (del.ok() && !snapshotted) del = store_->DeleteTimeline(old);
  if (!del.ok()) {
    log::warn("engine: deleting replaced timeline {}: {}", old.value(), del.ToString());
  }
  phases.Mark("delete");
  if (masked) {
    // Starts the read-write endpoint, masks, checkpoints and records the new masking point.
    Status st = MaskBranchLocked(l, project, id);
    if (!st.ok()) {
      StopEndpointsWithLock(l, BranchEndpointsLocked(project, id));
      Status gone = CommitDeleteLocked(project, id);
      if (!gone.ok()) {
        log::error("engine: deleting {} after its masking failed: {}", BranchName(project, id),
                   gone.ToString());
      }
      return Status(st.code(), "the reset of masked branch " + BranchName(project, id) +
                                   " could not mask it again (" + st.message() +
                                   "); the branch was deleted, so that its parent's raw values "
                                   "are not reachable");
    }
  }
  RestartLaterLocked(project, id, stopped, /*skip_read_write=*/masked);  // masking started it
  phases.Mark("rest");
  ARBOR_ASSIGN_OR_RETURN(b, FindBranch(project, id));
  return *b;
}

Result<std::pair<BranchRecord, std::string>> Engine::RestoreBranch(const std::string& project,
                                                                   const std::string& id,
                                                                   std::optional<int64_t> time_us,
                                                                   std::optional<uint64_t> lsn) {
  if (!time_us && !lsn) return Status::InvalidArgument("restore needs a time or an LSN");
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, id, Work::kReplacing));
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
  int64_t fork_time = 0;
  ARBOR_ASSIGN_OR_RETURN(Seq at, ForkPointLocked(*b, time_us, lsn, &fork_time));

  int64_t now = WallMicros();
  std::string backup_id = id.substr(0, 36) + "-backup-" + CompactTime(now);
  for (int n = 2;
       catalog_.branches.count({project, backup_id}) || creating_.count({project, backup_id});
       ++n) {
    backup_id = id.substr(0, 36) + "-backup-" + CompactTime(now) + "-" + std::to_string(n);
  }
  // The replaced state keeps its timeline under the backup's name; the branch gets the new
  // timeline, which is a child of that one, and so do the branch's former children.
  BranchRecord backup = *b;
  backup.id = backup_id;
  backup.uid = NewUid("br");
  backup.create_time_us = now;
  backup.is_protected = false;
  backup.expiry = Expiry::kNever;
  backup.expire_time_us = 0;
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord backup_ep,
                         NewEndpointLocked(project, backup_id, "primary", 300, false));
  BranchRecord updated = *b;
  updated.parent = backup_id;
  updated.owner_ready = false;
  backup.owner_ready = false;
  ARBOR_ASSIGN_OR_RETURN(std::vector<RoleRecord> roles, RolesAfterReplaceLocked(project, id, ""));
  ARBOR_ASSIGN_OR_RETURN(std::vector<RoleRecord> backup_roles,
                         FreshRolesLocked(project, id, backup_id));
  updated.source_time_us = fork_time;
  updated.source_snapshot.clear();
  updated.source_lsn = lsn.value_or(0);
  updated.requested_time = time_us.has_value();
  updated.requested_lsn = lsn.has_value();
  std::vector<BranchRecord> moved;
  for (const auto& [k, other] : catalog_.branches) {
    if (other.project == project && other.parent == id) {
      moved.push_back(other);
      moved.back().parent = backup_id;
    }
  }
  // Deleted children too: their timelines are children of the backup's.
  std::vector<DeletedBranchRecord> moved_deleted;
  for (const auto& [k, d] : catalog_.deleted_branches) {
    if (k.first == project && d.parent_uid == b->uid) {
      moved_deleted.push_back(d);
      moved_deleted.back().branch.parent = backup_id;
      moved_deleted.back().parent_uid = backup.uid;
    }
  }
  ARBOR_ASSIGN_OR_RETURN(updated.timeline, store_->Branch(b->timeline, at, [&](TimelineId tl) {
    updated.timeline = tl;
    storage::MetaWrites w{Catalog::Put(updated), Catalog::Put(backup), Catalog::Put(backup_ep)};
    for (const BranchRecord& m : moved) w.push_back(Catalog::Put(m));
    for (const DeletedBranchRecord& m : moved_deleted) w.push_back(Catalog::Put(m));
    for (const RoleRecord& r : roles) w.push_back(Catalog::Put(r));
    for (const RoleRecord& r : backup_roles) w.push_back(Catalog::Put(r));
    return w;
  }));
  for (const RoleRecord& r : roles) catalog_.roles[{project, id, r.name}] = r;
  for (const RoleRecord& r : backup_roles) catalog_.roles[{project, backup_id, r.name}] = r;
  for (const BranchRecord& m : moved) catalog_.branches[{project, m.id}] = m;
  for (const DeletedBranchRecord& m : moved_deleted) {
    catalog_.deleted_branches[{project, m.branch.uid}] = m;
  }
  catalog_.branches[{project, backup_id}] = backup;
  catalog_.endpoints[{project, backup_id, backup_ep.id}] = backup_ep;
  if (ports_ != nullptr) ports_->Listen(backup_ep.port);
  catalog_.branches[{project, id}] = updated;
  // The backup's timeline is the one the branch's computes still run on: nothing starts on it
  // before they have stopped. Writes made between the fork and this stop belong to the
  // replaced state (the backup).
  std::vector<StopJob> stopped;
  {
    busy_[{project, backup_id}] = Work::kReplacing;
    BranchClaim backup_claim(this, {project, backup_id});
    stopped = StopEndpointsWithLock(l, BranchEndpointsLocked(project, id));
    // Pinned endpoints served the replaced state (they pin the backup's timeline); they go.
    Status erased = ErasePinnedLocked(project, id);
    if (!erased.ok())
      log::warn("engine: restore of {}: {}", BranchName(project, id), erased.ToString());
  }
  RestartLaterLocked(project, id, stopped);
  return std::make_pair(catalog_.branches.at({project, id}), backup_id);
}

Status Engine::UpdateBranch(const std::string& project, const std::string& id,
                            std::optional<bool> is_protected, std::optional<BranchRequest> expiry) {
  std::unique_lock l(mu_);
  ARBOR_RETURN_IF_ERROR(WaitBranchFreeLocked(l, project, id));
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
  BranchRecord updated = *b;
  if (is_protected) updated.is_protected = *is_protected;
  if (expiry && expiry->expiry != Expiry::kNever) {
    // Such branches are never reaped, so an expiry on them would be a promise not kept.
    if (updated.is_protected) {
      return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                        " is protected; a protected branch cannot expire");
    }
    if (updated.parent.empty()) {
      return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                        " is the root branch; it cannot expire");
    }
    if (HasChildren(project, id)) {
      return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                        " has child branches; it cannot expire before them");
    }
  }
  if (updated.is_protected && updated.expire_time_us != 0 && !expiry) {
    return Status::FailedPrecondition("branch " + BranchName(project, id) +
                                      " expires; set spec.no_expiry to protect it");
  }
  if (expiry) {
    int64_t now = WallMicros();
    updated.expiry = expiry->expiry;
    updated.ttl_s = expiry->ttl_s;
    if (expiry->expiry == Expiry::kTtl) {
      if (expiry->ttl_s <= 0) return Status::InvalidArgument("ttl must be positive");
      updated.expire_time_us = now + expiry->ttl_s * 1'000'000;
    } else if (expiry->expiry == Expiry::kExpireTime) {
      if (expiry->expire_time_us <= now) {
        return Status::InvalidArgument("expire_time must be in the future");
      }
      updated.expire_time_us = expiry->expire_time_us;
    } else {
      updated.expire_time_us = 0;
    }
  }
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(updated)}));
  *b = updated;
  return Status::Ok();
}

Result<storage::Usage> Engine::BranchUsage(const std::string& project, const std::string& id) {
  TimelineId tl;
  {
    std::lock_guard l(mu_);
    ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, id));
    tl = b->timeline;
  }
  return store_->GetUsage(tl);
}

std::vector<std::string> Engine::ReapExpired(int64_t now_us) {
  std::vector<std::string> gone;
  std::set<BranchKey> failed;
  while (true) {
    // Children first: a branch with children waits for a later round of this loop.
    BranchKey next;
    {
      std::lock_guard l(mu_);
      for (const auto& [k, b] : catalog_.branches) {
        if (b.expire_time_us == 0 || b.expire_time_us > now_us || b.is_protected ||
            b.parent.empty() || HasChildren(b.project, b.id) || busy_.count(k) || failed.count(k) ||
            !SnapshotsOfLocked(b.project, b.id, b.timeline).empty()) {
          continue;
        }
        next = k;
        break;
      }
    }
    if (next.first.empty()) break;
    const auto& [project, id] = next;
    Status st = DeleteBranchImpl(project, id, now_us);
    if (st.ok()) {
      log::info("engine: branch {} expired and was deleted", BranchName(project, id));
      gone.push_back(BranchName(project, id));
      std::lock_guard m(metrics_mu_);
      ++branches_expired_[project];
    } else {
      log::warn("engine: expired branch {}: {}", BranchName(project, id), st.ToString());
      failed.insert(next);
    }
  }
  // Expired snapshots, but those that branches were made from (they wait for them).
  std::lock_guard l(mu_);
  PruneCountersLocked();
  std::vector<SnapshotRecord> expired;
  for (const auto& [k, s] : catalog_.snapshots) {
    if (s.expire_time_us != 0 && s.expire_time_us <= now_us) expired.push_back(s);
  }
  for (const SnapshotRecord& s : expired) {
    std::string name = BranchName(s.project, s.branch) + "/snapshots/" + s.id;
    if (!BranchesForkedFromLocked(s.project, s.timeline).empty()) continue;
    Status st = EraseSnapshotLocked(s.project, s.branch, s.id);
    if (st.ok()) {
      log::info("engine: snapshot {} expired and was deleted", name);
      gone.push_back(name);
    } else {
      log::warn("engine: expired snapshot {}: {}", name, st.ToString());
    }
  }
  return gone;
}

// ---- endpoints ----

Result<uint16_t> Engine::AllocatePort() const {
  std::set<uint16_t> used, reserved;
  for (const auto& [k, e] : catalog_.endpoints) used.insert(e.port);
  // A deleted branch's ports stay its own until it is purged, so an undelete gets them back;
  // unless every other port is taken: then a live endpoint comes first, and the undelete gives
  // the deleted branch a new port (and says so).
  for (const auto& [k, d] : catalog_.deleted_branches) {
    for (const auto& e : d.endpoints) reserved.insert(e.port);
  }
  for (uint32_t p = options_.port_lo; p <= options_.port_hi; ++p) {
    auto port = static_cast<uint16_t>(p);
    if (!used.count(port) && !reserved.count(port)) return port;
  }
  for (uint32_t p = options_.port_lo; p <= options_.port_hi; ++p) {
    if (!used.count(static_cast<uint16_t>(p))) return static_cast<uint16_t>(p);
  }
  return Status::ResourceExhausted("every endpoint port in " + std::to_string(options_.port_lo) +
                                   "-" + std::to_string(options_.port_hi) + " is taken");
}

Result<EndpointRecord> Engine::NewEndpointLocked(const std::string& project,
                                                 const std::string& branch, const std::string& id,
                                                 int64_t suspend_timeout_s, bool no_suspension,
                                                 bool pinned, bool replica) {
  ARBOR_RETURN_IF_ERROR(ValidateId("endpoint", id));
  if (catalog_.endpoints.count({project, branch, id})) {
    return Status::AlreadyExists("endpoint " + BranchName(project, branch) + "/endpoints/" + id +
                                 " already exists");
  }
  for (const auto& [k, e] : catalog_.endpoints) {
    if (!pinned && !replica && e.project == project && e.branch == branch && IsReadWrite(e)) {
      return Status::FailedPrecondition("branch " + BranchName(project, branch) +
                                        " already has a read-write endpoint (" + e.id + ")");
    }
  }
  if (suspend_timeout_s <= 0 && !no_suspension) {
    return Status::InvalidArgument("suspend_timeout_duration must be positive");
  }
  ARBOR_ASSIGN_OR_RETURN(uint16_t port, AllocatePort());
  EndpointRecord e;
  e.project = project;
  e.branch = branch;
  e.id = id;
  e.uid = NewUid("ep");
  e.create_time_us = WallMicros();
  e.port = port;
  e.suspend_timeout_s = suspend_timeout_s;
  e.no_suspension = no_suspension;
  e.pinned = pinned;
  e.replica = replica;
  // Its size is the project's default for it now; changing the default later does not
  // resize it (SetEndpointSize does). The default branch's primary is the exception: it
  // follows the project's default until it is given a size of its own.
  auto p = catalog_.projects.find(project);
  if (p != catalog_.projects.end() &&
      !(branch == p->second.default_branch && !pinned && !replica)) {
    e.size =
        p->second.branch_endpoint_size.set() ? p->second.branch_endpoint_size : kBranchComputeSize;
  }
  return e;
}

Result<EndpointRecord> Engine::CreateEndpoint(const std::string& project, const std::string& branch,
                                              const std::string& id, int64_t suspend_timeout_s,
                                              bool no_suspension, bool replica) {
  std::unique_lock l(mu_);
  ARBOR_RETURN_IF_ERROR(WaitBranchFreeLocked(l, project, branch));
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord e,
                         NewEndpointLocked(project, branch, id, suspend_timeout_s, no_suspension,
                                           /*pinned=*/false, replica));
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(e)}));
  catalog_.endpoints[{project, branch, id}] = e;
  if (ports_ != nullptr) ports_->Listen(e.port);
  return e;
}

Result<EndpointRecord> Engine::GetEndpoint(const std::string& project, const std::string& branch,
                                           const std::string& id) {
  std::lock_guard l(mu_);
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e, FindEndpoint(project, branch, id));
  return *e;
}

std::vector<EndpointRecord> Engine::ListEndpoints(const std::string& project,
                                                  const std::string& branch) {
  std::lock_guard l(mu_);
  std::vector<EndpointRecord> out;
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project == project && (branch.empty() || e.branch == branch)) out.push_back(e);
  }
  return out;
}

Status Engine::DeleteEndpoint(const std::string& project, const std::string& branch,
                              const std::string& id) {
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, branch, Work::kStopping));
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e, FindEndpoint(project, branch, id));
  for (const StopJob& job : StopEndpointsWithLock(l, {*e})) ARBOR_RETURN_IF_ERROR(job.status);
  ARBOR_ASSIGN_OR_RETURN(e, FindEndpoint(project, branch, id));
  if (e->pinned) return ErasePinnedEndpointLocked(*e);
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::EraseEndpoint(project, branch, id)}));
  if (ports_ != nullptr) ports_->Unlisten(e->port);
  ForgetActivity({project, branch, id});
  live_.erase({project, branch, id});
  catalog_.endpoints.erase({project, branch, id});
  return Status::Ok();
}

std::string Engine::ComputeId(const EndpointRecord& ep) const {
  return BranchName(ep.project, ep.branch) + "/endpoints/" + ep.id;
}

std::string Engine::EndpointDir(const std::string& kind, const EndpointRecord& ep) const {
  return options_.runtime_dir + "/" + kind + "/" + ep.uid;
}

// ---- busy branches ----

Result<Engine::BranchClaim> Engine::ClaimBranchLocked(std::unique_lock<std::mutex>& l,
                                                      const std::string& project,
                                                      const std::string& id, Work work) {
  ARBOR_RETURN_IF_ERROR(WaitBranchFreeLocked(l, project, id));
  busy_[{project, id}] = work;
  BranchClaim claim(this, {project, id});
  // A start or stop already under way finishes first; none begins while it is claimed
  // (but for roles, whose work needs no stopped compute).
  changed_.wait(l, [&] { return !EndpointsBusyLocked(project, id); });
  return claim;
}

void Engine::ReleaseBranchLocked(const BranchKey& key) {
  busy_.erase(key);
  changed_.notify_all();
}

Status Engine::WaitBranchFreeLocked(std::unique_lock<std::mutex>& l, const std::string& project,
                                    const std::string& id) {
  while (true) {
    ARBOR_RETURN_IF_ERROR(FindBranch(project, id).status());
    if (!busy_.count({project, id})) return Status::Ok();
    changed_.wait(l);
  }
}

bool Engine::EndpointsBusyLocked(const std::string& project, const std::string& branch) const {
  for (auto it = live_.lower_bound({project, branch, ""}); it != live_.end(); ++it) {
    const auto& [p, b, e] = it->first;
    if (p != project || b != branch) break;
    if (it->second.starting || it->second.stopping) return true;
  }
  return false;
}

std::string Engine::HbaFile() const { return options_.runtime_dir + "/run/pg_hba.conf"; }
std::string Engine::IdentFile() const { return options_.runtime_dir + "/run/pg_ident.conf"; }

Result<std::variant<EndpointState, Engine::StartPlan>> Engine::PlanStartLocked(
    const EndpointRecord& ep) {
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(ep.project, ep.branch));
  EndpointKey key{ep.project, ep.branch, ep.id};
  Live& live = live_[key];
  std::string cid = ComputeId(ep);
  if (live.running) {
    compute::ComputeState state = supervisor_->State(cid);
    if (state == compute::ComputeState::kRunning) {
      return std::variant<EndpointState, StartPlan>(
          EndpointState{true, false, "127.0.0.1", ep.port, live.socket_dir});
    }
    // It crashed: its data is intact by the crash-image rule; start it again.
    log::warn("engine: compute {} died; restarting it", cid);
    (void)supervisor_->Stop(cid, std::chrono::seconds(1));
    live.running = false;
  }
  StartPlan plan;
  plan.ep = ep;
  plan.timeline = ep.pinned ? ep.timeline : b->timeline;
  plan.read_only = ep.pinned || ep.replica;
  plan.replica = ep.replica;
  if (ep.replica) {
    // A fresh fork of the branch's head, every start: no data is copied, and the standby
    // streams what the primary writes after it. The record names the fork in the same
    // atomic write, so a crash leaves nothing that Open does not delete.
    EndpointRecord forked = ep;
    ARBOR_ASSIGN_OR_RETURN(forked.timeline,
                           store_->Branch(b->timeline, store_->Head(), [&](TimelineId tl) {
                             forked.timeline = tl;
                             return storage::MetaWrites{Catalog::Put(forked)};
                           }));
    catalog_.endpoints[key] = forked;
    plan.ep = forked;
    plan.timeline = forked.timeline;
  }
  plan.mount = std::move(live.mount);  // RunStart mounts if there is none
  plan.mountpoint = plan.mount ? live.mountpoint : EndpointDir("mnt", ep);
  auto project = catalog_.projects.find(ep.project);
  compute::ComputeSpec& spec = plan.spec;
  spec.id = cid;
  spec.pgdata = plan.mountpoint;
  spec.port = ep.port;
  spec.socket_dir = EndpointDir("run", ep);
  spec.log_file =
      options_.data_dir + "/logs/" + ep.project + "." + ep.branch + "." + ep.id + ".log";
  // Sized to the compute (docs/compute-sizes.md): its control group limits CPU to 1 CU within
  // its size at first (then the autoscaler follows its load) and memory to its largest;
  // PostgreSQL's memory settings and max_connections follow its largest size.
  plan.size = EffectiveSize(ep);
  // 1 CU within its size whatever the host holds: a start (recovery, the first queries'
  // catalog loads) is not slowed to a quarter core. The autoscaler fits it into the host
  // once it runs (Autoscale: smaller computes give back what the host cannot hold).
  plan.start_cu = StartCu(plan.size);
  plan.start_write_rate = OthersProtectedLocked(key) ? WriteRateFor(plan.start_cu) : 0;
  live.current_cu = plan.start_cu;  // held from now: counted while it starts
  spec.cgroup = ep.uid;
  spec.limits = LimitsFor(plan.size, plan.start_cu);
  // One process's allocations stop at the compute's memory, so a query over it gets
  // PostgreSQL's "out of memory" error instead of the kernel's OOM killer (docs/compute-sizes.md).
  spec.address_space_limit_bytes = spec.limits.memory_max_bytes;
  const PgSizing sizing = SizingFor(plan.size.max_cu);
  spec.shared_buffers = options_.shared_buffers.empty()
                            ? std::to_string(sizing.shared_buffers_mb) + "MB"
                            : options_.shared_buffers;
  spec.max_connections = sizing.max_connections;
  if (project != catalog_.projects.end()) {
    if (ep.pinned || ep.replica) {
      // A hot standby needs max_connections at least the value in the WAL it replays, which
      // any read-write compute of the project may have written (its branch's history starts
      // in its ancestors'): the largest the project has used.
      spec.max_connections = std::max(
          {spec.max_connections, project->second.max_connections_used, kLegacyMaxConnections});
    } else if (spec.max_connections > project->second.max_connections_used) {
      ProjectRecord raised = project->second;
      raised.max_connections_used = spec.max_connections;
      ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(raised)}));
      project->second = raised;
    }
  }
  spec.settings = {{"recovery_init_sync_method", "syncfs"},
                   {"wal_compression", "lz4"},
                   {"work_mem", std::to_string(sizing.work_mem_kb) + "kB"},
                   {"effective_cache_size", std::to_string(sizing.effective_cache_size_mb) + "MB"}};
  // No TCP: the proxy is the only way in, and the socket asks every login for its password.
  spec.listen_addresses = "";
  spec.settings.emplace_back("hba_file", HbaFile());
  spec.settings.emplace_back("ident_file", IdentFile());
  // Keeps owner's CREATEROLE from reaching the OS (docs/security.md). A command-line setting
  // outranks postgresql.conf and ALTER SYSTEM, so no branch's files can turn it off.
  if (!options_.guard_library.empty()) {
    spec.settings.emplace_back("shared_preload_libraries", options_.guard_library);
  }
  plan.owner_ready = b->owner_ready;
  if (plan.replica) {
    // A hot standby that never ends recovery: it replays its fork's WAL, then streams the
    // primary's over the primary's private socket, as Arbor's superuser by peer
    // authentication on a replication connection (Open's pg_hba.conf). With the primary
    // suspended it retries, and serves the branch's state meanwhile.
    spec.settings.emplace_back("hot_standby", "on");
    spec.settings.emplace_back("fsync", "off");  // its files are thrown away when it stops
    spec.settings.emplace_back("wal_retrieve_retry_interval", "1s");
    for (const auto& [k, e] : catalog_.endpoints) {
      if (e.project != ep.project || e.branch != ep.branch || !IsReadWrite(e)) continue;
      spec.settings.emplace_back(
          "primary_conninfo", "host=" + EndpointDir("run", e) + " port=" + std::to_string(e.port) +
                                  " user=" + compute::kSuperuser + " application_name=" + ep.uid);
    }
    return std::variant<EndpointState, StartPlan>(std::move(plan));
  }
  if (plan.read_only) {
    // A hot standby: it replays the WAL of its state, then serves it read-only, and never
    // ends recovery (nothing promotes it). Its roles must hold the passwords Arbor holds now
    // (StartStandby), so it gets all of them.
    spec.settings.emplace_back("hot_standby", "on");
    // Its files are thrown away with it: a restartpoint need not wait for the disk.
    spec.settings.emplace_back("fsync", "off");
    for (const auto& [k, r] : catalog_.roles) {
      if (r.project == ep.project && r.branch == ep.branch) plan.roles.push_back(r);
    }
    return std::variant<EndpointState, StartPlan>(std::move(plan));
  }
  for (const auto& [k, r] : catalog_.roles) {
    if (r.project == ep.project && r.branch == ep.branch && !r.applied) plan.roles.push_back(r);
  }
  return std::variant<EndpointState, StartPlan>(std::move(plan));
}

Status Engine::RunStart(StartPlan& plan) {
  Status st = [&]() -> Status {
    if (!plan.mount) {
      std::error_code ec;
      fs::create_directories(plan.mountpoint, ec);
      ARBOR_ASSIGN_OR_RETURN(plan.mount, mounter_->Mount(plan.timeline, plan.mountpoint));
    }
    plan.mount->SetWriteRate(plan.start_write_rate);
    // Everything the compute will see is made durable here, in one WAL fsync. So postgres's
    // pre-recovery fsync of every file in PGDATA is redundant, and syncfs (a no-op on FUSE)
    // replaces it: a branch's first start no longer opens and fsyncs each file.
    ARBOR_RETURN_IF_ERROR(store_->Sync(plan.timeline));
    if (plan.replica) return StartReplica(plan);
    if (plan.read_only) return StartStandby(plan);
    ARBOR_RETURN_IF_ERROR(PromoteAfterReplay(plan));
    ARBOR_RETURN_IF_ERROR(supervisor_->Start(plan.spec, options_.start_timeout));
    // No client gets in before its role holds the password Arbor checks it against.
    Status booted = Bootstrap(plan);
    if (!booted.ok()) (void)supervisor_->Stop(plan.spec.id, options_.stop_timeout);
    return booted;
  }();
  if (!st.ok()) plan.mount.reset();  // unmounts, here and not under the lock
  return st;
}

Result<EndpointState> Engine::FinishStartLocked(StartPlan& plan, Status started) {
  const EndpointRecord& ep = plan.ep;
  Live& live = live_[{ep.project, ep.branch, ep.id}];
  if (!started.ok()) {
    if (plan.replica) DropReplicaForkLocked(ep);
    return started;
  }
  live.mount = std::move(plan.mount);
  live.mountpoint = plan.mountpoint;
  live.socket_dir = plan.spec.socket_dir;
  live.running = true;
  live.started_us = WallMicros();
  live.started_size = plan.size;
  live.memory_cu = plan.size.max_cu;
  live.current_cu = plan.start_cu;
  live.throttle_sample_ns = 0;
  live.held = false;
  live.write_rate = plan.start_write_rate;
  // Protected from the others' writes until Autoscale sees whether it commits.
  live.syncing = true;
  live.fsyncs_seen = live.mount ? live.mount->Fsyncs() : 0;
  live.low_windows = 0;
  live.cpu_sample_us = 0;
  live.metered_us = live.started_us;
  live.written_timeline = TimelineId(0);
  if (IsReadWrite(ep)) {
    if (auto b = catalog_.branches.find({ep.project, ep.branch}); b != catalog_.branches.end()) {
      live.written_timeline = b->second.timeline;
      live.written_mark = store_->WrittenBytes(b->second.timeline);
    }
  }
  MarkRunningLocked(ep, true);
  RefreshWriteRatesLocked();  // the others' budgets bind now that it runs
  if (!plan.read_only) RecordBootstrapLocked(plan);
  return EndpointState{true, false, "127.0.0.1", ep.port, live.socket_dir};
}

Result<EndpointState> Engine::StartWithLock(std::unique_lock<std::mutex>& l,
                                            const std::string& project, const std::string& branch,
                                            const std::string& id, bool claimed) {
  EndpointKey key{project, branch, id};
  EndpointRecord* e = nullptr;
  {
    // A replica forks the branch's catalog, and its passwords must be the ones Arbor holds:
    // a change made while the primary was suspended is applied by starting the primary.
    ARBOR_ASSIGN_OR_RETURN(e, FindEndpoint(project, branch, id));
    bool pending = false;
    for (const auto& [k, r] : catalog_.roles) {
      if (r.project == project && r.branch == branch && !r.applied) pending = true;
    }
    if (e->replica && pending) {
      std::string primary;
      for (const auto& [k, other] : catalog_.endpoints) {
        if (other.project == project && other.branch == branch && IsReadWrite(other)) {
          primary = other.id;
        }
      }
      if (!primary.empty()) {
        ARBOR_RETURN_IF_ERROR(StartWithLock(l, project, branch, primary, claimed).status());
      }
    }
  }
  while (true) {
    ARBOR_ASSIGN_OR_RETURN(e, FindEndpoint(project, branch, id));
    auto busy = busy_.find({project, branch});
    if (!claimed && busy != busy_.end() && busy->second != Work::kRoles &&
        busy->second != Work::kDatabases) {
      if (busy->second == Work::kDeleting) {
        return Status::FailedPrecondition("branch " + BranchName(project, branch) +
                                          " is being deleted");
      }
      changed_.wait(l);  // stopped, reset or restored: start what it leaves
      continue;
    }
    auto it = live_.find(key);
    if (it == live_.end() || (!it->second.starting && !it->second.stopping)) break;
    changed_.wait(l);  // someone else is starting it (share that start) or stopping it
  }
  ARBOR_ASSIGN_OR_RETURN(auto planned, PlanStartLocked(*e));
  if (auto* running = std::get_if<EndpointState>(&planned)) return *running;
  // The slow part (mount, sync, postgres's start and recovery) runs without the lock, so the
  // API answers meanwhile (the endpoint shows STARTING) and other endpoints start in
  // parallel. Claims of its branch wait for it (ClaimBranchLocked).
  StartPlan& plan = std::get<StartPlan>(planned);
  live_[key].starting = true;
  RefreshWriteRatesLocked();  // the others' budgets bind while it starts
  Status st = Unlocked(l, [&] { return RunStart(plan); });
  live_[key].starting = false;
  if (st.ok()) {
    CountStart(key);
  } else {
    RefreshWriteRatesLocked();  // nothing started: the others' budgets as before
  }
  return FinishStartLocked(plan, st);
}

void Engine::MarkRunningLocked(const EndpointRecord& ep, bool running) {
  auto it = catalog_.endpoints.find({ep.project, ep.branch, ep.id});
  if (it == catalog_.endpoints.end() || it->second.running == running) return;
  EndpointRecord updated = it->second;
  updated.running = running;
  Status st = store_->WriteMeta({Catalog::Put(updated)});
  if (!st.ok()) {
    log::warn("engine: recording the state of {}: {}", ComputeId(ep), st.ToString());
    return;
  }
  it->second = updated;
}

void Engine::RestartRunning() {
  std::vector<EndpointRecord> was_running;
  {
    std::lock_guard l(mu_);
    for (const auto& [k, e] : catalog_.endpoints) {
      if (e.running) was_running.push_back(e);
    }
  }
  for (const EndpointRecord& e : was_running) {
    auto st = StartEndpoint(e.project, e.branch, e.id);
    if (!st.ok()) log::warn("engine: restarting {}: {}", ComputeId(e), st.status().ToString());
  }
}

std::vector<EndpointRecord> Engine::BranchEndpointsLocked(const std::string& project,
                                                          const std::string& branch) const {
  std::vector<EndpointRecord> out;
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project == project && e.branch == branch) out.push_back(e);
  }
  return out;
}

std::vector<Engine::StopJob> Engine::PlanStopsLocked(const std::vector<EndpointRecord>& eps) {
  std::vector<StopJob> jobs;
  for (const EndpointRecord& ep : eps) {
    auto it = live_.find({ep.project, ep.branch, ep.id});
    if (it == live_.end() || (!it->second.running && !it->second.mount)) continue;
    StopJob job;
    job.ep = ep;
    job.was_running = it->second.running;
    if (it->second.running) MeterLocked(it->first, it->second, WallMicros());
    if (job.mount = std::move(it->second.mount); job.mount) {
      job.write_throttled_ns = job.mount->WriteThrottledNanos();
      it->second.write_throttled_ns += job.write_throttled_ns;
    }
    it->second.running = false;
    it->second.stopping = true;
    jobs.push_back(std::move(job));
  }
  return jobs;
}

void Engine::RunStops(std::vector<StopJob>& jobs) {
  for (StopJob& job : jobs) {
    // What a stopping compute still writes (its shutdown checkpoint, or pages a discarded
    // one leaves dirty) does not wait for its budget: a stop, and the delete or reset behind
    // it, would wait for it.
    if (job.mount) job.mount->SetWriteRate(0);
    // A discarded compute stops at once, without its shutdown checkpoint: what it fsynced
    // is in the store, and the pages the kernel still holds dirty are of no use (its
    // timeline goes, or it starts again as after a crash). Written back as its processes
    // closed their files, they took a reset 1.4-1.6 s after the branch wrote 50 MB
    // (bench/load_held_bench.sh). Dropped before the stop, with every fsync failing from
    // here on, so no commit it still makes is acknowledged.
    if (job.discard && job.mount) job.mount->DiscardWrites();
    if (job.was_running) {
      // A pinned endpoint's files are thrown away: no shutdown checkpoint.
      job.status =
          supervisor_->Stop(ComputeId(job.ep), job.discard || job.ep.pinned || job.ep.replica
                                                   ? std::chrono::milliseconds(0)
                                                   : options_.stop_timeout);
      if (job.status.code() == Code::kNotFound) job.status = Status::Ok();
    }
    if (!job.status.ok()) {
      log::warn("engine: stopping {}: {}", ComputeId(job.ep), job.status.ToString());
    }
    // A discarded compute's mount goes even if its stop failed: it drops writes and fails
    // fsync now, so it must never serve again (the compute, if it lives, sees its files gone,
    // as after Arbor was killed; its state is thrown away or starts again as after a crash).
    if (job.status.ok() || job.discard) job.mount.reset();  // unmounts
  }
}

void Engine::FinishStopsLocked(std::vector<StopJob>& jobs) {
  for (StopJob& job : jobs) {
    auto it = live_.find({job.ep.project, job.ep.branch, job.ep.id});
    if (it == live_.end()) continue;
    it->second.stopping = false;
    if (!job.status.ok() && !job.discard) {
      it->second.running = job.was_running;
      it->second.mount = std::move(job.mount);
      it->second.write_throttled_ns -= job.write_throttled_ns;  // counted with the mount again
    } else if (job.ep.replica) {
      DropReplicaForkLocked(job.ep);
    }
  }
  RefreshWriteRatesLocked();  // a compute left alone writes unlimited again
  changed_.notify_all();
}

std::vector<Engine::StopJob> Engine::StopEndpointsWithLock(std::unique_lock<std::mutex>& l,
                                                           const std::vector<EndpointRecord>& eps,
                                                           bool discard) {
  std::vector<StopJob> jobs = PlanStopsLocked(eps);
  if (jobs.empty()) return jobs;
  for (StopJob& job : jobs) job.discard = discard;
  Unlocked(l, [&] {
    RunStops(jobs);
    return 0;
  });
  FinishStopsLocked(jobs);
  return jobs;
}

Result<EndpointState> Engine::StartEndpoint(const std::string& project, const std::string& branch,
                                            const std::string& id) {
  std::unique_lock l(mu_);
  return StartWithLock(l, project, branch, id, /*claimed=*/false);
}

Status Engine::StopEndpoint(const std::string& project, const std::string& branch,
                            const std::string& id) {
  std::unique_lock l(mu_);
  ARBOR_ASSIGN_OR_RETURN(BranchClaim claim, ClaimBranchLocked(l, project, branch, Work::kStopping));
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e, FindEndpoint(project, branch, id));
  EndpointRecord ep = *e;
  for (const StopJob& job : StopEndpointsWithLock(l, {ep})) ARBOR_RETURN_IF_ERROR(job.status);
  MarkRunningLocked(ep, false);
  return Status::Ok();
}

Result<EndpointState> Engine::GetEndpointState(const std::string& project,
                                               const std::string& branch, const std::string& id) {
  std::lock_guard l(mu_);
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e, FindEndpoint(project, branch, id));
  EndpointState s;
  s.port = e->port;
  auto it = live_.find({project, branch, id});
  if (it != live_.end() && it->second.running) {
    s.running = supervisor_->State(ComputeId(*e)) == compute::ComputeState::kRunning;
    s.socket_dir = it->second.socket_dir;
    s.current_cu = it->second.current_cu;
  }
  s.starting = it != live_.end() && it->second.starting;
  // A stop under way shows as running until it is done: not running means stopped and
  // unmounted, as it did when stops held the lock.
  if (it != live_.end() && it->second.stopping) s.running = true;
  return s;
}

Result<std::string> Engine::ConnectionString(const std::string& project, const std::string& branch,
                                             const std::string& endpoint) {
  std::lock_guard l(mu_);
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e, FindEndpoint(project, branch, endpoint));
  return "postgresql://" + std::string(compute::kOwnerRole) +
         "@127.0.0.1:" + std::to_string(e->port) + "/postgres";
}

void Engine::SetPortListener(PortListener* listener) {
  std::lock_guard l(mu_);
  ports_ = listener;
  if (ports_ == nullptr) return;
  for (const auto& [k, e] : catalog_.endpoints) ports_->Listen(e.port);
}

Result<EndpointRecord> Engine::EndpointAtPort(uint16_t port) {
  std::lock_guard l(mu_);
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.port == port) return e;
  }
  return Status::NotFound("no endpoint has port " + std::to_string(port));
}

Result<std::string> Engine::Wake(const std::string& project, const std::string& branch,
                                 const std::string& id) {
  // A wake is a client's wait for a start (its own or one it shares); the histogram holds
  // how long the client waited.
  const EndpointKey key{project, branch, id};
  const uint64_t starts_before = StartsOf(key);
  const auto t0 = std::chrono::steady_clock::now();
  ARBOR_ASSIGN_OR_RETURN(EndpointState st, StartEndpoint(project, branch, id));
  if (StartsOf(key) != starts_before) {
    std::chrono::duration<double> waited = std::chrono::steady_clock::now() - t0;
    std::lock_guard m(metrics_mu_);
    EndpointCounters& c = counters_[key];
    ++c.wakes;
    c.wake_seconds.Observe(waited.count());
  }
  return st.socket_dir + "/.s.PGSQL." + std::to_string(st.port);
}

Result<RoleRecord> Engine::RoleForLogin(const std::string& project, const std::string& branch,
                                        const std::string& role) {
  std::lock_guard l(mu_);
  auto it = catalog_.roles.find({project, branch, role});
  if (it == catalog_.roles.end()) return Status::NotFound("no password of role " + role);
  return it->second;
}

void Engine::ConnectionOpened(const std::string& project, const std::string& branch,
                              const std::string& id) {
  std::lock_guard l(activity_mu_);
  ++activity_[{project, branch, id}].connections;
}

void Engine::ConnectionClosed(const std::string& project, const std::string& branch,
                              const std::string& id) {
  std::lock_guard l(activity_mu_);
  Activity& a = activity_[{project, branch, id}];
  if (a.connections > 0) --a.connections;
  a.last_close_us = WallMicros();
}

void Engine::ForgetActivity(const EndpointKey& key) {
  std::lock_guard l(activity_mu_);
  auto it = activity_.find(key);
  // Connections still open (to a compute now stopped) report their close later.
  if (it != activity_.end() && it->second.connections == 0) activity_.erase(it);
}

std::vector<std::string> Engine::SuspendIdle(int64_t now_us) {
  std::unique_lock l(mu_);
  std::vector<EndpointKey> keys;
  for (const auto& [k, live] : live_) {
    if (live.running) keys.push_back(k);
  }
  std::vector<std::string> suspended;
  // One at a time, each claimed only for its own stop: a slow stop holds up no other endpoint.
  for (const EndpointKey& k : keys) {
    auto live = live_.find(k);
    if (live == live_.end() || !live->second.running) continue;
    auto e = catalog_.endpoints.find(k);
    if (e == catalog_.endpoints.end() || e->second.no_suspension) continue;
    EndpointRecord ep = e->second;
    // Another operation works on it: next time.
    if (busy_.count({ep.project, ep.branch}) || EndpointsBusyLocked(ep.project, ep.branch)) {
      continue;
    }
    int64_t idle_since = live->second.started_us;
    {
      std::lock_guard a(activity_mu_);
      auto it = activity_.find(k);
      if (it != activity_.end()) {
        if (it->second.connections > 0) continue;
        idle_since = std::max(idle_since, it->second.last_close_us);
      }
    }
    if (now_us - idle_since < ep.suspend_timeout_s * 1'000'000) continue;
    // A login meanwhile waits for the stop, then starts the endpoint again.
    busy_[{ep.project, ep.branch}] = Work::kStopping;
    BranchClaim claim(this, {ep.project, ep.branch});
    std::vector<StopJob> jobs = StopEndpointsWithLock(l, {ep});
    if (jobs.empty() || !jobs.front().status.ok()) continue;
    if (ep.pinned) {
      Status st = ErasePinnedEndpointLocked(ep);
      if (!st.ok()) log::warn("engine: deleting idle {}: {}", ComputeId(ep), st.ToString());
      log::info("engine: {} was idle for {} s; deleted", ComputeId(ep), ep.suspend_timeout_s);
      suspended.push_back(ComputeId(ep));
      continue;
    }
    MarkRunningLocked(ep, false);
    log::info("engine: {} was idle for {} s; suspended", ComputeId(ep), ep.suspend_timeout_s);
    suspended.push_back(ComputeId(ep));
  }
  ReapIdlePinnedLocked(now_us, &suspended);
  return suspended;
}

void Engine::RestartLaterLocked(const std::string& project, const std::string& branch,
                                const std::vector<StopJob>& stopped, bool skip_read_write) {
  std::vector<std::string> ids;
  for (const StopJob& job : stopped) {
    if (!job.was_running || job.ep.pinned) continue;
    if (skip_read_write && IsReadWrite(job.ep)) continue;
    if (!job.ep.no_suspension) {
      MarkRunningLocked(job.ep, false);  // as a suspended one: a restarted daemon leaves it
      continue;
    }
    ids.push_back(job.ep.id);
  }
  // Threads of earlier restarts that have ended are joined here, so they do not pile up.
  std::erase_if(restarts_, [](Restart& r) {
    if (!r.done->load()) return false;
    r.thread.join();
    return true;
  });
  if (ids.empty() || shutting_down_) return;
  auto done = std::make_shared<std::atomic<bool>>(false);
  restarts_.push_back({std::thread([this, project, branch, ids, done] {
                         RestartEndpoints(project, branch, ids);
                         done->store(true);
                       }),
                       done});
}

void Engine::RestartEndpoints(const std::string& project, const std::string& branch,
                              const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    {
      std::lock_guard l(mu_);
      if (shutting_down_) return;
    }
    // Waits for the reset's claim to end; a start that a client's connection began meanwhile
    // is joined, not repeated.
    auto started = StartEndpoint(project, branch, id);
    if (!started.ok()) {
      log::warn("engine: starting {}/{}/{} again after its branch's new state: {}", project, branch,
                id, started.status().ToString());
    }
  }
}

void Engine::Shutdown() {
  std::vector<Restart> restarts;
  {
    std::lock_guard l(mu_);
    shutting_down_ = true;
    restarts.swap(restarts_);
  }
  for (Restart& r : restarts) r.thread.join();
  std::unique_lock l(mu_);
  // Operations under way finish first (the API and the proxy are stopped by now); each is
  // bounded by its own timeouts.
  changed_.wait(l, [this] { return unlocked_ == 0 && busy_.empty(); });
  const int64_t now = WallMicros();
  for (auto& [k, live] : live_) MeterLocked(k, live, now);
  FlushUsageLocked();
  // Their fast shutdowns overlap, and none can hold the daemon past the bound. They stay
  // marked running in the catalog, so that RestartRunning brings them back.
  supervisor_->StopAll(options_.shutdown_timeout);
  // A CHECKPOINT a fork stopped waiting for ends with its compute (the stop above ends its
  // connection); its thread then gives back its budgets, which is all it touches.
  changed_.wait(l, [this] { return background_checkpoints_ == 0; });
  for (auto& [k, live] : live_) {
    live.running = false;
    live.mount.reset();  // a bounded unmount
  }
  live_.clear();
}

}  // namespace arbor::control
