#include "datadiff/diff.h"

#include <algorithm>
#include <map>
#include <set>

#include "datadiff/catalog.h"
#include "datadiff/data_read.h"

namespace arbor::datadiff {
namespace {

// The shape both sides are compared on: the common columns, in `a`'s order, and the primary
// key when both sides have the same one.
TableShape ShapeOf(const TableInfo& a, const TableInfo& b, const std::string& a_label,
                   const std::string& b_label) {
  TableShape shape;
  shape.name = a.name;
  shape.sql_name = a.sql_name;
  std::map<std::string, const TableColumn*> in_b;
  for (const TableColumn& c : b.columns) in_b[c.name] = &c;
  std::string only_a, only_b;
  for (const TableColumn& c : a.columns) {
    auto it = in_b.find(c.name);
    if (it == in_b.end()) {
      only_a += (only_a.empty() ? "" : ", ") + c.name;
      continue;
    }
    if (it->second->type != c.type) {
      shape.notes.push_back("column " + c.name + " is " + c.type + " in " + a_label + " and " +
                            it->second->type + " in " + b_label + "; compared as text");
    }
    shape.columns.push_back(c.name);
    shape.sql_columns.push_back(c.sql_name);
    shape.identity_always = shape.identity_always || c.identity_always;
    in_b.erase(it);
  }
  for (const TableColumn& c : b.columns) {
    if (in_b.count(c.name)) only_b += (only_b.empty() ? "" : ", ") + c.name;
  }
  if (!only_a.empty() || !only_b.empty()) {
    std::string n = "columns differ; compared on the common columns only";
    if (!only_a.empty()) n += " (only in " + a_label + ": " + only_a + ")";
    if (!only_b.empty()) n += " (only in " + b_label + ": " + only_b + ")";
    shape.notes.push_back(n);
  }
  if (a.primary_key.empty() && b.primary_key.empty()) {
    shape.notes.push_back("no primary key: rows compared whole, duplicates counted");
  } else if (a.primary_key != b.primary_key) {
    shape.notes.push_back("the primary keys differ: rows compared whole");
  } else {
    for (const std::string& k : a.primary_key) {
      auto it = std::find(shape.columns.begin(), shape.columns.end(), k);
      if (it == shape.columns.end()) {
        shape.key.clear();
        shape.notes.push_back("a primary key column is not on both sides: rows compared whole");
        break;
      }
      shape.key.push_back(static_cast<size_t>(it - shape.columns.begin()));
    }
  }
  return shape;
}

}  // namespace

std::string PinnedLabel(const std::string& branch, std::optional<int64_t> time_us,
                        std::optional<Lsn> lsn) {
  return branch + "@" +
         (lsn ? "lsn:" + api::FormatLsn(*lsn) : api::FormatTime(time_us.value_or(0)));
}

std::string QualifiedTable(const std::string& name) {
  return name.find('.') == std::string::npos ? "public." + name : name;
}

bool ConcernsTables(const Change& ch, const std::set<std::string>& tables) {
  for (const std::string& t : tables) {
    if (ch.name == t || ch.name.rfind(t + ".", 0) == 0) return true;
    if (ch.kind == ObjectKind::kIndex) {
      auto def = ch.attrs.count("definition") ? ch.attrs.at("definition") : std::string();
      if (ch.changed.count("definition")) def = ch.changed.at("definition").to;
      if (def.find(" ON " + t + " ") != std::string::npos ||
          def.find(" ON ONLY " + t + " ") != std::string::npos) {
        return true;
      }
    }
  }
  return false;
}

bool DiffReport::Differs() const {
  if (!schema.empty()) return true;
  for (const TableDiff& d : tables) {
    if (d.Differs()) return true;
  }
  return false;
}

// Each side's snapshot is taken before the backend is asked which pages either side wrote
// since they diverged; a table is then skipped (no page written), read on those pages only
// (same file on both sides) or read in full (a file of its own on one side, or no change index
// to tell). Rows are held in memory per table.
Result<DiffReport> DiffData(Backend& backend, const DiffRequest& o) {
  const DiffSide& a = o.a;
  const DiffSide& b = o.b;
  DiffReport out;
  out.from = a.label;
  out.to = b.label;
  ARBOR_ASSIGN_OR_RETURN(std::string url_a, backend.Connect(a.endpoint, /*to_write=*/false));
  ARBOR_ASSIGN_OR_RETURN(std::string url_b, backend.Connect(b.endpoint, /*to_write=*/false));
  ARBOR_ASSIGN_OR_RETURN(Catalog ca, ReadCatalog(url_a, o.database));
  ARBOR_ASSIGN_OR_RETURN(Catalog cb, ReadCatalog(url_b, o.database));
  out.schema = CompareCatalogs(ca, cb);
  if (o.schema_only && o.tables.empty()) return out;
  // The snapshots come first, then the change set: a page written after a snapshot either
  // is in the change set (and read on both sides, in the snapshot) or holds nothing the
  // snapshot sees that was not there before (docs/workflow.md, "Data diff").
  ARBOR_ASSIGN_OR_RETURN(auto ra, TableReader::Open(url_a, o.database));
  ARBOR_ASSIGN_OR_RETURN(auto rb, TableReader::Open(url_b, o.database));
  ARBOR_ASSIGN_OR_RETURN(auto ta, ra->Tables());
  ARBOR_ASSIGN_OR_RETURN(auto tb, rb->Tables());
  std::set<std::string> wanted;
  for (const std::string& t : o.tables) {
    std::string q = QualifiedTable(t);
    if (!ta.count(q) && !tb.count(q)) {
      out.refusal = Refusal::kBadTable;
      out.bad_table = t;
      out.message = "no table " + q + " on either side";
      return out;
    }
    wanted.insert(q);
  }
  if (!wanted.empty()) {
    // Only the schema differences of those tables (their columns, constraints, indexes,
    // triggers and policies).
    std::erase_if(out.schema, [&](const Change& ch) { return !ConcernsTables(ch, wanted); });
  }
  api::ChangedPages changed;
  if (a.endpoint.project != b.endpoint.project) {
    // Two projects are two unrelated histories: nothing in common to skip.
    changed.complete = false;
    out.fallback = "the sides are in different projects; every table is read in full";
  } else {
    ARBOR_ASSIGN_OR_RETURN(changed, backend.ChangedPages(a.endpoint, b.endpoint));
    if (!changed.complete) {
      out.fallback = "the change index cannot tell what changed (" + changed.reason +
                     "); every table is read in full";
    } else if (ra->database_oid() != rb->database_oid()) {
      changed.complete = false;
      out.fallback =
          "the database is not the same database on both sides; every table is read in full";
    }
  }
  out.change_index = changed.complete;
  std::map<uint32_t, const api::ChangedRelation*> rels;  // by relfilenode
  if (changed.complete) {
    auto db = changed.databases.find(ra->database_oid());
    if (db != changed.databases.end()) {
      for (const auto& r : db->second) rels[r.relfilenode] = &r;
    }
  }
  for (const auto& [name, info_a] : ta) {
    if (!wanted.empty() && !wanted.count(name)) continue;
    auto ib = tb.find(name);
    if (ib == tb.end()) {
      out.one_side.push_back(name);
      continue;
    }
    const TableInfo& info_b = ib->second;
    TableShape shape = ShapeOf(info_a, info_b, a.label, b.label);
    const std::vector<std::pair<uint64_t, uint64_t>>* ranges = nullptr;
    TableRead read;
    if (!changed.complete) {
      read.full = true;
    } else if (info_a.own_tablespace || info_b.own_tablespace) {
      read.full = true;
      shape.notes.push_back(
          "read in full: it is in a tablespace of its own (the change set "
          "covers base/ only)");
    } else if (info_a.relfilenode != info_b.relfilenode) {
      read.full = true;
      shape.notes.push_back(
          "read in full: its file differs between the sides (rewritten by VACUUM FULL, "
          "TRUNCATE, CLUSTER or an ALTER TABLE on one side)");
    } else {
      auto r = rels.find(info_a.relfilenode);
      if (r == rels.end()) {
        out.skipped.push_back(name);  // neither side wrote a page of it
        continue;
      }
      if (r->second->whole) {
        read.full = true;
        shape.notes.push_back("read in full: its file was recreated on one side");
      } else {
        ranges = &r->second->pages;
      }
    }
    uint64_t range_pages = 0;
    if (ranges != nullptr) {
      for (const auto& [lo, hi] : *ranges) range_pages += hi - lo + 1;
    }
    if (read.full || range_pages >= 1000) {  // may take a while: say what is going on
      backend.Note(
          "Reading " + name +
          (read.full ? " in full" : " (" + std::to_string(range_pages) + " changed pages)") +
          " on both sides...");
    }
    ARBOR_ASSIGN_OR_RETURN(auto rows_a,
                           ra->Rows(info_a, shape.sql_columns, ranges, &read.pages_from));
    std::vector<std::string> cols_b;
    for (const std::string& col : shape.columns) {
      for (const TableColumn& tc : info_b.columns) {
        if (tc.name == col) cols_b.push_back(tc.sql_name);
      }
    }
    ARBOR_ASSIGN_OR_RETURN(auto rows_b, rb->Rows(info_b, cols_b, ranges, &read.pages_to));
    out.tables.push_back(CompareRows(shape, std::move(rows_a), std::move(rows_b)));
    out.reads.push_back(read);
  }
  for (const auto& [name, info_b] : tb) {
    if ((wanted.empty() || wanted.count(name)) && !ta.count(name)) out.one_side.push_back(name);
  }
  return out;
}

api::Json DiffReportJson(const DiffReport& r) {
  api::Json tables = DataDiffToJson(r.tables);
  for (size_t i = 0; i < tables.size(); ++i) {
    tables[i]["read"] = r.reads[i].full ? "full" : "changed pages";
    tables[i]["pages_read_from"] = r.reads[i].pages_from;
    tables[i]["pages_read_to"] = r.reads[i].pages_to;
  }
  api::Json out{{"from", r.from},
                {"to", r.to},
                {"identical", !r.Differs()},
                {"schema", DiffToJson(r.schema, r.from, r.to)},
                {"tables", tables},
                {"skipped_tables", r.skipped},
                {"tables_on_one_side", r.one_side},
                {"change_index", r.change_index}};
  if (!r.fallback.empty()) out["fallback"] = r.fallback;
  return out;
}

std::string DiffReportSql(const DiffReport& r) {
  std::string head =
      "-- Data patch: turns the rows of " + r.from + " into those of " + r.to + ".\n";
  if (!r.schema.empty()) {
    head += "-- Schema differences (not part of this patch; apply them apart):\n";
    std::string text = RenderDiff(r.schema, r.from, r.to, DiffFormat::kText);
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      head += "--   " + text.substr(pos, nl - pos) + "\n";
      pos = nl + 1;
    }
  }
  for (const std::string& t : r.one_side)
    head += "-- " + t + " is on one side only: not compared\n";
  if (!r.fallback.empty()) head += "-- " + r.fallback + "\n";
  return head + RenderSqlPatch(r.tables);
}

std::string DiffReportText(const DiffReport& r) {
  uint64_t pages = 0;
  size_t full = 0;
  for (const TableRead& t : r.reads) {
    pages += t.pages_from + t.pages_to;
    full += t.full;
  }
  std::string stats = "Compared " + std::to_string(r.tables.size()) + " table" +
                      (r.tables.size() == 1 ? "" : "s") + " (" + std::to_string(full) +
                      " read in full; " + std::to_string(pages) +
                      " pages read on the two sides); " + std::to_string(r.skipped.size()) +
                      " skipped, unchanged on both sides since they diverged.";
  std::string text = RenderDiff(r.schema, r.from, r.to, DiffFormat::kText) + "\nData diff " +
                     r.from + " -> " + r.to + "\n";
  if (!r.fallback.empty()) text += "note: " + r.fallback + "\n";
  for (const std::string& t : r.one_side) {
    text += "note: " + t + " is on one side only (see the schema differences); not compared\n";
  }
  return text + RenderDataText(r.tables, r.from, r.to) + stats + "\n";
}

}  // namespace arbor::datadiff
