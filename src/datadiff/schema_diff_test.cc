// The schema diff's comparison and rendering (schema_diff.h), on hand-built catalogs.

#include "datadiff/schema_diff.h"

#include <gtest/gtest.h>

#include <string>

namespace arbor::datadiff {
namespace {

Catalog Base() {
  Catalog c;
  AddObject(&c, {ObjectKind::kSchema, "public", {{"owner", "postgres"}}});
  AddObject(&c, {ObjectKind::kTable, "public.users", {{"kind", "table"}}});
  AddObject(&c, {ObjectKind::kColumn,
                 "public.users.id",
                 {{"type", "bigint"}, {"not_null", "yes"}, {"identity", "always"}}});
  AddObject(&c, {ObjectKind::kColumn, "public.users.name", {{"type", "text"}, {"not_null", "no"}}});
  AddObject(&c, {ObjectKind::kView,
                 "public.v",
                 {{"kind", "view"}, {"definition", "SELECT users.id\n   FROM users;"}}});
  return c;
}

TEST(SchemaDiff, IdenticalCatalogsHaveNoChanges) {
  auto changes = CompareCatalogs(Base(), Base());
  EXPECT_TRUE(changes.empty());
  EXPECT_EQ(RenderDiff(changes, "a", "b", DiffFormat::kText),
            "Schema diff a -> b\nNo schema differences.\n");
  auto j = DiffToJson(changes, "a", "b");
  EXPECT_EQ(j["identical"], true);
}

TEST(SchemaDiff, FindsAddedRemovedAndChangedInKindOrder) {
  Catalog a = Base(), b = Base();
  AddObject(&b,
            {ObjectKind::kColumn, "public.users.email", {{"type", "text"}, {"not_null", "yes"}}});
  b.erase({ObjectKind::kColumn, "public.users.name"});
  b[{ObjectKind::kColumn, "public.users.id"}].attrs["identity"] = "by default";
  b[{ObjectKind::kView, "public.v"}].attrs["definition"] =
      "SELECT users.id,\n    users.email\n   FROM users;";
  AddObject(&b, {ObjectKind::kExtension, "pgcrypto", {{"version", "1.3"}}});
  auto changes = CompareCatalogs(a, b);
  ASSERT_EQ(changes.size(), 5u);
  EXPECT_EQ(changes[0].kind, ObjectKind::kExtension);
  EXPECT_EQ(changes[0].type, ChangeType::kAdded);
  EXPECT_EQ(changes[1].name, "public.users.email");
  EXPECT_EQ(changes[1].type, ChangeType::kAdded);
  EXPECT_EQ(changes[2].name, "public.users.id");
  EXPECT_EQ(changes[2].type, ChangeType::kChanged);
  EXPECT_EQ(changes[2].changed.at("identity").from, "always");
  EXPECT_EQ(changes[2].changed.at("identity").to, "by default");
  EXPECT_EQ(changes[3].name, "public.users.name");
  EXPECT_EQ(changes[3].type, ChangeType::kRemoved);
  EXPECT_EQ(changes[4].kind, ObjectKind::kView);
  EXPECT_EQ(DiffSummary(changes), "2 added, 1 removed, 2 changed");
}

TEST(SchemaDiff, TextRendering) {
  Catalog a = Base(), b = Base();
  AddObject(&b,
            {ObjectKind::kColumn, "public.users.email", {{"type", "text"}, {"not_null", "yes"}}});
  b[{ObjectKind::kView, "public.v"}].attrs["definition"] =
      "SELECT users.id,\n    users.email\n   FROM users;";
  std::string text = RenderDiff(CompareCatalogs(a, b), "production", "dev", DiffFormat::kText);
  EXPECT_EQ(text,
            "Schema diff production -> dev\n"
            "+ column  public.users.email  (type: text; not_null: yes)\n"
            "~ view    public.v\n"
            "    definition:\n"
            "      - SELECT users.id\n"
            "      + SELECT users.id,\n"
            "      +     users.email\n"
            "           FROM users;\n"
            "1 added, 1 changed.\n");
}

TEST(SchemaDiff, MarkdownAndJson) {
  Catalog a = Base(), b = Base();
  b[{ObjectKind::kColumn, "public.users.name"}].attrs["type"] = "character varying(80)";
  auto changes = CompareCatalogs(a, b);
  std::string md = RenderDiff(changes, "production", "pr-1", DiffFormat::kMarkdown);
  EXPECT_NE(md.find("### Schema diff `production` → `pr-1`"), std::string::npos) << md;
  EXPECT_NE(md.find("| changed | column | `public.users.name` | type: `text` → "
                    "`character varying(80)` |"),
            std::string::npos)
      << md;
  auto j = DiffToJson(changes, "production", "pr-1");
  EXPECT_EQ(j["identical"], false);
  ASSERT_EQ(j["changes"].size(), 1u);
  EXPECT_EQ(j["changes"][0]["fields"]["type"]["to"], "character varying(80)");
  EXPECT_EQ(j["changes"][0]["kind"], "column");
}

// The markdown's lines outside its table, where HTML is live.
std::string OutsideTheTable(const std::string& md) {
  std::string out;
  std::istringstream in(md);
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("| ", 0) != 0) out += l + "\n";
  }
  return out;
}

