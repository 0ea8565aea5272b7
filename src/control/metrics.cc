// The engine's Prometheus metrics (docs/metrics.md): counters kept per endpoint, and gauges
// read at scrape time from the catalog, the live computes and the store.
#include <limits>
#include <set>

#include "control/engine.h"

namespace arbor::control {
namespace {

using metrics::Labels;

Labels EndpointLabels(const std::string& project, const std::string& branch,
                      const std::string& id) {
  return {{"project", project}, {"branch", branch}, {"endpoint", id}};
}

}  // namespace

void Engine::CountStart(const EndpointKey& key) {
  std::lock_guard m(metrics_mu_);
  ++counters_[key].starts;
}

uint64_t Engine::StartsOf(const EndpointKey& key) {
  std::lock_guard m(metrics_mu_);
  auto it = counters_.find(key);
  return it == counters_.end() ? 0 : it->second.starts;
}

// The proxy reports endpoints it resolved (they existed a moment ago); one deleted since then
// is dropped at the next scrape. A login it could not route has no endpoint: one series per
// reason, whatever the client named, so junk names cannot grow the map.
// Cardinality follows the catalog: run at every scrape and by the reaper's round, so the
// counters of deleted endpoints (each with its histogram) do not pile up without a scraper.
void Engine::PruneCountersLocked() {
  std::lock_guard m(metrics_mu_);
  std::erase_if(counters_, [&](const auto& e) { return !catalog_.endpoints.count(e.first); });
  std::erase_if(branches_expired_,
                [&](const auto& e) { return !catalog_.projects.count(e.first); });
}

void Engine::RecordAuthFailure(const std::string& project, const std::string& branch,
                               const std::string& id, const std::string& reason) {
  std::lock_guard m(metrics_mu_);
  if (project.empty()) {
    ++unrouted_auth_failures_[reason];
  } else {
    ++counters_[{project, branch, id}].auth_failures[reason];
  }
}

void Engine::RecordRelayed(const std::string& project, const std::string& branch,
                           const std::string& id, uint64_t from_client, uint64_t to_client) {
  std::lock_guard m(metrics_mu_);
  EndpointCounters& c = counters_[{project, branch, id}];
  c.bytes_from_client += from_client;
  c.bytes_to_client += to_client;
}

void Engine::WriteMetrics(metrics::Writer* w, const std::string& only_project) {
  auto wanted = [&](const std::string& project) {
    return only_project.empty() || project == only_project;
  };
  struct EndpointRow {
    EndpointKey key;
    const char* state = "IDLE";
    double current_cu = 0;
    int connections = 0;
    uint64_t write_limit = 0;         // bytes per second; 0: none or idle
    uint64_t write_throttled_ns = 0;  // over all its runs
    EndpointCounters counters;
  };
  std::vector<EndpointRow> endpoints;
  std::vector<std::pair<BranchKey, TimelineId>> branches;
  std::map<std::string, uint64_t> unrouted, expired;
  {
    std::lock_guard l(mu_);
    for (const auto& [k, b] : catalog_.branches) {
      if (wanted(b.project)) branches.emplace_back(k, b.timeline);
    }
    PruneCountersLocked();
    std::lock_guard m(metrics_mu_);
    for (const auto& [k, e] : catalog_.endpoints) {
      if (!wanted(e.project)) continue;
      EndpointRow row;
      row.key = k;
      auto live = live_.find(k);
      if (live != live_.end()) {
        row.write_throttled_ns = live->second.write_throttled_ns;
        if (live->second.mount) row.write_throttled_ns += live->second.mount->WriteThrottledNanos();
        if (live->second.running) {
          row.state = "ACTIVE";
          row.current_cu = live->second.current_cu;
          row.write_limit = live->second.write_rate;
        } else if (live->second.starting) {
          row.state = "STARTING";
        }
      }
      auto c = counters_.find(k);
      if (c != counters_.end()) row.counters = c->second;
      endpoints.push_back(std::move(row));
    }
    if (only_project.empty()) unrouted = unrouted_auth_failures_;
    for (const auto& [p, n] : branches_expired_) {
      if (wanted(p)) expired[p] = n;
    }
  }
  {
    std::lock_guard a(activity_mu_);
    for (EndpointRow& row : endpoints) {
      auto it = activity_.find(row.key);
      if (it != activity_.end()) row.connections = it->second.connections;
    }
  }

  // Usage (docs/compute-sizes.md, "Usage"): the sums of an endpoint's hourly records, which
  // are kept as long as its project, so the counters never go down.
  std::map<EndpointKey, std::pair<double, uint64_t>> usage;
  {
    std::set<std::string> projects;
    for (const EndpointRow& r : endpoints) projects.insert(std::get<0>(r.key));
    for (const std::string& p : projects) {
      for (const UsageRecord& u : ProjectUsage(p, 0, std::numeric_limits<int64_t>::max())) {
        auto& [cu, bytes] = usage[{u.project, u.branch, u.endpoint}];
        cu += u.cu_seconds;
        bytes += u.written_bytes;
      }
    }
  }

  w->Family("arbor_endpoint_state", "gauge",
            "1 for the endpoint's compute state (ACTIVE, STARTING or IDLE), 0 for the others.");
  for (const EndpointRow& r : endpoints) {
    const auto& [p, b, e] = r.key;
    for (const char* state : {"ACTIVE", "STARTING", "IDLE"}) {
      Labels l = EndpointLabels(p, b, e);
      l.emplace_back("state", state);
      w->Sample("arbor_endpoint_state", l, std::string_view(state) == r.state ? 1 : 0);
    }
  }
  auto per_endpoint = [&](const char* name, const char* type, const char* help, auto value) {
    w->Family(name, type, help);
    for (const EndpointRow& r : endpoints) {
      const auto& [p, b, e] = r.key;
      w->Sample(name, EndpointLabels(p, b, e), static_cast<double>(value(r)));
    }
  };
  per_endpoint("arbor_endpoint_current_cu", "gauge",
               "The running compute's CPU limit now, in compute units (0 when idle).",
               [](const EndpointRow& r) { return r.current_cu; });
  per_endpoint("arbor_endpoint_connections", "gauge", "Client connections open through the proxy.",
               [](const EndpointRow& r) { return r.connections; });
  auto usage_of = [&usage](const EndpointRow& r) {
    auto it = usage.find(r.key);
    return it == usage.end() ? std::pair<double, uint64_t>() : it->second;
  };
  per_endpoint("arbor_endpoint_cu_seconds_total", "counter",
               "Compute-unit seconds the endpoint's compute used (its CPU limit times the time "
               "it ran), as GET projects/P/usage sums them.",
               [&](const EndpointRow& r) { return usage_of(r).first; });
  per_endpoint("arbor_endpoint_written_bytes_total", "counter",
               "Bytes its branch wrote while this endpoint ran, as GET projects/P/usage sums them.",
               [&](const EndpointRow& r) { return usage_of(r).second; });
  per_endpoint("arbor_endpoint_write_limit_bytes_per_second", "gauge",
               "The running compute's write budget into the store (its current CU times the "
               "daemon's --write-mb-per-cu, while another compute starts or commits); 0: none.",
               [](const EndpointRow& r) { return r.write_limit; });
  per_endpoint(
      "arbor_endpoint_write_throttled_seconds_total", "counter",
      "Seconds the compute's writes waited for its write budget.",
      [](const EndpointRow& r) { return static_cast<double>(r.write_throttled_ns) / 1e9; });
  per_endpoint("arbor_endpoint_starts_total", "counter",
               "Compute starts (by a client's wake, the API, or a restart).",
               [](const EndpointRow& r) { return r.counters.starts; });
  per_endpoint("arbor_endpoint_wakes_total", "counter",
               "Client connections that waited for the compute to start.",
               [](const EndpointRow& r) { return r.counters.wakes; });
  w->Family("arbor_endpoint_wake_seconds", "histogram",
            "How long a client's connection waited for the compute to start.");
  for (const EndpointRow& r : endpoints) {
    const auto& [p, b, e] = r.key;
    r.counters.wake_seconds.Write(w, "arbor_endpoint_wake_seconds", EndpointLabels(p, b, e));
  }
  w->Family("arbor_endpoint_relayed_bytes_total", "counter",
            "Bytes of finished client sessions on the client's connection, by direction.");
  for (const EndpointRow& r : endpoints) {
    const auto& [p, b, e] = r.key;
    Labels from = EndpointLabels(p, b, e), to = from;
    from.emplace_back("direction", "from_client");
    to.emplace_back("direction", "to_client");
    w->Sample("arbor_endpoint_relayed_bytes_total", from,
              static_cast<double>(r.counters.bytes_from_client));
    w->Sample("arbor_endpoint_relayed_bytes_total", to,
              static_cast<double>(r.counters.bytes_to_client));
  }
  w->Family("arbor_endpoint_auth_failures_total", "counter",
            "Logins the proxy refused, by reason; endpoint=\"\" for logins it could not route.");
  for (const EndpointRow& r : endpoints) {
    const auto& [p, b, e] = r.key;
    for (const auto& [reason, n] : r.counters.auth_failures) {
      Labels l = EndpointLabels(p, b, e);
      l.emplace_back("reason", reason);
      w->Sample("arbor_endpoint_auth_failures_total", l, static_cast<double>(n));
    }
  }
  for (const auto& [reason, n] : unrouted) {
    Labels l = EndpointLabels("", "", "");
    l.emplace_back("reason", reason);
    w->Sample("arbor_endpoint_auth_failures_total", l, static_cast<double>(n));
  }

  // Each family's samples together, as the text format wants.
  std::vector<std::pair<Labels, storage::Usage>> usages;
  for (const auto& [k, tl] : branches) {
    auto usage = store_->GetUsage(tl);
    if (usage.ok()) usages.emplace_back(Labels{{"project", k.first}, {"branch", k.second}}, *usage);
  }
  w->Family("arbor_branch_logical_size_bytes", "gauge",
            "Sum of the sizes of the files the branch sees (what a full copy would take).");
  for (const auto& [l, u] : usages) {
    w->Sample("arbor_branch_logical_size_bytes", l, static_cast<double>(u.logical_size_bytes));
  }
  w->Family("arbor_branch_written_bytes", "gauge",
            "Bytes the branch wrote since it was made (its own storage, before compression).");
  for (const auto& [l, u] : usages) {
    w->Sample("arbor_branch_written_bytes", l, static_cast<double>(u.written_bytes));
  }

  w->Family("arbor_branches_expired_total", "counter",
            "Branches the reaper deleted when they expired, since the daemon started.");
  for (const auto& [p, n] : expired) {
    w->Sample("arbor_branches_expired_total", {{"project", p}}, static_cast<double>(n));
  }

  if (!only_project.empty()) return;  // the store is shared by every project
  const storage::StoreStats s = store_->Stats();
  auto gauge = [&](const char* name, const char* help, double v) {
    w->Family(name, "gauge", help);
    w->Sample(name, {}, v);
  };
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    w->Family(name, "counter", help);
    w->Sample(name, {}, static_cast<double>(v));
  };
  gauge("arbor_store_disk_bytes", "Bytes the store occupies on disk (SST, blob and log files).",
        static_cast<double>(s.disk_bytes));
  counter("arbor_store_written_bytes_total",
          "Bytes of keys and values the store wrote to RocksDB since the daemon started.",
          s.user_bytes_written);
  counter("arbor_store_flush_bytes_total", "Bytes written by RocksDB's memtable flushes.",
          s.flush_bytes_written);
  counter("arbor_store_compaction_written_bytes_total", "Bytes written by RocksDB's compactions.",
          s.compaction_bytes_written);
  counter("arbor_store_compaction_read_bytes_total", "Bytes read by RocksDB's compactions.",
          s.compaction_bytes_read);
  counter("arbor_store_flushes_total", "RocksDB memtable flushes completed.", s.flushes);
  counter("arbor_store_compactions_total", "RocksDB compactions completed.", s.compactions);
  counter("arbor_store_block_cache_hits_total", "Block cache hits.", s.block_cache_hits);
  counter("arbor_store_block_cache_misses_total", "Block cache misses.", s.block_cache_misses);
  const uint64_t lookups = s.block_cache_hits + s.block_cache_misses;
  gauge("arbor_store_block_cache_hit_ratio",
        "Block cache hits / lookups since the daemon started (0 before any lookup).",
        lookups ? static_cast<double>(s.block_cache_hits) / static_cast<double>(lookups) : 0);
  gauge("arbor_store_write_amplification",
        "Estimate: (flush + compaction bytes written) / bytes the store wrote, since the daemon "
        "started (0 before any write).",
        s.user_bytes_written
            ? static_cast<double>(s.flush_bytes_written + s.compaction_bytes_written) /
                  static_cast<double>(s.user_bytes_written)
            : 0);
}

}  // namespace arbor::control
