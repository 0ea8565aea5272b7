// The engine's locking: while one operation's slow part (initdb, a stop, a CHECKPOINT) is held
// open, logins and operations on other branches and endpoints answer at once, and operations
// on the same branch wait for it or are refused. The slow parts are held open by gates in a
// fake supervisor, so each interleaving is forced, not hoped for with sleeps. What lies below
// the engine is faked: computes (the supervisor) and mounts (the Mounter); the store is real.
#include "control/engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"

namespace arbor::control {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

// How long a call that should not wait may take, on a loaded machine.
constexpr seconds kPrompt{10};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "arbor-engine-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Holds the calls whose subject contains `match` until opened. Unarmed, it lets all pass.
class Gate {
 public:
  void Arm(std::string match) {
    std::lock_guard l(mu_);
    match_ = std::move(match);
    armed_ = true;
    open_ = false;
    entered_ = false;
  }
  void Pass(const std::string& subject) {
    std::unique_lock l(mu_);
    if (!armed_ || subject.find(match_) == std::string::npos) return;
    entered_ = true;
    cv_.notify_all();
    cv_.wait(l, [this] { return open_; });
  }
  bool WaitEntered() {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, seconds(30), [this] { return entered_; });
  }
  void Open() {
    std::lock_guard l(mu_);
    open_ = true;
    armed_ = false;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string match_;
  bool armed_ = false, open_ = false, entered_ = false;
};

// A mount's fsync count, which a test sets, and the write budget the engine gave it.
struct FakeMountState {
  std::atomic<uint64_t> fsyncs{0};
  std::atomic<uint64_t> write_rate{0};
};

class FakeMount : public MountHandle {
 public:
  explicit FakeMount(std::shared_ptr<FakeMountState> s) : s_(std::move(s)) {}
  void SetWriteRate(uint64_t bytes_per_s) override { s_->write_rate = bytes_per_s; }
  uint64_t Fsyncs() const override { return s_->fsyncs; }

 private:
  std::shared_ptr<FakeMountState> s_;
};

class FakeMounter : public Mounter {
 public:
  Result<std::unique_ptr<MountHandle>> Mount(TimelineId, const std::string& path) override {
    auto s = std::make_shared<FakeMountState>();
    std::lock_guard l(mu_);
    mounts_[path] = s;
    return std::unique_ptr<MountHandle>(std::make_unique<FakeMount>(s));
  }
  // The state of the last mount at `path`; null if none was made there.
  std::shared_ptr<FakeMountState> At(const std::string& path) {
    std::lock_guard l(mu_);
    auto it = mounts_.find(path);
    return it == mounts_.end() ? nullptr : it->second;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<FakeMountState>> mounts_;
};

// Computes that start, stop and checkpoint at once, unless a gate holds them.
class FakeSupervisor : public compute::Supervisor {
 public:
  FakeSupervisor()
      : Supervisor(compute::OsUser{"arbor-test", getuid(), getgid()}, "/nonexistent") {}

  Status Start(const compute::ComputeSpec& spec, std::chrono::milliseconds) override {
    start_gate.Pass(spec.id);
    std::lock_guard l(mu_);
    if (!running_.insert(spec.id).second) return Status::AlreadyExists(spec.id + " runs");
    return Status::Ok();
  }
  Status Stop(const std::string& id, std::chrono::milliseconds) override {
    stop_gate.Pass(id);
    std::lock_guard l(mu_);
    if (!running_.erase(id)) return Status::NotFound("no compute " + id);
    return Status::Ok();
  }
  Status Checkpoint(const std::string& id, uint64_t = 0, double pace = 0) override {
    last_pace = pace;
    checkpoint_gate.Pass(id);
    if (fail_checkpoints) return Status::IOError("checkpoint failed (test)");
    std::lock_guard l(mu_);
    return running_.count(id) ? Status::Ok() : Status::NotFound(id + " does not run");
  }
  Result<std::vector<std::vector<std::string>>> Query(const std::string& id, const std::string&,
                                                      const std::string&) override {
    std::lock_guard l(mu_);
    if (!running_.count(id)) return Status::NotFound(id + " does not run");
    return std::vector<std::vector<std::string>>{};
  }
  compute::ComputeState State(const std::string& id) override {
    std::lock_guard l(mu_);
    return running_.count(id) ? compute::ComputeState::kRunning : compute::ComputeState::kStopped;
  }
  Status InitDb(const std::string& pgdata, const std::string&, const std::string&) override {
    initdb_gate.Pass(pgdata);
    return Status::Ok();
  }
  bool Running(const std::string& id) {
    std::lock_guard l(mu_);
    return running_.count(id) > 0;
  }

  Gate start_gate, stop_gate, checkpoint_gate, initdb_gate;
  std::atomic<bool> fail_checkpoints{false};
  std::atomic<double> last_pace{-1};  // the pace_cpus of the last Checkpoint call

