#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace arbor::metrics {
namespace {

void AppendValue(std::string* out, double v) {
  if (std::isinf(v)) {
    *out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (std::isnan(v)) {
    *out += "NaN";
    return;
  }
  char buf[64];
  // Integers (counters, bytes) exactly; fractions to 15 significant digits.
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.15g", v);
  }
  *out += buf;
}

void AppendEscaped(std::string* out, std::string_view s) {
  for (char c : s) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '"') {
      *out += "\\\"";
    } else if (c == '\n') {
      *out += "\\n";
    } else {
      *out += c;
    }
  }
}

}  // namespace

void Writer::Family(std::string_view name, std::string_view type, std::string_view help) {
  if (std::find(started_.begin(), started_.end(), name) != started_.end()) return;
  started_.emplace_back(name);
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void Writer::Sample(std::string_view name, const Labels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) out_ += ',';
      out_ += labels[i].first;
      out_ += "=\"";
      AppendEscaped(&out_, labels[i].second);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  AppendValue(&out_, value);
  out_ += '\n';
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

Histogram::Histogram(const Histogram& other) { *this = other; }

Histogram& Histogram::operator=(const Histogram& other) {
  if (this == &other) return *this;
  std::scoped_lock l(mu_, other.mu_);
  bounds_ = other.bounds_;
  counts_ = other.counts_;
  sum_ = other.sum_;
  count_ = other.count_;
  return *this;
}

void Histogram::Observe(double value) {
  std::lock_guard l(mu_);
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::Write(Writer* w, std::string_view name, const Labels& labels) const {
  std::lock_guard l(mu_);
  const std::string base(name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    Labels with = labels;
    std::string le;
    if (i == bounds_.size()) {
      le = "+Inf";
    } else {
      AppendValue(&le, bounds_[i]);
    }
    with.emplace_back("le", le);
    w->Sample(base + "_bucket", with, static_cast<double>(cumulative));
  }
  w->Sample(base + "_sum", labels, sum_);
  w->Sample(base + "_count", labels, static_cast<double>(count_));
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

}  // namespace arbor::metrics
