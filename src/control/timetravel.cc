// Time travel: read-only endpoints pinned at a point of their branch's history (engine.h).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <string_view>

#include "api/names.h"
#include "common/clock.h"
#include "common/log.h"
#include "control/engine.h"
#include "fs/wal.h"
#include "proxy/auth/scram.h"

namespace arbor::control {
namespace {

std::string BranchName(const std::string& p, const std::string& b) {
  return "projects/" + p + "/branches/" + b;
}

}  // namespace

namespace {

// The head of pg_control (ControlFileData): u64 system identifier, u32 version, u32 catalog
// version, then DBState at byte 16; checkPointCopy.redo at byte 40 and its ThisTimeLineID at
// byte 48.
struct ControlHead {
  uint32_t state;
  uint64_t redo;
  uint32_t tli;
};

Result<ControlHead> ReadControl(const std::string& pgdata) {
  std::string control = pgdata + "/global/pg_control";
  int fd = open(control.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::FailedPrecondition("the branch holds no PostgreSQL cluster at that point (" +
                                      control + ": " + std::strerror(errno) + ")");
  }
  unsigned char head[52];
  ssize_t n = read(fd, head, sizeof head);
  close(fd);
  if (n != static_cast<ssize_t>(sizeof head)) {
    return Status::FailedPrecondition("the branch's pg_control at that point is incomplete");
  }
  ControlHead out;
  std::memcpy(&out.state, head + 16, 4);
  std::memcpy(&out.redo, head + 40, 8);
  std::memcpy(&out.tli, head + 48, 4);
  return out;
}

Result<uint32_t> ClusterState(const std::string& pgdata) {
  ARBOR_ASSIGN_OR_RETURN(ControlHead c, ReadControl(pgdata));
  return c.state;
}

// The empty file `name` in PGDATA, owned as PGDATA is (postgres removes it); `present` false
// removes it.
Status SignalFile(const std::string& pgdata, const std::string& name, bool present) {
  std::string path = pgdata + "/" + name;
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

Status StandbySignal(const std::string& pgdata, bool present) {
  return SignalFile(pgdata, "standby.signal", present);
}

// True if the replay of PGDATA after a crash, from the redo point of its last checkpoint
// (`control`), ends in the WAL segment where it starts. It does not if the next segment holds
// WAL that follows it, or if a later PostgreSQL timeline began after that checkpoint (a
// promotion whose spread checkpoint never completed). False when in doubt.
bool ReplayStaysInOneSegment(const std::string& pgdata, const ControlHead& control) {
  if (control.tli == 0 || control.tli == ~uint32_t{0}) return false;
  char history[32];
  snprintf(history, sizeof history, "%08X.history", control.tli + 1);
  struct stat st;
  if (lstat((pgdata + "/pg_wal/" + history).c_str(), &st) == 0) return false;
  uint64_t next = (control.redo / fs::kWalSegmentSize + 1) * fs::kWalSegmentSize;
  int fd = open((pgdata + "/pg_wal/" + fs::WalFileName(control.tli, next)).c_str(),
                O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return errno == ENOENT;
  char head[16];
  ssize_t n = pread(fd, head, sizeof head, 0);
  close(fd);
  if (n < 0) return false;
  return !fs::StartsWalSegment(std::span<const char>(head, static_cast<size_t>(n)), next);
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

Status Engine::PromoteAfterReplay(StartPlan& plan) {
  const std::string& pgdata = plan.mountpoint;
  constexpr uint32_t kShutdowned = 1;  // DB_SHUTDOWNED
  auto control = ReadControl(pgdata);
  if (!control.ok() || control->state == kShutdowned) {
    // A clean start (or no cluster yet: initdb's). No standby.signal outlives its start.
    return StandbySignal(pgdata, false);
  }
  // Crash recovery ends in an immediate CHECKPOINT that writes every page the replay touched
  // before the first client gets in. In standby mode with the promote trigger already there,
  // postgres replays the same WAL, promotes at its end, writes an end-of-recovery record and
  // leaves that checkpoint to run spread in the background; but the promotion first copies
  // the WAL segment where the replay ended into the new PostgreSQL timeline: up to 16 MiB,
  // written and synced before the first client gets in, through the store's one WAL that
  // every other compute's commits sync. A replay that stays in one segment touches about as
  // many pages as that WAL holds, and no more than the copy would write (a page's first
  // change after a checkpoint logs its full image), so such a cluster (a branch made at its
  // parent's head, just after the parent's CHECKPOINT) recovers as after a crash: no new
  // PostgreSQL timeline, no copy. docs/point-in-time.md, section 3.
  if (options_.crash_recovery_in_one_segment && ReplayStaysInOneSegment(pgdata, *control)) {
    return StandbySignal(pgdata, false);
  }
  // hot_standby off: no client gets in before the promotion.
  ARBOR_RETURN_IF_ERROR(StandbySignal(pgdata, true));
  ARBOR_RETURN_IF_ERROR(SignalFile(pgdata, "arbor.promote", true));
  plan.spec.settings.emplace_back("hot_standby", "off");
  plan.spec.settings.emplace_back("promote_trigger_file", plan.spec.pgdata + "/arbor.promote");
  return Status::Ok();
}

Status Engine::StartReplica(StartPlan& plan) {
  ARBOR_RETURN_IF_ERROR(ClusterState(plan.mountpoint).status());
  ARBOR_RETURN_IF_ERROR(StandbySignal(plan.mountpoint, true));
  return supervisor_->Start(plan.spec, options_.start_timeout);
}

void Engine::DropReplicaForkLocked(const EndpointRecord& ep) {
  auto it = catalog_.endpoints.find({ep.project, ep.branch, ep.id});
  if (it == catalog_.endpoints.end() || it->second.timeline.value() == 0) return;
  EndpointRecord cleared = it->second;
  TimelineId fork = cleared.timeline;
  cleared.timeline = TimelineId(0);
  Status st = store_->DeleteTimeline(fork, {Catalog::Put(cleared)});
  if (st.code() == Code::kNotFound) st = store_->WriteMeta({Catalog::Put(cleared)});
  if (!st.ok()) {
    // Left referenced; the next start forks anew, and Open deletes it at the latest.
    log::warn("engine: deleting the fork of replica {}: {}", ComputeId(ep), st.ToString());
    return;
  }
  it->second = cleared;
}

Result<Engine::ReplicaState> Engine::GetReplicaState(const std::string& project,
                                                     const std::string& branch,
                                                     const std::string& id) {
  ReplicaState out;
  std::string primary_cid;
  std::string uid;
  {
    std::lock_guard l(mu_);
    ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e, FindEndpoint(project, branch, id));
    if (!e->replica) {
      return Status::InvalidArgument("endpoint " + ComputeId(*e) + " is not a read replica");
    }
    uid = e->uid;
    auto live = live_.find({project, branch, id});
    out.running = live != live_.end() && live->second.running;
    for (const auto& [k, other] : catalog_.endpoints) {
      if (other.project != project || other.branch != branch || !IsReadWrite(other)) continue;
      auto pl = live_.find(k);
      out.primary_running = pl != live_.end() && pl->second.running && !pl->second.stopping;
      if (out.primary_running) primary_cid = ComputeId(other);
    }
  }
  if (!out.running || primary_cid.empty()) return out;
  // The primary's view: its WAL sender for this replica (application_name is the replica's
  // uid). replay_lag is NULL once the replica has caught up and nothing is written.
  ARBOR_ASSIGN_OR_RETURN(
      auto rows,
      supervisor_->Query(primary_cid, "postgres",
                         "select state, coalesce(extract(epoch from replay_lag), 0)::float8, "
                         "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                         "from pg_stat_replication where application_name = '" +
                             uid + "'"));
  if (rows.empty() || rows.front().size() != 3) return out;
  out.streaming = rows.front()[0] == "streaming";
  out.replay_lag_s = std::strtod(rows.front()[1].c_str(), nullptr);
  out.replay_lag_bytes = std::strtoull(rows.front()[2].c_str(), nullptr, 10);
  return out;
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

namespace {

// The file name of WAL segment `segno` in `names` (a pg_wal listing): TTTTTTTTLLLLLLLLSSSSSSSS
// in hex, the highest timeline if several hold it. Empty if none does.
std::string SegmentName(const std::vector<storage::DirEntry>& names, uint64_t segno) {
  constexpr uint64_t kSegmentsPerId = 0x100000000ull / fs::kWalSegmentSize;
  char tail[17];
  std::snprintf(tail, sizeof tail, "%08X%08X", static_cast<unsigned>(segno / kSegmentsPerId),
                static_cast<unsigned>(segno % kSegmentsPerId));
  std::string best;
  for (const auto& e : names) {
    if (e.name.size() != 24 || e.name.compare(8, 16, tail) != 0) continue;
    if (e.name.find_first_not_of("0123456789ABCDEF") != std::string::npos) continue;
    if (best.empty() || e.name.compare(0, 8, best, 0, 8) > 0) best = e.name;
  }
  return best;
}

// Writes `data` at `offset` of `path`, a segment file of a walked endpoint, made at its full
// size (sparse: zeros) and owned by the compute user if it is new.
Status WriteSegment(const std::string& path, uint64_t offset, std::string_view data,
                    const compute::OsUser& user) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Status::IOError("opening " + path + ": " + std::strerror(errno));
  struct stat st {};
  bool ok = fstat(fd, &st) == 0;
  if (ok && st.st_uid != user.uid && geteuid() == 0) ok = fchown(fd, user.uid, user.gid) == 0;
  if (ok && static_cast<uint64_t>(st.st_size) < fs::kWalSegmentSize) {
    ok = ftruncate(fd, fs::kWalSegmentSize) == 0;
  }
  size_t done = 0;
  while (ok && done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, offset + done);
    if (n <= 0) {
      ok = false;
      break;
    }
    done += n;
  }
  int err = errno;
  close(fd);
  if (!ok) return Status::IOError("writing " + path + ": " + std::strerror(err));
  return Status::Ok();
}

// Points pg_wal/`name` of the mounted `pgdata` at `target`, unless it already does. The
// standby reopens a segment after it found no more WAL in it, so it reads the new file.
Status LinkSegment(const std::string& pgdata, const std::string& name, const std::string& target) {
  std::string path = pgdata + "/pg_wal/" + name;
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof buf);
  if (n > 0 && std::string_view(buf, n) == target) return Status::Ok();
  std::string tmp = pgdata + "/pg_wal/." + name + ".walk";
  unlink(tmp.c_str());
  if (symlink(target.c_str(), tmp.c_str()) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IOError("linking " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// The directory of a walked endpoint's segment files, readable by the compute user only.
Status PrepareWalDir(const std::string& dir, const compute::OsUser& user) {
  std::string parent = dir.substr(0, dir.rfind('/'));
  // The daemon's umask is 077: the compute user needs to pass through.
  if ((mkdir(parent.c_str(), 0711) != 0 && errno != EEXIST) || chmod(parent.c_str(), 0711) != 0) {
    return Status::IOError("creating " + parent + ": " + std::strerror(errno));
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IOError("creating " + dir + ": " + std::strerror(errno));
  }
  if (geteuid() == 0 && chown(dir.c_str(), user.uid, user.gid) != 0) {
    return Status::IOError("chown " + dir + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Result<uint64_t> Engine::AdvancePinnedEndpoint(const std::string& project,
                                               const std::string& branch, const std::string& id,
                                               uint64_t from, uint64_t to, WalCache* cache) {
  if (to <= from) return Status::InvalidArgument("a pinned endpoint only moves forward");
  TimelineId tl;
  Seq at;
  std::string pgdata, cid, dir;
  {
    std::lock_guard l(mu_);
    ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, branch));
    ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e, FindEndpoint(project, branch, id));
    auto live = live_.find({project, branch, id});
    if (!e->pinned || live == live_.end() || !live->second.running || live->second.starting ||
        live->second.stopping) {
      return Status::FailedPrecondition("endpoint " + BranchName(project, branch) + "/endpoints/" +
                                        id + " is not a running pinned endpoint");
    }
    tl = b->timeline;
    ARBOR_ASSIGN_OR_RETURN(at, store_->SeqAtLsn(tl, Lsn(to)));
    pgdata = live->second.mountpoint;
    cid = ComputeId(*e);
    dir = EndpointDir("wal", *e);
  }
  ARBOR_RETURN_IF_ERROR(PrepareWalDir(dir, supervisor_->user()));
  const uint64_t seg = fs::kWalSegmentSize, page = fs::kWalPageSize;
  const uint64_t begin = from / page * page;
  std::string wal;  // [begin, to), for WalRecordsEnd
  std::optional<std::pair<InodeId, std::vector<storage::DirEntry>>> listing;  // pg_wal at `to`
  for (uint64_t segno = begin / seg; segno * seg < to; ++segno) {
    const uint64_t base = segno * seg;
    const uint64_t need = std::min(to, base + seg) - base;  // bytes of this segment up to `to`
    const uint64_t had = std::max(begin, base) - base;      // what the endpoint's file holds
    std::string name, fresh;
    {
      std::lock_guard l(cache->mu);
      WalCache::Segment& s = cache->segments[segno];
      if (s.valid < need) {
        // The missing part, from the store's state at `to` (the WAL reaches `to` there). A
        // partial last page is read again: it holds more now.
        if (!listing) {
          ARBOR_ASSIGN_OR_RETURN(auto wal_dir, store_->Lookup(tl, at, kRootInode, "pg_wal"));
          if (!wal_dir) return Status::FailedPrecondition("the branch has no pg_wal there");
          ARBOR_ASSIGN_OR_RETURN(auto entries, store_->ReadDir(tl, at, wal_dir->ino));
          listing.emplace(wal_dir->ino, std::move(entries));
        }
        if (s.name.empty()) s.name = SegmentName(listing->second, segno);
        if (s.name.empty()) {
          return Status::FailedPrecondition("the branch's WAL segment " + std::to_string(segno) +
                                            " is no longer in its pg_wal at that point");
        }
        ARBOR_ASSIGN_OR_RETURN(auto entry, store_->Lookup(tl, at, listing->first, s.name));
        if (!entry) {
          return Status::FailedPrecondition("pg_wal/" + s.name + " is gone at that point");
        }
        uint64_t lo = s.valid / page * page;
        uint64_t hi = std::min(seg, (need + page - 1) / page * page);
        ARBOR_ASSIGN_OR_RETURN(std::string got, store_->ReadFile(tl, at, entry->ino, lo, hi - lo));
        if (got.size() != hi - lo) {
          return Status::FailedPrecondition("pg_wal/" + s.name + " is short at that point");
        }
        s.bytes.resize(lo);
        s.bytes += got;
        s.valid = need;
      }
      name = s.name;
      // The endpoint gets the WAL up to `to` and nothing after it: zeros, as at `to`.
      fresh = s.bytes.substr(had, need - had);
    }
    std::string file = dir + "/" + name;
    bool made = access(file.c_str(), F_OK) != 0;
    if (made) {
      // A new file holds the segment from its start: the standby may read any of it.
      std::lock_guard l(cache->mu);
      ARBOR_RETURN_IF_ERROR(
          WriteSegment(file, 0, std::string_view(cache->segments[segno].bytes).substr(0, need),
                       supervisor_->user()));
    } else {
      ARBOR_RETURN_IF_ERROR(WriteSegment(file, had, fresh, supervisor_->user()));
    }
    ARBOR_RETURN_IF_ERROR(LinkSegment(pgdata, name, file));
    wal += fresh;
  }
  // A standby that found no more WAL sleeps for wal_retrieve_retry_interval; a reload wakes
  // its startup process at once.
  if (auto pid = supervisor_->Pid(cid)) kill(*pid, SIGHUP);
  wal.resize((to + page - 1) / page * page - begin, '\0');
  return fs::WalRecordsEnd(from, begin, wal);
}

Result<EndpointRecord> Engine::DefaultEndpoint(const std::string& project,
                                               const std::string& branch) {
  std::lock_guard l(mu_);
  ARBOR_RETURN_IF_ERROR(FindBranch(project, branch).status());
  for (const auto& [k, e] : catalog_.endpoints) {
    if (e.project == project && e.branch == branch && IsReadWrite(e)) return e;
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
    // A masked branch's history starts at its masking point (the states before hold the raw
    // values): a bisection searches from there.
    ready_us = std::max(ready_us, b->masked_time_us);
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
  // The segment files a walk gave it (AdvancePinnedEndpoint).
  std::error_code ignored;
  std::filesystem::remove_all(EndpointDir("wal", ep), ignored);
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
