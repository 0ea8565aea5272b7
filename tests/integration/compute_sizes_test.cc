// Compute sizes against the real daemon, real postgres, libpq and the kernel's control groups:
// each compute's CPU use, measured by its own control group, stays within its size; a size
// change reaches a running compute without a restart; an endpoint autoscales between its
// sizes; a query over the memory limit gets PostgreSQL's out-of-memory error while its
// postmaster and the other computes go on; PostgreSQL's settings follow the size; the usage
// report adds up to the CU-seconds used; bad sizes get a clear 400 and change nothing.

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "testutil/branches.h"
#include "testutil/daemon.h"

namespace arbor {
namespace {

namespace fs = std::filesystem;
using testutil::Daemon;
using testutil::json;
using testutil::Pg;
using Clock = std::chrono::steady_clock;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// A loop that only burns CPU (no I/O) in one backend, for `seconds`; ends with PostgreSQL's
// statement-timeout error, which is expected.
std::string BurnSql(int seconds) {
  return "set statement_timeout = '" + std::to_string(seconds) +
         "s'; do $$declare x bigint := 0; begin loop x := x + 1; end loop; end$$";
}

class ComputeSizes : public testing::Test {
 protected:
  static void SetUpTestSuite() { d_ = Daemon::Start("cu").release(); }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(d_, nullptr);
    limits_ = d_->Call("GET", "status").body.value("compute_limits", "");
    if (limits_.rfind("none", 0) == 0) {
      // Only where the daemon cannot write any control group (an unprivileged container);
      // the suite runs as root, where this does not happen.
      GTEST_SKIP() << "computes run unlimited here: " << limits_;
    }
    ASSERT_EQ(limits_.rfind("cgroup v", 0), 0u) << limits_;
  }

