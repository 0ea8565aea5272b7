#include "cli/render.h"

#include <algorithm>
#include <functional>

#include "api/names.h"
#include "cli/args.h"

namespace arbor::cli {
namespace {

// Code points, not bytes: "├── " is 4 columns wide.
size_t Width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string Ago(int64_t then_us, int64_t now_us) {
  return HumanDuration((now_us - then_us) / 1'000'000);
}

}  // namespace

std::string RenderTable(const Row& header, const std::vector<Row>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  auto measure = [&](const Row& r) {
    for (size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], Width(r[i]));
    }
  };
  measure(header);
  for (const auto& r : rows) measure(r);
  std::string out;
  auto line = [&](const Row& r) {
    std::string l;
    for (size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      l += r[i];
      if (i + 1 < r.size()) l += std::string(widths[i] - Width(r[i]) + 2, ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
  return out;
}

std::string RenderFields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t w = 0;
  for (const auto& [k, v] : fields) w = std::max(w, Width(k));
  std::string out;
  for (const auto& [k, v] : fields) out += k + std::string(w - Width(k) + 2, ' ') + v + "\n";
  return out;
}

std::string ShortName(const std::string& name) {
  size_t slash = name.rfind('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

std::string ExpiryText(const api::Branch& b, int64_t now_us) {
  if (!b.status.expire_time_us) return "never";
  int64_t t = *b.status.expire_time_us;
  if (t <= now_us) return "expired " + Ago(t, now_us) + " ago";
  return "in " + HumanDuration((t - now_us + 999'999) / 1'000'000);
}

std::string RenderBranchTree(const std::vector<api::Branch>& branches,
                             const std::map<std::string, std::string>& endpoint_states,
                             int64_t now_us) {
  std::map<std::string, const api::Branch*> by_name;
  for (const auto& b : branches) by_name[b.name] = &b;
  std::map<std::string, std::vector<const api::Branch*>> children;
  std::vector<const api::Branch*> roots;
  for (const auto& b : branches) {
    const auto& parent = b.status.source_branch ? b.status.source_branch : b.spec.source_branch;
    if (parent && by_name.count(*parent) != 0 && *parent != b.name) {
      children[*parent].push_back(&b);
    } else {
      roots.push_back(&b);
    }
  }
  auto by_age = [](const api::Branch* x, const api::Branch* y) {
    if (x->create_time_us != y->create_time_us) return x->create_time_us < y->create_time_us;
    return x->name < y->name;
  };
  std::sort(roots.begin(), roots.end(), [&](const api::Branch* x, const api::Branch* y) {
    if (x->status.is_default != y->status.is_default) return x->status.is_default;
    return by_age(x, y);
  });
  for (auto& [name, list] : children) std::sort(list.begin(), list.end(), by_age);

  std::vector<Row> rows;
  std::function<void(const api::Branch*, const std::string&, const std::string&)> draw =
      [&](const api::Branch* b, const std::string& lead, const std::string& rest) {
        std::string label = lead + ShortName(b->name);
        if (b->status.is_default) label += " (default)";
        if (b->spec.is_protected.value_or(false)) label += " [protected]";
        auto ep = endpoint_states.find(b->name);
        rows.push_back({label, b->status.current_state.empty() ? "-" : b->status.current_state,
                        ep == endpoint_states.end() ? "-" : ep->second,
                        Ago(b->create_time_us, now_us), ExpiryText(*b, now_us),
                        HumanBytes(b->status.logical_size_bytes),
                        HumanBytes(b->status.written_bytes)});
        auto it = children.find(b->name);
        if (it == children.end()) return;
        for (size_t i = 0; i < it->second.size(); ++i) {
          bool last = i + 1 == it->second.size();
          draw(it->second[i], rest + (last ? "└── " : "├── "), rest + (last ? "    " : "│   "));
        }
      };
  for (const auto* r : roots) draw(r, "", "");
  return RenderTable({"BRANCH", "STATE", "COMPUTE", "AGE", "EXPIRES", "LOGICAL", "WRITTEN"}, rows);
}

std::string RenderBranch(const api::Branch& b, const std::vector<api::Endpoint>& endpoints,
                         int64_t now_us) {
  std::vector<std::pair<std::string, std::string>> f;
  f.push_back({"name", b.name});
  f.push_back({"uid", b.uid});
  f.push_back({"state", b.status.current_state});
  f.push_back({"default", b.status.is_default ? "yes" : "no"});
  f.push_back({"protected", b.spec.is_protected.value_or(false) ? "yes" : "no"});
  f.push_back({"created",
               api::FormatTime(b.create_time_us) + " (" + Ago(b.create_time_us, now_us) + " ago)"});
  if (b.status.source_branch) {
    f.push_back({"parent", *b.status.source_branch});
    if (b.status.source_branch_time_us) {
      f.push_back({"forked at", api::FormatTime(*b.status.source_branch_time_us)});
    }
    if (b.status.source_branch_lsn) {
      f.push_back({"forked at lsn", api::FormatLsn(*b.status.source_branch_lsn)});
    }
  }
  if (b.status.masked_time_us) {
    std::string rules = b.spec.masking ? " (" + std::to_string(b.spec.masking->size()) +
                                             (b.spec.masking->size() == 1 ? " rule)" : " rules)")
                                       : " (inherited)";
    f.push_back({"masked at", api::FormatTime(*b.status.masked_time_us) + rules});
  }
  std::string expires = ExpiryText(b, now_us);
  if (b.status.expire_time_us)
    expires = api::FormatTime(*b.status.expire_time_us) + " (" + expires + ")";
  f.push_back({"expires", expires});
  f.push_back({"logical size", HumanBytes(b.status.logical_size_bytes)});
  f.push_back({"written", HumanBytes(b.status.written_bytes)});
  for (const auto& e : endpoints) {
    f.push_back({"endpoint " + ShortName(e.name), e.status.current_state + " " + e.status.host +
                                                      ":" + std::to_string(e.status.port)});
  }
  return RenderFields(f);
}

std::string RenderEndpoints(const std::vector<api::Endpoint>& endpoints) {
  std::vector<Row> rows;
  bool any_read_only = false;
  for (const auto& e : endpoints) {
    auto name = api::ParseEndpointName(e.name);
    std::string branch = name.ok() ? name->branch : e.name;
    std::string suspend = e.spec.no_suspension.value_or(false) ? "never"
                          : e.spec.suspend_timeout_s
                              ? "after " + HumanDuration(*e.spec.suspend_timeout_s) + " idle"
                              : "-";
    std::string type = "read-write";
    if (e.spec.endpoint_type.value_or("") == "ENDPOINT_TYPE_READ_ONLY") {
      type = e.spec.source_branch_time_us || e.spec.source_branch_lsn ? "pinned" : "replica";
    }
    if (e.status.replay_lag) type += " (lag " + *e.status.replay_lag + ")";
    any_read_only = any_read_only || type != "read-write";
    rows.push_back({branch, ShortName(e.name), type, e.status.current_state,
                    e.status.host + ":" + std::to_string(e.status.port), suspend});
  }
  if (!any_read_only) {
    // Only read-write endpoints: no TYPE column.
    for (Row& r : rows) r.erase(r.begin() + 2);
    return RenderTable({"BRANCH", "ENDPOINT", "STATE", "ADDRESS", "SUSPEND"}, rows);
  }
  return RenderTable({"BRANCH", "ENDPOINT", "TYPE", "STATE", "ADDRESS", "SUSPEND"}, rows);
}

}  // namespace arbor::cli
