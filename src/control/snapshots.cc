// Snapshots: the Engine's snapshot methods. See engine.h ("snapshots") for the contract.
//
// A snapshot is a catalog record (snapshot/P/B/S) and a timeline forked from its branch's
// timeline, written in one atomic store write. Nothing writes to that timeline, so it holds
// the branch's state at the fork point for as long as it exists: the store's GC keeps every
// version a fork point needs, whatever the history window. A branch made from a snapshot is a
// child of the snapshot's timeline, at its (never changing) head.
#include <ctime>

#include "common/clock.h"
#include "common/log.h"
#include "control/engine.h"

namespace arbor::control {
namespace {

std::string BranchName(const std::string& p, const std::string& b) {
  return "projects/" + p + "/branches/" + b;
}

std::string SnapshotName(const std::string& p, const std::string& b, const std::string& s) {
  return BranchName(p, b) + "/snapshots/" + s;
}

// scheduled-YYYYMMDDtHHMMSSz (ids are lowercase).
std::string ScheduledId(int64_t us) {
  time_t secs = us / 1'000'000;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dt%H%M%Sz", &tm);
  return std::string("scheduled-") + buf;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

}  // namespace

Result<SnapshotRecord> Engine::CreateSnapshot(const std::string& project, const std::string& branch,
                                              const std::string& id,
                                              const SnapshotRequest& request) {
  ARBOR_RETURN_IF_ERROR(ValidateId("snapshot", id));
  std::unique_lock l(mu_);
  auto key = std::make_tuple(project, branch, id);
  auto branch_ok = [&]() -> Status {
    ARBOR_RETURN_IF_ERROR(FindBranch(project, branch).status());
    auto busy = busy_.find({project, branch});
    if (busy != busy_.end() && busy->second == Work::kDeleting) {
      return Status::FailedPrecondition("branch " + BranchName(project, branch) +
                                        " is being deleted");
    }
    return Status::Ok();
  };
  ARBOR_RETURN_IF_ERROR(branch_ok());
  if (catalog_.snapshots.count(key) || creating_snapshots_.count(key)) {
    return Status::AlreadyExists("snapshot " + SnapshotName(project, branch, id) +
                                 " already exists");
  }
  int64_t now = request.now_us ? request.now_us : WallMicros();
  if (request.expiry == Expiry::kExpireTime && request.expire_time_us <= now) {
    return Status::InvalidArgument("expire_time must be in the future");
  }
  if (request.expiry == Expiry::kTtl && request.ttl_s <= 0) {
    return Status::InvalidArgument("ttl must be positive");
  }
  // At the head, the branch's running compute is checkpointed first (without the lock, the
  // name reserved meanwhile), so a branch made from the snapshot has little to redo.
  if (!request.time_us) {
    LiftedBudgets lifted{this, {}};
    std::vector<std::string> targets = CheckpointTargetsLocked(project, branch, &lifted.keys);
    if (!targets.empty()) {
      creating_snapshots_.insert(key);
      Unlocked(l, [&] {
        Checkpoint(targets);
        return 0;
      });
      creating_snapshots_.erase(key);
      ARBOR_RETURN_IF_ERROR(branch_ok());
    }
  }
  ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, branch));
  int64_t fork_time = 0;
  ARBOR_ASSIGN_OR_RETURN(Seq at, ForkPointLocked(*b, request.time_us, std::nullopt, &fork_time));
  SnapshotRecord snap;
  snap.project = project;
  snap.branch = branch;
  snap.id = id;
  snap.uid = NewUid("snap");
  snap.create_time_us = now;
  snap.source_timeline = b->timeline;
  snap.source_time_us = fork_time;
  snap.requested_time = request.time_us.has_value();
  snap.scheduled = request.scheduled;
  snap.expiry = request.expiry;
  snap.ttl_s = request.ttl_s;
  snap.expire_time_us = request.expiry == Expiry::kTtl          ? now + request.ttl_s * 1'000'000
                        : request.expiry == Expiry::kExpireTime ? request.expire_time_us
                                                                : 0;
  ARBOR_ASSIGN_OR_RETURN(snap.timeline, store_->Branch(b->timeline, at, [&](TimelineId tl) {
    snap.timeline = tl;
    return storage::MetaWrites{Catalog::Put(snap)};
  }));
  catalog_.snapshots[key] = snap;
  return snap;
}

