#include "server_commands.h"

#include <cstdlib>
#include <filesystem>

#include "control/daemon.h"
#include "fs_mounter.h"

namespace arbor::app {
namespace {

// "127.0.0.1:8432" -> host, port. Exits with a usage error when malformed.
void SplitHostPort(const char* flag, const std::string& text, std::string* host, uint16_t* port) {
  auto colon = text.rfind(':');
  int p = colon == std::string::npos ? -1 : std::atoi(text.c_str() + colon + 1);
  if (colon == std::string::npos || p < 0 || p > 65535) {
    throw CLI::ValidationError(flag, "expected HOST:PORT, got '" + text + "'");
  }
  *host = text.substr(0, colon);
  *port = static_cast<uint16_t>(p);
}

void SplitRange(const std::string& text, uint16_t* lo, uint16_t* hi) {
  int a = 0, b = 0;
  if (sscanf(text.c_str(), "%d-%d", &a, &b) != 2 || a < 1 || b > 65535 || a > b) {
    throw CLI::ValidationError("--endpoint-ports", "expected LOW-HIGH, got '" + text + "'");
  }
  *lo = static_cast<uint16_t>(a);
  *hi = static_cast<uint16_t>(b);
}

}  // namespace

void AddServerCommands(CLI::App& app) {
  struct Flags {
    std::string data_dir, api_listen = "127.0.0.1:8432", proxy_listen = "127.0.0.1:55432",
                          endpoint_ports = "55433-55999", shared_buffers, tls_cert, tls_key,
                          proxy_socket_dir, console_dir, metrics_listen;
    uint64_t block_cache_mb = 256;
    uint64_t write_mb_per_cu = control::DaemonOptions{}.write_mb_per_cu;
    int start_timeout_s = control::DaemonOptions{}.start_timeout_s;
    bool foreground = false, require_tls = false;
  };
  auto flags = std::make_shared<Flags>();

  auto* up = app.add_subcommand("up", "start the Arbor daemon and print a connection string");
  up->add_option("--data-dir", flags->data_dir,
                 "state directory (default $ARBOR_HOME or ~/.arbor)");
  up->add_flag("--foreground", flags->foreground, "stay attached (containers, systemd)");
  up->add_option("--api-listen", flags->api_listen, "REST API address (port 0: any free port)")
      ->capture_default_str();
  up->add_option("--proxy-listen", flags->proxy_listen,
                 "the proxy's shared address (port 0: any free port)")
      ->capture_default_str();
  up->add_option("--proxy-socket-dir", flags->proxy_socket_dir,
                 "where the proxy's unix sockets go, for clients on this host (default "
                 "DATA_DIR/proxy; 'none': TCP only)");
  up->add_flag("--require-tls", flags->require_tls,
               "refuse clients that do not use TLS (use it when the proxy listens beyond "
               "loopback)");
  up->add_option("--tls-cert", flags->tls_cert,
                 "the proxy's PEM certificate chain (default: a self-signed one in "
                 "DATA_DIR/tls)");
  up->add_option("--tls-key", flags->tls_key, "the key of --tls-cert");
  up->add_option("--endpoint-ports", flags->endpoint_ports, "port range for endpoints")
      ->capture_default_str();
  up->add_option("--block-cache-mb", flags->block_cache_mb, "storage block cache in MiB")
      ->capture_default_str();
  up->add_option("--shared-buffers", flags->shared_buffers,
                 "shared_buffers of every compute (default: a quarter of its memory, by its "
                 "size)");
  up->add_option("--write-mb-per-cu", flags->write_mb_per_cu,
                 "each compute's write budget into the store, in MiB/s per CU of its current "
                 "size, while another compute starts or commits (0: unlimited)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  up->add_option("--console-dir", flags->console_dir,
                 "the web console's built files (default: 'console' beside the arbor binary)");
  up->add_option("--metrics-listen", flags->metrics_listen,
                 "also serve GET /metrics on HOST:PORT, without a token (keep it on a private "
                 "address: it names every project and branch)");
  up->add_option("--start-timeout", flags->start_timeout_s,
                 "seconds to wait for the daemon to become ready before stopping it")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  up->callback([flags] {
    control::DaemonOptions o;
    o.data_dir = control::ResolveDataDir(flags->data_dir);
    SplitHostPort("--api-listen", flags->api_listen, &o.api_host, &o.api_port);
    o.proxy_listen = flags->proxy_listen;
    SplitHostPort("--proxy-listen", flags->proxy_listen, &o.proxy_host, &o.proxy_port);
    if (flags->proxy_socket_dir == "none") {
      o.proxy_socket_dir.clear();
    } else {
      o.proxy_socket_dir = flags->proxy_socket_dir.empty()
                               ? o.data_dir + "/proxy"
                               : std::filesystem::absolute(flags->proxy_socket_dir).string();
    }
    o.require_tls = flags->require_tls;
    o.tls_cert_file = flags->tls_cert;
    o.tls_key_file = flags->tls_key;
    SplitRange(flags->endpoint_ports, &o.port_lo, &o.port_hi);
    o.block_cache_bytes = flags->block_cache_mb << 20;
    o.shared_buffers = flags->shared_buffers;
    o.write_mb_per_cu = flags->write_mb_per_cu;
    o.start_timeout_s = flags->start_timeout_s;
    if (!flags->metrics_listen.empty()) {
      SplitHostPort("--metrics-listen", flags->metrics_listen, &o.metrics_host, &o.metrics_port);
    }
    if (!flags->console_dir.empty()) {
      o.console_dir = std::filesystem::absolute(flags->console_dir).string();
    } else {
      std::error_code ec;
      auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (!ec) o.console_dir = (exe.parent_path() / "console").string();
    }
    std::string store_path = o.data_dir + "/store";
    int rc = control::Up(o, flags->foreground, [store_path](storage::Store* store) {
      return std::unique_ptr<control::Mounter>(std::make_unique<ArborfsMounter>(store, store_path));
    });
    std::exit(rc);
  });

  auto* down = app.add_subcommand("down", "stop the Arbor daemon");
  down->add_option("--data-dir", flags->data_dir,
                   "state directory (default $ARBOR_HOME or ~/.arbor)");
  down->callback([flags] { std::exit(control::Down(control::ResolveDataDir(flags->data_dir))); });
}

}  // namespace arbor::app
