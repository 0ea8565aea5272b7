// PostgreSQL 15 on arborfs: a real `arbor debug mount` process, a real postgres run by the
// compute user, pgbench and pg_amcheck. Crash tests kill -9 either side during a write load
// and check that every acknowledged transaction survives.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "testutil/fs_harness.h"

#ifndef ARBOR_CRASH_REPEATS
#define ARBOR_CRASH_REPEATS 5
#endif

namespace arbor::testutil {
namespace {

// One mounted store and a postgres on it (and, if the test gives one, the disk under the
// store).
struct Rig {
  TempDir dir{"arborfs-pg"};
  std::string store = dir / "store";
  std::string mnt = dir / "pgdata";
  std::unique_ptr<QuotaFs> disk;
  std::unique_ptr<MountProcess> mount;
  std::unique_ptr<Postgres> pg;

  // Postgres is declared after the mount so it is stopped first, and the mount after the disk
  // under its store; be explicit anyway.
  ~Rig() {
    pg.reset();
    mount.reset();
    disk.reset();
  }

  void Mount(uint64_t timeline = 0) {
    auto user = compute::ComputeUser();
    ASSERT_TRUE(user.ok());
    mount.reset();  // its destructor clears what is left at the mount point
    // The daemon's mount options (`arbor debug mount` leaves the writeback cache off unless
    // asked).
    mount = MountProcess::Start(store, mnt, timeline, user->uid, user->gid, {"--writeback-cache"});
    ASSERT_NE(mount, nullptr);
  }
  void Init() {
    ASSERT_NO_FATAL_FAILURE(Mount());
    pg = std::make_unique<Postgres>(mnt, dir.path());
    ASSERT_NO_FATAL_FAILURE(pg->InitDb());
    ASSERT_NO_FATAL_FAILURE(pg->Start());
  }
};

TEST(ArborfsPostgres, InitdbPgbenchAmcheckRestart) {
  Rig rig;
  ASSERT_NO_FATAL_FAILURE(rig.Init());
  // PGDATA is the mount root: 0700 and owned by the user running postgres.
  struct stat st;
  ASSERT_EQ(stat(rig.mnt.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(st.st_uid, rig.pg->user().uid);

  std::string out;
  ASSERT_EQ(rig.pg->Run("pgbench", {"-i", "-s", "10", "-q", "postgres"}, &out), 0) << out;
  ASSERT_EQ(rig.pg->Run("pgbench", {"-c", "4", "-j", "2", "-T", "10", "postgres"}, &out), 0) << out;
  EXPECT_NE(out.find("number of failed transactions: 0"), std::string::npos) << out;
  EXPECT_EQ(rig.pg->AmCheck(), "");
  std::string q =
      "SELECT (SELECT count(*) FROM pgbench_accounts) || ' ' || (SELECT sum(abalance) FROM "
      "pgbench_accounts) || ' ' || (SELECT count(*) FROM pgbench_history) || ' ' || "
      "(SELECT sum(delta) FROM pgbench_history)";
  std::string before = rig.pg->Psql(q);
  EXPECT_EQ(before.substr(0, before.find(' ')), "1000000");

  ASSERT_NO_FATAL_FAILURE(rig.pg->Stop());
  ASSERT_NO_FATAL_FAILURE(rig.pg->Start());
  EXPECT_EQ(rig.pg->Psql(q), before);
  // TPC-B keeps the balances consistent: the history sums to the accounts' total.
  std::string sums = rig.pg->Psql(
      "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) "
      "FROM pgbench_history)");
  EXPECT_EQ(sums, "t");
  ASSERT_NO_FATAL_FAILURE(rig.pg->Stop());

  // Unmount and mount again: everything is still there.
  uint64_t tl = rig.mount->timeline();
  EXPECT_TRUE(rig.mount->Stop());
  ASSERT_NO_FATAL_FAILURE(rig.Mount(tl));
  ASSERT_NO_FATAL_FAILURE(rig.pg->Start());
  EXPECT_EQ(rig.pg->Psql(q), before);
  EXPECT_EQ(rig.pg->AmCheck(), "");
}

enum class Side { kCompute, kStorage };

// Runs ARBOR_CRASH_REPEATS rounds of: pgbench plus a client logging acknowledged commits,
// kill -9 of one side, restart, and checks.
void CrashRounds(Side side) {
  Rig rig;
  ASSERT_NO_FATAL_FAILURE(rig.Init());
  std::string out;
  ASSERT_EQ(rig.pg->Run("pgbench", {"-i", "-s", "2", "-q", "postgres"}, &out), 0) << out;
  rig.pg->Psql("CREATE TABLE acks (id bigint PRIMARY KEY, pad text)");
  std::mt19937 rng(42);
  int64_t first = 1;
  for (int round = 0; round < ARBOR_CRASH_REPEATS; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    AckWriter writer(rig.pg->ConnInfo(), first);
    writer.Start();
    std::thread bench([&] {
      std::string o;
      rig.pg->Run("pgbench", {"-c", "3", "-j", "1", "-T", "60", "postgres"}, &o);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(1500 + rng() % 1500));
    if (side == Side::kCompute) {
      rig.pg->Kill9();
    } else {
      rig.mount->Kill9();
      // The killed server leaves a stale mount behind ...
      struct statfs sf;
      EXPECT_NE(statfs(rig.mnt.c_str(), &sf), 0);
      EXPECT_EQ(errno, ENOTCONN);
      rig.pg->Kill9();  // postgres cannot go on without its files
    }
    writer.Join();
    bench.join();
    int64_t acked = writer.acknowledged();
    ASSERT_GE(acked, first) << "no commit was acknowledged before the kill";
    if (side == Side::kStorage) {
      // ... which the next mount detects and clears.
      uint64_t tl = rig.mount->timeline();
      ASSERT_NO_FATAL_FAILURE(rig.Mount(tl));
    }
    ASSERT_NO_FATAL_FAILURE(rig.pg->Start());  // crash recovery
    std::string n = rig.pg->Psql("SELECT count(*) FROM acks WHERE id BETWEEN " +
                                 std::to_string(first) + " AND " + std::to_string(acked));
    EXPECT_EQ(n, std::to_string(acked - first + 1)) << "acknowledged commits were lost";
    EXPECT_EQ(rig.pg->AmCheck(), "");
    first = std::stoll(rig.pg->Psql("SELECT coalesce(max(id), 0) + 1 FROM acks"));
  }
}

TEST(ArborfsCrash, KillComputeDuringPgbench) { CrashRounds(Side::kCompute); }

TEST(ArborfsCrash, KillStorageDuringPgbench) { CrashRounds(Side::kStorage); }

// The store lives on a small disk that really fills: a 400 MiB FUSE file system with a quota
// (QuotaFs), which root and an ordinary user mount alike. Postgres gets ENOSPC, and after space
// is freed it recovers with every committed row.
TEST(ArborfsFullDisk, EnospcThenRecovery) {
  Rig rig;
  std::string small = rig.dir / "small";
  rig.disk = QuotaFs::Start(rig.dir / "small-backing", small, 400ull << 20);
  ASSERT_NE(rig.disk, nullptr);
  {
    struct statvfs vs;
    ASSERT_EQ(statvfs(small.c_str(), &vs), 0);
    ASSERT_EQ(vs.f_blocks * vs.f_frsize, 400ull << 20) << "the disk is not 400 MiB";
  }
  rig.store = small + "/store";
  ASSERT_NO_FATAL_FAILURE(rig.Init());
  rig.pg->Psql("CREATE TABLE fill (id bigint PRIMARY KEY, pad text)");
  // Ballast leaves a few tens of MB free.
  std::string ballast = small + "/ballast";
  {
    struct statvfs vs;
    ASSERT_EQ(statvfs(small.c_str(), &vs), 0);
    uint64_t free_bytes = vs.f_bavail * vs.f_frsize;
    uint64_t keep = 48ull << 20;
    ASSERT_GT(free_bytes, keep) << "initdb left too little space";
    int fd = open(ballast.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    std::string chunk(1 << 20, 'b');
    for (uint64_t w = 0; w + keep < free_bytes; w += chunk.size()) {
      ASSERT_EQ(write(fd, chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
    }
    close(fd);
  }
  // Commit batches of incompressible rows until the server reports a failure.
  int64_t committed = 0;
  std::string err;
  for (int batch = 0; batch < 400; ++batch) {
    std::string sql =
        "INSERT INTO fill SELECT g, string_agg(md5(random()::text), '') FROM "
        "generate_series(" +
        std::to_string(committed + 1) + ", " + std::to_string(committed + 500) +
        ") g, generate_series(1, 30) GROUP BY g";
    std::string o;
    int rc = rig.pg->Run("psql",
                         {"-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql}, &o);
    if (rc != 0) {
      err = o;
      break;
    }
    committed += 500;
  }
  ASSERT_FALSE(err.empty()) << "the disk never filled";
  ASSERT_GT(committed, 0);
  std::string log = rig.dir / "postgres.log";
  std::string all_log;
  {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    all_log = ss.str();
  }
  EXPECT_NE((err + all_log).find("No space left on device"), std::string::npos)
      << "expected ENOSPC, got: " << err;

  // Free the space; postgres (restarted if it had to stop) recovers every committed row.
  ASSERT_EQ(unlink(ballast.c_str()), 0);
  rig.pg->Kill9();
  // The store resumes writing once it sees the space (RocksDB recovers in the background).
  std::string probe = rig.mnt + "/arbor_probe";
  bool writable = false;
  for (int i = 0; i < 600 && !writable; ++i) {
    int fd = open(probe.c_str(), O_WRONLY | O_CREAT, 0600);
    if (fd >= 0) {
      writable = write(fd, "x", 1) == 1;
      close(fd);
      unlink(probe.c_str());
    }
    if (!writable) usleep(100'000);
  }
  ASSERT_TRUE(writable) << "the store did not accept writes within 60 s of freeing space";
  ASSERT_NO_FATAL_FAILURE(rig.pg->Start());
  EXPECT_EQ(rig.pg->Psql("SELECT count(*) FROM fill WHERE id <= " + std::to_string(committed)),
            std::to_string(committed));
  EXPECT_EQ(rig.pg->AmCheck(), "");
  rig.pg->Psql("INSERT INTO fill VALUES (-1, 'after')");
  EXPECT_EQ(rig.pg->Psql("SELECT pad FROM fill WHERE id = -1"), "after");
}

}  // namespace
}  // namespace arbor::testutil
