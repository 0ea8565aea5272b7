#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "compute/supervisor.h"
#include "control/catalog.h"
#include "control/sizing.h"
#include "storage/store.h"

namespace arbor::control {

// An arborfs mount of one timeline; unmounts when destroyed.
class MountHandle {
 public:
  virtual ~MountHandle() = default;
  // The bytes per second the mount's writes may bring into the store (0: unlimited).
  virtual void SetWriteRate(uint64_t /*bytes_per_s*/) {}
  // How long its writes have waited for that budget, in nanoseconds.
  virtual uint64_t WriteThrottledNanos() const { return 0; }
  // How many fsync requests of files it has received (fs::Mount::Fsyncs).
  virtual uint64_t Fsyncs() const { return 0; }
  // File data not yet written back is dropped, and fsync fails (fs::Mount::DiscardWrites).
  virtual void DiscardWrites() {}
};

// Makes arborfs mounts. The engine's only view of src/fs, so tests of the engine's
// bookkeeping can run without FUSE; production passes the real one.
class Mounter {
 public:
  virtual ~Mounter() = default;
  // Mounts `timeline` at `path` (an existing empty directory). Returns once the mount serves.
  [[nodiscard]] virtual Result<std::unique_ptr<MountHandle>> Mount(TimelineId timeline,
                                                                   const std::string& path) = 0;
};

// Told when an endpoint's dedicated port comes into use or is released, so that the proxy
// listens on exactly the ports of existing endpoints. Called with the engine's lock held:
// must not call back into the engine.
class PortListener {
 public:
  virtual ~PortListener() = default;
  virtual void Listen(uint16_t port) = 0;
  virtual void Unlisten(uint16_t port) = 0;
};

struct EngineOptions {
  std::string data_dir;     // holds logs/ (the catalog is in the store)
  std::string runtime_dir;  // holds mnt/ and run/; the compute user must reach it
  uint16_t port_lo = 55433;
  uint16_t port_hi = 55999;
  // Every compute's shared_buffers; empty: a quarter of its memory (its max size x 2 GiB).
  std::string shared_buffers;
  // The autoscaler's window: it decides at most this often (docs/compute-sizes.md).
  int64_t autoscale_window_us = 1'000'000;
  // The arbor_guard module every compute preloads (src/compute/pg_guard), at a path the
  // compute user can read. Empty: computes run without it (tests of the engine alone only).
  std::string guard_library;
  // A branch made (or reset) at its parent's head: the parent's running compute is
  // checkpointed first (without the engine's lock), so the fork holds every page and the child
  // has little WAL to replay, and a data diff's change set names no page the parent only had
  // dirty in its buffers. Off (ARBOR_BRANCH_CHECKPOINT=0): the fork takes the parent's state as
  // the store holds it at once (every acknowledged commit: its WAL was synced), and the child's
  // first start replays the WAL since the parent's last checkpoint, as after a crash.
  // bench/branch_load_bench.sh measures both; docs/point-in-time.md says why this is the default.
  bool checkpoint_parent = true;
  // ... but only when the parent's WAL is at least this far past its last checkpoint's redo
  // point (ARBOR_BRANCH_CHECKPOINT_MIN_MB): a parent branched often is not made to checkpoint
  // (and write full pages again) each time, and the create takes milliseconds; the branch
  // replays up to this much WAL at its first start. 0, the default: always, because WAL
  // bytes do not bound the replay's time (records without a page image, such as vacuum's
  // visibility records, read their pages cold through arborfs; docs/point-in-time.md).
  uint64_t checkpoint_min_wal_bytes = 0;
  // A create or reset waits at most this long for that CHECKPOINT
  // (ARBOR_BRANCH_CHECKPOINT_WAIT_MS); one that takes longer goes on in the background, the
  // parent's write budget still lifted until it ends, and the branch forks the parent's head
  // at once, as with checkpoint_parent off: the call answers in bounded time, and the branch
  // replays the WAL since the parent's last completed checkpoint. Negative, the default:
  // wait until it ends, because create plus first query is then fastest at p99
  // (bench/branch_load_bench.sh: 3.7 s against 6.0 s with 800 ms and 5.2-6.4 s with 500 ms;
  // docs/point-in-time.md). Data diffs and snapshots always wait.
  int64_t checkpoint_wait_ms = -1;
  // A cluster left running (a branch's first start, a restart after a crash) whose replay
  // stays in one WAL segment recovers as after a crash, in an immediate end-of-recovery
  // CHECKPOINT of the pages it touched; a longer replay runs in standby mode and promotes,
  // which copies the last segment into a new PostgreSQL timeline and spreads that checkpoint
  // (docs/point-in-time.md, section 3). False (ARBOR_BRANCH_RECOVERY=promote): every such
  // start promotes, the other side of bench/branch_load_bench.sh.
  bool crash_recovery_in_one_segment = true;
  // While any compute commits or starts (the parent included), that CHECKPOINT
  // runs with the parent's checkpointer held to this many CPUs
  // (ARBOR_BRANCH_CHECKPOINT_PACE_CPUS; 0: not held; computes in no control group are not
  // held either): its 60-100 MB of dirty buffers then reach the store's log in short bursts
  // instead of one, and the commits that sync that log meanwhile wait less
  // (docs/compute-sizes.md, "Pacing the checkpointer"). An idle daemon's forks are not held.
  // The daemon sets 0 where computes cannot be paced (no cgroup v1).
  double checkpoint_pace_cpus = 0.25;
  // Each running compute's writes into the store are limited to this many bytes per second
  // per CU of its max size (docs/compute-sizes.md, "Writes"); 0: unlimited.
  uint64_t write_bytes_per_cu = 0;
  // The CPUs the host lends its computes: their current sizes add up to at most this much
  // beyond their minimums (docs/compute-sizes.md, "The host's CPUs"); 0: no bound.
  double host_cpus = 0;
  std::chrono::milliseconds start_timeout{120'000};
  std::chrono::milliseconds stop_timeout{60'000};
  // At shutdown every compute is asked at once for a fast shutdown, and given this long
  // before an immediate one (then SIGKILL 5 s later), so that a daemon stops in bounded time.
  std::chrono::milliseconds shutdown_timeout{10'000};
};

// How a new branch is made. Validation of the combination of fields is the API's job;
// the engine checks what needs state (names exist, times and LSNs in range).
struct BranchRequest {
  std::string source_branch;  // branch id in the same project; empty = the default branch
  std::optional<int64_t> time_us;
  std::optional<uint64_t> lsn;
  Expiry expiry = Expiry::kNever;
  int64_t ttl_s = 0;
  int64_t expire_time_us = 0;
  bool is_protected = false;
  // From a snapshot of `source_snapshot_branch` (then `source_branch` is empty or the same, and
  // neither a time nor an LSN is given).
  std::string source_snapshot_branch;
  std::string source_snapshot;
  // A masked branch: these rules run inside it before any client can connect (see
  // CreateBranch). Checked by the API (api::ValidateMaskRules); the engine checks the columns.
  std::vector<api::MaskRule> masking;
};

// How a new snapshot is made; expiry as for branches.
struct SnapshotRequest {
  std::optional<int64_t> time_us;  // the branch's state at this time; nullopt: its head
  Expiry expiry = Expiry::kNever;
  int64_t ttl_s = 0;
  int64_t expire_time_us = 0;
  bool scheduled = false;  // taken by the project's schedule (RunSnapshotSchedules)
  int64_t now_us = 0;      // its create time; 0: the wall clock (the schedule passes its own)
};

struct EndpointState {
  bool running = false;   // postgres runs, or is being stopped
  bool starting = false;  // a start is in progress (then `running` is false)
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string socket_dir;
  double current_cu = 0;  // its CPU limit now, while it runs (the autoscaler's choice)
};

// One relation file (main fork, all segments) of GET .../changed_pages.
// A database of a branch (projects/P/branches/B/databases/D), as its postgres has it.
struct DatabaseInfo {
  std::string project;
  std::string branch;
  std::string name;   // D
  std::string owner;  // the role that owns it
};
struct ChangedRelation {
  uint32_t relfilenode = 0;
  // Sorted, disjoint, inclusive ranges of page numbers (segment * 131072 + block).
  std::vector<std::pair<uint64_t, uint64_t>> pages;
  // The file is not the same file on both sides (it exists on one side only, or was
  // recreated): every page may differ.
  bool whole = false;
};
struct ChangedPages {
  bool complete = true;
  std::string reason;                                          // why not complete
  std::map<uint32_t, std::vector<ChangedRelation>> databases;  // by database oid
};

// The control plane's core: projects, branches and endpoints over the store, arborfs and
// the compute supervisor. Thread-safe.
//
// One mutex (mu_) guards the catalog and the live state; every operation takes it, but no
// slow work runs under it. initdb, CHECKPOINT, postgres's start and stop, the SQL that sets
// roles, and mounting and unmounting run without it: an operation plans under the lock,
// marks what it works on as busy, runs the slow part unlocked, and commits under the lock.
// So logins (the proxy's Resolve, RoleForLogin, Wake), reads, and operations on other
// branches and endpoints proceed while one branch is deleted, reset, stopped or forked from,
// or a project is initdb'd.
//
// Busy branches and endpoints. An operation that stops, deletes, replaces or changes the
// roles or databases of a branch claims it (busy_) for its whole run; operations on the same
// branch wait for the claim to end, then see its outcome (a deleted branch is NotFound). A
// start of an endpoint marks it starting, a stop stopping (Live); a claim waits until none of
// its branch's endpoints is starting or stopping. A start (Wake) of an endpoint whose branch
// is being deleted fails at once with FailedPrecondition; while it is being reset, restored
// or stopped the start waits and then starts the outcome; role and database changes do not
// hold it up. A branch being deleted cannot gain children (CreateBranch fails with
// FailedPrecondition).
// Suspension and expiry skip busy branches until their next pass.
//
// Crash safety is unchanged by the unlocked parts: catalog records and their timeline still
// change in one atomic store write at commit, a crash before it leaves the catalog as it was
// (a half-made root or fork is an unreferenced timeline, which Open deletes), and endpoints
// keep their `running` record across a stop that a delete or reset started, so they come
// back after a crash.
//
// Lock order (a thread holding one may take the ones after it, never the reverse):
//   mu_ -> activity_mu_
//   mu_ -> the supervisor's lock (its table only: State, and Stop of a compute that crashed)
//   mu_ -> the store's locks (one catalog or timeline write: WriteMeta, Branch, DeleteTimeline;
//          a delete's compaction runs later on the store's own thread, under none of them)
//   mu_ -> the PortListener's (the proxy's listener table)
//   mu_ -> metrics_mu_ (a leaf but for the histograms' own locks, taken under it)
class Engine {
 public:
  Engine(EngineOptions options, storage::Store* store, Mounter* mounter,
         compute::Supervisor* supervisor);
  ~Engine();  // stops every compute and unmounts

  // Loads the catalog. Corruption if it cannot be read.
  [[nodiscard]] Status Open();

  // ---- projects ----
  // Creates the project, its root branch `production` with endpoint `primary`: initdb
  // runs once, as the compute user, on the new root timeline.
  [[nodiscard]] Result<ProjectRecord> CreateProject(const std::string& id,
                                                    int64_t history_window_s);
  [[nodiscard]] Result<ProjectRecord> GetProject(const std::string& id);
  std::vector<ProjectRecord> ListProjects();
  [[nodiscard]] Status DeleteProject(const std::string& id);
  [[nodiscard]] Status SetHistoryWindow(const std::string& project, int64_t history_window_s);
  // The TTL the CLI gives a branch created without an expiry; 0 removes it.
  [[nodiscard]] Status SetDefaultBranchTtl(const std::string& project, int64_t ttl_s);

  // ---- branches ----
  // Makes the branch, forked from `request.source_branch` at the head, a time or an LSN.
  //
  // Masked branches (request.masking, masking.cc). The branch is recorded at once, marked
  // `masking_pending` and claimed, so that nothing can start, reach or fork it; its postgres
  // starts, the rules run in one transaction in the database `postgres` (as the masked
  // tables' owners, in a session of a temporary non-superuser login role: no rule gets a
  // superuser's rights), then a CHECKPOINT puts the masked state in the store, and the record
  // gets its masking point (masked_seq, masked_time_us) and is ready. No state before the
  // masking point can be reached afterwards (ForkPointLocked refuses it). If anything fails
  // the branch is deleted again (InvalidArgument naming the rule for a missing column, a
  // type a strategy cannot fill, or PostgreSQL's message for a failing expression), and a
  // crash in the middle leaves a pending branch that Open deletes.
  [[nodiscard]] Result<BranchRecord> CreateBranch(const std::string& project, const std::string& id,
                                                  const BranchRequest& request);
  [[nodiscard]] Result<BranchRecord> GetBranch(const std::string& project, const std::string& id);
  std::vector<BranchRecord> ListBranches(const std::string& project);
  // Stops its computes (without the engine's lock) and deletes its pinned endpoints, then, in
  // one atomic write, moves its records (branch, endpoints, roles) to a deleted-branch record
  // (DeletedBranchRecord): it is gone from every live view (lists, the proxy, the reaper),
  // while its timeline stays in the store until its purge time, the delete time plus the
  // project's history window, and its ports stay reserved for it. FailedPrecondition for a
  // protected branch, the root, or one with live children (deleted children do not count).
  [[nodiscard]] Status DeleteBranch(const std::string& project, const std::string& id);
  // Brings back the most recently deleted branch `id`, under `new_id` if given, with its
  // endpoints (stopped; each on its old port, or a new one named in `notes` if the old one
  // cannot be had), roles and data. NotFound if no deleted branch has that id;
  // AlreadyExists, saying to use ?new_branch_id=, if a live branch has taken the id;
  // FailedPrecondition if its parent is deleted too (undelete the parent first) or gone.
  struct Undeleted {
    BranchRecord branch;
    std::vector<std::string> notes;
  };
  [[nodiscard]] Result<Undeleted> UndeleteBranch(const std::string& project, const std::string& id,
                                                 const std::optional<std::string>& new_id);
  // The project's deleted branches not yet purged, oldest deletion first. NotFound if no
  // such project.
  [[nodiscard]] Result<std::vector<DeletedBranchRecord>> ListDeletedBranches(
      const std::string& project);
  // The space a deleted branch holds (its timeline), by its uid.
  [[nodiscard]] Result<storage::Usage> DeletedBranchUsage(const std::string& project,
                                                          const std::string& uid);
  // Final: the live branch `id` (as DeleteBranch refuses: root, protected, live children),
  // else its most recently deleted namesake, goes with its timeline, and so do its deleted
  // descendants (which could never come back without it). The space is freed in the
  // background. NotFound if neither exists.
  [[nodiscard]] Status PurgeBranch(const std::string& project, const std::string& id);
  // Purges every deleted branch whose purge time is at or before `now_us`; a deleted branch
  // whose deleted children are purged later waits for them. Returns their names.
  std::vector<std::string> PurgeDeleted(int64_t now_us);
  // The branch takes its parent's state now (or at `time_us`), keeping its name, endpoints
  // and ports. FailedPrecondition for the root, a protected branch, or one with children.
  [[nodiscard]] Result<BranchRecord> ResetBranch(const std::string& project, const std::string& id,
                                                 std::optional<int64_t> time_us);
  // The branch takes its own state at `time_us` (or `lsn`); the state it had becomes a
  // new branch, whose id is returned with the branch.
  [[nodiscard]] Result<std::pair<BranchRecord, std::string>> RestoreBranch(
      const std::string& project, const std::string& id, std::optional<int64_t> time_us,
      std::optional<uint64_t> lsn);
  [[nodiscard]] Status UpdateBranch(const std::string& project, const std::string& id,
                                    std::optional<bool> is_protected,
                                    std::optional<BranchRequest> expiry);
  [[nodiscard]] Result<storage::Usage> BranchUsage(const std::string& project,
                                                   const std::string& id);
  // Deletes every unprotected branch whose expiry has passed (children first), and every
  // snapshot whose expiry has passed and that no branch was made from; returns their names.
  // A branch with snapshots waits until they are gone.
  std::vector<std::string> ReapExpired(int64_t now_us);

  // ---- snapshots (snapshots.cc) ----
  // A snapshot `id` of the branch: its state now (its running compute is CHECKPOINTed first,
  // without the lock, as for a branch at head) or at `time_us`, held by a timeline forked
  // from the branch's at that point (O(1), nothing copied) and never written. The record and
  // the timeline appear in one atomic store write. AlreadyExists if the id is taken on the
  // branch; OutOfRange for a time outside the history; FailedPrecondition while the branch is
  // being deleted.
  [[nodiscard]] Result<SnapshotRecord> CreateSnapshot(const std::string& project,
                                                      const std::string& branch,
                                                      const std::string& id,
                                                      const SnapshotRequest& request);
  [[nodiscard]] Result<SnapshotRecord> GetSnapshot(const std::string& project,
                                                   const std::string& branch,
                                                   const std::string& id);
  // The snapshots of a branch (of every branch when `branch` is empty), oldest first.
  // NotFound if the project (or the branch) does not exist.
  [[nodiscard]] Result<std::vector<SnapshotRecord>> ListSnapshots(const std::string& project,
                                                                  const std::string& branch);
  // Deletes the snapshot and its timeline in one atomic write; GC then frees what only it
  // kept. FailedPrecondition (naming them) while branches made from it exist.
  [[nodiscard]] Status DeleteSnapshot(const std::string& project, const std::string& branch,
                                      const std::string& id);
  // What deleting the snapshot would free: the versions of its source timeline that only its
  // fork point keeps (storage::Store::ExclusiveSizes; one scan of that timeline, cached until
  // it writes). Runs the scan without the engine's lock.
  [[nodiscard]] Result<storage::ExclusiveSize> SnapshotExclusiveSize(const std::string& project,
                                                                     const std::string& branch,
                                                                     const std::string& id);
  // Sets (every_s > 0) or removes (every_s == 0) the project's snapshot schedule.
  // InvalidArgument for an every below kMinScheduleEveryS or a keep below 1; NotFound for a
  // branch that does not exist.
  [[nodiscard]] Status SetSnapshotSchedule(const std::string& project,
                                           const SnapshotSchedule& schedule);
  // One step of every project's schedule at `now_us`: takes a snapshot named
  // scheduled-YYYYMMDDtHHMMSSz when `every` has passed since the newest scheduled one (or
  // there is none), then deletes the oldest scheduled ones beyond `keep` (never a manual one,
  // nor one that branches were made from). Returns the names of those taken and deleted.
  std::vector<std::string> RunSnapshotSchedules(int64_t now_us);
  static constexpr int64_t kMinScheduleEveryS = 60;

  // ---- endpoints ----
  [[nodiscard]] Result<EndpointRecord> CreateEndpoint(const std::string& project,
                                                      const std::string& branch,
                                                      const std::string& id,
                                                      int64_t suspend_timeout_s, bool no_suspension,
                                                      bool replica = false);
  [[nodiscard]] Result<EndpointRecord> GetEndpoint(const std::string& project,
                                                   const std::string& branch,
                                                   const std::string& id);
  std::vector<EndpointRecord> ListEndpoints(const std::string& project, const std::string& branch);
  [[nodiscard]] Status DeleteEndpoint(const std::string& project, const std::string& branch,
                                      const std::string& id);
  // Mounts the branch and starts its postgres; returns once it accepts connections. Shares a
  // start under way; waits while the branch is being stopped, reset or restored;
  // FailedPrecondition while it is being deleted.
  [[nodiscard]] Result<EndpointState> StartEndpoint(const std::string& project,
                                                    const std::string& branch,
                                                    const std::string& id);
  // Fast shutdown, then unmount.
  [[nodiscard]] Status StopEndpoint(const std::string& project, const std::string& branch,
                                    const std::string& id);
  [[nodiscard]] Result<EndpointState> GetEndpointState(const std::string& project,
                                                       const std::string& branch,
                                                       const std::string& id);

  // ---- compute sizes (docs/compute-sizes.md) ----
  // The size an endpoint runs at: its own, or the project's default for it.
  ComputeSize EffectiveSize(const EndpointRecord& e);
  // The write budget of a compute at `current_cu` (EngineOptions::write_bytes_per_cu).
  uint64_t WriteRateFor(double current_cu) const;
  // Sets an endpoint's size. On a running compute the CPU limit changes at once (clamped
  // into the new range) and the memory limit is raised at once; a lower memory limit and
  // PostgreSQL's settings take effect at its next start. InvalidArgument for a bad size.
  [[nodiscard]] Result<EndpointRecord> SetEndpointSize(const std::string& project,
                                                       const std::string& branch,
                                                       const std::string& id,
                                                       const ComputeSize& size);
  // The project's defaults: for new branches' endpoints, and for its default branch's
  // read-write endpoint (whose own size, if it was never set, follows it). nullopt: unchanged;
  // an unset ComputeSize: back to Arbor's default.
  [[nodiscard]] Status SetDefaultSizes(const std::string& project,
                                       const std::optional<ComputeSize>& branches,
                                       const std::optional<ComputeSize>& default_branch);
  // Every `autoscale_window_us` (a second): reads each running compute's CPU time from its control
  // group, raises or lowers its CPU limit between its min and max size (logged), and adds
  // its CU-seconds and its branch's written bytes to the hour's usage (written to the store).
  // Each call also notes which computes sent an fsync since the last (Live::syncing) and
  // sets the write budgets by it. The daemon calls it every second.
  void Autoscale(int64_t now_us);
  // The usage records of the project whose hour overlaps [start_us, end_us), with what is
  // not yet written; sorted by hour, branch, endpoint.
  std::vector<UsageRecord> ProjectUsage(const std::string& project, int64_t start_us,
                                        int64_t end_us);
  // Which control groups limit computes: "cgroup v2 (...)", "cgroup v1 (...)" or "none: why".
  std::string ComputeLimits() const;

  // ---- metrics (metrics.cc; docs/metrics.md) ----
  // What the proxy saw of an endpoint's clients: a refused login (`reason`: a bounded set,
  // see docs/metrics.md), and the bytes of a relayed session when it ends. An empty
  // `project` is a login the proxy could not route to any endpoint. Never blocks for long.
  void RecordAuthFailure(const std::string& project, const std::string& branch,
                         const std::string& id, const std::string& reason);
  void RecordRelayed(const std::string& project, const std::string& branch, const std::string& id,
                     uint64_t from_client, uint64_t to_client);
  // Writes the engine's families: endpoints, branches, the store and the reaper. With
  // `only_project`, only that project's series and nothing shared by all projects.
  void WriteMetrics(metrics::Writer* w, const std::string& only_project);
  // postgresql://owner@127.0.0.1:PORT/postgres: no password (a token or a role password is
  // given apart from it).
  [[nodiscard]] Result<std::string> ConnectionString(const std::string& project,
                                                     const std::string& branch,
                                                     const std::string& endpoint);

  // ---- time travel (timetravel.cc) ----
  // A read-only endpoint `id` of the branch, pinned at the branch's state at `time_us` or at
  // `lsn` (exactly one): a PostgreSQL hot standby on an ephemeral timeline forked from the
  // branch's at that point (O(1), nothing copied). What it serves never changes, writes fail
  // with PostgreSQL's own read-only error, and the branch is never touched. Once idle for
  // `suspend_timeout_s` (never started counts as idle since its creation) it deletes itself,
  // and its timeline with it; so do a delete, reset or restore of its branch. OutOfRange for a
  // point outside the history; AlreadyExists if the id is taken.
  [[nodiscard]] Result<EndpointRecord> CreatePinnedEndpoint(
      const std::string& project, const std::string& branch, const std::string& id,
      std::optional<int64_t> time_us, std::optional<uint64_t> lsn, int64_t suspend_timeout_s);
  // The endpoint pinned at that point, named api::PinnedEndpointId, made (with the default
  // timeout) if missing.
  [[nodiscard]] Result<EndpointRecord> EnsurePinnedEndpoint(const std::string& project,
                                                            const std::string& branch,
                                                            std::optional<int64_t> time_us,
                                                            std::optional<uint64_t> lsn);
  // The WAL of one branch as pinned endpoints walked forward need it: each segment's bytes
  // from its start, read from the store once and kept for the other walkers of the same
  // search. WAL is only appended to, so bytes read at a later state are the bytes of every
  // earlier state up to its end. One per search (bisect); thread-safe.
  class WalCache {
   private:
    friend class Engine;
    struct Segment {
      std::string name;   // the file in pg_wal
      std::string bytes;  // from the segment's start; valid up to `valid`
      uint64_t valid = 0;
    };
    std::mutex mu;
    std::map<uint64_t, Segment> segments;  // by segment number
  };
  // Moves the running pinned endpoint `id` forward along its branch's history: from the
  // state it serves, whose WAL ends at `from` (its pg_last_wal_replay_lsn()), to the later
  // state whose WAL ends at `to`. The endpoint's pg_wal segments from `from` on are replaced
  // by files outside its timeline that hold the branch's WAL up to `to` and zeros after it
  // (the store is read once per search, through `cache`), and its standby is woken to replay
  // them. The answer is where its replay stops: the end of the last whole record up to `to`
  // (`from` if there is none); the caller waits until pg_last_wal_replay_lsn() reaches it.
  // It then serves what an endpoint pinned at `to` would, without replaying again from the
  // last checkpoint (bisect walks its standbys forward this way). InvalidArgument if `to` <=
  // `from`; FailedPrecondition if it is not running, or if a WAL segment between the two is
  // no longer in the branch's pg_wal at `to` (recycled by a checkpoint): pin a new endpoint
  // at `to` instead.
  [[nodiscard]] Result<uint64_t> AdvancePinnedEndpoint(const std::string& project,
                                                       const std::string& branch,
                                                       const std::string& id, uint64_t from,
                                                       uint64_t to, WalCache* cache);
  // ---- read replicas (timetravel.cc) ----
  // A read replica is made by CreateEndpoint(..., replica = true): any number per branch,
  // each with its own port and uid (so its own tokens), for the branch's roles. Each start
  // forks the branch's head (O(1)) and runs a hot standby on the fork that streams the
  // primary's WAL; its stop deletes the fork. A delete, reset or restore of the branch stops
  // it; it starts again on the new state at its next connection.
  struct ReplicaState {
    bool running = false;
    bool primary_running = false;
    bool streaming = false;         // connected to the primary and streaming
    double replay_lag_s = 0;        // PostgreSQL's replay_lag as the primary sees it
    uint64_t replay_lag_bytes = 0;  // the primary's WAL not yet replayed
  };
  // InvalidArgument if the endpoint is not a replica. Asks the primary when both run.
  [[nodiscard]] Result<ReplicaState> GetReplicaState(const std::string& project,
                                                     const std::string& branch,
                                                     const std::string& id);
  // The branch's read-write endpoint: neither pinned nor a replica. NotFound if none.
  [[nodiscard]] Result<EndpointRecord> DefaultEndpoint(const std::string& project,
                                                       const std::string& branch);
  // The branch's WAL writes in [since_us, until_us], oldest first (Store::WalPoints): the
  // states between which no transaction commits, which bisect searches. `since_us` kEarliest:
  // from the earliest time still available.
  static constexpr int64_t kEarliest = INT64_MIN;
  [[nodiscard]] Result<std::vector<storage::Store::WalPoint>> HistoryPoints(
      const std::string& project, const std::string& branch, int64_t since_us, int64_t until_us);

  // ---- roles (roles.cc) ----
  // Roles live in each branch's PostgreSQL catalog; Arbor sets their passwords and keeps the
  // SCRAM secrets (RoleRecord), never the passwords. A change made while the branch's
  // compute is suspended is applied at its next start, before any client gets in, so none of
  // these wakes a compute.
  // Creates a login role (or gives an existing one of that name a password Arbor sets).
  // Returns it with its password, which is never shown again. InvalidArgument for a bad or
  // reserved name; AlreadyExists if Arbor already holds a password for it.
  [[nodiscard]] Result<std::pair<RoleRecord, std::string>> CreateRole(const std::string& project,
                                                                      const std::string& branch,
                                                                      const std::string& name);
  std::vector<RoleRecord> ListRoles(const std::string& project, const std::string& branch);
  [[nodiscard]] Result<RoleRecord> GetRole(const std::string& project, const std::string& branch,
                                           const std::string& name);
  // Drops the role from the branch's postgres (starting it) and forgets it.
  // FailedPrecondition for `owner`, or with PostgreSQL's reason (it owns objects).
  [[nodiscard]] Status DeleteRole(const std::string& project, const std::string& branch,
                                  const std::string& name);
  // A new password for the role; the old one stops working at once (or, if the compute is
  // suspended, before it next lets a client in). NotFound if Arbor holds no password for it.
  [[nodiscard]] Result<std::pair<RoleRecord, std::string>> ResetRolePassword(
      const std::string& project, const std::string& branch, const std::string& name);

  // ---- databases (databases.cc) ----
  // Databases live only in the branch's PostgreSQL catalog (pg_database); Arbor keeps no
  // record of them, so a child branch has the databases its parent had at the fork, and
  // neither side sees the other's later changes. Each call runs its SQL as Arbor's superuser
  // on the branch's read-write compute over the private socket, starting (waking) it if it
  // is suspended. FailedPrecondition if the branch has no read-write endpoint.
  // Makes database `name` owned by role `owner` (CREATE DATABASE ... OWNER). InvalidArgument
  // for a bad name, or an owner that does not exist on the branch or is a superuser;
  // AlreadyExists if the branch has a database of that name.
  [[nodiscard]] Result<DatabaseInfo> CreateDatabase(const std::string& project,
                                                    const std::string& branch,
                                                    const std::string& name,
                                                    const std::string& owner);
  // The branch's databases by name, without template0 and template1.
  [[nodiscard]] Result<std::vector<DatabaseInfo>> ListDatabases(const std::string& project,
                                                                const std::string& branch);
  // NotFound if the branch has no such database (template0 and template1 are not listed).
  [[nodiscard]] Result<DatabaseInfo> GetDatabase(const std::string& project,
                                                 const std::string& branch,
                                                 const std::string& name);
  // Drops the database. FailedPrecondition for postgres (the default database) and the
  // templates, and, unless `force`, while a session is connected to it; with `force` those
  // sessions are ended (DROP DATABASE ... WITH (FORCE)). NotFound if there is none.
  [[nodiscard]] Status DeleteDatabase(const std::string& project, const std::string& branch,
                                      const std::string& name, bool force);

  // ---- API tokens (tokens.cc) ----
  // Makes a token; returns it with its record (the token is never stored, only its hash).
  // InvalidArgument for a bad name or ttl; NotFound for an unknown project; AlreadyExists.
  [[nodiscard]] Result<std::pair<ApiTokenRecord, std::string>> CreateApiToken(
      const std::string& name, AccessRole role, const std::string& project, int64_t ttl_s);
  std::vector<ApiTokenRecord> ListApiTokens();
  [[nodiscard]] Status RevokeApiToken(const std::string& name);
  // The record of `token` if it is one of ours, not expired at `now_us`, and its project (if
  // any) is still the one it was made for. NotFound otherwise, with what is wrong.
  [[nodiscard]] Result<ApiTokenRecord> FindApiToken(const std::string& token, int64_t now_us);

  // ---- data diff (changed_pages.cc) ----
  // The pages of PostgreSQL relation files that may differ between what two endpoints of one
  // project serve (GET .../changed_pages). Each side is a read-write endpoint (its branch's
  // timeline) or a pinned one (its own timeline, and also its branch's, since pages dirty in
  // the parent's buffers at the pin reach the branch only later: a superset). Every running
  // read-write compute of both branches is CHECKPOINTed first (without the lock), so pages
  // dirty in shared_buffers are in the store. NotFound for an unknown endpoint; the answer
  // says `complete = false` when the store cannot tell (history older than its change index,
  // or below the horizon) or a CHECKPOINT failed: the caller must compare in full.
  [[nodiscard]] Result<ChangedPages> ChangedPagesBetween(const std::string& project,
                                                         const std::string& branch,
                                                         const std::string& endpoint,
                                                         const std::string& against_branch,
                                                         const std::string& against_endpoint);

  // ---- serving connections (the proxy's view) ----
  // Listens on the port of every endpoint now, and of every endpoint made later.
  void SetPortListener(PortListener* listener);
  // The endpoint whose dedicated port is `port`.
  [[nodiscard]] Result<EndpointRecord> EndpointAtPort(uint16_t port);
  // Starts the endpoint if it is not running (one start, however many callers) and returns
  // its unix socket, "<dir>/.s.PGSQL.<port>", once postgres accepts connections. As
  // StartEndpoint: FailedPrecondition at once while its branch is being deleted.
  [[nodiscard]] Result<std::string> Wake(const std::string& project, const std::string& branch,
                                         const std::string& id);
  // The role of the branch with that name, if Arbor set its password (the proxy's check).
  [[nodiscard]] Result<RoleRecord> RoleForLogin(const std::string& project,
                                                const std::string& branch, const std::string& role);
  // Client connections through the proxy, for scale to zero. Never block for long.
  void ConnectionOpened(const std::string& project, const std::string& branch,
                        const std::string& id);
  void ConnectionClosed(const std::string& project, const std::string& branch,
                        const std::string& id);
  // Suspends (stops and unmounts) every running endpoint that has had no connection for its
  // suspend timeout, one at a time, skipping busy branches; returns their names.
  std::vector<std::string> SuspendIdle(int64_t now_us);

  // Starts every endpoint that was running when the daemon last stopped or died.
  void RestartRunning();
  // Stops every compute (all at once, bounded by shutdown_timeout) and unmounts everything
  // (they stay marked running, so that RestartRunning brings them back).
  void Shutdown();

  storage::Store* store() { return store_; }

 private:
  struct Live {
    std::unique_ptr<MountHandle> mount;
    std::string mountpoint;
    std::string socket_dir;
    bool running = false;
    bool starting = false;   // a start runs without the lock (StartWithLock)
    bool stopping = false;   // a stop runs without the lock (RunStops)
    int64_t started_us = 0;  // when it last started, for the idle time
    // Its size as started (PostgreSQL's settings and the memory limit follow its max), the
    // CPU limit now, and the autoscaler's and the usage meter's last readings.
    ComputeSize started_size;
    double memory_cu = 0;  // the memory limit now, in CU: raised live, lowered at a start
    double current_cu = 0;
    int low_windows = 0;
    uint64_t cpu_us = 0;  // the group's CPU time at cpu_sample_us
    int64_t cpu_sample_us = 0;
    int64_t metered_us = 0;  // CU-seconds are counted up to here
    TimelineId written_timeline;
    uint64_t written_mark = 0;  // the timeline's written bytes at metered_us
    // Write-budget waits of the mounts it had before this one (for the metric's counter).
    uint64_t write_throttled_ns = 0;
    uint64_t throttle_sample_ns = 0;  // the mount's waits at cpu_sample_us (autoscaler)
    uint64_t write_rate = 0;          // the budget its mount has now (bytes/s; 0: none)
    // CHECKPOINTs the engine runs on it now (a fork at its head): its write budget is lifted
    // meanwhile (RefreshWriteRatesLocked).
    int checkpoints = 0;
    bool held = false;  // the autoscaler wanted more than the host had
    // Whether it sent an fsync (a commit, a checkpoint) in the last second, as Autoscale saw
    // its mount's count (fsyncs_seen); true from its start until Autoscale looks. The others'
    // write budgets bind only while it does (RefreshWriteRatesLocked).
    bool syncing = false;
    uint64_t fsyncs_seen = 0;
  };
  struct Activity {
    int connections = 0;
    int64_t last_close_us = 0;
  };
  using EndpointKey = std::tuple<std::string, std::string, std::string>;
  using BranchKey = std::pair<std::string, std::string>;
  // Whether `live` is a compute the others' write budgets protect: it starts, or it runs and
  // has sent an fsync in the last second (Live::syncing). An idle one needs no protection.
  // REQUIRES: mu_ held (it reads `live`).
  static bool ProtectedLocked(const Live& live);
  // Whether a compute other than `self` is one the write budgets protect (ProtectedLocked).
  // REQUIRES: mu_ held.
  bool OthersProtectedLocked(const EndpointKey& self) const;
  // Sets every mounted compute's write budget: its current CU's while another compute starts
  // or commits (ProtectedLocked), none while the others idle or it is alone, or while the
  // engine checkpoints it. REQUIRES: mu_ held.
  void RefreshWriteRatesLocked();
  // When the running computes hold more than the host's CPUs, the ones smaller than the
  // largest give back down to their minimums, the smallest first. REQUIRES: mu_ held.
  void FitIntoHostLocked();
  // The running and starting computes but `except`, as the host's share-out sees them (a
  // compute starting or stopping keeps what it has), with their keys in `keys`.
  // REQUIRES: mu_ held.
  std::vector<HostShare> HostSharesLocked(const EndpointKey* except,
                                          std::vector<EndpointKey>* keys);
  // Lowers each compute of `keys` whose share GrowWithinHost lowered. REQUIRES: mu_ held.
  void GiveBackLocked(const std::vector<EndpointKey>& keys, const std::vector<HostShare>& shares,
                      const char* what);
  // Sets a running compute's CPU limit to `cu`; false if the kernel refused. The caller
  // then sets the write budgets (RefreshWriteRatesLocked). REQUIRES: mu_ held.
  bool ApplyCuLocked(const EndpointKey& key, Live& live, const ComputeSize& size, double cu,
                     const char* why, const std::string& what);
  // What an operation does to a branch it has claimed (see the class comment).
  enum class Work { kStopping, kReplacing, kDeleting, kRoles, kDatabases, kMasking };
  // A claim of one branch, released (under mu_) when destroyed. Movable, not copyable.
  // REQUIRES: mu_ held when it is destroyed.
  class BranchClaim {
   public:
    BranchClaim(Engine* engine, BranchKey key) : engine_(engine), key_(std::move(key)) {}
    BranchClaim(BranchClaim&& o) noexcept : engine_(o.engine_), key_(std::move(o.key_)) {
      o.engine_ = nullptr;
    }
    BranchClaim& operator=(BranchClaim&&) = delete;
    ~BranchClaim() {
      if (engine_ != nullptr) engine_->ReleaseBranchLocked(key_);
    }

   private:
    Engine* engine_;
    BranchKey key_;
  };
  // What a start needs, taken under the lock; the slow part runs on it without the lock.
  struct StartPlan {
    EndpointRecord ep;
    TimelineId timeline;
    std::string mountpoint;
    std::unique_ptr<MountHandle> mount;  // the endpoint's, or made by RunStart if none
    compute::ComputeSpec spec;
    bool read_only = false;            // pinned or a replica: a hot standby, no bootstrap
    bool replica = false;              // a read replica: streams from the primary
    bool owner_ready = false;          // the branch's postgres already has `owner`
    std::vector<RoleRecord> roles;     // passwords to apply once postgres runs
    std::vector<std::string> refused;  // roles whose password RunStart could not apply
    ComputeSize size;                  // as started
    double start_cu = 0;               // its CPU limit at the start
    uint64_t start_write_rate = 0;     // its write budget while it starts
  };
  // One endpoint's stop: planned under the lock, run without it, finished under it.
  struct StopJob {
    EndpointRecord ep;
    bool was_running = false;
    std::unique_ptr<MountHandle> mount;  // unmounted by RunStops once postgres stopped
    uint64_t write_throttled_ns = 0;     // the mount's, when the stop was planned
    // Its files are thrown away or read again only as after a crash: an immediate shutdown,
    // with no shutdown checkpoint to write (a reset's replaced state, a deleted branch).
    bool discard = false;
    Status status;
  };

  Result<BranchRecord*> FindBranch(const std::string& project, const std::string& id);
  Result<EndpointRecord*> FindEndpoint(const std::string& project, const std::string& branch,
                                       const std::string& id);
  bool HasChildren(const std::string& project, const std::string& id) const;
  // The seq a branch of `parent` starts from, at `time_us`, `lsn` or the head; sets
  // `fork_time_us`. Fast: the CHECKPOINT of a running parent is the caller's, unlocked.
  Result<Seq> ForkPointLocked(const BranchRecord& parent, std::optional<int64_t> time_us,
                              std::optional<uint64_t> lsn, int64_t* fork_time_us);
  // The running computes of branch `id`, which a fork at its head checkpoints first. Lifts
  // their write budgets until EndCheckpointsLocked(*lifted): the CHECKPOINT is the engine's
  // own, and the create, reset or diff that asked for it waits for it.
  std::vector<std::string> CheckpointTargetsLocked(const std::string& project,
                                                   const std::string& id,
                                                   std::vector<EndpointKey>* lifted);
  // Gives back the write budgets CheckpointTargetsLocked lifted. REQUIRES: mu_ held.
  void EndCheckpointsLocked(const std::vector<EndpointKey>& lifted);
  // The budgets one caller lifted, given back when it goes (however the caller's scope ends).
  // Declare it in the scope that holds the lock; it goes with mu_ held.
  struct LiftedBudgets {
    Engine* engine;
    std::vector<EndpointKey> keys;
    ~LiftedBudgets() { engine->EndCheckpointsLocked(keys); }
  };
  // CHECKPOINTs them (a failure only costs the branch some redo at its first start).
  void Checkpoint(const std::vector<std::string>& computes);
  // The same, without the lock, waiting at most options_.checkpoint_wait_ms. When the
  // CHECKPOINTs outlast the wait, they go on in a thread of their own, which takes over the
  // budgets in `*lifted` (leaving it empty) and gives them back when they end.
  void CheckpointForFork(const std::vector<std::string>& computes,
                         std::vector<EndpointKey>* lifted);
  // Validates and builds a new endpoint record (with a free port); stores nothing. A branch
  // has one read-write endpoint, and any number of `pinned` ones.
  Result<EndpointRecord> NewEndpointLocked(const std::string& project, const std::string& branch,
                                           const std::string& id, int64_t suspend_timeout_s,
                                           bool no_suspension, bool pinned = false,
                                           bool replica = false);

  // ---- masking (masking.cc) ----
  // Starts the pending masked branch `id`, masks it and records its masking point.
  // REQUIRES: the branch claimed by the caller. On failure the caller deletes it.
  Status MaskBranchLocked(std::unique_lock<std::mutex>& l, const std::string& project,
                          const std::string& id);
  // The rules on running compute `cid` (whose socket is `state`), then its CHECKPOINT. No lock
  // needed. `source` names the branch the data came from, for messages.
  Status ApplyMasking(const std::string& cid, const EndpointState& state,
                      const std::vector<api::MaskRule>& rules, const std::string& key,
                      const std::string& source);

  // ---- busy branches ----
  // Waits until no operation has claimed branch `id`, then claims it for `work` and waits
  // until none of its endpoints is starting or stopping. NotFound if the branch does not
  // exist or is deleted meanwhile.
  Result<BranchClaim> ClaimBranchLocked(std::unique_lock<std::mutex>& l, const std::string& project,
                                        const std::string& id, Work work);
  void ReleaseBranchLocked(const BranchKey& key);
  // Waits until no operation has claimed branch `id`. NotFound as for ClaimBranchLocked.
  Status WaitBranchFreeLocked(std::unique_lock<std::mutex>& l, const std::string& project,
                              const std::string& id);
  bool EndpointsBusyLocked(const std::string& project, const std::string& branch) const;
  // Runs `f` (the slow part of an operation) with mu_ released, and takes it again.
  // Shutdown waits for every such part to end.
  template <typename F>
  auto Unlocked(std::unique_lock<std::mutex>& l, F&& f) -> decltype(f()) {
    ++unlocked_;
    l.unlock();
    // Taken again however f ends (an exception too): callers' guards expect the lock.
    struct Relock {
      Engine* engine;
      std::unique_lock<std::mutex>& lock;
      ~Relock() {
        lock.lock();
        --engine->unlocked_;
        engine->changed_.notify_all();
      }
    } relock{this, l};
    return f();
  }

  // ---- starting ----
  // Starts the endpoint unless it runs, sharing a start already under way; the slow part
  // runs without the lock, which is held on entry and on return. Waits while its branch is
  // claimed (but for roles or databases, or by the caller: `claimed`) and while it is being
  // stopped; FailedPrecondition if its branch is being deleted.
  // After a reset or restore of the branch: the endpoints it stopped while they ran start
  // again at their next connection (the proxy wakes them), as after a suspension, so the call
  // answers once the branch has its new state and a delete right after it stops nothing. Those
  // that never suspend (no_suspension) start again at once, on a thread of its own.
  // `skip_read_write`: those were started already (a masked branch's reset masks it first).
  void RestartLaterLocked(const std::string& project, const std::string& branch,
                          const std::vector<StopJob>& stopped, bool skip_read_write = false);
  // The body of a restart's thread: StartEndpoint for each id, until the engine shuts down.
  void RestartEndpoints(const std::string& project, const std::string& branch,
                        const std::vector<std::string>& ids);
  struct Restart {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Restart> restarts_;  // guarded by mu_; joined by Shutdown
  bool shutting_down_ = false;     // guarded by mu_
  Result<EndpointState> StartWithLock(std::unique_lock<std::mutex>& l, const std::string& project,
                                      const std::string& branch, const std::string& id,
                                      bool claimed);
  // Plan returns the running state instead of a plan when the compute already runs.
  Result<std::variant<EndpointState, StartPlan>> PlanStartLocked(const EndpointRecord& ep);
  // Mount, sync, postgres, Bootstrap; no lock needed. On failure nothing is left running or
  // mounted.
  Status RunStart(StartPlan& plan);
  // Once postgres runs: makes `owner` (and gives it what `postgres` owned, for branches from
  // before roles), and applies the plan's role passwords. Runs as Arbor's superuser.
  Status Bootstrap(StartPlan& plan);
  // The compute id of the branch's read-write endpoint, started if it is not running.
  // REQUIRES: the branch claimed by the caller.
  Result<std::string> BranchComputeLocked(std::unique_lock<std::mutex>& l,
                                          const std::string& project, const std::string& branch,
                                          const std::string& why);
  // Applies one role's password to running compute `cid` (creating the role if missing).
  Status ApplyRole(const std::string& cid, const RoleRecord& role);
  // A role record with a fresh random password, returned beside it.
  static Result<std::pair<RoleRecord, std::string>> FreshRole(const std::string& project,
                                                              const std::string& branch,
                                                              const std::string& name);
  // The branch's running compute, if any (its id for the supervisor).
  std::optional<std::string> RunningComputeLocked(const std::string& project,
                                                  const std::string& branch);
  Result<EndpointState> FinishStartLocked(StartPlan& plan, Status started);
  std::string HbaFile() const;
  std::string IdentFile() const;
  // After a start: the branch has `owner`, and the roles the plan applied are marked so.
  void RecordBootstrapLocked(const StartPlan& plan);
  // Fresh-password copies, for branch `to`, of every role of branch `from`.
  Result<std::vector<RoleRecord>> FreshRolesLocked(const std::string& project,
                                                   const std::string& from, const std::string& to);
  // The role records of branch `id` once its catalog is replaced by another state (a reset to
  // `parent`, or a restore when `parent` is empty): its own, to be applied again, and fresh
  // copies of the parent's others.
  Result<std::vector<RoleRecord>> RolesAfterReplaceLocked(const std::string& project,
                                                          const std::string& id,
                                                          const std::string& parent);
  // Deletes every pinned endpoint of the branch, each with its timeline in one atomic write.
  // REQUIRES: their computes are stopped and unmounted.
  Status ErasePinnedLocked(const std::string& project, const std::string& branch);
  Status ErasePinnedEndpointLocked(const EndpointRecord& ep);
  // Deletes the pinned endpoints that were idle for their timeout and are not running.
  void ReapIdlePinnedLocked(int64_t now_us, std::vector<std::string>* gone);
  // Starts a pinned endpoint's postgres as a hot standby (standby.signal) whose roles hold
  // the passwords Arbor holds now, so that the proxy's logins work on any past state. No
  // client can connect meanwhile (Wake has not returned).
  // - The state is started as a standby; if every role of the branch holds Arbor's verifier,
  //   that is all (the state is exactly as it was).
  // - Otherwise (a role made or given a password later), and when the state ends in a clean
  //   shutdown (a standby would wait for a WAL record after its checkpoint before it opens),
  //   it is first started as a primary: the passwords are applied, then it stops
  //   immediately, leaving the same data plus those role changes for the standby to replay.
  Status StartStandby(StartPlan& plan);
  // A read replica's start (timetravel.cc): a hot standby at once, never a primary first,
  // since its WAL must stay the branch's to stream onto it.
  // Before a read-write start: if PGDATA was not shut down cleanly (a fork of a running
  // parent, a crash), postgres starts in standby mode with a promote trigger, so that it
  // promotes at the end of the WAL instead of ending crash recovery with an immediate
  // CHECKPOINT (timetravel.cc).
  [[nodiscard]] Status PromoteAfterReplay(StartPlan& plan);
  Status StartReplica(StartPlan& plan);
  // Deletes the fork a stopped (or failed) replica ran on and clears it from its record.
  void DropReplicaForkLocked(const EndpointRecord& ep);
  // Whether every role of the plan holds Arbor's verifier in running compute `cid`.
  Result<bool> RolesMatch(const std::string& cid, const StartPlan& plan);
  // Drops the connection counts of a deleted endpoint.
  void ForgetActivity(const EndpointKey& key);

  // ---- stopping ----
  // Marks the endpoints that are running or mounted as stopping and takes their mounts.
  // REQUIRES: none of them is starting or stopping (their branch is claimed, or checked).
  std::vector<StopJob> PlanStopsLocked(const std::vector<EndpointRecord>& eps);
  // Stops each job's postgres, then unmounts it; no lock needed.
  void RunStops(std::vector<StopJob>& jobs);
  // Clears `stopping`; an endpoint whose stop failed keeps its mount and stays running.
  void FinishStopsLocked(std::vector<StopJob>& jobs);
  // Plan, run unlocked, finish: the stops of these endpoints. Returns the jobs. `discard`:
  // an immediate shutdown (StopJob::discard).
  std::vector<StopJob> StopEndpointsWithLock(std::unique_lock<std::mutex>& l,
                                             const std::vector<EndpointRecord>& eps,
                                             bool discard = false);
  std::vector<EndpointRecord> BranchEndpointsLocked(const std::string& project,
                                                    const std::string& branch) const;
  // Records whether an endpoint should run across restarts.
  void MarkRunningLocked(const EndpointRecord& ep, bool running);

  // ---- deleting ----
  // DeleteBranch; with `expired_at`, only if the branch is still expired at that time.
  Status DeleteBranchImpl(const std::string& project, const std::string& id,
                          std::optional<int64_t> expired_at);
  // Removes a branch whose computes are stopped: its records and its timeline in one atomic
  // store write, then its live state. REQUIRES: the branch is claimed; it has no children.
  Status CommitDeleteLocked(const std::string& project, const std::string& id);
  // The snapshots of branch `id`, and those taken of the state it replaced in a restore
  // (forked from its timeline `tl`): deleting it waits for them.
  std::vector<std::string> SnapshotsOfLocked(const std::string& project, const std::string& id,
                                             TimelineId tl) const;
  // Removes a snapshot's record and timeline in one atomic write, then the timeline it was
  // forked from if nothing refers to it any more (a branch's former timeline, kept for it
  // across a reset). FailedPrecondition while branches were made from it.
  Status EraseSnapshotLocked(const std::string& project, const std::string& branch,
                             const std::string& id);
  // The branches whose timeline is a child of `tl`.
  std::vector<std::string> BranchesForkedFromLocked(const std::string& project,
                                                    TimelineId tl) const;
  // Whether a branch (live or deleted), pinned endpoint, replica or snapshot refers to timeline
  // `tl`.
  bool TimelineUsedLocked(TimelineId tl) const;
  // Deletes timeline `up` and then its ancestors, each while nothing refers to it and it has
  // no child: a deleted snapshot's timeline, or a branch's former one kept for snapshots.
  void DeleteUnusedAncestorsLocked(TimelineId up);
  // Moves a branch whose computes are stopped to a deleted-branch record, in one atomic store
  // write, then drops its live state. REQUIRES: the branch is claimed; no live children.
  Status CommitSoftDeleteLocked(const std::string& project, const std::string& id, bool expired);
  // Deletes the timelines and records of deleted branches `uids` (of `project`), each once
  // no other timeline is its child. FailedPrecondition if some could not go.
  Status PurgeDeletedLocked(const std::string& project, std::vector<std::string> uids);
  // The uids of the deleted branches descending from the branch of uid `uid`.
  std::vector<std::string> DeletedDescendantsLocked(const std::string& project,
                                                    const std::string& uid) const;
  // The most recently deleted branch `id` of the project, if any.
  DeletedBranchRecord* LatestDeletedLocked(const std::string& project, const std::string& id);
  bool HasDeletedChildren(const std::string& project, const std::string& uid) const;
  Result<uint16_t> AllocatePort() const;
  // Counts the running compute's CU-seconds (and its branch's written bytes, for a read-write
  // endpoint) up to `now_us` into the hour's usage record, marked to be written.
  void MeterLocked(const EndpointKey& key, Live& live, int64_t now_us);
  // Writes the usage records changed since the last flush. Logged, not returned, on failure.
  void FlushUsageLocked();
  std::set<std::tuple<std::string, int64_t, std::string, std::string>> usage_dirty_;
  int64_t usage_flushed_us_ = 0;
  std::string ComputeId(const EndpointRecord& ep) const;
  std::string EndpointDir(const std::string& kind, const EndpointRecord& ep) const;

  EngineOptions options_;
  storage::Store* store_;
  Mounter* mounter_;
  compute::Supervisor* supervisor_;
  std::mutex mu_;
  // Notified whenever a claim ends, a start or stop finishes, or an unlocked part ends.
  std::condition_variable changed_;
  int unlocked_ = 0;                         // guarded by mu_; slow parts now running
  int background_checkpoints_ = 0;           // guarded by mu_; CheckpointForFork's threads
  Catalog catalog_;                          // guarded by mu_
  std::map<EndpointKey, Live> live_;         // guarded by mu_
  std::map<BranchKey, Work> busy_;           // guarded by mu_; claimed branches
  std::set<BranchKey> creating_;             // guarded by mu_; names CreateBranch reserved
  std::set<std::string> creating_projects_;  // guarded by mu_; names CreateProject reserved
  // guarded by mu_; (project, branch, snapshot) names CreateSnapshot reserved
  std::set<std::tuple<std::string, std::string, std::string>> creating_snapshots_;
  PortListener* ports_ = nullptr;  // guarded by mu_
  std::mutex activity_mu_;
  std::map<EndpointKey, Activity> activity_;  // guarded by activity_mu_

  // Counters of metrics.cc, kept per endpoint while it exists (a scrape drops the counters of
  // deleted endpoints, so their number is bounded by the catalog's). A leaf lock.
  struct EndpointCounters {
    uint64_t starts = 0;
    uint64_t wakes = 0;  // starts a client's connection waited for
    uint64_t bytes_from_client = 0;
    uint64_t bytes_to_client = 0;
    std::map<std::string, uint64_t> auth_failures;  // by reason
    metrics::Histogram wake_seconds{metrics::LatencyBuckets()};
  };
  void CountStart(const EndpointKey& key);
  // Drops the counters of endpoints and projects that no longer exist. REQUIRES: mu_ held.
  void PruneCountersLocked();
  uint64_t StartsOf(const EndpointKey& key);
  std::mutex metrics_mu_;
  std::map<EndpointKey, EndpointCounters> counters_;        // guarded by metrics_mu_
  std::map<std::string, uint64_t> unrouted_auth_failures_;  // guarded by metrics_mu_
  std::map<std::string, uint64_t> branches_expired_;        // by project; guarded by metrics_mu_
};

// Checks a project, branch or endpoint id: 1-63 lowercase letters, digits and hyphens,
// starting with a letter. InvalidArgument naming `what` otherwise.
[[nodiscard]] Status ValidateId(const std::string& what, const std::string& id);

}  // namespace arbor::control