// Object names and definitions come from the pull request's migration: in the markdown a
// reviewer reads, none of them may close the <summary> or the code block it sits in, or
// start markdown of its own. In the table a name is a code span, where HTML is text.
TEST(SchemaDiff, MarkdownNamesCannotBreakOutOfTheirHtmlOrTableRow) {
  Catalog a, b;
  const std::string hostile = "public.x</summary><b>ok</b>&\"'\n\n# Approved\r| - |";
  AddObject(&a, {ObjectKind::kView, hostile, {{"definition", "SELECT 1\n  FROM t;"}}});
  AddObject(&b, {ObjectKind::kView, hostile, {{"definition", "SELECT 2\n  FROM t;"}}});
  AddObject(&b, {ObjectKind::kFunction, "public.<i>f</i>()", {{"definition", "a\nb"}}});
  std::string md = RenderDiff(CompareCatalogs(a, b), "a", "b", DiffFormat::kMarkdown);
  EXPECT_EQ(md.find('\r'), std::string::npos) << md;
  EXPECT_EQ(md.find("\n# Approved"), std::string::npos) << md;
  // One table row per change: the name's line breaks and pipes make no rows or cells.
  EXPECT_NE(md.find("\n| changed | view | `public.x</summary><b>ok</b>&\"'  # Approved / - /` "
                    "| definition: see below |\n"),
            std::string::npos)
      << md;
  std::string html = OutsideTheTable(md);
  EXPECT_EQ(html.find("<b>"), std::string::npos) << md;
  EXPECT_EQ(html.find("<i>"), std::string::npos) << md;
  EXPECT_NE(html.find("\n<details><summary>view public.x&lt;/summary&gt;&lt;b&gt;ok&lt;/b&gt;"
                      "&amp;&quot;&#39;  # Approved | - |: definition</summary>\n"),
            std::string::npos)
      << md;
  EXPECT_NE(html.find("\n<details><summary>function public.&lt;i&gt;f&lt;/i&gt;() (added): "
                      "definition</summary>\n"),
            std::string::npos)
      << md;
  size_t opened = 0, closed = 0;
  for (size_t p = 0; (p = html.find("<summary>", p)) != std::string::npos; ++p) ++opened;
  for (size_t p = 0; (p = html.find("</summary>", p)) != std::string::npos; ++p) ++closed;
  EXPECT_EQ(opened, 2u) << md;
  EXPECT_EQ(closed, 2u) << md;
}

// A fence is closed by a line of as many backticks, indented up to 3 spaces, and a diff's
// context line "  ```" is one: the fence is longer than any run of backticks inside.
TEST(SchemaDiff, MarkdownDefinitionsCannotCloseTheirCodeBlock) {
  Catalog a, b;
  AddObject(&a, {ObjectKind::kFunction,
                 "public.f()",
                 {{"definition", "```\nSELECT 1;\n``````\n</details>"}}});
  AddObject(&b, {ObjectKind::kFunction,
                 "public.f()",
                 {{"definition", "```\nSELECT 2;\n``````\n</details>"}}});
  AddObject(&b, {ObjectKind::kView, "public.v", {{"definition", "SELECT\n```"}}});
  std::string md = RenderDiff(CompareCatalogs(a, b), "a", "b", DiffFormat::kMarkdown);
  EXPECT_NE(md.find("</summary>\n\n```````diff\n"
                    "  ```\n- SELECT 1;\n+ SELECT 2;\n  ``````\n  </details>\n"
                    "```````\n</details>\n"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("</summary>\n\n````diff\n+ SELECT\n+ ```\n````\n</details>\n"),
            std::string::npos)
      << md;
  // A definition without backticks keeps the usual three.
  Catalog c = Base(), d = Base();
  d[{ObjectKind::kView, "public.v"}].attrs["definition"] = "SELECT 1;\n";
  EXPECT_NE(RenderDiff(CompareCatalogs(c, d), "a", "b", DiffFormat::kMarkdown).find("\n```diff\n"),
            std::string::npos);
}

TEST(SchemaDiff, AttributeAppearingOrDisappearing) {
  Catalog a = Base(), b = Base();
  b[{ObjectKind::kColumn, "public.users.name"}].attrs["default"] = "'anon'::text";
  auto changes = CompareCatalogs(a, b);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].changed.at("default").from, "");
  std::string text = RenderDiff(changes, "a", "b", DiffFormat::kText);
  EXPECT_NE(text.find("default: (none) -> 'anon'::text"), std::string::npos) << text;
  auto back = CompareCatalogs(b, a);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].changed.at("default").to, "");
}

TEST(LineDiff, ShowsContextAroundChanges) {
  std::string a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
  std::string b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
  EXPECT_EQ(LineDiff(a, b), "  3\n  4\n- 5\n+ five\n  6\n  7\n");
  EXPECT_EQ(LineDiff("same\n", "same\n"), "");
}

}  // namespace
}  // namespace arbor::datadiff