  static std::string Ep(const std::string& branch, const std::string& rest = "") {
    return "projects/default/branches/" + branch + "/endpoints/primary" + rest;
  }
  static void MakeBranch(const std::string& id) {
    auto made = d_->Call("POST", "projects/default/branches?branch_id=" + id,
                         {{"spec", {{"ttl", "3600s"}}}});
    ASSERT_EQ(made.status, 200) << made.body.dump();
  }
  static testutil::HttpAnswer Resize(const std::string& branch, const json& spec,
                                     const std::string& token = "") {
    return d_->Call("PATCH", Ep(branch), {{"spec", spec}}, token);
  }
  static json Endpoint(const std::string& branch) {
    auto got = d_->Call("GET", Ep(branch));
    EXPECT_EQ(got.status, 200) << got.body.dump();
    return got.body;
  }
  // Stops every running compute but production's.
  static void StopBranchComputes() {
    auto list = d_->Call("GET", "projects/default/endpoints");
    ASSERT_EQ(list.status, 200) << list.body.dump();
    for (const json& e : list.body["endpoints"]) {
      const std::string name = e.value("name", "");
      if (name.find("/branches/production/") != std::string::npos ||
          e["status"].value("current_state", "") != "ACTIVE") {
        continue;
      }
      ASSERT_EQ(d_->Call("POST", name + ":stop", json::object()).status, 200) << name;
    }
  }
  static double CurrentCu(const std::string& branch) {
    return Endpoint(branch)["status"].value("current_cu", -1.0);
  }
  // The CPU time of the endpoint's control group (found by its uid), in µs, as the kernel
  // accounts it: cpuacct.usage (v1) or cpu.stat's usage_usec (v2). -1 if not found.
  int64_t GroupCpuMicros(const std::string& uid) {
    const bool v1 = limits_.rfind("cgroup v1", 0) == 0;
    const fs::path root = v1 ? "/sys/fs/cgroup/cpuacct" : "/sys/fs/cgroup";
    std::error_code ec;
    for (fs::recursive_directory_iterator
             it(root, fs::directory_options::skip_permission_denied, ec),
         end;
         it != end; it.increment(ec)) {
      if (ec) break;
      if (it.depth() > 6) {
        it.disable_recursion_pending();
        continue;
      }
      if (!it->is_directory(ec) || it->path().filename() != uid) continue;
      if (v1) return std::stoll(Slurp((it->path() / "cpuacct.usage").string())) / 1000;
      std::istringstream stat(Slurp((it->path() / "cpu.stat").string()));
      std::string key;
      int64_t value = 0;
      while (stat >> key >> value) {
        if (key == "usage_usec") return value;
      }
    }
    return -1;
  }
  // Cores the endpoint's group used while `sql` ran on `pg`.
  double CoresWhile(const std::string& uid, Pg& pg, const std::string& sql) {
    const int64_t before = GroupCpuMicros(uid);
    EXPECT_GE(before, 0) << "no control group named " << uid;
    auto t0 = Clock::now();
    (void)pg.TryExec(sql);
    const double wall = Seconds(t0, Clock::now());
    const int64_t after = GroupCpuMicros(uid);
    return static_cast<double>(after - before) / 1e6 / wall;
  }
  static std::string ApiToken(const std::string& name, const std::string& role) {
    json body{{"name", name}, {"role", role}, {"project", "default"}};
    httplib::Client cli(Slurp(d_->home() + "/api"));
    httplib::Headers h{{"Authorization", "Bearer " + Slurp(d_->home() + "/admin-token")}};
    auto r = cli.Post("/api/2.0/tokens", h, body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
    if (!r) return "";
    return json::parse(r->body).value("token", "");
  }

  std::string limits_;
  static Daemon* d_;
};
Daemon* ComputeSizes::d_ = nullptr;

TEST_F(ComputeSizes, SizesHaveDefaultsAndPostgresIsSizedToThem) {
  // Production is larger than the branches made from it.
  json prod = Endpoint("production");
  EXPECT_EQ(prod["spec"].value("autoscaling_limit_min_cu", 0.0), 1.0) << prod.dump();
  EXPECT_EQ(prod["spec"].value("autoscaling_limit_max_cu", 0.0), 2.0) << prod.dump();
  MakeBranch("cu-dev");
  json dev = Endpoint("cu-dev");
  EXPECT_EQ(dev["spec"].value("autoscaling_limit_min_cu", 0.0), 0.25) << dev.dump();
  EXPECT_EQ(dev["spec"].value("autoscaling_limit_max_cu", 0.0), 1.0) << dev.dump();

  // PostgreSQL's settings follow the max size (shared_buffers is the harness's --shared-buffers,
  // which overrides the size's quarter of memory).
  {
    Pg pg(d_->Connect("cu-dev"));
    EXPECT_EQ(pg.One("show max_connections"), "200");
    EXPECT_EQ(pg.One("show work_mem"), "8MB");
    EXPECT_EQ(pg.One("show effective_cache_size"), "1536MB");
    EXPECT_EQ(pg.One("show shared_buffers"), "32MB");
  }
  {
    Pg pg(d_->Connect("production"));
    EXPECT_EQ(pg.One("show max_connections"), "400");
    EXPECT_EQ(pg.One("show work_mem"), "16MB");
    EXPECT_EQ(pg.One("show effective_cache_size"), "3GB");
  }
  EXPECT_EQ(CurrentCu("cu-dev"), 1.0);  // a start gets 1 CU within its size

  // The project's default for new branches.
  auto set = d_->Call("PATCH", "projects/default?update_mask=spec.default_endpoint_settings",
                      {{"spec",
                        {{"default_endpoint_settings",
                          {{"autoscaling_limit_min_cu", 0.5}, {"autoscaling_limit_max_cu", 4}}}}}});
  ASSERT_EQ(set.status, 200) << set.body.dump();
  EXPECT_EQ(set.body["spec"]["default_endpoint_settings"].value("autoscaling_limit_max_cu", 0.0),
            4.0);
  MakeBranch("cu-big");
  json big = Endpoint("cu-big");
  EXPECT_EQ(big["spec"].value("autoscaling_limit_min_cu", 0.0), 0.5) << big.dump();
  EXPECT_EQ(big["spec"].value("autoscaling_limit_max_cu", 0.0), 4.0) << big.dump();
  // Existing endpoints keep theirs; absent restores Arbor's default.
  EXPECT_EQ(Endpoint("cu-dev")["spec"].value("autoscaling_limit_max_cu", 0.0), 1.0);
  ASSERT_EQ(d_->Call("PATCH", "projects/default?update_mask=spec.default_endpoint_settings",
                     {{"spec", json::object()}})
                .status,
            200);

  // The CLI: branch create --cu, endpoint update, status.
  auto made = testutil::RunArbor(d_->home(), "branch create cu-cli --cu 0.5-2 --ttl 1h");
  ASSERT_EQ(made.rc, 0) << made.out << made.err;
  json cli = Endpoint("cu-cli");
  EXPECT_EQ(cli["spec"].value("autoscaling_limit_min_cu", 0.0), 0.5) << cli.dump();
  EXPECT_EQ(cli["spec"].value("autoscaling_limit_max_cu", 0.0), 2.0) << cli.dump();
  auto upd = testutil::RunArbor(d_->home(), "endpoint update cu-cli --max-cu 3");
  ASSERT_EQ(upd.rc, 0) << upd.out << upd.err;
  EXPECT_NE(upd.out.find("0.5-3 CU"), std::string::npos) << upd.out;
  EXPECT_EQ(testutil::RunArbor(d_->home(), "branch create cu-bad --cu lots --ttl 1h").rc, 2);
  EXPECT_EQ(d_->Call("GET", "projects/default/branches/cu-bad").status, 404);
  auto st = testutil::RunArbor(d_->home(), "status");
  EXPECT_NE(st.out.find("compute limits  " + limits_), std::string::npos) << st.out;
}

TEST_F(ComputeSizes, AQuarterCuUsesAQuarterCoreAndAResizeReachesItLive) {
  MakeBranch("cu-cpu");
  ASSERT_EQ(
      Resize("cu-cpu", {{"autoscaling_limit_min_cu", 0.25}, {"autoscaling_limit_max_cu", 0.25}})
          .status,
      200);
  const std::string uid = Endpoint("cu-cpu").value("uid", "");
  Pg pg(d_->Connect("cu-cpu"));
  auto ready = Clock::now();
  ASSERT_TRUE(pg.ok());
  const std::string started = pg.One("select pg_postmaster_start_time()");
  const double prod_cu = CurrentCu("production");

  // 5 s of a CPU-bound loop: about a quarter of a core (the kernel's quota; the machine may
  // be busy, so below is allowed, above is not).
  double cores = CoresWhile(uid, pg, BurnSql(5));
  EXPECT_LT(cores, 0.35) << "a 0.25 CU compute used " << cores << " cores";
  EXPECT_GT(cores, 0.05) << "the loop did not run: " << cores;
  EXPECT_EQ(CurrentCu("cu-cpu"), 0.25);

  // Made larger while it runs: the CPU limit changes at once, and postgres is the same.
  auto t_resize = Clock::now();
  auto resized =
      Resize("cu-cpu", {{"autoscaling_limit_min_cu", 1}, {"autoscaling_limit_max_cu", 1}});
  ASSERT_EQ(resized.status, 200) << resized.body.dump();
  EXPECT_EQ(resized.body["status"].value("current_cu", 0.0), 1.0) << resized.body.dump();
  EXPECT_EQ(pg.One("select pg_postmaster_start_time()"), started) << "it was restarted";
  cores = CoresWhile(uid, pg, BurnSql(4));
  EXPECT_GT(cores, 0.40) << "after the resize to 1 CU: " << cores;
  // Another compute was not touched.
  EXPECT_EQ(CurrentCu("production"), prod_cu);

  // Stopped: the usage report has the CU-seconds it ran, within 10 %.
  // The meter stops when the stop begins (postgres's shutdown is not counted).
  auto stopped = Clock::now();
  ASSERT_EQ(d_->Call("POST", Ep("cu-cpu", ":stop"), json::object()).status, 200);
  const double expected = 0.25 * Seconds(ready, t_resize) + 1.0 * Seconds(t_resize, stopped);
  auto usage = d_->Call("GET", "projects/default/usage");
  ASSERT_EQ(usage.status, 200) << usage.body.dump();
  double metered = 0;
  for (const json& u : usage.body["usage"]) {
    if (u.value("endpoint", "") == "projects/default/branches/cu-cpu/endpoints/primary") {
      metered += u.value("cu_seconds", 0.0);
    }
  }
  EXPECT_NEAR(metered, expected, expected * 0.10) << usage.body.dump();
  EXPECT_GE(usage.body["total"].value("cu_seconds", 0.0), metered);
  auto cli = testutil::RunArbor(d_->home(), "usage");
  EXPECT_EQ(cli.rc, 0) << cli.err;
  EXPECT_NE(cli.out.find("cu-cpu"), std::string::npos) << cli.out;
}

TEST_F(ComputeSizes, ABusyComputeScalesUpAndBackDown) {
  MakeBranch("cu-auto");
  ASSERT_EQ(Resize("cu-auto", {{"autoscaling_limit_min_cu", 0.25}, {"autoscaling_limit_max_cu", 1}})
                .status,
            200);
  // A start gets 1 CU within its size where the host has it free: only production (at its
  // min, 1 CU, of this host's 2 or more CPUs) runs.
  StopBranchComputes();
  std::string conninfo = d_->Connect("cu-auto");
  EXPECT_EQ(CurrentCu("cu-auto"), 1.0);
  // Down to a quarter at once (a smaller max clamps it), then its range again: it stays
  // there until the load says otherwise.
  ASSERT_EQ(Resize("cu-auto", {{"autoscaling_limit_max_cu", 0.25}}).status, 200);
  ASSERT_EQ(Resize("cu-auto", {{"autoscaling_limit_max_cu", 1}}).status, 200);
  EXPECT_EQ(CurrentCu("cu-auto"), 0.25);
  std::thread busy([&] {
    Pg pg(conninfo);
    (void)pg.TryExec(BurnSql(30));
  });
  double peak = 0;
  for (auto deadline = Clock::now() + std::chrono::seconds(30);
       Clock::now() < deadline && peak <= 0.25;) {
    peak = std::max(peak, CurrentCu("cu-auto"));
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  EXPECT_GT(peak, 0.25) << "it stayed at its minimum while CPU-bound";
  EXPECT_LE(peak, 1.0);
  {
    // Ends the loop (the session is the test's own).
    Pg pg(conninfo);
    (void)pg.TryExec(
        "select pg_cancel_backend(pid) from pg_stat_activity where query like '%loop x%' and "
        "pid <> pg_backend_pid()");
  }
  busy.join();
  double now = peak;
  for (auto deadline = Clock::now() + std::chrono::seconds(90);
       Clock::now() < deadline && now > 0.25;) {
    now = CurrentCu("cu-auto");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_EQ(now, 0.25) << "it did not come back down when idle";
  std::string log = Slurp(d_->home() + "/daemon.out");
  EXPECT_NE(log.find("cu-auto/endpoints/primary autoscaled 0.25 -> "), std::string::npos);
}

TEST_F(ComputeSizes, AQueryOverTheMemoryLimitGetsOutOfMemoryAndNothingElseDies) {
  MakeBranch("cu-mem");
  ASSERT_EQ(
      Resize("cu-mem", {{"autoscaling_limit_min_cu", 0.25}, {"autoscaling_limit_max_cu", 0.25}})
          .status,
      200);
  Pg prod(d_->Connect("production"));
  const std::string prod_started = prod.One("select pg_postmaster_start_time()");
  Pg pg(d_->Connect("cu-mem"));
  const std::string started = pg.One("select pg_postmaster_start_time()");
  // A sort of ~1.5 GB in memory (work_mem lets it try) in a 512 MiB compute.
  std::string err = pg.TryExec(
      "set work_mem = '4GB'; select count(*) from (select g::text || repeat('x', 40) as s "
      "from generate_series(1, 20000000) g order by 1 desc) t");
  EXPECT_NE(err.find("out of memory"), std::string::npos) << err;
  // The same session goes on, on the same postmaster; production was not touched.
  EXPECT_EQ(pg.One("select 1"), "1");
  EXPECT_EQ(pg.One("select pg_postmaster_start_time()"), started);
  EXPECT_EQ(prod.One("select 1"), "1");
  EXPECT_EQ(prod.One("select pg_postmaster_start_time()"), prod_started);
}

TEST_F(ComputeSizes, BadSizesAreRefusedAndChangeNothing) {
  MakeBranch("cu-in");
  const json before = Endpoint("cu-in")["spec"];
  for (const json& spec :
       {json{{"autoscaling_limit_min_cu", 0.1}, {"autoscaling_limit_max_cu", 1}},
        json{{"autoscaling_limit_min_cu", 2}, {"autoscaling_limit_max_cu", 1}},
        json{{"autoscaling_limit_max_cu", 9}}, json{{"autoscaling_limit_min_cu", 0.3}},
        json{{"autoscaling_limit_min_cu", "big"}}, json{{"autoscaling_limit_min_cu", nullptr}},
        json{{"cpu", 2}}}) {
    auto bad = Resize("cu-in", spec);
    EXPECT_EQ(bad.status, 400) << spec.dump() << " " << bad.body.dump();
    EXPECT_FALSE(bad.body.value("message", "").empty()) << bad.body.dump();
  }
  auto garbled = d_->CallRaw("PATCH", Ep("cu-in"), "{\"spec\": {\"autoscaling_limit_max_cu\": ");
  EXPECT_EQ(garbled.status, 400);
  EXPECT_EQ(Endpoint("cu-in")["spec"], before);
  // A bad size on create makes no endpoint.
  auto made = d_->Call(
      "POST", "projects/default/branches/cu-in/endpoints?endpoint_id=r1",
      {{"spec", {{"endpoint_type", "ENDPOINT_TYPE_READ_ONLY"}, {"autoscaling_limit_max_cu", 64}}}});
  EXPECT_EQ(made.status, 400) << made.body.dump();
  EXPECT_EQ(d_->Call("GET", "projects/default/branches/cu-in/endpoints/r1").status, 404);
  auto project = d_->Call(
      "PATCH", "projects/default?update_mask=spec.default_branch_endpoint_settings",
      {{"spec", {{"default_branch_endpoint_settings", {{"autoscaling_limit_max_cu", 0}}}}}});
  EXPECT_EQ(project.status, 400) << project.body.dump();
  EXPECT_EQ(d_->Call("GET", "projects/default/usage?start=yesterday").status, 400);
  EXPECT_EQ(
      d_->Call("GET", "projects/default/usage?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z")
          .status,
      400);
  EXPECT_EQ(d_->Call("GET", "projects/nosuch/usage").status, 404);

  // A viewer reads sizes and usage, and changes none.
  const std::string viewer = ApiToken("cu-viewer", "viewer");
  ASSERT_FALSE(viewer.empty());
  EXPECT_EQ(d_->Call("GET", Ep("cu-in"), json(), viewer).status, 200);
  EXPECT_EQ(d_->Call("GET", "projects/default/usage", json(), viewer).status, 200);
  auto refused = Resize("cu-in", {{"autoscaling_limit_max_cu", 2}}, viewer);
  EXPECT_EQ(refused.status, 403) << refused.body.dump();
  EXPECT_EQ(Endpoint("cu-in")["spec"], before);
}

// The value of one sample of the daemon's /metrics: the first line that starts with `name{`
// and holds `label`. -1 if there is none.
double MetricOf(const std::string& text, const std::string& name, const std::string& label) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + "{", 0) != 0 || line.find(label) == std::string::npos) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

// Commits a row through `conninfo` every 100 ms until destroyed: a compute that commits, which
// the others' write budgets protect.
class Committer {
 public:
  explicit Committer(std::string conninfo)
      : thread_([this, c = std::move(conninfo)] {
          Pg pg(c);
          error_ = pg.TryExec("create table if not exists beat (at timestamptz)");
          while (!stop_.load() && error_.empty()) {
            error_ = pg.TryExec("insert into beat values (now())");
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
        }) {}
  ~Committer() {
    stop_ = true;
    thread_.join();
    EXPECT_EQ(error_, "") << "the committer stopped committing";
  }

 private:
  std::atomic<bool> stop_{false};
  std::string error_;  // the first error; written by the thread only, read after the join
  std::thread thread_;
};

// A host its production fills: a branch comes down to its minimum once started and stays
// there however busy it is, its writes wait for the budget of that size, and production
// keeps every CPU.
// (Last in the file: production holds the whole host while it runs.)
TEST_F(ComputeSizes, ABranchGetsOnlyWhatTheHostHasLeftAndWritesWithinItsBudget) {
  const unsigned cpus = std::thread::hardware_concurrency();
  if (cpus == 0 || cpus > 8) GTEST_SKIP() << cpus << " CPUs: production cannot fill them";
  ASSERT_FALSE(d_->Connect("production").empty());
  const double host = static_cast<double>(cpus);
  auto prod = Resize("production",
                     {{"autoscaling_limit_min_cu", host}, {"autoscaling_limit_max_cu", host}});
  ASSERT_EQ(prod.status, 200) << prod.body.dump();
  EXPECT_EQ(CurrentCu("production"), host);

  MakeBranch("cu-host");
  ASSERT_EQ(Resize("cu-host", {{"autoscaling_limit_min_cu", 0.25}, {"autoscaling_limit_max_cu", 1}})
                .status,
            200);
  std::string conninfo = d_->Connect("cu-host");
  // Its start had 1 CU (a start is not slowed to a quarter core); running, it gives back
  // what the host cannot hold, within the autoscaler's next windows.
  double cu = CurrentCu("cu-host");
  for (auto deadline = Clock::now() + std::chrono::seconds(10);
       Clock::now() < deadline && cu != 0.25;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cu = CurrentCu("cu-host");
  }
  EXPECT_EQ(cu, 0.25) << "it kept CPUs production holds";

  httplib::Client cli(Slurp(d_->home() + "/api"));
  httplib::Headers h{{"Authorization", "Bearer " + Slurp(d_->home() + "/admin-token")}};
  auto metrics = [&] {
    auto r = cli.Get("/metrics", h);
    EXPECT_TRUE(r && r->status == 200);
    return r ? r->body : std::string();
  };
  const std::string branch_label = "branch=\"cu-host\"";
  // The write budget of `label`'s compute, once it is `want` or after 10 s.
  auto budget = [&](const std::string& label, double want) {
    double got = -1;
    for (auto deadline = Clock::now() + std::chrono::seconds(10); Clock::now() < deadline;) {
      got = MetricOf(metrics(), "arbor_endpoint_write_limit_bytes_per_second", label);
      if (got == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return got;
  };
  // While production commits, the branch has the daemon's default budget, 16 MiB/s per CU,
  // at 0.25 CU.
  auto production_commits = std::make_unique<Committer>(d_->Connect("production"));
  EXPECT_EQ(budget(branch_label, 0.25 * 16 * 1024 * 1024), 0.25 * 16 * 1024 * 1024);

  // Busy on CPU and on writes (about 45 MB of table and its WAL, over twice its budget's
  // burst): it asks for more and gets none.
  std::thread busy([&] {
    Pg pg(conninfo);
    (void)pg.TryExec(BurnSql(4));
    (void)pg.TryExec(
        "create table t as select g, repeat('x', 1000) as pad from generate_series(1, 30000) g");
  });
  double peak = 0;
  for (auto deadline = Clock::now() + std::chrono::seconds(8); Clock::now() < deadline;) {
    peak = std::max(peak, CurrentCu("cu-host"));
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  busy.join();
  EXPECT_EQ(peak, 0.25) << "it grew into CPUs production holds";
  EXPECT_EQ(CurrentCu("production"), host);
  Pg pg(conninfo);
  EXPECT_EQ(pg.One("select count(*) from t"), "30000");
  EXPECT_GT(MetricOf(metrics(), "arbor_endpoint_write_throttled_seconds_total", branch_label), 0)
      << "no write waited for the budget";
  // Production idle (running, but no commit for a second): nobody to protect, so the branch
  // writes unlimited.
  production_commits.reset();
  EXPECT_EQ(budget(branch_label, 0), 0) << "the budget binds while production idles";
  std::string log = Slurp(d_->home() + "/daemon.out");
  EXPECT_NE(log.find("cu-host/endpoints/primary gave CPU back 1 -> 0.25 CU"), std::string::npos);
  EXPECT_NE(log.find("cu-host/endpoints/primary held at 0.25 CU"), std::string::npos);

  // A branch of production checkpoints production first, with production's budget lifted
  // (the engine's own CHECKPOINT, which the create waits for, or at most
  // ARBOR_BRANCH_CHECKPOINT_WAIT_MS); once that CHECKPOINT has ended, the budget is back.
  // Production's budget binds while the branch commits.
  const std::string prod_label = "branch=\"production\"";
  const double prod_budget = host * 16 * 1024 * 1024;
  auto branch_commits = std::make_unique<Committer>(conninfo);
  EXPECT_EQ(budget(prod_label, prod_budget), prod_budget);
  const size_t log_before = Slurp(d_->home() + "/daemon.out").size();
  MakeBranch("cu-fork");
  double prod_limit = 0;
  for (auto deadline = Clock::now() + std::chrono::seconds(30); Clock::now() < deadline;) {
    prod_limit = MetricOf(metrics(), "arbor_endpoint_write_limit_bytes_per_second", prod_label);
    if (prod_limit == prod_budget) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(prod_limit, prod_budget)
      << "the budget lifted for the fork's checkpoint was not given back";
  EXPECT_NE(Slurp(d_->home() + "/daemon.out")
                .find("production/endpoints/primary: write budget lifted", log_before),
            std::string::npos);
  // The branch commits, so under cgroup v1 that CHECKPOINT ran with production's
  // checkpointer held to a quarter of a CPU (docs/compute-sizes.md, "Pacing the
  // checkpointer"), and the checkpointer is back in production's own group after it, the
  // paced group gone. Under v2 it is not paced (Cgroups::Pace).
  const bool v1 = limits_.rfind("cgroup v1", 0) == 0;
  EXPECT_EQ(Slurp(d_->home() + "/daemon.out")
                    .find("production/endpoints/primary: CHECKPOINT with its checkpointer paced "
                          "at 0.25 CPUs",
                          log_before) != std::string::npos,
            v1)
      << "the fork's CHECKPOINT was not paced while the branch committed";
  {
    // Production's checkpointer: the process named so whose memory group (never moved) is
    // production's.
    const std::string uid = Endpoint("production").value("uid", "");
    ASSERT_FALSE(uid.empty());
    std::string ckpt, cpu_group;
    for (const auto& proc : fs::directory_iterator("/proc")) {
      const std::string pid = proc.path().filename().string();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (Slurp(proc.path().string() + "/cmdline").rfind("postgres: checkpointer", 0) != 0)
        continue;
      std::istringstream groups(Slurp(proc.path().string() + "/cgroup"));
      std::string line, cpu, memory;
      while (std::getline(groups, line)) {
        // v1: "N:cpu:/path" (or "N:cpu,cpuacct:/path"); v2: "0::/path".
        const auto a = line.find(':'), b = line.find(':', a + 1);
        const std::string controllers = line.substr(a + 1, b - a - 1);
        if ((v1 && (controllers == "cpu" || controllers.rfind("cpu,", 0) == 0)) ||
            (!v1 && controllers.empty())) {
          cpu = line.substr(b + 1);
        }
        if (controllers == "memory" || (!v1 && controllers.empty())) memory = line.substr(b + 1);
      }
      if (memory.find("/" + uid) == std::string::npos) continue;
      ckpt = pid;
      cpu_group = cpu;
    }
    ASSERT_FALSE(ckpt.empty()) << "no checkpointer in production's group";
    const std::string tail = "/" + uid;
    EXPECT_TRUE(cpu_group.size() > tail.size() &&
                cpu_group.compare(cpu_group.size() - tail.size(), tail.size(), tail) == 0)
        << "production's checkpointer " << ckpt << " is in " << cpu_group;
    if (v1) {
      const std::string dir = "/sys/fs/cgroup/cpu" + cpu_group;
      EXPECT_TRUE(fs::is_directory(dir)) << dir;
      EXPECT_FALSE(fs::exists(dir + "/paced")) << "the paced group was left behind";
    }
  }

  branch_commits.reset();
  ASSERT_EQ(d_->Call("POST", Ep("cu-host", ":stop"), json::object()).status, 200);
  EXPECT_EQ(Resize("production", {{"autoscaling_limit_min_cu", 1}, {"autoscaling_limit_max_cu", 2}})
                .status,
            200);
}

}  // namespace
}  // namespace arbor
