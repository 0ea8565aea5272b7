#include "datadiff/schema_diff.h"

#include <algorithm>

namespace arbor::datadiff {
namespace {

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t nl = s.find('\n', pos);
    if (nl == std::string::npos) {
      if (pos < s.size()) out.push_back(s.substr(pos));
      break;
    }
    out.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

bool MultiLine(const std::string& v) { return v.find('\n') != std::string::npos; }

const char* Sign(ChangeType t) {
  return t == ChangeType::kAdded ? "+" : t == ChangeType::kRemoved ? "-" : "~";
}
const char* Word(ChangeType t) {
  return t == ChangeType::kAdded ? "added" : t == ChangeType::kRemoved ? "removed" : "changed";
}

std::string Shown(const std::string& v) { return v.empty() ? "(none)" : v; }

// Attribute names in reading order: what the object is first, then the rest by name.
std::vector<std::string> OrderedKeys(const std::map<std::string, std::string>& attrs) {
  static const char* kFirst[] = {"kind", "type", "command", "base_type", "labels", "attributes"};
  std::vector<std::string> out;
  for (const char* k : kFirst) {
    if (attrs.count(k)) out.push_back(k);
  }
  for (const auto& [k, v] : attrs) {
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
  }
  return out;
}

// The single-line attributes as "key: value; key: value".
std::string InlineAttrs(const std::map<std::string, std::string>& attrs) {
  std::string out;
  for (const auto& k : OrderedKeys(attrs)) {
    const std::string& v = attrs.at(k);
    if (MultiLine(v) || v.empty()) continue;
    out += (out.empty() ? "" : "; ") + k + ": " + v;
  }
  return out;
}

std::string Indent(const std::string& text, const std::string& prefix) {
  std::string out;
  for (const auto& l : SplitLines(text)) out += prefix + l + "\n";
  return out;
}

std::string MdCode(const std::string& v) {
  // Inline code that survives a table cell: no backticks, pipes or line breaks inside.
  std::string s;
  for (char c : v) s += c == '`' ? '\'' : c == '|' ? '/' : c == '\n' || c == '\r' ? ' ' : c;
  return "`" + s + "`";
}

// `v` as HTML text: & < > " ' as entities, line breaks as spaces, so that it can neither
// close the element it is in nor end the HTML block (a blank line does).
std::string HtmlText(const std::string& v) {
  std::string s;
  for (char c : v) {
    switch (c) {
      case '&':
        s += "&amp;";
        break;
      case '<':
        s += "&lt;";
        break;
      case '>':
        s += "&gt;";
        break;
      case '"':
        s += "&quot;";
        break;
      case '\'':
        s += "&#39;";
        break;
      case '\n':
      case '\r':
        s += ' ';
        break;
      default:
        s += c;
    }
  }
  return s;
}

// A collapsed block: `summary` as HTML text, then `diff` (lines ending in '\n') in a fenced
// code block whose fence is longer than any run of backticks in it, so that no line of it
// closes the block (CommonMark), whatever a definition holds.
std::string MdDetails(const std::string& summary, const std::string& diff) {
  size_t longest = 0, run = 0;
  for (char c : diff) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  std::string fence(std::max<size_t>(3, longest + 1), '`');
  return "<details><summary>" + HtmlText(summary) + "</summary>\n\n" + fence + "diff\n" + diff +
         fence + "\n</details>\n\n";
}

}  // namespace

const char* KindName(ObjectKind k) {
  switch (k) {
    case ObjectKind::kSchema:
      return "schema";
    case ObjectKind::kExtension:
      return "extension";
    case ObjectKind::kType:
      return "type";
    case ObjectKind::kSequence:
      return "sequence";
    case ObjectKind::kTable:
      return "table";
    case ObjectKind::kColumn:
      return "column";
    case ObjectKind::kConstraint:
      return "constraint";
    case ObjectKind::kIndex:
      return "index";
    case ObjectKind::kView:
      return "view";
    case ObjectKind::kFunction:
      return "function";
    case ObjectKind::kTrigger:
      return "trigger";
    case ObjectKind::kPolicy:
      return "policy";
  }
  return "object";
}

void AddObject(Catalog* c, CatalogObject o) {
  auto key = std::make_pair(o.kind, o.name);
  (*c)[key] = std::move(o);
}

std::vector<Change> CompareCatalogs(const Catalog& from, const Catalog& to) {
  std::vector<Change> out;
  for (const auto& [key, a] : from) {
    auto it = to.find(key);
    if (it == to.end()) {
      out.push_back(Change{ChangeType::kRemoved, a.kind, a.name, a.attrs, {}});
      continue;
    }
    const CatalogObject& b = it->second;
    std::map<std::string, AttrChange> changed;
    for (const auto& [k, v] : a.attrs) {
      auto bv = b.attrs.find(k);
      std::string nv = bv == b.attrs.end() ? "" : bv->second;
      if (nv != v) changed[k] = AttrChange{v, nv};
    }
    for (const auto& [k, v] : b.attrs) {
      if (!a.attrs.count(k) && !v.empty()) changed[k] = AttrChange{"", v};
    }
    if (!changed.empty()) out.push_back(Change{ChangeType::kChanged, a.kind, a.name, {}, changed});
  }
  for (const auto& [key, b] : to) {
    if (!from.count(key)) out.push_back(Change{ChangeType::kAdded, b.kind, b.name, b.attrs, {}});
  }
  std::stable_sort(out.begin(), out.end(), [](const Change& x, const Change& y) {
    if (x.kind != y.kind) return x.kind < y.kind;
    return x.name < y.name;
  });
  return out;
}

std::string DiffSummary(const std::vector<Change>& changes) {
  if (changes.empty()) return "no differences";
  int n[3] = {0, 0, 0};
  for (const auto& c : changes) ++n[static_cast<int>(c.type)];
  std::string out;
  for (ChangeType t : {ChangeType::kAdded, ChangeType::kRemoved, ChangeType::kChanged}) {
    if (n[static_cast<int>(t)] == 0) continue;
    out += (out.empty() ? "" : ", ") + std::to_string(n[static_cast<int>(t)]) + " " + Word(t);
  }
  return out;
}

std::string LineDiff(const std::string& from, const std::string& to) {
  std::vector<std::string> a = SplitLines(from), b = SplitLines(to);
  struct Op {
    char sign;  // ' ', '-', '+'
    std::string line;
  };
  std::vector<Op> ops;
  if (a.size() * b.size() > 4'000'000) {
    for (const auto& l : a) ops.push_back({'-', l});
    for (const auto& l : b) ops.push_back({'+', l});
  } else {
    // Longest common subsequence, then walk it.
    std::vector<std::vector<int>> lcs(a.size() + 1, std::vector<int>(b.size() + 1, 0));
    for (size_t i = a.size(); i-- > 0;) {
      for (size_t j = b.size(); j-- > 0;) {
        lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
    size_t i = 0, j = 0;
    while (i < a.size() || j < b.size()) {
      if (i < a.size() && j < b.size() && a[i] == b[j]) {
        ops.push_back({' ', a[i]});
        ++i;
        ++j;
      } else if (i < a.size() && (j == b.size() || lcs[i + 1][j] >= lcs[i][j + 1])) {
        ops.push_back({'-', a[i++]});
      } else {
        ops.push_back({'+', b[j++]});
      }
    }
  }
  // Keep context lines within 2 of a change.
  std::vector<bool> keep(ops.size(), false);
  for (size_t k = 0; k < ops.size(); ++k) {
    if (ops[k].sign == ' ') continue;
    for (size_t d = (k >= 2 ? k - 2 : 0); d <= k + 2 && d < ops.size(); ++d) keep[d] = true;
  }
  std::string out;
  bool skipped = false;
  for (size_t k = 0; k < ops.size(); ++k) {
    if (!keep[k]) {
      skipped = true;
      continue;
    }
    if (skipped && !out.empty()) out += "  ...\n";
    skipped = false;
    out += std::string(1, ops[k].sign) + " " + ops[k].line + "\n";
  }
  return out;
}

api::Json DiffToJson(const std::vector<Change>& changes, const std::string& from_label,
                     const std::string& to_label) {
  api::Json list = api::Json::array();
  for (const auto& c : changes) {
    api::Json j{{"change", Word(c.type)}, {"kind", KindName(c.kind)}, {"name", c.name}};
    if (c.type == ChangeType::kChanged) {
      api::Json fields = api::Json::object();
      for (const auto& [k, v] : c.changed) fields[k] = {{"from", v.from}, {"to", v.to}};
      j["fields"] = fields;
    } else {
      j["attributes"] = c.attrs;
    }
    list.push_back(j);
  }
  return api::Json{{"from", from_label},
                   {"to", to_label},
                   {"identical", changes.empty()},
                   {"summary", DiffSummary(changes)},
                   {"changes", list}};
}

std::string RenderDiff(const std::vector<Change>& changes, const std::string& from_label,
                       const std::string& to_label, DiffFormat format) {
  if (format == DiffFormat::kJson) return DiffToJson(changes, from_label, to_label).dump(2) + "\n";
  std::string out;
  if (format == DiffFormat::kText) {
    out += "Schema diff " + from_label + " -> " + to_label + "\n";
    if (changes.empty()) return out + "No schema differences.\n";
    size_t width = 0;
    for (const auto& c : changes) width = std::max(width, std::string(KindName(c.kind)).size());
    for (const auto& c : changes) {
      std::string kind = KindName(c.kind);
      kind.resize(width, ' ');
      out += std::string(Sign(c.type)) + " " + kind + "  " + c.name;
      if (c.type != ChangeType::kChanged) {
        std::string inl = InlineAttrs(c.attrs);
        out += inl.empty() ? "\n" : "  (" + inl + ")\n";
        for (const auto& [k, v] : c.attrs) {
          if (MultiLine(v)) out += "    " + k + ":\n" + Indent(v, "      ");
        }
        continue;
      }
      out += "\n";
      for (const auto& [k, v] : c.changed) {
        if (MultiLine(v.from) || MultiLine(v.to)) {
          out += "    " + k + ":\n" + Indent(LineDiff(v.from, v.to), "      ");
        } else {
          out += "    " + k + ": " + Shown(v.from) + " -> " + Shown(v.to) + "\n";
        }
      }
    }
    return out + DiffSummary(changes) + ".\n";
  }
  // Markdown, for a pull-request comment.
  out += "### Schema diff `" + from_label + "` → `" + to_label + "`\n\n";
  if (changes.empty()) return out + "No schema differences.\n";
  out += "**" + DiffSummary(changes) + "**\n\n| change | kind | object | details |\n";
  out += "| --- | --- | --- | --- |\n";
  std::string blocks;
  for (const auto& c : changes) {
    std::string details;
    if (c.type == ChangeType::kChanged) {
      for (const auto& [k, v] : c.changed) {
        if (MultiLine(v.from) || MultiLine(v.to)) {
          details += (details.empty() ? "" : "<br>") + k + ": see below";
          blocks += MdDetails(std::string(KindName(c.kind)) + " " + c.name + ": " + k,
                              LineDiff(v.from, v.to));
        } else {
          details += (details.empty() ? "" : "<br>") + k + ": " + MdCode(Shown(v.from)) + " → " +
                     MdCode(Shown(v.to));
        }
      }
    } else {
      for (const auto& k : OrderedKeys(c.attrs)) {
        const std::string& v = c.attrs.at(k);
        if (v.empty()) continue;
        if (MultiLine(v)) {
          std::string prefix = c.type == ChangeType::kAdded ? "+ " : "- ";
          blocks += MdDetails(
              std::string(KindName(c.kind)) + " " + c.name + " (" + Word(c.type) + "): " + k,
              Indent(v, prefix));
          continue;
        }
        details += (details.empty() ? "" : "<br>") + k + ": " + MdCode(v);
      }
    }
    out += std::string("| ") + Word(c.type) + " | " + KindName(c.kind) + " | " + MdCode(c.name) +
           " | " + details + " |\n";
  }
  if (!blocks.empty()) out += "\n" + blocks;
  return out;
}

}  // namespace arbor::datadiff
