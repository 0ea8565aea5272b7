#include "cli/mask_file.h"

#include <gtest/gtest.h>

namespace arbor::cli {
namespace {

TEST(MaskFile, ReadsEveryForm) {
  const char* text =
      "# rules for preview branches\n"
      "\n"
      "[[rule]]\n"
      "column = \"public.users.email\"\n"
      "with = \"email\"   # fake addresses\n"
      "[[rule]]\n"
      "  column = 'public.users.ssn'\n"
      "  fixed = \"000-00-0000\"\n"
      "[[ rule ]]\r\n"
      "column = \"public.users.age\"\n"
      "fixed = 42\n"
      "[[rule]]\n"
      "column = \"public.users.note\"\n"
      "sql = 'left(note, 3) || ''x'''\n"
      "[[rule]]\n"
      "column = \"public.users.bio\"\n"
      "sql = \"replace(bio, \\\"a\\\", '\\u00e9')\"\n";
  auto rules = ParseMaskFile(text, "rules.toml");
  // A literal string ends at its next quote: TOML has no '' escape, so the 4th rule is bad.
  ASSERT_FALSE(rules.ok());
  EXPECT_EQ(rules.status().message(), "rules.toml:14: unexpected text after the value");

  std::string fixed = text;
  const std::string bad = "sql = 'left(note, 3) || ''x'''";
  fixed.replace(fixed.find(bad), bad.size(), "sql = \"left(note, 3) || 'x'\"");
  rules = ParseMaskFile(fixed, "rules.toml");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  ASSERT_EQ(rules->size(), 5u);
  EXPECT_EQ(rules->at(0).column, "public.users.email");
  EXPECT_EQ(rules->at(0).with, api::MaskStrategy::kEmail);
  EXPECT_EQ(rules->at(1).with, api::MaskStrategy::kFixed);
  EXPECT_EQ(rules->at(1).value, "000-00-0000");
  EXPECT_EQ(rules->at(2).value, "42");
  EXPECT_EQ(rules->at(3).with, api::MaskStrategy::kSql);
  EXPECT_EQ(rules->at(3).value, "left(note, 3) || 'x'");
  EXPECT_EQ(rules->at(4).value, "replace(bio, \"a\", '\xc3\xa9')");
}

TEST(MaskFile, RefusesWithTheLine) {
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {"column = \"a.b.c\"\n", "rules.toml:1: column comes before the first [[rule]]"},
           {"[rule]\n", "rules.toml:1: expected [[rule]]"},
           {"[[rules]]\n", "rules.toml:1: expected [[rule]]"},
           {"[[rule]]\ncolumn = \"a.b.c\"\n", "rules.toml:1: this [[rule]] says neither"},
           {"[[rule]]\nwith = \"hash\"\n", "rules.toml:1: this [[rule]] has no column"},
           {"[[rule]]\ncolumn = \"a.b.c\"\nwith = \"md5\"\n", "rules.toml:3: with is"},
           {"[[rule]]\ncolumn = \"a.b.c\"\nwith = hash\n", "rules.toml:3: expected a string"},
           {"[[rule]]\ncolumn = \"a.b.c\"\nwith = \"hash\"\nfixed = 1\n",
            "rules.toml:4: a rule has one of"},
           {"[[rule]]\ncolumn = \"a.b.c\"\nmask = \"hash\"\n", "rules.toml:3: unknown key mask"},
           {"[[rule]]\ncolumn = \"a.b.c\nwith = \"hash\"\n", "rules.toml:2: a string"},
           {"[[rule]]\ncolumn = \"a.b\"\nwith = \"hash\"\n", "rules.toml[0].column"},
           {"# nothing\n", "rules.toml: no [[rule]]"},
           {"[[rule]]\ncolumn = \"a.b.c\"\nwith = \"hash\" extra\n", "rules.toml:3: unexpected"},
       }) {
    auto r = ParseMaskFile(c.text, "rules.toml");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos)
        << c.text << " -> " << r.status().message();
  }
}

}  // namespace
}  // namespace arbor::cli