Result<SnapshotRecord> Engine::GetSnapshot(const std::string& project, const std::string& branch,
                                           const std::string& id) {
  std::lock_guard l(mu_);
  ARBOR_RETURN_IF_ERROR(FindBranch(project, branch).status());
  auto it = catalog_.snapshots.find({project, branch, id});
  if (it == catalog_.snapshots.end()) {
    return Status::NotFound("snapshot " + SnapshotName(project, branch, id) + " does not exist");
  }
  return it->second;
}

Result<std::vector<SnapshotRecord>> Engine::ListSnapshots(const std::string& project,
                                                          const std::string& branch) {
  std::lock_guard l(mu_);
  if (!catalog_.projects.count(project)) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  if (!branch.empty()) ARBOR_RETURN_IF_ERROR(FindBranch(project, branch).status());
  std::vector<SnapshotRecord> out;
  for (const auto& [k, s] : catalog_.snapshots) {
    if (s.project == project && (branch.empty() || s.branch == branch)) out.push_back(s);
  }
  std::stable_sort(out.begin(), out.end(), [](const SnapshotRecord& a, const SnapshotRecord& b) {
    return a.create_time_us < b.create_time_us;
  });
  return out;
}

Status Engine::DeleteSnapshot(const std::string& project, const std::string& branch,
                              const std::string& id) {
  std::lock_guard l(mu_);
  ARBOR_RETURN_IF_ERROR(FindBranch(project, branch).status());
  return EraseSnapshotLocked(project, branch, id);
}

Result<storage::ExclusiveSize> Engine::SnapshotExclusiveSize(const std::string& project,
                                                             const std::string& branch,
                                                             const std::string& id) {
  ARBOR_ASSIGN_OR_RETURN(SnapshotRecord s, GetSnapshot(project, branch, id));
  ARBOR_ASSIGN_OR_RETURN(auto sizes, store_->ExclusiveSizes(s.source_timeline));
  auto it = sizes.find(s.timeline);
  return it == sizes.end() ? storage::ExclusiveSize{} : it->second;
}

std::vector<std::string> Engine::BranchesForkedFromLocked(const std::string& project,
                                                          TimelineId tl) const {
  std::vector<std::string> out;
  for (const auto& [k, b] : catalog_.branches) {
    if (b.project != project) continue;
    auto info = store_->GetTimeline(b.timeline);
    if (info.ok() && info->parent == tl) out.push_back(BranchName(project, b.id));
  }
  return out;
}

bool Engine::TimelineUsedLocked(TimelineId tl) const {
  for (const auto& [k, b] : catalog_.branches) {
    if (b.timeline == tl) return true;
  }
  for (const auto& [k, e] : catalog_.endpoints) {
    if ((e.pinned || e.replica) && e.timeline == tl) return true;
  }
  for (const auto& [k, s] : catalog_.snapshots) {
    if (s.timeline == tl) return true;
  }
  for (const auto& [k, d] : catalog_.deleted_branches) {
    if (d.branch.timeline == tl) return true;
  }
  return false;
}

std::vector<std::string> Engine::SnapshotsOfLocked(const std::string& project,
                                                   const std::string& id, TimelineId tl) const {
  std::vector<std::string> out;
  for (const auto& [k, s] : catalog_.snapshots) {
    if (s.project == project && (s.branch == id || s.source_timeline == tl)) {
      out.push_back(SnapshotName(project, s.branch, s.id));
    }
  }
  return out;
}

Status Engine::EraseSnapshotLocked(const std::string& project, const std::string& branch,
                                   const std::string& id) {
  auto it = catalog_.snapshots.find({project, branch, id});
  if (it == catalog_.snapshots.end()) {
    return Status::NotFound("snapshot " + SnapshotName(project, branch, id) + " does not exist");
  }
  const SnapshotRecord s = it->second;
  std::vector<std::string> children = BranchesForkedFromLocked(project, s.timeline);
  if (!children.empty()) {
    return Status::FailedPrecondition("snapshot " + SnapshotName(project, branch, id) +
                                      " has branches made from it (" + JoinNames(children) +
                                      "); delete them first");
  }
  storage::MetaWrites writes{Catalog::EraseSnapshot(project, branch, id)};
  bool held = false;  // deleted branches made from it still need its timeline
  for (const auto& t : store_->ListTimelines()) held |= t.parent == s.timeline;
  if (held) {
    // The record goes now; the timeline goes with the last deleted branch made from it, when
    // that is purged (PurgeDeletedLocked) or undeleted and deleted for good.
    ARBOR_RETURN_IF_ERROR(store_->WriteMeta(writes));
    catalog_.snapshots.erase(it);
    log::info(
        "engine: snapshot {} deleted; its data stays until the deleted branches made "
        "from it are purged",
        SnapshotName(project, branch, id));
    return Status::Ok();
  }
  Status st = store_->DeleteTimeline(s.timeline, writes);
  if (st.code() == Code::kNotFound) st = store_->WriteMeta(writes);
  ARBOR_RETURN_IF_ERROR(st);
  catalog_.snapshots.erase(it);
  // A branch's former timeline, kept across a reset only for its snapshots, goes with the
  // last of them (and so on up, for a chain of such timelines).
  DeleteUnusedAncestorsLocked(s.source_timeline);
  return Status::Ok();
}

