#include "datadiff/data_diff.h"

#include <algorithm>
#include <map>

namespace arbor::datadiff {

DataRow KeyOf(const TableShape& shape, const DataRow& row) {
  DataRow key;
  key.reserve(shape.key.size());
  for (size_t i : shape.key) key.push_back(row[i]);
  return key;
}

namespace {

// A value for people: 'text' (cut after 60 characters) or NULL.
std::string Shown(const DataValue& v) {
  if (!v) return "NULL";
  constexpr size_t kMax = 60;
  if (v->size() <= kMax) return SqlLiteral(v);
  return SqlLiteral(v->substr(0, kMax)) + "...(" + std::to_string(v->size()) + " chars)";
}

// "id=4" or "(a, b)=(1, 2)" for a keyed row; the whole row otherwise.
std::string RowText(const TableShape& shape, const DataRow& row, bool key_only) {
  std::string out;
  std::vector<size_t> cols = shape.key;
  if (!key_only || cols.empty()) {
    cols.clear();
    for (size_t i = 0; i < row.size(); ++i) cols.push_back(i);
  }
  for (size_t i : cols) {
    if (!out.empty()) out += ", ";
    out += shape.columns[i] + "=" + Shown(row[i]);
  }
  return out;
}

std::string Where(const TableShape& shape, const DataRow& row) {
  std::string out;
  for (size_t i : shape.key) {
    if (!out.empty()) out += " AND ";
    out += shape.sql_columns[i] + " = " + SqlLiteral(row[i]);
  }
  return out;
}

std::string Insert(const TableShape& shape, const DataRow& row) {
  std::string cols, vals;
  for (size_t i = 0; i < row.size(); ++i) {
    if (i > 0) {
      cols += ", ";
      vals += ", ";
    }
    cols += shape.sql_columns[i];
    vals += SqlLiteral(row[i]);
  }
  return "INSERT INTO " + shape.sql_name + " (" + cols + ")" +
         (shape.identity_always ? " OVERRIDING SYSTEM VALUE" : "") + " VALUES (" + vals + ");\n";
}

api::Json RowJson(const TableShape& shape, const DataRow& row) {
  api::Json o = api::Json::object();
  for (size_t i = 0; i < row.size(); ++i) {
    o[shape.columns[i]] = row[i] ? api::Json(*row[i]) : api::Json(nullptr);
  }
  return o;
}

std::string Plural(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

bool IsInteger(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// Rows in a stable order for people, per value: NULL, then integers by value, then other
// text as bytes (a total order in which distinct texts stay distinct: "7" and "007" are two
// keys of a text column).
struct RowLess {
  bool operator()(const DataRow& a, const DataRow& b) const {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      const DataValue& x = a[i];
      const DataValue& y = b[i];
      if (x == y) continue;
      if (!x || !y) return !x;
      bool xi = IsInteger(*x), yi = IsInteger(*y);
      if (xi != yi) return xi;
      if (xi) {
        long long vx = std::stoll(*x), vy = std::stoll(*y);
        if (vx != vy) return vx < vy;
      }
      return *x < *y;
    }
    return a.size() < b.size();
  }
};

}  // namespace

TableDiff CompareRows(const TableShape& shape, std::vector<DataRow> from, std::vector<DataRow> to) {
  TableDiff d;
  d.shape = shape;
  if (shape.key.empty()) {
    // A multiset difference: sort both and walk them together.
    std::sort(from.begin(), from.end(), RowLess());
    std::sort(to.begin(), to.end(), RowLess());
    std::set_difference(from.begin(), from.end(), to.begin(), to.end(),
                        std::back_inserter(d.only_from), RowLess());
    std::set_difference(to.begin(), to.end(), from.begin(), from.end(),
                        std::back_inserter(d.only_to), RowLess());
    return d;
  }
  std::map<DataRow, DataRow, RowLess> a, b;
  for (DataRow& r : from) {
    DataRow k = KeyOf(shape, r);
    a[std::move(k)] = std::move(r);
  }
  for (DataRow& r : to) {
    DataRow k = KeyOf(shape, r);
    b[std::move(k)] = std::move(r);
  }
  RowLess less;
  auto ia = a.begin();
  auto ib = b.begin();
  while (ia != a.end() || ib != b.end()) {
    if (ib == b.end() || (ia != a.end() && less(ia->first, ib->first))) {
      d.only_from.push_back(std::move(ia->second));
      ++ia;
    } else if (ia == a.end() || less(ib->first, ia->first)) {
      d.only_to.push_back(std::move(ib->second));
      ++ib;
    } else {
      if (ia->second != ib->second) {
        d.changed.push_back({std::move(ia->second), std::move(ib->second)});
      }
      ++ia;
      ++ib;
    }
  }
  return d;
}

bool DataRowLess(const DataRow& a, const DataRow& b) { return RowLess()(a, b); }

std::string SqlLiteral(const DataValue& v) {
  if (!v) return "NULL";
  std::string out = "'";
  for (char c : *v) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

SqlStatements RenderSqlStatements(const TableDiff& d) {
  SqlStatements out;
  const TableShape& s = d.shape;
  for (const DataRow& r : d.only_from) {
    if (!s.key.empty()) {
      out.deletes += "DELETE FROM ONLY " + s.sql_name + " WHERE " + Where(s, r) + ";\n";
      continue;
    }
    // No key: one row with exactly these values (compared as text, as the diff did).
    std::string match;
    for (size_t i = 0; i < r.size(); ++i) {
      if (i > 0) match += " AND ";
      match +=
          r[i] ? s.sql_columns[i] + "::text = " + SqlLiteral(r[i]) : s.sql_columns[i] + " IS NULL";
    }
    out.deletes += "DELETE FROM ONLY " + s.sql_name + " WHERE ctid = (SELECT ctid FROM ONLY " +
                   s.sql_name + " WHERE " + match + " LIMIT 1);\n";
  }
  for (const RowChange& c : d.changed) {
    std::string set;
    for (size_t i = 0; i < c.to.size(); ++i) {
      if (c.from[i] == c.to[i]) continue;
      if (!set.empty()) set += ", ";
      set += s.sql_columns[i] + " = " + SqlLiteral(c.to[i]);
    }
    out.updates +=
        "UPDATE ONLY " + s.sql_name + " SET " + set + " WHERE " + Where(s, c.from) + ";\n";
  }
  for (const DataRow& r : d.only_to) out.inserts += Insert(s, r);
  return out;
}

std::string RenderSqlPatch(const std::vector<TableDiff>& diffs) {
  std::string out;
  for (const TableDiff& d : diffs) {
    if (!d.Differs()) continue;
    const TableShape& s = d.shape;
    out += "\n-- " + s.name + ": " + Plural(d.only_from.size(), "row deleted", "rows deleted") +
           ", " + Plural(d.changed.size(), "row updated", "rows updated") + ", " +
           Plural(d.only_to.size(), "row inserted", "rows inserted") + "\n";
    for (const std::string& n : s.notes) out += "-- " + n + "\n";
    SqlStatements st = RenderSqlStatements(d);
    out += st.deletes + st.updates + st.inserts;
  }
  if (out.empty()) return "-- No data differences.\n";
  return "BEGIN;\n" + out + "COMMIT;\n";
}

std::string RenderDataText(const std::vector<TableDiff>& diffs, const std::string& from_label,
                           const std::string& to_label, size_t limit) {
  std::string out;
  size_t differing = 0;
  for (const TableDiff& d : diffs) {
    if (!d.Differs()) continue;
    ++differing;
    const TableShape& s = d.shape;
    std::string by = s.key.empty() ? "no primary key: rows compared whole" : "by primary key ";
    for (size_t k = 0; k < s.key.size(); ++k) by += (k ? ", " : "") + s.columns[s.key[k]];
    out += "table " + s.name + " (" + by + "): " + std::to_string(d.only_from.size()) +
           " only in " + from_label + ", " + std::to_string(d.only_to.size()) + " only in " +
           to_label + ", " + std::to_string(d.changed.size()) + " changed\n";
    for (const std::string& n : s.notes) out += "  note: " + n + "\n";
    auto list = [&](const std::vector<DataRow>& rows, const char* mark) {
      for (size_t i = 0; i < rows.size() && i < limit; ++i) {
        out += std::string("  ") + mark + " " + RowText(s, rows[i], false) + "\n";
      }
      if (rows.size() > limit)
        out += "  " + std::string(mark) + " ... and " + std::to_string(rows.size() - limit) +
               " more\n";
    };
    list(d.only_from, "-");
    list(d.only_to, "+");
    for (size_t i = 0; i < d.changed.size() && i < limit; ++i) {
      const RowChange& c = d.changed[i];
      std::string what;
      for (size_t j = 0; j < c.to.size(); ++j) {
        if (c.from[j] == c.to[j]) continue;
        if (!what.empty()) what += ", ";
        what += s.columns[j] + ": " + Shown(c.from[j]) + " -> " + Shown(c.to[j]);
      }
      out += "  ~ " + RowText(s, c.from, true) + ": " + what + "\n";
    }
    if (d.changed.size() > limit) {
      out += "  ~ ... and " + std::to_string(d.changed.size() - limit) + " more\n";
    }
  }
  if (differing == 0) return "No data differences.\n";
  return out + Plural(differing, "table differs", "tables differ") + ".\n";
}

api::Json DataDiffToJson(const std::vector<TableDiff>& diffs) {
  api::Json tables = api::Json::array();
  for (const TableDiff& d : diffs) {
    const TableShape& s = d.shape;
    api::Json key = api::Json::array();
    for (size_t k : s.key) key.push_back(s.columns[k]);
    api::Json only_from = api::Json::array(), only_to = api::Json::array(),
              changed = api::Json::array();
    for (const DataRow& r : d.only_from) only_from.push_back(RowJson(s, r));
    for (const DataRow& r : d.only_to) only_to.push_back(RowJson(s, r));
    for (const RowChange& c : d.changed) {
      api::Json k = api::Json::object();
      for (size_t i : s.key) k[s.columns[i]] = c.from[i] ? api::Json(*c.from[i]) : nullptr;
      changed.push_back({{"key", k}, {"from", RowJson(s, c.from)}, {"to", RowJson(s, c.to)}});
    }
    tables.push_back({{"table", s.name},
                      {"key", s.key.empty() ? api::Json("whole row") : api::Json("primary key")},
                      {"key_columns", key},
                      {"columns", s.columns},
                      {"notes", s.notes},
                      {"differs", d.Differs()},
                      {"only_in_from_count", d.only_from.size()},
                      {"only_in_to_count", d.only_to.size()},
                      {"changed_count", d.changed.size()},
                      {"only_in_from", only_from},
                      {"only_in_to", only_to},
                      {"changed", changed}});
  }
  return tables;
}

}  // namespace arbor::datadiff