 private:
  std::mutex mu_;
  std::set<std::string> running_;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::Store::Options so;
    so.path = dir_.path() + "/store";
    so.background_gc = false;
    so.block_cache_bytes = 16 << 20;
    so.wal_prefill_bytes = 1 << 20;
    auto store = storage::Store::Open(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    EngineOptions eo;
    eo.data_dir = dir_.path() + "/data";
    eo.runtime_dir = eo.data_dir;
    eo.checkpoint_parent = CheckpointParent();
    eo.checkpoint_wait_ms = CheckpointWaitMs();
    engine_ = std::make_unique<Engine>(eo, store_.get(), &mounter_, &sup_);
    ASSERT_TRUE(engine_->Open().ok());
    ASSERT_TRUE(engine_->CreateProject("default", 86'400).ok());
    ASSERT_TRUE(engine_->Wake("default", "production", "primary").ok());
  }
  virtual bool CheckpointParent() const { return true; }
  // As the daemon's default: the create waits for the whole CHECKPOINT (the tests below
  // hold it open and expect that).
  virtual int64_t CheckpointWaitMs() const { return -1; }
  void TearDown() override {
    for (Gate* g : {&sup_.start_gate, &sup_.stop_gate, &sup_.checkpoint_gate, &sup_.initdb_gate}) {
      g->Open();
    }
    calls_.clear();  // waits for every call, now that nothing holds them
    engine_.reset();
    store_.reset();
  }

  // Runs `f` on another thread. A call that wrongly waits is joined only in TearDown, after
  // the gates opened, so such a test fails instead of hanging.
  template <typename F>
  auto Later(F f) {
    std::shared_future<decltype(f())> call = std::async(std::launch::async, std::move(f)).share();
    calls_.push_back(std::make_shared<std::shared_future<decltype(f())>>(call));
    return call;
  }
  // True if the call returned within kPrompt.
  template <typename T>
  static bool Prompt(const std::shared_future<T>& f) {
    return f.wait_for(kPrompt) == std::future_status::ready;
  }

  // Reads of branch `other` and logins to it, and a new branch made and started: none may
  // wait for the operation the test holds open.
  void ExpectOthersProceed(const std::string& new_branch, const std::string& other = "production") {
    auto get = Later([this, other] { return engine_->GetBranch("default", other).ok(); });
    auto role =
        Later([this, other] { return engine_->RoleForLogin("default", other, "owner").ok(); });
    auto wake = Later([this, other] { return engine_->Wake("default", other, "primary").ok(); });
    auto create = Later([this, new_branch] {
      return engine_->CreateBranch("default", new_branch, BranchRequest{}).ok() &&
             engine_->Wake("default", new_branch, "primary").ok();
    });
    EXPECT_TRUE(Prompt(get)) << "GetBranch waited";
    EXPECT_TRUE(Prompt(role)) << "RoleForLogin waited";
    EXPECT_TRUE(Prompt(wake)) << "Wake of another endpoint waited";
    EXPECT_TRUE(Prompt(create)) << "creating and starting another branch waited";
    if (Prompt(get)) {
      EXPECT_TRUE(get.get());
    }
    if (Prompt(role)) {
      EXPECT_TRUE(role.get());
    }
    if (Prompt(wake)) {
      EXPECT_TRUE(wake.get());
    }
    if (Prompt(create)) {
      EXPECT_TRUE(create.get());
    }
  }

  TempDir dir_;
  FakeMounter mounter_;
  FakeSupervisor sup_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Engine> engine_;
  std::vector<std::shared_ptr<void>> calls_;
};

TEST_F(EngineTest, InitdbOfANewProjectHoldsUpNoOneElse) {
  sup_.initdb_gate.Arm("/mnt/init-");
  auto made = Later([&] { return engine_->CreateProject("other", 86'400); });
  ASSERT_TRUE(sup_.initdb_gate.WaitEntered());

  ExpectOthersProceed("during-initdb");
  // The name is taken while initdb runs; the project is not visible before it is whole.
  auto again = Later([&] { return engine_->CreateProject("other", 86'400).status().code(); });
  ASSERT_TRUE(Prompt(again));
  EXPECT_EQ(again.get(), Code::kAlreadyExists);
  EXPECT_EQ(engine_->GetProject("other").status().code(), Code::kNotFound);

  sup_.initdb_gate.Open();
  ASSERT_TRUE(made.get().ok());
  EXPECT_TRUE(engine_->GetBranch("other", "production").ok());
  EXPECT_TRUE(engine_->Wake("other", "production", "primary").ok());
}

TEST_F(EngineTest, DeletingABranchHoldsUpOnlyThatBranch) {
  ASSERT_TRUE(engine_->CreateBranch("default", "dev", BranchRequest{}).ok());
  ASSERT_TRUE(engine_->Wake("default", "dev", "primary").ok());
  sup_.stop_gate.Arm("branches/dev/");
  auto deleted = Later([&] { return engine_->DeleteBranch("default", "dev"); });
  ASSERT_TRUE(sup_.stop_gate.WaitEntered());

  ExpectOthersProceed("during-delete");
  // A login to the branch being deleted gets a clear answer at once, and it gets no child.
  auto wake = Later([&] { return engine_->Wake("default", "dev", "primary").status(); });
  ASSERT_TRUE(Prompt(wake)) << "Wake of the branch being deleted waited";
  Status woken = wake.get();
  EXPECT_EQ(woken.code(), Code::kFailedPrecondition) << woken.ToString();
  EXPECT_NE(woken.message().find("being deleted"), std::string::npos) << woken.ToString();
  BranchRequest from_dev;
  from_dev.source_branch = "dev";
  EXPECT_EQ(engine_->CreateBranch("default", "dev-child", from_dev).status().code(),
            Code::kFailedPrecondition);
  // Operations on the same branch wait for the delete, then see its outcome.
  auto reset = Later([&] { return engine_->ResetBranch("default", "dev", std::nullopt).status(); });

  sup_.stop_gate.Open();
  ASSERT_TRUE(deleted.get().ok());
  EXPECT_EQ(reset.get().code(), Code::kNotFound);
  EXPECT_EQ(engine_->GetBranch("default", "dev").status().code(), Code::kNotFound);
  EXPECT_FALSE(sup_.Running("projects/default/branches/dev/endpoints/primary"));
}

// EngineOptions::checkpoint_parent off (ARBOR_BRANCH_CHECKPOINT=0): a branch forks its running
// parent's head at once, and no CHECKPOINT is asked of the parent.
class EngineHeadForkTest : public EngineTest {
 protected:
  bool CheckpointParent() const override { return false; }
};

TEST_F(EngineHeadForkTest, ABranchOfARunningParentWaitsForNoCheckpoint) {
  sup_.checkpoint_gate.Arm("branches/production/");
  auto made = Later([&] { return engine_->CreateBranch("default", "quick", BranchRequest{}); });
  ASSERT_TRUE(Prompt(made)) << "the create waited for the parent's CHECKPOINT";
  EXPECT_TRUE(made.get().ok());
  EXPECT_TRUE(engine_->Wake("default", "quick", "primary").ok());
  auto reset = Later([&] { return engine_->ResetBranch("default", "quick", std::nullopt); });
  ASSERT_TRUE(Prompt(reset)) << "the reset waited for the parent's CHECKPOINT";
}

// EngineOptions::checkpoint_wait_ms: a create or reset waits that long for the parent's
// CHECKPOINT, then forks its head while the CHECKPOINT goes on.
class EngineBoundedCheckpointTest : public EngineTest {
 protected:
  int64_t CheckpointWaitMs() const override { return 100; }
};

TEST_F(EngineBoundedCheckpointTest, ACreateAndAResetAnswerWhileTheParentsCheckpointGoesOn) {
  sup_.checkpoint_gate.Arm("branches/production/");
  auto made = Later([&] { return engine_->CreateBranch("default", "quick", BranchRequest{}); });
  ASSERT_TRUE(sup_.checkpoint_gate.WaitEntered());
  ASSERT_TRUE(Prompt(made)) << "the create waited for the whole CHECKPOINT";
  ASSERT_TRUE(made.get().ok()) << made.get().status().ToString();
  EXPECT_TRUE(engine_->Wake("default", "quick", "primary").ok());
  auto reset = Later([&] { return engine_->ResetBranch("default", "quick", std::nullopt); });
  ASSERT_TRUE(Prompt(reset)) << "the reset waited for the whole CHECKPOINT";
  EXPECT_TRUE(reset.get().ok()) << reset.get().status().ToString();
  // The CHECKPOINTs still held open end with the engine: its shutdown waits for them
  // (TearDown opens the gate first).
}

// By default the parent is checkpointed first, without the engine's lock.
TEST_F(EngineTest, CheckpointOfTheParentHoldsUpNoOneElse) {
  sup_.checkpoint_gate.Arm("branches/production/");
  auto made = Later([&] { return engine_->CreateBranch("default", "feature", BranchRequest{}); });
  ASSERT_TRUE(sup_.checkpoint_gate.WaitEntered());

  auto get = Later([&] { return engine_->GetBranch("default", "production").ok(); });
  auto role = Later([&] { return engine_->RoleForLogin("default", "production", "owner").ok(); });
  auto wake = Later([&] { return engine_->Wake("default", "production", "primary").ok(); });
  auto same = Later(
      [&] { return engine_->CreateBranch("default", "feature", BranchRequest{}).status().code(); });
  EXPECT_TRUE(Prompt(get) && get.get());
  EXPECT_TRUE(Prompt(role) && role.get());
  EXPECT_TRUE(Prompt(wake) && wake.get());
  ASSERT_TRUE(Prompt(same));
  EXPECT_EQ(same.get(), Code::kAlreadyExists);

  sup_.checkpoint_gate.Open();
  ASSERT_TRUE(made.get().ok());
  EXPECT_TRUE(engine_->Wake("default", "feature", "primary").ok());
}

TEST_F(EngineTest, ALoginDuringASuspendWaitsForTheStopThenStartsAgain) {
  ASSERT_TRUE(engine_->CreateBranch("default", "busy", BranchRequest{}).ok());
  ASSERT_TRUE(engine_->Wake("default", "busy", "primary").ok());
  engine_->ConnectionOpened("default", "busy", "primary");  // so it is not idle
  sup_.stop_gate.Arm("branches/production/");
  auto suspended = Later([&] { return engine_->SuspendIdle(INT64_MAX / 2); });
  ASSERT_TRUE(sup_.stop_gate.WaitEntered());

  ExpectOthersProceed("during-suspend", "busy");
  auto wake = Later([&] { return engine_->Wake("default", "production", "primary"); });
  sup_.stop_gate.Open();
  auto names = suspended.get();
  EXPECT_NE(std::find(names.begin(), names.end(),
                      "projects/default/branches/production/endpoints/primary"),
            names.end());
  ASSERT_TRUE(wake.get().ok());
  auto state = engine_->GetEndpointState("default", "production", "primary");
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE(state->running);
  EXPECT_TRUE(sup_.Running("projects/default/branches/production/endpoints/primary"));
}

TEST_F(EngineTest, AResetRestartsTheBranchWhileOthersProceed) {
  ASSERT_TRUE(engine_->CreateBranch("default", "dev", BranchRequest{}).ok());
  ASSERT_TRUE(engine_->Wake("default", "dev", "primary").ok());
  auto before = engine_->GetBranch("default", "dev");
  ASSERT_TRUE(before.ok());
  sup_.stop_gate.Arm("branches/dev/");
  auto reset = Later([&] { return engine_->ResetBranch("default", "dev", std::nullopt); });
  ASSERT_TRUE(sup_.stop_gate.WaitEntered());

  ExpectOthersProceed("during-reset");
  // A login to the branch being reset waits, and reaches the reset branch.
  auto wake = Later([&] { return engine_->Wake("default", "dev", "primary"); });
  sup_.stop_gate.Open();
  auto after = reset.get();
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_NE(after->timeline, before->timeline);
  ASSERT_TRUE(wake.get().ok());
  EXPECT_TRUE(sup_.Running("projects/default/branches/dev/endpoints/primary"));
  EXPECT_EQ(store_->GetTimeline(before->timeline).status().code(), Code::kNotFound);
}

// A reset answers once the branch has its new state. Its running endpoint starts again at its
// next login, like a suspended one; one that never suspends starts again right after the
// answer, and a login meanwhile joins that start.
TEST_F(EngineTest, AResetAnswersBeforeItsEndpointIsUpAgain) {
  ASSERT_TRUE(engine_->CreateBranch("default", "qa", BranchRequest{}).ok());
  ASSERT_TRUE(engine_->Wake("default", "qa", "primary").ok());
  sup_.start_gate.Arm("branches/qa/");
  auto quick = Later([&] { return engine_->ResetBranch("default", "qa", std::nullopt); });
  ASSERT_TRUE(Prompt(quick)) << "the reset waited for its endpoint's start";
  ASSERT_TRUE(quick.get().ok());
  EXPECT_FALSE(sup_.Running("projects/default/branches/qa/endpoints/primary"));
  auto woken = Later([&] { return engine_->Wake("default", "qa", "primary"); });
  ASSERT_TRUE(sup_.start_gate.WaitEntered());
  sup_.start_gate.Open();
  ASSERT_TRUE(woken.get().ok());
  EXPECT_TRUE(sup_.Running("projects/default/branches/qa/endpoints/primary"));

  ASSERT_TRUE(engine_->DeleteEndpoint("default", "qa", "primary").ok());
  ASSERT_TRUE(engine_->CreateEndpoint("default", "qa", "primary", 0, /*no_suspension=*/true).ok());
  ASSERT_TRUE(engine_->Wake("default", "qa", "primary").ok());
  sup_.start_gate.Arm("branches/qa/");
  auto reset = Later([&] { return engine_->ResetBranch("default", "qa", std::nullopt); });
  ASSERT_TRUE(Prompt(reset)) << "the reset waited for its endpoint's start";
  ASSERT_TRUE(reset.get().ok());
  ASSERT_TRUE(sup_.start_gate.WaitEntered()) << "the endpoint was not started again";
  EXPECT_FALSE(sup_.Running("projects/default/branches/qa/endpoints/primary"));
  auto wake = Later([&] { return engine_->Wake("default", "qa", "primary"); });
  sup_.start_gate.Open();
  ASSERT_TRUE(wake.get().ok());
  EXPECT_TRUE(sup_.Running("projects/default/branches/qa/endpoints/primary"));
}

// ---- changed pages (changed_pages.cc) ----

// Writes PostgreSQL-like relation files straight into a timeline's tree.
class TreeWriter {
 public:
  TreeWriter(storage::Store* store, TimelineId tl) : store_(store), tl_(tl) {}
  // base/<db>, made if missing.
  InodeId DbDir(const std::string& db) {
    InodeId base = Dir(kRootInode, "base");
    return Dir(base, db);
  }
  // A new file `name` in `dir` (replacing any file of that name) with blocks `blocks`.
  InodeId NewFile(InodeId dir, const std::string& name, std::vector<uint64_t> blocks) {
    InodeId ino = store_->AllocateInode().value();
    storage::Mutation m;
    storage::Attr a;
    a.mode = 0100600;
    a.size = (blocks.empty() ? 0 : blocks.back() + 1) * storage::kBlockSize;
    m.PutAttr(ino, a);
    m.PutDirent(dir, name, ino, storage::FileKind::kRegular);
    for (uint64_t b : blocks) m.PutBlock(ino, b, std::span<const char>("page", 4));
    EXPECT_TRUE(store_->Apply(tl_, std::move(m)).ok());
    return ino;
  }
  void Write(InodeId ino, uint64_t block) {
    storage::Mutation m;
    m.PutBlock(ino, block, std::span<const char>("new!", 4));
    EXPECT_TRUE(store_->Apply(tl_, std::move(m)).ok());
  }

 private:
  InodeId Dir(InodeId parent, const std::string& name) {
    auto found = store_->Lookup(tl_, store_->Head(), parent, name);
    EXPECT_TRUE(found.ok());
    if (found.ok() && found->has_value()) return (*found)->ino;
    InodeId ino = store_->AllocateInode().value();
    storage::Mutation m;
    storage::Attr a;
    a.kind = storage::FileKind::kDirectory;
    a.mode = 040700;
    m.PutAttr(ino, a);
    m.PutDirent(parent, name, ino, storage::FileKind::kDirectory);
    EXPECT_TRUE(store_->Apply(tl_, std::move(m)).ok());
    return ino;
  }
  storage::Store* store_;
  TimelineId tl_;
};

std::string Describe(const ChangedPages& cp) {
  std::string out;
  for (const auto& [db, rels] : cp.databases) {
    for (const ChangedRelation& r : rels) {
      out += std::to_string(db) + "/" + std::to_string(r.relfilenode) + (r.whole ? " whole" : "");
      for (const auto& [lo, hi] : r.pages) {
        out += " " + std::to_string(lo) + "-" + std::to_string(hi);
      }
      out += "; ";
    }
  }
  return out;
}

TEST_F(EngineTest, ChangedPagesMapTheChangeSetToRelationPages) {
  TimelineId prod = engine_->GetBranch("default", "production")->timeline;
  TreeWriter p(store_.get(), prod);
  InodeId db = p.DbDir("5");
  InodeId rel = p.NewFile(db, "16384", {0, 1, 2, 3, 4, 5});
  InodeId seg1 = p.NewFile(db, "16384.1", {0, 1});
  InodeId fsm = p.NewFile(db, "16384_fsm", {0});
  p.NewFile(db, "16390", {0, 1});
  InodeId other = p.NewFile(db, "16395", {0, 1, 2, 3});
  p.NewFile(db, "16399", {0});  // never written again
  ASSERT_TRUE(engine_->CreateBranch("default", "dev", BranchRequest{}).ok());
  ASSERT_TRUE(engine_->Wake("default", "dev", "primary").ok());
  TimelineId dev = engine_->GetBranch("default", "dev")->timeline;
  TreeWriter d(store_.get(), dev);
  d.Write(rel, 2);
  d.Write(rel, 3);
  d.Write(rel, 5);
  d.Write(seg1, 1);
  d.Write(fsm, 0);                         // not the main fork: left out
  d.NewFile(db, "16390", {0});             // recreated on dev: a different file
  d.NewFile(db, "16400", {0, 1});          // only on dev
  d.NewFile(db, "pg_internal.init", {0});  // not a relation file
  p.Write(other, 3);                       // production wrote after the fork too

  // Both running computes are checkpointed first, without the engine's lock.
  sup_.checkpoint_gate.Arm("dev");
  auto call = Later([this] {
    return engine_->ChangedPagesBetween("default", "production", "primary", "dev", "primary");
  });
  ASSERT_TRUE(sup_.checkpoint_gate.WaitEntered());
  auto get = Later([this] { return engine_->GetBranch("default", "dev").ok(); });
  EXPECT_TRUE(Prompt(get)) << "GetBranch waited for the checkpoint";
  sup_.checkpoint_gate.Open();
  ASSERT_TRUE(Prompt(call));
  auto cp = call.get();
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  EXPECT_TRUE(cp->complete);
  EXPECT_EQ(Describe(*cp),
            "5/16384 2-3 5-5 131073-131073; 5/16390 whole 0-0; 5/16395 3-3; 5/16400 whole 0-1; ");

  // The same both ways, and nothing between a side and itself.
  auto back = engine_->ChangedPagesBetween("default", "dev", "primary", "production", "primary");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(Describe(*back), Describe(*cp));
  auto self = engine_->ChangedPagesBetween("default", "dev", "primary", "dev", "primary");
  ASSERT_TRUE(self.ok());
  EXPECT_EQ(Describe(*self), "");
  // A failed CHECKPOINT leaves pages in buffers the store has not seen: compare in full.
  sup_.fail_checkpoints = true;
  auto unsure = engine_->ChangedPagesBetween("default", "production", "primary", "dev", "primary");
  sup_.fail_checkpoints = false;
  ASSERT_TRUE(unsure.ok());
  EXPECT_FALSE(unsure->complete);
  EXPECT_NE(unsure->reason.find("CHECKPOINT"), std::string::npos) << unsure->reason;
  EXPECT_EQ(
      engine_->ChangedPagesBetween("default", "dev", "nosuch", "dev", "primary").status().code(),
      Code::kNotFound);
}

// ---- deleted branches (undelete and purge) ----

// A branch's file, read at its timeline's head: what an undelete must bring back.
bool HasFile(storage::Store* store, TimelineId tl, const std::string& name) {
  auto base = store->Lookup(tl, store->Head(), kRootInode, "base");
  if (!base.ok() || !base->has_value()) return false;
  auto db = store->Lookup(tl, store->Head(), (*base)->ino, "5");
  if (!db.ok() || !db->has_value()) return false;
  auto f = store->Lookup(tl, store->Head(), (*db)->ino, name);
  return f.ok() && f->has_value();
}

TEST_F(EngineTest, ADeletedBranchComesBackWithItsPortAndDataUntilItsPurgeTime) {
  ASSERT_TRUE(engine_->CreateBranch("default", "dev", BranchRequest{}).ok());
  ASSERT_TRUE(engine_->Wake("default", "dev", "primary").ok());
  auto dev = engine_->GetBranch("default", "dev");
  ASSERT_TRUE(dev.ok());
  TreeWriter w(store_.get(), dev->timeline);
  w.NewFile(w.DbDir("5"), "16384", {0, 1});
  auto port = engine_->GetEndpoint("default", "dev", "primary")->port;

  ASSERT_TRUE(engine_->DeleteBranch("default", "dev").ok());
  EXPECT_FALSE(sup_.Running("projects/default/branches/dev/endpoints/primary"));
  EXPECT_EQ(engine_->GetBranch("default", "dev").status().code(), Code::kNotFound);
  EXPECT_EQ(engine_->EndpointAtPort(port).status().code(), Code::kNotFound);
  for (const auto& b : engine_->ListBranches("default")) EXPECT_NE(b.id, "dev");
  auto deleted = engine_->ListDeletedBranches("default");
  ASSERT_TRUE(deleted.ok());
  ASSERT_EQ(deleted->size(), 1u);
  const DeletedBranchRecord d = deleted->front();
  EXPECT_EQ(d.branch.id, "dev");
  EXPECT_EQ(d.purge_time_us - d.delete_time_us, int64_t{86'400} * 1'000'000);
  // Its port stays its own: a new endpoint elsewhere does not get it.
  ASSERT_TRUE(engine_->CreateBranch("default", "other", BranchRequest{}).ok());
  EXPECT_NE(engine_->GetEndpoint("default", "other", "primary")->port, port);

  // The deleted branch survives a restart, and Open does not take its timeline.
  engine_.reset();
  EngineOptions eo;
  eo.data_dir = dir_.path() + "/data";
  eo.runtime_dir = eo.data_dir;
  engine_ = std::make_unique<Engine>(eo, store_.get(), &mounter_, &sup_);
  ASSERT_TRUE(engine_->Open().ok());
  ASSERT_TRUE(store_->GetTimeline(dev->timeline).ok());
  ASSERT_EQ(engine_->ListDeletedBranches("default")->size(), 1u);

  // Not yet due: nothing is purged.
  EXPECT_TRUE(engine_->PurgeDeleted(d.purge_time_us - 1).empty());
  auto back = engine_->UndeleteBranch("default", "dev", std::nullopt);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->notes.empty());
  EXPECT_EQ(back->branch.uid, dev->uid);
  EXPECT_EQ(engine_->GetEndpoint("default", "dev", "primary")->port, port);
  EXPECT_TRUE(engine_->EndpointAtPort(port).ok());
  EXPECT_TRUE(HasFile(store_.get(), back->branch.timeline, "16384"));
  EXPECT_TRUE(engine_->RoleForLogin("default", "dev", "owner").ok());
  EXPECT_TRUE(engine_->Wake("default", "dev", "primary").ok());
  EXPECT_TRUE(engine_->ListDeletedBranches("default")->empty());
  EXPECT_EQ(engine_->UndeleteBranch("default", "dev", std::nullopt).status().code(),
            Code::kNotFound);

  // Deleted again, it is purged once its purge time has passed: its timeline goes.
  ASSERT_TRUE(engine_->DeleteBranch("default", "dev").ok());
  auto again = engine_->ListDeletedBranches("default");
  ASSERT_EQ(again->size(), 1u);
  auto gone = engine_->PurgeDeleted(again->front().purge_time_us);
  EXPECT_EQ(gone, std::vector<std::string>{"projects/default/branches/dev"});
  EXPECT_TRUE(engine_->ListDeletedBranches("default")->empty());
  EXPECT_EQ(store_->GetTimeline(dev->timeline).status().code(), Code::kNotFound);
  EXPECT_EQ(engine_->UndeleteBranch("default", "dev", std::nullopt).status().code(),
            Code::kNotFound);
  // Its port is free again.
  ASSERT_TRUE(engine_->CreateBranch("default", "dev2", BranchRequest{}).ok());
  EXPECT_EQ(engine_->GetEndpoint("default", "dev2", "primary")->port, port);
}

TEST_F(EngineTest, ATakenIdNeedsANewBranchIdAndAChildWaitsForItsParent) {
  ASSERT_TRUE(engine_->CreateBranch("default", "feat", BranchRequest{}).ok());
  BranchRequest from_feat;
  from_feat.source_branch = "feat";
  ASSERT_TRUE(engine_->CreateBranch("default", "sub", from_feat).ok());
  // Live children still refuse; deleted ones do not.
  EXPECT_EQ(engine_->DeleteBranch("default", "feat").code(), Code::kFailedPrecondition);
  ASSERT_TRUE(engine_->DeleteBranch("default", "sub").ok());
  // A reset would orphan the deleted child's timeline: refused with a sentence.
  Status reset = engine_->ResetBranch("default", "feat", std::nullopt).status();
  EXPECT_EQ(reset.code(), Code::kFailedPrecondition);
  EXPECT_NE(reset.message().find("purge"), std::string::npos) << reset.ToString();
  ASSERT_TRUE(engine_->DeleteBranch("default", "feat").ok());

  Status child = engine_->UndeleteBranch("default", "sub", std::nullopt).status();
  EXPECT_EQ(child.code(), Code::kFailedPrecondition);
  EXPECT_NE(child.message().find("undelete the parent first"), std::string::npos)
      << child.ToString();

  // A new branch takes the id: the old one comes back only under another.
  ASSERT_TRUE(engine_->CreateBranch("default", "feat", BranchRequest{}).ok());
  Status taken = engine_->UndeleteBranch("default", "feat", std::nullopt).status();
  EXPECT_EQ(taken.code(), Code::kAlreadyExists);
  EXPECT_NE(taken.message().find("taken again by a newer branch"), std::string::npos);
  EXPECT_NE(taken.message().find("?new_branch_id="), std::string::npos) << taken.ToString();
  EXPECT_EQ(engine_->UndeleteBranch("default", "feat", "production").status().code(),
            Code::kAlreadyExists);
  auto old = engine_->UndeleteBranch("default", "feat", "feat-old");
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->branch.id, "feat-old");
  EXPECT_TRUE(engine_->GetEndpoint("default", "feat-old", "primary").ok());
  // The child follows its parent's new id.
  auto sub = engine_->UndeleteBranch("default", "sub", std::nullopt);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  EXPECT_EQ(sub->branch.parent, "feat-old");

  // The periodic purge takes children first; an explicit purge is final at once.
  ASSERT_TRUE(engine_->DeleteBranch("default", "sub").ok());
  ASSERT_TRUE(engine_->DeleteBranch("default", "feat-old").ok());
  TimelineId sub_tl = sub->branch.timeline;
  EXPECT_TRUE(engine_->PurgeBranch("default", "feat-old").ok());
  EXPECT_TRUE(engine_->ListDeletedBranches("default")->empty());
  EXPECT_EQ(store_->GetTimeline(sub_tl).status().code(), Code::kNotFound);
  EXPECT_EQ(engine_->PurgeBranch("default", "feat-old").code(), Code::kNotFound);
  // A live branch is purged at once, as delete refuses the root.
  EXPECT_TRUE(engine_->PurgeBranch("default", "feat").ok());
  EXPECT_EQ(engine_->GetBranch("default", "feat").status().code(), Code::kNotFound);
  EXPECT_TRUE(engine_->ListDeletedBranches("default")->empty());
  EXPECT_EQ(engine_->PurgeBranch("default", "production").code(), Code::kFailedPrecondition);
}

TEST_F(EngineTest, AnExpiredBranchIsRecoverableAndADeletedProjectTakesItsDeletedBranches) {
  BranchRequest ttl;
  ttl.expiry = Expiry::kExpireTime;
  ttl.expire_time_us = WallMicros() + 3'600'000'000;
  ASSERT_TRUE(engine_->CreateBranch("default", "tmp", ttl).ok());
  TimelineId tl = engine_->GetBranch("default", "tmp")->timeline;
  EXPECT_EQ(engine_->ReapExpired(ttl.expire_time_us + 1),
            std::vector<std::string>{"projects/default/branches/tmp"});
  ASSERT_EQ(engine_->ListDeletedBranches("default")->size(), 1u);
  // Its expiry has passed: it comes back without one, and says so.
  auto back = engine_->UndeleteBranch("default", "tmp", std::nullopt);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->branch.expire_time_us, 0);
  ASSERT_EQ(back->notes.size(), 1u);
  EXPECT_NE(back->notes[0].find("expiry"), std::string::npos);
  ASSERT_TRUE(engine_->DeleteBranch("default", "tmp").ok());
  ASSERT_TRUE(engine_->DeleteProject("default").ok());
  EXPECT_EQ(store_->GetTimeline(tl).status().code(), Code::kNotFound);
  ASSERT_TRUE(engine_->CreateProject("default", 86'400).ok());
  EXPECT_TRUE(engine_->ListDeletedBranches("default")->empty());
}

TEST(ChangedPagesTest, AStoreWithoutTheChangeIndexAnswersIncomplete) {
  TempDir dir;
  storage::Store::Options so;
  so.path = dir.path() + "/store";
  so.background_gc = false;
  so.block_cache_bytes = 16 << 20;
  so.wal_prefill_bytes = 1 << 20;
  so.change_index = false;
  auto store = storage::Store::Open(so);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  FakeMounter mounter;
  FakeSupervisor sup;
  EngineOptions eo;
  eo.data_dir = dir.path() + "/data";
  eo.runtime_dir = eo.data_dir;
  Engine engine(eo, store->get(), &mounter, &sup);
  ASSERT_TRUE(engine.Open().ok());
  ASSERT_TRUE(engine.CreateProject("default", 86'400).ok());
  ASSERT_TRUE(engine.CreateBranch("default", "dev", BranchRequest{}).ok());
  auto cp = engine.ChangedPagesBetween("default", "production", "primary", "dev", "primary");
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  EXPECT_FALSE(cp->complete);
  EXPECT_FALSE(cp->reason.empty());
  EXPECT_TRUE(cp->databases.empty());
}

// ---- snapshots ----

// A project's history window is at least an hour, so the store's clock is moved past it
// instead of waited for.
TEST_F(EngineTest, ASnapshotOutlivesTheHistoryWindowAndGcFreesItOnceDeleted) {
  const int64_t day = 86'400'000'000;
  const int64_t now = WallMicros();
  TimelineId prod = engine_->GetBranch("default", "production")->timeline;
  TreeWriter p(store_.get(), prod);
  InodeId db = p.DbDir("5");
  std::vector<uint64_t> blocks;
  for (uint64_t b = 0; b < 64; ++b) blocks.push_back(b);
  InodeId rel = p.NewFile(db, "16384", blocks);
  auto snap = engine_->CreateSnapshot("default", "production", "before", SnapshotRequest{});
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  for (uint64_t b : blocks) p.Write(rel, b);  // every page rewritten after the snapshot
  auto read = [&](TimelineId tl) {
    auto r = store_->ReadFile(tl, kSeqMax, rel, 0, 4);
    return r.ok() ? *r : r.status().ToString();
  };

  // Two days on, GC has run: the branch's history no longer reaches the snapshot's state, but
  // the snapshot still holds it, and a branch made from it has it.
  store_->SetClockForTesting(now + 2 * day);
  ASSERT_TRUE(store_->RunGc().ok());
  BranchRequest from;
  from.source_snapshot_branch = "production";
  from.source_snapshot = "before";
  EXPECT_EQ(engine_
                ->CreateBranch("default", "too-late",
                               [] {
                                 BranchRequest r;
                                 r.time_us = WallMicros() - 3600'000'000;
                                 return r;
                               }())
                .status()
                .code(),
            Code::kOutOfRange);
  auto restored = engine_->CreateBranch("default", "restored", from);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(restored->parent, "production");
  EXPECT_EQ(restored->source_snapshot, "before");
  EXPECT_EQ(read(restored->timeline), "page");
  EXPECT_EQ(read(prod), "new!");
  BranchRequest missing = from;
  missing.source_snapshot = "nosuch";
  EXPECT_EQ(engine_->CreateBranch("default", "x", missing).status().code(), Code::kNotFound);

  // What only the snapshot keeps: the 64 pages' old versions.
  auto excl = engine_->SnapshotExclusiveSize("default", "production", "before");
  ASSERT_TRUE(excl.ok()) << excl.status().ToString();
  EXPECT_EQ(excl->versions, 64u);
  EXPECT_GT(excl->bytes, 64u * 4);

  // It cannot go while a branch made from it exists; the message names the branch.
  Status refused = engine_->DeleteSnapshot("default", "production", "before");
  EXPECT_EQ(refused.code(), Code::kFailedPrecondition);
  EXPECT_NE(refused.message().find("projects/default/branches/restored"), std::string::npos)
      << refused.message();
  ASSERT_TRUE(engine_->DeleteBranch("default", "restored").ok());
  // A deleted branch made from it is recoverable, so the snapshot's data stays for it; the
  // snapshot itself goes at once.
  ASSERT_TRUE(engine_->DeleteSnapshot("default", "production", "before").ok());
  EXPECT_EQ(engine_->GetSnapshot("default", "production", "before").status().code(),
            Code::kNotFound);
  ASSERT_TRUE(store_->GetTimeline(snap->timeline).ok());
  ASSERT_TRUE(engine_->PurgeBranch("default", "restored").ok());
  EXPECT_EQ(store_->GetTimeline(snap->timeline).status().code(), Code::kNotFound);
  // GC frees what it kept, and the branch reads as before.
  auto dropped = store_->RunGc();
  ASSERT_TRUE(dropped.ok());
  EXPECT_GE(*dropped, excl->versions);
  EXPECT_TRUE(store_->ExclusiveSizes(prod)->empty());
  EXPECT_EQ(read(prod), "new!");
}

TEST_F(EngineTest, ABranchWithSnapshotsIsNotDeletedAndSnapshotsExpire) {
  BranchRequest never;
  ASSERT_TRUE(engine_->CreateBranch("default", "dev", never).ok());
  SnapshotRequest ttl;
  ttl.expiry = Expiry::kTtl;
  ttl.ttl_s = 60;
  auto s1 = engine_->CreateSnapshot("default", "dev", "s1", ttl);
  ASSERT_TRUE(s1.ok()) << s1.status().ToString();
  EXPECT_GT(s1->expire_time_us, WallMicros());
  EXPECT_EQ(engine_->CreateSnapshot("default", "dev", "s1", ttl).status().code(),
            Code::kAlreadyExists);
  EXPECT_EQ(engine_->CreateSnapshot("default", "dev", "Bad_Id", ttl).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(engine_->CreateSnapshot("default", "nosuch", "s2", ttl).status().code(),
            Code::kNotFound);
  SnapshotRequest zero = ttl;
  zero.ttl_s = 0;
  EXPECT_EQ(engine_->CreateSnapshot("default", "dev", "s2", zero).status().code(),
            Code::kInvalidArgument);

  Status refused = engine_->DeleteBranch("default", "dev");
  EXPECT_EQ(refused.code(), Code::kFailedPrecondition);
  EXPECT_NE(refused.message().find("projects/default/branches/dev/snapshots/s1"), std::string::npos)
      << refused.message();
  EXPECT_NE(refused.message().find("delete the snapshots first"), std::string::npos);

  // The snapshot survives a restart of the engine, and so does its timeline.
  engine_.reset();
  EngineOptions eo;
  eo.data_dir = dir_.path() + "/data";
  eo.runtime_dir = eo.data_dir;
  engine_ = std::make_unique<Engine>(eo, store_.get(), &mounter_, &sup_);
  ASSERT_TRUE(engine_->Open().ok());
  auto again = engine_->GetSnapshot("default", "dev", "s1");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(store_->GetTimeline(again->timeline).ok());
  EXPECT_EQ(engine_->ListSnapshots("default", "")->size(), 1u);

  // Once expired, the reaper deletes it; then the branch can go.
  std::vector<std::string> gone = engine_->ReapExpired(WallMicros() + 120'000'000);
  EXPECT_EQ(gone, std::vector<std::string>{"projects/default/branches/dev/snapshots/s1"});
  EXPECT_TRUE(engine_->ListSnapshots("default", "dev")->empty());
  EXPECT_FALSE(store_->GetTimeline(again->timeline).ok());
  EXPECT_TRUE(engine_->DeleteBranch("default", "dev").ok());
}

TEST_F(EngineTest, TheScheduleTakesSnapshotsAndKeepsOnlyTheNewest) {
  EXPECT_EQ(engine_->SetSnapshotSchedule("default", {"production", 10, 2}).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(engine_->SetSnapshotSchedule("default", {"production", 3600, 0}).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(engine_->SetSnapshotSchedule("default", {"nosuch", 3600, 2}).code(), Code::kNotFound);
  ASSERT_TRUE(engine_->SetSnapshotSchedule("default", {"production", 3600, 2}).ok());
  EXPECT_EQ(engine_->GetProject("default")->snapshot_schedule.keep, 2);
  ASSERT_TRUE(engine_->CreateSnapshot("default", "production", "manual", SnapshotRequest{}).ok());

  const int64_t hour = 3'600'000'000;
  const int64_t t = WallMicros();
  auto names = [&] {
    std::vector<std::string> out;
    auto list = engine_->ListSnapshots("default", "production");
    EXPECT_TRUE(list.ok());
    if (!list.ok()) return out;
    for (const auto& s : *list) {
      out.push_back(s.id + (s.scheduled ? "*" : ""));
    }
    return out;
  };
  auto taken = engine_->RunSnapshotSchedules(t);
  ASSERT_EQ(taken.size(), 1u);
  std::string first = taken[0].substr(taken[0].rfind('/') + 1);
  EXPECT_EQ(first.rfind("scheduled-", 0), 0u) << first;
  EXPECT_TRUE(engine_->RunSnapshotSchedules(t + hour / 2).empty()) << "not due yet";
  ASSERT_EQ(engine_->RunSnapshotSchedules(t + hour).size(), 1u);
  EXPECT_EQ(names().size(), 3u);
  // The third scheduled one pushes out the oldest scheduled one, never the manual one.
  auto third = engine_->RunSnapshotSchedules(t + 2 * hour);
  ASSERT_EQ(third.size(), 2u);
  EXPECT_EQ(third[1], "projects/default/branches/production/snapshots/" + first);
  std::vector<std::string> now = names();
  ASSERT_EQ(now.size(), 3u);
  EXPECT_EQ(now[0], "manual");
  EXPECT_NE(now[1], first + "*");
  EXPECT_EQ(now[1].back(), '*');
  EXPECT_EQ(now[2].back(), '*');

  // Without a schedule nothing more is taken.
  ASSERT_TRUE(engine_->SetSnapshotSchedule("default", {}).ok());
  EXPECT_TRUE(engine_->RunSnapshotSchedules(t + 10 * hour).empty());
}

// The write budgets protect a compute that starts or commits, and no compute that idles: a
// branch's budget binds while production sends fsyncs, and is lifted once production has sent
// none since the engine's last look.
TEST_F(EngineTest, WriteBudgetsBindOnlyWhileAnotherComputeCommits) {
  // The same engine with a write budget, started afresh.
  ASSERT_TRUE(engine_->StopEndpoint("default", "production", "primary").ok());
  engine_.reset();
  EngineOptions eo;
  eo.data_dir = dir_.path() + "/data";
  eo.runtime_dir = eo.data_dir;
  eo.write_bytes_per_cu = 16 << 20;
  engine_ = std::make_unique<Engine>(eo, store_.get(), &mounter_, &sup_);
  ASSERT_TRUE(engine_->Open().ok());
  auto woke = engine_->Wake("default", "production", "primary");
  ASSERT_TRUE(woke.ok()) << woke.status().ToString();
  ASSERT_TRUE(engine_->CreateBranch("default", "dev", BranchRequest{}).ok());
  ASSERT_TRUE(engine_->Wake("default", "dev", "primary").ok());
  auto mount_of = [&](const std::string& branch) {
    auto ep = engine_->GetEndpoint("default", branch, "primary");
    return ep.ok() ? mounter_.At(eo.runtime_dir + "/mnt/" + ep->uid) : nullptr;
  };
  auto prod = mount_of("production");
  auto dev = mount_of("dev");
  ASSERT_TRUE(prod && dev);
  // Each started a moment ago: both count as committing until the engine looks.
  EXPECT_GT(dev->write_rate.load(), 0u);
  EXPECT_GT(prod->write_rate.load(), 0u);

  int64_t now = WallMicros();
  auto look = [&] { engine_->Autoscale(now += 1'000'000); };
  prod->fsyncs += 3;  // production commits; dev idles
  look();
  EXPECT_GT(dev->write_rate.load(), 0u) << "production commits: dev's budget binds";
  EXPECT_EQ(prod->write_rate.load(), 0u) << "dev idles: production writes unlimited";

  look();  // no fsync from either since the last look
  EXPECT_EQ(dev->write_rate.load(), 0u) << "production idles: dev writes unlimited";
  EXPECT_EQ(prod->write_rate.load(), 0u);
  // A fork's CHECKPOINT of production: nobody commits, so its checkpointer is not held.
  sup_.last_pace = -1;
  ASSERT_TRUE(engine_->CreateBranch("default", "idle-fork", BranchRequest{}).ok());
  EXPECT_EQ(sup_.last_pace.load(), 0) << "paced with nobody to protect";

  dev->fsyncs += 1;
  look();
  EXPECT_GT(prod->write_rate.load(), 0u) << "dev commits: production's budget binds";
  EXPECT_EQ(dev->write_rate.load(), 0u);
  // ... and now someone commits: held to the default 0.25 CPUs.
  ASSERT_TRUE(engine_->CreateBranch("default", "busy-fork", BranchRequest{}).ok());
  EXPECT_EQ(sup_.last_pace.load(), 0.25) << "not paced while dev commits";

  // A compute stopped is protected no more, whatever it sent last.
  ASSERT_TRUE(engine_->StopEndpoint("default", "dev", "primary").ok());
  EXPECT_EQ(prod->write_rate.load(), 0u) << "alone: production writes unlimited";
}

}  // namespace
}  // namespace arbor::control