void Engine::DeleteUnusedAncestorsLocked(TimelineId up) {
  while (up.value() != 0 && !TimelineUsedLocked(up)) {
    auto info = store_->GetTimeline(up);
    if (!info.ok()) break;
    bool has_children = false;
    for (const auto& t : store_->ListTimelines()) has_children |= t.parent == up;
    if (has_children) break;
    Status del = store_->DeleteTimeline(up);
    if (!del.ok()) {
      log::warn("engine: deleting unused timeline {}: {}", up.value(), del.ToString());
      break;
    }
    up = info->parent;
  }
}

Status Engine::SetSnapshotSchedule(const std::string& project, const SnapshotSchedule& schedule) {
  std::lock_guard l(mu_);
  auto it = catalog_.projects.find(project);
  if (it == catalog_.projects.end()) {
    return Status::NotFound("project projects/" + project + " does not exist");
  }
  if (schedule.every_s != 0) {
    if (schedule.every_s < kMinScheduleEveryS) {
      return Status::InvalidArgument("snapshot_schedule.every must be at least " +
                                     std::to_string(kMinScheduleEveryS) + "s, not " +
                                     std::to_string(schedule.every_s) + "s");
    }
    if (schedule.keep < 1) {
      return Status::InvalidArgument("snapshot_schedule.keep must be at least 1");
    }
    ARBOR_RETURN_IF_ERROR(FindBranch(project, schedule.branch).status());
  }
  ProjectRecord updated = it->second;
  updated.snapshot_schedule = schedule.every_s ? schedule : SnapshotSchedule{};
  ARBOR_RETURN_IF_ERROR(store_->WriteMeta({Catalog::Put(updated)}));
  it->second = updated;
  return Status::Ok();
}

std::vector<std::string> Engine::RunSnapshotSchedules(int64_t now_us) {
  std::vector<std::pair<std::string, SnapshotSchedule>> schedules;
  {
    std::lock_guard l(mu_);
    for (const auto& [id, p] : catalog_.projects) {
      if (p.snapshot_schedule.every_s > 0) schedules.emplace_back(id, p.snapshot_schedule);
    }
  }
  std::vector<std::string> out;
  for (const auto& [project, sched] : schedules) {
    auto scheduled = [&]() {
      std::vector<SnapshotRecord> v;
      auto all = ListSnapshots(project, sched.branch);
      if (all.ok()) {
        for (const SnapshotRecord& s : *all) {
          if (s.scheduled) v.push_back(s);
        }
      }
      return v;  // oldest first
    };
    std::vector<SnapshotRecord> taken = scheduled();
    if (taken.empty() || now_us - taken.back().create_time_us >= sched.every_s * 1'000'000) {
      std::string id = ScheduledId(now_us);
      SnapshotRequest r;
      r.scheduled = true;
      r.now_us = now_us;  // the schedule's clock (tests step it): the next is due `every` after
      auto made = CreateSnapshot(project, sched.branch, id, r);
      if (made.ok()) {
        log::info("engine: took scheduled snapshot {}", SnapshotName(project, sched.branch, id));
        out.push_back(SnapshotName(project, sched.branch, id));
      } else if (made.status().code() != Code::kAlreadyExists) {
        log::warn("engine: scheduled snapshot of {}: {}", BranchName(project, sched.branch),
                  made.status().ToString());
      }
      taken = scheduled();
    }
    for (size_t i = 0; i + sched.keep < taken.size(); ++i) {
      std::lock_guard l(mu_);
      Status st = EraseSnapshotLocked(project, sched.branch, taken[i].id);
      if (st.ok()) {
        log::info("engine: deleted scheduled snapshot {} (keep {})",
                  SnapshotName(project, sched.branch, taken[i].id), sched.keep);
        out.push_back(SnapshotName(project, sched.branch, taken[i].id));
      } else if (st.code() != Code::kNotFound) {
        log::warn("engine: old scheduled snapshot {}: {}",
                  SnapshotName(project, sched.branch, taken[i].id), st.ToString());
      }
    }
  }
  return out;
}

}  // namespace arbor::control
