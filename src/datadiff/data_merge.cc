#include "datadiff/data_merge.h"

#include <algorithm>
#include <map>

namespace arbor::datadiff {
namespace {

// One key's change on one side.
struct SideChange {
  std::optional<DataRow> from, to;  // nullopt: no row
};

std::map<DataRow, SideChange> ByKey(const TableDiff& d) {
  std::map<DataRow, SideChange> out;
  for (const DataRow& r : d.only_from) out[KeyOf(d.shape, r)] = {r, std::nullopt};
  for (const DataRow& r : d.only_to) out[KeyOf(d.shape, r)] = {std::nullopt, r};
  for (const RowChange& c : d.changed) out[KeyOf(d.shape, c.from)] = {c.from, c.to};
  return out;
}

std::string KeyText(const TableShape& s, const DataRow& key) {
  std::string out;
  for (size_t k = 0; k < s.key.size(); ++k) {
    if (k > 0) out += ", ";
    out += s.columns[s.key[k]] + "=" + SqlLiteral(key[k]);
  }
  return out;
}

std::string RowShown(const TableShape& s, const std::optional<DataRow>& row) {
  if (!row) return "(no row)";
  std::string out;
  for (size_t i = 0; i < row->size(); ++i) {
    if (i > 0) out += ", ";
    const DataValue& v = (*row)[i];
    std::string text = SqlLiteral(v);
    if (text.size() > 40) text = text.substr(0, 40) + "...";
    out += s.columns[i] + "=" + text;
  }
  return out;
}

api::Json RowJson(const TableShape& s, const std::optional<DataRow>& row) {
  if (!row) return nullptr;
  api::Json o = api::Json::object();
  for (size_t i = 0; i < row->size(); ++i) {
    o[s.columns[i]] = (*row)[i] ? api::Json(*(*row)[i]) : api::Json(nullptr);
  }
  return o;
}

}  // namespace

std::string MergeConflict::Kind() const {
  if (!ancestor) return "both inserted";
  if (!source) return "deleted on the source, updated on the target";
  if (!target) return "updated on the source, deleted on the target";
  return "both updated";
}

TableMerge ThreeWay(const TableDiff& source, const TableDiff& target) {
  TableMerge m;
  m.apply.shape = source.shape;
  std::map<DataRow, SideChange> on_target = ByKey(target);
  // Whether the source's change of `key` (from -> to) goes to the target; counts the keys
  // changed alike and records the conflicts.
  auto take = [&](const std::optional<DataRow>& from, const std::optional<DataRow>& to) {
    DataRow key = KeyOf(source.shape, from ? *from : *to);
    auto t = on_target.find(key);
    if (t == on_target.end()) return true;
    if (to == t->second.to) {
      ++m.same_on_both;
    } else {
      m.conflicts.push_back({std::move(key), from ? from : t->second.from, to, t->second.to});
    }
    return false;
  };
  // In the diff's order (by key, integers by value), kind by kind.
  for (const DataRow& r : source.only_from) {
    if (take(r, std::nullopt)) m.apply.only_from.push_back(r);
  }
  for (const RowChange& c : source.changed) {
    if (take(c.from, c.to)) m.apply.changed.push_back(c);
  }
  for (const DataRow& r : source.only_to) {
    if (take(std::nullopt, r)) m.apply.only_to.push_back(r);
  }
  std::stable_sort(
      m.conflicts.begin(), m.conflicts.end(),
      [](const MergeConflict& a, const MergeConflict& b) { return DataRowLess(a.key, b.key); });
  return m;
}

std::string RenderConflictsText(const std::vector<TableMerge>& merges, size_t limit) {
  std::string out;
  for (const TableMerge& m : merges) {
    if (m.conflicts.empty()) continue;
    const TableShape& s = m.apply.shape;
    out += "table " + s.name + ": " + std::to_string(m.conflicts.size()) + " conflicting key" +
           (m.conflicts.size() == 1 ? "" : "s") + "\n";
    for (size_t i = 0; i < m.conflicts.size() && i < limit; ++i) {
      const MergeConflict& c = m.conflicts[i];
      out += "  ! " + KeyText(s, c.key) + ": " + c.Kind() + "\n";
      out += "      ancestor: " + RowShown(s, c.ancestor) + "\n";
      out += "      source:   " + RowShown(s, c.source) + "\n";
      out += "      target:   " + RowShown(s, c.target) + "\n";
    }
    if (m.conflicts.size() > limit) {
      out += "  ! ... and " + std::to_string(m.conflicts.size() - limit) + " more\n";
    }
  }
  return out;
}

api::Json ConflictsToJson(const std::vector<TableMerge>& merges) {
  api::Json tables = api::Json::array();
  for (const TableMerge& m : merges) {
    if (m.conflicts.empty()) continue;
    const TableShape& s = m.apply.shape;
    api::Json key_columns = api::Json::array();
    for (size_t k : s.key) key_columns.push_back(s.columns[k]);
    api::Json list = api::Json::array();
    for (const MergeConflict& c : m.conflicts) {
      api::Json key = api::Json::object();
      for (size_t k = 0; k < s.key.size(); ++k) {
        key[s.columns[s.key[k]]] = c.key[k] ? api::Json(*c.key[k]) : api::Json(nullptr);
      }
      list.push_back({{"key", key},
                      {"kind", c.Kind()},
                      {"ancestor", RowJson(s, c.ancestor)},
                      {"source", RowJson(s, c.source)},
                      {"target", RowJson(s, c.target)}});
    }
    tables.push_back({{"table", s.name},
                      {"key_columns", key_columns},
                      {"count", m.conflicts.size()},
                      {"conflicts", list}});
  }
  return tables;
}

}  // namespace arbor::datadiff
