// `arbor diff --data` (docs/workflow.md, "Data diff"): the command's flow. The comparison
// and rendering are data_diff.h's, the reads data_read.h's.

#include <algorithm>
#include <map>
#include <set>

#include "cli/catalog.h"
#include "cli/data_diff.h"
#include "cli/data_read.h"
#include "cli/schema_diff.h"
#include "cli/workflow_internal.h"

namespace arbor::cli {
namespace {

// How one table was read.
struct TableRead {
  bool full = false;
  uint64_t pages_from = 0, pages_to = 0;
};

// "public.t" for "t"; names with a dot are taken as schema.table.
std::string QualifiedTable(const std::string& name) {
  return name.find('.') == std::string::npos ? "public." + name : name;
}

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

// `arbor diff --data A B`: the schema diff, then the rows of every table on both sides
// (docs/workflow.md, "Data diff"). Each side's snapshot is taken before the daemon is asked
// which pages either side wrote since they diverged; a table is then skipped (no page
// written), read on those pages only (same file on both sides) or read in full (a file of
// its own on one side, or no change index to tell). Rows are held in memory per table.
Status CmdDataDiff(const Session& s, const DataDiffOpts& o) {
  if (o.format != "text" && o.format != "json" && o.format != "sql") {
    Usage("--format with --data: expected text, json or sql, got '" + o.format + "'");
  }
  bool json = s.Json() || o.format == "json";
  auto c = s.Client();
  bool differs = false;
  auto run = [&]() -> Status {
    ARBOR_ASSIGN_OR_RETURN(DiffSide a, ResolveSide(s, c, o.a));
    ARBOR_ASSIGN_OR_RETURN(DiffSide b, ResolveSide(s, c, o.b));
    ARBOR_ASSIGN_OR_RETURN(std::string url_a, ConnectEndpoint(c, a.endpoint));
    ARBOR_ASSIGN_OR_RETURN(std::string url_b, ConnectEndpoint(c, b.endpoint));
    ARBOR_ASSIGN_OR_RETURN(Catalog ca, ReadCatalog(url_a, o.database));
    ARBOR_ASSIGN_OR_RETURN(Catalog cb, ReadCatalog(url_b, o.database));
    std::vector<Change> schema = CompareCatalogs(ca, cb);
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
      if (!ta.count(q) && !tb.count(q))
        Usage("--table " + t + ": no table " + q + " on either side");
      wanted.insert(q);
    }
    if (!wanted.empty()) {
      // Only the schema differences of those tables (their columns, constraints, indexes,
      // triggers and policies).
      auto concerns = [&](const Change& ch) {
        for (const std::string& t : wanted) {
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
      };
      std::erase_if(schema, [&](const Change& ch) { return !concerns(ch); });
    }
    api::ChangedPages changed;
    std::string fallback;
    if (a.endpoint.project != b.endpoint.project) {
      // Two projects are two unrelated histories: nothing in common to skip.
      changed.complete = false;
      fallback = "the sides are in different projects; every table is read in full";
    } else {
      ARBOR_ASSIGN_OR_RETURN(changed, c.GetChangedPages(a.endpoint, b.endpoint));
      if (!changed.complete) {
        fallback = "the change index cannot tell what changed (" + changed.reason +
                   "); every table is read in full";
      } else if (ra->database_oid() != rb->database_oid()) {
        changed.complete = false;
        fallback =
            "the database is not the same database on both sides; every table is read in full";
      }
    }
    std::map<uint32_t, const api::ChangedRelation*> rels;  // by relfilenode
    if (changed.complete) {
      auto db = changed.databases.find(ra->database_oid());
      if (db != changed.databases.end()) {
        for (const auto& r : db->second) rels[r.relfilenode] = &r;
      }
    }
    std::vector<TableDiff> diffs;
    std::vector<TableRead> reads;
    std::vector<std::string> skipped, one_side;
    for (const auto& [name, info_a] : ta) {
      if (!wanted.empty() && !wanted.count(name)) continue;
      auto ib = tb.find(name);
      if (ib == tb.end()) {
        one_side.push_back(name);
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
          skipped.push_back(name);  // neither side wrote a page of it
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
        *s.io->err << "Reading " << name
                   << (read.full ? " in full"
                                 : " (" + std::to_string(range_pages) + " changed pages)")
                   << " on both sides...\n";
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
      diffs.push_back(CompareRows(shape, std::move(rows_a), std::move(rows_b)));
      reads.push_back(read);
      differs = differs || diffs.back().Differs();
    }
    for (const auto& [name, info_b] : tb) {
      if ((wanted.empty() || wanted.count(name)) && !ta.count(name)) one_side.push_back(name);
    }
    differs = differs || !schema.empty();
    uint64_t pages = 0;
    size_t full = 0;
    for (const TableRead& r : reads) {
      pages += r.pages_from + r.pages_to;
      full += r.full;
    }
    std::string stats = "Compared " + std::to_string(diffs.size()) + " table" +
                        (diffs.size() == 1 ? "" : "s") + " (" + std::to_string(full) +
                        " read in full; " + std::to_string(pages) +
                        " pages read on the two sides); " + std::to_string(skipped.size()) +
                        " skipped, unchanged on both sides since they diverged.";
    if (json) {
      api::Json tables = DataDiffToJson(diffs);
      for (size_t i = 0; i < tables.size(); ++i) {
        tables[i]["read"] = reads[i].full ? "full" : "changed pages";
        tables[i]["pages_read_from"] = reads[i].pages_from;
        tables[i]["pages_read_to"] = reads[i].pages_to;
      }
      api::Json out{{"from", a.label},
                    {"to", b.label},
                    {"identical", !differs},
                    {"schema", DiffToJson(schema, a.label, b.label)},
                    {"tables", tables},
                    {"skipped_tables", skipped},
                    {"tables_on_one_side", one_side},
                    {"change_index", changed.complete}};
      if (!fallback.empty()) out["fallback"] = fallback;
      s.PrintJson(out);
      return Status::Ok();
    }
    if (o.format == "sql") {
      std::string head =
          "-- Data patch: turns the rows of " + a.label + " into those of " + b.label + ".\n";
      if (!schema.empty()) {
        head += "-- Schema differences (not part of this patch; apply them apart):\n";
        std::string text = RenderDiff(schema, a.label, b.label, DiffFormat::kText);
        size_t pos = 0;
        while (pos < text.size()) {
          size_t nl = text.find('\n', pos);
          if (nl == std::string::npos) nl = text.size();
          head += "--   " + text.substr(pos, nl - pos) + "\n";
          pos = nl + 1;
        }
      }
      for (const std::string& t : one_side)
        head += "-- " + t + " is on one side only: not compared\n";
      if (!fallback.empty()) head += "-- " + fallback + "\n";
      s.Print(head + RenderSqlPatch(diffs));
      return Status::Ok();
    }
    std::string text = RenderDiff(schema, a.label, b.label, DiffFormat::kText) + "\nData diff " +
                       a.label + " -> " + b.label + "\n";
    if (!fallback.empty()) text += "note: " + fallback + "\n";
    for (const std::string& t : one_side) {
      text += "note: " + t + " is on one side only (see the schema differences); not compared\n";
    }
    text += RenderDataText(diffs, a.label, b.label) + stats + "\n";
    s.Print(text);
    return Status::Ok();
  };
  Status st = run();
  if (!st.ok()) FailDiffLike(st);
  if (differs) ExitWith(1, "");
  return Status::Ok();
}

}  // namespace arbor::cli
