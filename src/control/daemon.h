#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "control/engine.h"

namespace arbor::control {

struct DaemonOptions {
  std::string data_dir;  // --data-dir, else $ARBOR_HOME, else ~/.arbor
  std::string api_host = "127.0.0.1";
  uint16_t api_port = 8432;                      // 0 picks a free port (tests)
  std::string proxy_listen = "127.0.0.1:55432";  // as given, for GET status
  std::string proxy_host = "127.0.0.1";
  uint16_t proxy_port = 55432;  // 0 picks a free port (tests)
  // The proxy's unix sockets for clients on this host (docs/proxy.md); empty: none.
  std::string proxy_socket_dir;
  std::string console_dir;   // the web console's built files
  std::string metrics_host;  // --metrics-listen; empty: /metrics on the API's listener only
  uint16_t metrics_port = 0;
  // A PEM certificate chain and key the user supplies; both empty: a self-signed pair made
  // at the first start in <data_dir>/tls/.
  std::string tls_cert_file;
  std::string tls_key_file;
  bool require_tls = false;
  uint16_t port_lo = 55433;
  uint16_t port_hi = 55999;
  uint64_t block_cache_bytes = 256ull << 20;
  std::string shared_buffers;  // every compute's; empty: by its size (docs/compute-sizes.md)
  // Each compute's write budget into the store, in MiB/s per CU of its current size; 0: none
  // (docs/compute-sizes.md, "Writes").
  uint64_t write_mb_per_cu = 16;
  std::string version = "0.1.0";
  // How long `arbor up` waits for the daemon to become ready before it stops it and says why.
  // A first start (initdb on a new branch) takes a few seconds; see README.
  int start_timeout_s = 60;
};

// Makes the arborfs mounter for a store (src/fs provides it; the daemon does not depend
// on FUSE directly).
using MounterFactory = std::function<std::unique_ptr<Mounter>(storage::Store*)>;

// The data directory from flags and environment, made absolute: `flag` if set, else
// ArborHome() ($ARBOR_HOME, else ~/.arbor: the CLI's default too).
std::string ResolveDataDir(const std::string& flag);

// Runs the daemon in this process until SIGTERM or SIGINT: opens the store, clears mounts
// and computes left by a killed daemon, creates the embedded default (project `default`,
// branch `production`, endpoint `primary`) on first start and starts its endpoint, serves
// the API, reaps expired branches. Writes `api` and `admin-token` (0600) into the data
// directory once ready. Returns the process exit code.
int RunDaemon(const DaemonOptions& options, const MounterFactory& make_mounter);

// `arbor up`: starts the daemon in the background (or reports the one running on this data
// directory), waits until it is ready and prints the default branch's connection string.
// A daemon that exits first, or is not ready within `start_timeout_s`, is reported with the
// last error of its log; one that is not ready is stopped (as by Down), with what it started.
int Up(const DaemonOptions& options, bool foreground, const MounterFactory& make_mounter);

// `arbor down`: stops the daemon of the data directory within 30 s, whatever its state:
// SIGTERM, then after 20 s SIGKILL for it and its computes. Then it clears the mounts a
// daemon left (also those of one killed earlier). Exit code 0 if nothing is left running or
// mounted; 1 with the reason otherwise.
int Down(const std::string& data_dir);

// The process holding the data directory's lock, if any.
std::optional<pid_t> RunningDaemon(const std::string& data_dir);

}  // namespace arbor::control
