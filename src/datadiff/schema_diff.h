#pragma once

// The schema diff of `arbor diff` and `arbor migrate-check` (docs/workflow.md): a catalog
// snapshot is a set of objects, each a kind, a qualified name and named attributes (a
// column's type, a view's definition); two snapshots compare object by object. Pure
// values and functions: the snapshot is read from postgres by catalog.h, and the tests
// build them by hand.

#include <map>
#include <string>
#include <vector>

#include "api/types.h"

namespace arbor::datadiff {

// The kinds, in the order a diff lists them.
enum class ObjectKind {
  kSchema,
  kExtension,
  kType,  // enum, composite, domain, range, base
  kSequence,
  kTable,
  kColumn,
  kConstraint,
  kIndex,
  kView,      // views and materialized views
  kFunction,  // functions, procedures, aggregates
  kTrigger,
  kPolicy,
};
const char* KindName(ObjectKind k);  // "column", "materialized view" is a view's attribute

struct CatalogObject {
  ObjectKind kind;
  std::string name;  // schema.table.column, schema.func(int4), ...
  std::map<std::string, std::string> attrs;
};

// Keyed by (kind, name).
using Catalog = std::map<std::pair<ObjectKind, std::string>, CatalogObject>;
void AddObject(Catalog* c, CatalogObject o);

enum class ChangeType { kAdded, kRemoved, kChanged };

struct AttrChange {
  std::string from;  // empty: absent
  std::string to;
};

struct Change {
  ChangeType type;
  ObjectKind kind;
  std::string name;
  // kAdded/kRemoved: the object's attributes; kChanged: only those that differ.
  std::map<std::string, std::string> attrs;
  std::map<std::string, AttrChange> changed;
};

// What changes `from` into `to`, in kind order then name order. A column, constraint,
// index, trigger or policy of a table that is itself added or removed is listed too, under
// its table, so that the report shows what the new table holds.
std::vector<Change> CompareCatalogs(const Catalog& from, const Catalog& to);

enum class DiffFormat { kText, kMarkdown, kJson };

// Renders the diff of `from_label` -> `to_label`. Text: one line per change ("+ column
// public.t.email  text, not null"), with a line diff under changed multi-line attributes
// (definitions), and a summary line; "No schema differences." when empty. Markdown: a
// heading, a summary and a table, definitions in ```diff blocks, for a PR comment. JSON: a
// document {"from", "to", "identical", "summary", "changes": [...]}.
std::string RenderDiff(const std::vector<Change>& changes, const std::string& from_label,
                       const std::string& to_label, DiffFormat format);
api::Json DiffToJson(const std::vector<Change>& changes, const std::string& from_label,
                     const std::string& to_label);

// "1 added, 2 removed, 3 changed" (or "no differences").
std::string DiffSummary(const std::vector<Change>& changes);

// A unified-style line diff of two texts: lines prefixed "- ", "+ " and "  " (context
// lines within 2 of a change; "  ..." between distant hunks).
std::string LineDiff(const std::string& from, const std::string& to);

}  // namespace arbor::datadiff
