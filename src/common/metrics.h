#pragma once

// Prometheus metrics: a text-format writer and the few instruments Arbor keeps between
// scrapes (a histogram with fixed buckets). Gauges, and counters whose series come and go with
// the objects they describe, are read at scrape time from their owners (Engine, ApiServer), so
// a deleted endpoint's series disappear with it and cardinality stays bounded by what exists.
// The format is https://prometheus.io/docs/instrumenting/exposition_formats/ (text 0.0.4).

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace arbor::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Builds one exposition. Not thread-safe; one per scrape.
class Writer {
 public:
  // Starts a family: "# HELP" and "# TYPE" lines. `type`: counter, gauge or histogram.
  // A family started twice is written once (samples may follow either call).
  void Family(std::string_view name, std::string_view type, std::string_view help);
  // One sample `name{labels} value`. Label values are escaped.
  void Sample(std::string_view name, const Labels& labels, double value);
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
  std::vector<std::string> started_;
};

// Fixed-bucket histogram. Thread-safe.
class Histogram {
 public:
  // `bounds`: the upper bounds of the buckets, increasing; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);
  Histogram(const Histogram& other);
  Histogram& operator=(const Histogram& other);
  void Observe(double value);
  // Writes `name_bucket`, `name_sum` and `name_count` samples with `labels`.
  // REQUIRES: the family `name` was started as a histogram.
  void Write(Writer* w, std::string_view name, const Labels& labels) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Buckets for latencies in seconds: 1 ms to 60 s.
std::vector<double> LatencyBuckets();

}  // namespace arbor::metrics
