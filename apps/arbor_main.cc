// The arbor command: flags and wiring only.
#include <malloc.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "cli/cli.h"
#include "fs/arborfs.h"
#include "server_commands.h"
#include "storage/store.h"

namespace {

struct DebugMountFlags {
  std::string store;
  uint64_t timeline = 0;
  bool create_root = false;
  std::string mountpoint;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t block_cache_mb = 256;
  int64_t wal_prefill_mb = -1;                                       // -1: the store's default
  bool writeback_cache = arbor::fs::MountOptions{}.writeback_cache;  // the daemon's default
  bool no_keep_cache = false;
  double entry_timeout = -1;
  double attr_timeout = -1;
};

// `arbor debug mount`: serves one timeline at a mount point in the foreground until SIGTERM or
// SIGINT, then unmounts cleanly. For tests and benchmarks; the daemon mounts by itself.
int DebugMount(const DebugMountFlags& f) {
  // Signals are taken by sigwait below, never by the FUSE threads (which inherit the mask).
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  arbor::storage::Store::Options so;
  so.path = f.store;
  so.block_cache_bytes = f.block_cache_mb << 20;
  if (f.wal_prefill_mb >= 0) so.wal_prefill_bytes = static_cast<uint64_t>(f.wal_prefill_mb) << 20;
  auto store = arbor::storage::Store::Open(so);
  if (!store.ok()) {
    std::fprintf(stderr, "arbor debug mount: %s\n", store.status().ToString().c_str());
    return 1;
  }
  arbor::TimelineId tl(f.timeline);
  if (f.create_root) {
    auto root = (*store)->CreateRoot(86400ll * 1'000'000, f.uid, f.gid);
    if (!root.ok()) {
      std::fprintf(stderr, "arbor debug mount: %s\n", root.status().ToString().c_str());
      return 1;
    }
    tl = *root;
    if (auto s = (*store)->Sync(tl); !s.ok()) {
      std::fprintf(stderr, "arbor debug mount: %s\n", s.ToString().c_str());
      return 1;
    }
  } else if (auto info = (*store)->GetTimeline(tl); !info.ok()) {
    std::fprintf(stderr, "arbor debug mount: %s\n", info.status().ToString().c_str());
    return 1;
  }
  arbor::fs::MountOptions mo;
  mo.store_path = f.store;
  mo.writeback_cache = f.writeback_cache;
  mo.keep_cache = !f.no_keep_cache;
  if (f.entry_timeout >= 0) mo.entry_timeout_s = f.entry_timeout;
  if (f.attr_timeout >= 0) mo.attr_timeout_s = f.attr_timeout;
  auto mount = arbor::fs::Mount::Start(store->get(), tl, f.mountpoint, mo);
  if (!mount.ok()) {
    std::fprintf(stderr, "arbor debug mount: %s\n", mount.status().ToString().c_str());
    return 1;
  }
  std::printf("timeline %llu\nmounted %s\n", static_cast<unsigned long long>(tl.value()),
              f.mountpoint.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  if (auto s = (*mount)->Unmount(); !s.ok()) {
    std::fprintf(stderr, "arbor debug mount: unmount: %s\n", s.ToString().c_str());
    return 1;
  }
  mount->reset();
  return 0;
}

}  // namespace

// jemalloc's settings, read at its start (the build links it: CMakeLists.txt, ARBOR_JEMALLOC).
// Two arenas, so that the memtable blocks the flush thread frees are found again by the
// writer that allocates the next memtable; freed pages go back to the OS after 1 s, by
// jemalloc's own thread rather than on some later allocation. Measured against jemalloc's
// defaults (docs/architecture.md): page faults in `pgbench -i -s 50` 120k against 214k, the
// daemon's RSS with 100 branches and 20 running endpoints 130 MB against 194 MB.
extern "C" {
const char* malloc_conf = "narenas:2,dirty_decay_ms:1000,background_thread:true";
}

int main(int argc, char** argv) {
  // For a build with glibc's malloc (-DARBOR_JEMALLOC=OFF, sanitizers): arborfs workers
  // allocate and free buffers of up to 1 MiB per request, on many threads. Per-thread arenas
  // and glibc's rising mmap threshold keep that memory; two arenas and a fixed 256 KiB
  // threshold (large buffers go back to the OS at free) keep the server's RSS near its block
  // cache, at the price of a page fault for every page of every memtable. With jemalloc
  // these calls change nothing.
  mallopt(M_ARENA_MAX, 2);
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  DebugMountFlags mf;
  // The client commands live in src/cli; this binary adds the ones that run the server.
  return arbor::cli::Run(argc, argv, [&mf](CLI::App& app) {
    arbor::app::AddServerCommands(app);
    auto* version = app.add_subcommand("version", "print the version");
    version->callback([] { std::printf("arbor 0.1.0\n"); });

    // Hidden: tools for tests and benchmarks.
    auto* debug = app.add_subcommand("debug", "developer tools")->group("");
    debug->require_subcommand(1);
    auto* mount =
        debug->add_subcommand("mount", "serve one timeline at a mount point (foreground)");
    mount->add_option("--store", mf.store, "store directory")->required();
    auto* tl_opt = mount->add_option("--timeline", mf.timeline, "timeline to mount");
    auto* root_opt = mount->add_flag("--create-root", mf.create_root, "create a new root timeline");
    tl_opt->excludes(root_opt);
    mount->add_option("--mountpoint", mf.mountpoint, "directory to mount at")->required();
    mount->add_option("--uid", mf.uid, "owner of a new root directory");
    mount->add_option("--gid", mf.gid, "group of a new root directory");
    mount->add_option("--block-cache-mb", mf.block_cache_mb, "RocksDB block cache (MiB)");
    mount->add_option("--wal-prefill-mb", mf.wal_prefill_mb,
                      "size of the pre-written WAL spare (MiB; 0 appends the WAL)");
    mount->add_flag("--writeback-cache,!--no-writeback-cache", mf.writeback_cache,
                    "FUSE writeback cache (default on, as the daemon mounts)");
    mount->add_flag("--no-keep-cache", mf.no_keep_cache, "drop the page cache on open");
    mount->add_option("--entry-timeout", mf.entry_timeout, "kernel entry timeout (s)");
    mount->add_option("--attr-timeout", mf.attr_timeout, "kernel attribute timeout (s)");
    mount->callback([&mf] {
      if (!mf.create_root && mf.timeline == 0) {
        throw CLI::ValidationError("--timeline or --create-root is required");
      }
      int rc = DebugMount(mf);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  });
}
