// The workflow's pure rules: git branch -> branch id, the env file's rewrite, the config
// file, and the schema diff's comparison and rendering on hand-built catalogs.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "api/names.h"
#include "api/testing/fake_api.h"
#include "api/types.h"
#include "cli/cli.h"
#include "cli/git_config.h"
#include "cli/testing.h"

namespace arbor::cli {
namespace {

TEST(MapGitBranch, FollowsTheRules) {
  EXPECT_EQ(MapGitBranch("main"), "main");
  EXPECT_EQ(MapGitBranch("feature/Login"), "feature-login");
  EXPECT_EQ(MapGitBranch("Feature/ADD_users.v2"), "feature-add-users-v2");
  EXPECT_EQ(MapGitBranch("fix//double--dash__x"), "fix-double-dash-x");
  EXPECT_EQ(MapGitBranch("-trim-me-/"), "trim-me");
  EXPECT_EQ(MapGitBranch("123-numbers"), "b-123-numbers");
  EXPECT_EQ(MapGitBranch("_/9"), "b-9");
  EXPECT_EQ(MapGitBranch("ünïcode/é"), "n-code");
  // Nothing usable at all: "b-" and a hash.
  std::string empty = MapGitBranch("///");
  EXPECT_EQ(empty, "b-" + ShortHash("///"));
}

TEST(MapGitBranch, LongNamesAreCutWithAHash) {
  std::string a = "feature/" + std::string(80, 'a') + "-one";
  std::string b = "feature/" + std::string(80, 'a') + "-two";
  std::string ma = MapGitBranch(a), mb = MapGitBranch(b);
  EXPECT_EQ(ma.size(), 63u);
  EXPECT_NE(ma, mb) << "two long names sharing a prefix stay apart";
  EXPECT_EQ(ma.substr(55), ShortHash(a));
  EXPECT_EQ(MapGitBranch(a), ma) << "deterministic";
  // Exactly 63 stays as is.
  std::string exact = "a" + std::string(62, 'b');
  EXPECT_EQ(MapGitBranch(exact), exact);
  // A cut that ends on a hyphen does not leave two in a row.
  std::string hy = std::string(53, 'c') + "/dddddddddddddddd";
  std::string mh = MapGitBranch(hy);
  EXPECT_EQ(mh.find("--"), std::string::npos) << mh;
}

TEST(MapGitBranch, EveryResultIsAValidId) {
  for (const char* name : {"main", "a", "A", "0", "-", "feature/x", "release-1.2.3", "user@host",
                           "a b c", "x/y/z/w", "WIP!!!", "9lives", "__init__", "émoji🚀"}) {
    std::string id = MapGitBranch(name);
    EXPECT_TRUE(api::ValidateId(id, "branch id").ok()) << name << " -> " << id;
  }
  std::string longest(300, 'Z');
  EXPECT_TRUE(api::ValidateId(MapGitBranch(longest), "branch id").ok());
}

TEST(DatabaseBranchFor, TheDefaultBranchUsesTheParent) {
  GitConfig c;
  c.default_branch = "master";
  EXPECT_EQ(DatabaseBranchFor(c, "master"), "production");
  EXPECT_EQ(DatabaseBranchFor(c, "main"), "main");
  EXPECT_EQ(DatabaseBranchFor(c, "feature/a"), "feature-a");
}

TEST(DatabaseBranchFor, TwoGitBranchesThatMapAlikeGetTwoDatabaseBranches) {
  GitConfig c;
  HookRecords records;
  EXPECT_EQ(DatabaseBranchFor(c, records, "feature/login"), "feature-login");
  records["feature/login"] = HookRecord{"feature/login", "feature-login", "u1"};
  // The second name that maps to feature-login gets its own id, and keeps it once recorded.
  std::string second = DatabaseBranchFor(c, records, "feature-login");
  EXPECT_EQ(second, "feature-login-" + ShortHash("feature-login"));
  EXPECT_EQ(DatabaseBranchFor(c, records, "feature/login"), "feature-login");
  records["feature-login"] = HookRecord{"feature-login", second, "u2"};
  EXPECT_EQ(DatabaseBranchFor(c, records, "feature-login"), second);
  EXPECT_EQ(DatabaseBranchFor(c, records, "Feature/Login"),
            "feature-login-" + ShortHash("Feature/Login"));
  // A long name is cut so that the suffix fits in 63 characters.
  std::string long_a = std::string(60, 'a');
  records["x"] = HookRecord{"x", DatabaseBranchFor(c, long_a), "u3"};
  std::string other = DatabaseBranchFor(c, records, std::string(60, 'a') + "/");
  EXPECT_EQ(other.size(), 63u);
  EXPECT_TRUE(api::ValidateId(other, "id").ok()) << other;
  // The parent is never renamed.
  records["y"] = HookRecord{"y", "production", "u4"};
  EXPECT_EQ(DatabaseBranchFor(c, records, "main"), "production");
}

TEST(RewriteEnvVar, ChangesOnlyTheVariableLine) {
  std::string in =
      "# app settings\nSECRET=abc  # keep me\nDATABASE_URL=postgresql://old\n"
      "DATABASE_URL_REPLICA=x\n\nOTHER = 1\n";
  std::string out = RewriteEnvVar(in, "DATABASE_URL", "postgresql://new");
  EXPECT_EQ(out,
            "# app settings\nSECRET=abc  # keep me\nDATABASE_URL=postgresql://new\n"
            "DATABASE_URL_REPLICA=x\n\nOTHER = 1\n");
}

TEST(RewriteEnvVar, KeepsExportAndCrLfAndRewritesEveryAssignment) {
  std::string in = "A=1\r\nexport DATABASE_URL = 'x'\r\nB=2\r\n DATABASE_URL=y";
  std::string out = RewriteEnvVar(in, "DATABASE_URL", "u");
  EXPECT_EQ(out, "A=1\r\nexport DATABASE_URL=u\r\nB=2\r\nDATABASE_URL=u");
}

TEST(RewriteEnvVar, AppendsWhenMissing) {
  EXPECT_EQ(RewriteEnvVar("", "DATABASE_URL", "u"), "DATABASE_URL=u\n");
  EXPECT_EQ(RewriteEnvVar("A=1", "DATABASE_URL", "u"), "A=1\nDATABASE_URL=u\n");
  EXPECT_EQ(RewriteEnvVar("A=1\n", "DATABASE_URL", "u"), "A=1\nDATABASE_URL=u\n");
  // A commented-out assignment is another line, left alone.
  EXPECT_EQ(RewriteEnvVar("#DATABASE_URL=x\n", "DATABASE_URL", "u"),
            "#DATABASE_URL=x\nDATABASE_URL=u\n");
}

TEST(RewriteEnvVar, QuotesOnlyWhenNeeded) {
  EXPECT_EQ(RewriteEnvVar("", "V", "postgresql://u:p@127.0.0.1:5/postgres"),
            "V=postgresql://u:p@127.0.0.1:5/postgres\n");
  EXPECT_EQ(RewriteEnvVar("", "V", "a b#c"), "V='a b#c'\n");
  EXPECT_EQ(EnvValue("V='a b#c'\n", "V"), "a b#c");
  EXPECT_EQ(EnvValue("V=1\nexport V=2\n", "V"), "2");
  EXPECT_EQ(EnvValue("W=1\n", "V"), "");
}

TEST(GitConfig, RoundTripsAndRefusesTypos) {
  GitConfig c;
  c.project = "shop";
  c.ttl = "14d";
  c.default_branch = "trunk";
  auto back = ParseGitConfig(FormatGitConfig(c));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->project, "shop");
  EXPECT_EQ(back->ttl, "14d");
  EXPECT_EQ(back->default_branch, "trunk");
  EXPECT_EQ(back->parent, "production");
  auto typo = ParseGitConfig("projcet = \"x\"\n");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("projcet"), std::string::npos);
  auto comment = ParseGitConfig("ttl = \"2d\"  # short\n# all\n");
  ASSERT_TRUE(comment.ok());
  EXPECT_EQ(comment->ttl, "2d");
  EXPECT_FALSE(ParseGitConfig("just words\n").ok());
}

TEST(ValidateEnvFile, OnlyARelativePathInsideTheRepository) {
  for (const char* good : {".env", "config/app.env", "./.env", "a/./b.env", ".env.local", "..env",
                           "x..", ".gitignore.env", "dir.git/x"}) {
    EXPECT_TRUE(ValidateEnvFile(good, "env_file").ok()) << good;
  }
  for (std::string bad :
       {std::string(""), std::string("/etc/passwd"), std::string("/"), std::string(".."),
        std::string("../x"), std::string("a/../../x"), std::string("a/.."),
        std::string(".git/config"), std::string("sub/.GIT/hooks/post-checkout"), std::string("a/"),
        std::string("."), std::string("a/."), std::string("a\nb"), std::string("a\rb"),
        std::string("a\0b", 3), std::string("a\x7f")}) {
    Status st = ValidateEnvFile(bad, "--env-file");
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_EQ(st.message().rfind("--env-file: '", 0), 0u) << st.message();
    EXPECT_EQ(st.message().find('\n'), std::string::npos) << "one line: " << st.message();
  }
  EXPECT_EQ(ValidateEnvFile("../x", "env_file").message(),
            "env_file: '../x' has a '..' component; it must be a file inside the repository, "
            "relative to its root");
  EXPECT_NE(ValidateEnvFile("a\nb", "env_file").message().find("'a\\x0ab'"), std::string::npos);
}

TEST(ValidateEnvVariable, OnlyAName) {
  for (const char* good : {"DATABASE_URL", "PG_URL2", "_x", "a", "_"}) {
    EXPECT_TRUE(ValidateEnvVariable(good, "variable").ok()) << good;
  }
  for (const char* bad :
       {"", "1X", "X=1\nEVIL", "X=1", "X Y", "X-Y", "$(id)", "X;Y", "\xc3\xa9", "X\n"}) {
    Status st = ValidateEnvVariable(bad, "--variable");
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.message().find('\n'), std::string::npos) << "one line: " << st.message();
  }
  EXPECT_EQ(ValidateEnvVariable("X=1\nEVIL", "--variable").message(),
            "--variable: 'X=1\\x0aEVIL' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
}

// A committed .arbor.toml comes from whoever wrote the pull request: its env_file stays a
// relative path inside the repository, and its variable a name.
TEST(GitConfig, RefusesAnEnvFileOutsideTheRepositoryAndAVariableThatIsNotAName) {
  for (const char* bad : {"../outside.txt", "/etc/passwd", "config/../../x", "..", "",
                          ".git/hooks/post-checkout", "config/"}) {
    auto c = ParseGitConfig(std::string("env_file = \"") + bad + "\"\n");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("env_file"), std::string::npos) << c.status().message();
  }
  for (const char* bad : {"X=1 evil", "X=$(touch pwned)", "1X", "X-Y", "", "X Y", "\xc3\xa9"}) {
    auto c = ParseGitConfig(std::string("variable = \"") + bad + "\"\n");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("variable"), std::string::npos) << c.status().message();
  }
  auto good = ParseGitConfig("env_file = \"config/app.env\"\nvariable = \"_PG_URL2\"\n");
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_EQ(good->env_file, "config/app.env");
  EXPECT_EQ(good->variable, "_PG_URL2");
  EXPECT_TRUE(ParseGitConfig("env_file = \"./.env\"\n").ok());
}

TEST(HookRecords, RoundTrip) {
  HookRecords r;
  r["feature/a"] = {"feature/a", "feature-a", "br-1"};
  auto back = ParseHookRecords(FormatHookRecords(r));
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ(back->at("feature/a").db_branch, "feature-a");
  EXPECT_EQ(back->at("feature/a").uid, "br-1");
  EXPECT_TRUE(ParseHookRecords("").ok());
  EXPECT_FALSE(ParseHookRecords("[1]").ok());
}

TEST(HookScript, ChainsTheOriginalAndNeverFails) {
  std::string h = HookScript("post-checkout", "/opt/arbor's/arbor");
  EXPECT_EQ(h.rfind("#!/bin/sh\n", 0), 0u);
  EXPECT_NE(h.find(kHookMarker), std::string::npos);
  EXPECT_NE(h.find("post-checkout.arbor-orig"), std::string::npos);
  EXPECT_NE(h.find("arbor='/opt/arbor'\\''s/arbor'"), std::string::npos) << h;
  EXPECT_NE(h.find("git sync --hook post-checkout -- \"$@\""), std::string::npos);
  EXPECT_NE(h.find("|| true"), std::string::npos);
  EXPECT_NE(h.find("exit $rc"), std::string::npos);
}

// ---- ci and diff, whole commands against a fake API ----

class WorkflowCommandTest : public ::testing::Test {
 protected:
  testing::Outcome Run(const std::vector<std::string>& args) {
    return testing::RunCli(args, env_, int64_t{1'800'000'000'000'000});
  }
  static std::string BranchJson(const std::string& id) {
    api::Branch b;
    b.name = "projects/default/branches/" + id;
    b.uid = "br-" + id;
    b.status.current_state = "READY";
    b.status.source_branch = "projects/default/branches/production";
    b.status.expire_time_us = int64_t{1'800'000'000'000'000} + int64_t{7200} * 1'000'000;
    return api::ToJson(b).dump();
  }
  // The endpoint of branch `id`, whose connection string `base` names no password; a reset of
  // owner's password answers "pw", and a credential the token "eyJ.t.s".
  void ServeEndpoint(const std::string& id, const std::string& base) {
    api::Endpoint e;
    e.name = "projects/default/branches/" + id + "/endpoints/primary";
    e.status.current_state = "IDLE";
    e.status.connection_string = base;
    api_.On("GET", "projects/default/branches/" + id + "/endpoints/primary", 200,
            api::ToJson(e).dump());
    api_.On("POST", "projects/default/branches/" + id + "/roles/owner:reset_password", 200,
            api::Json{{"name", "projects/default/branches/" + id + "/roles/owner"},
                      {"create_time", "2026-11-24T16:00:00Z"},
                      {"password", "pw"},
                      {"status", {{"postgres_role", "owner"}}}}
                .dump());
    api_.On("POST", "credentials", 200,
            R"({"token": "eyJ.t.s", "expire_time": "2026-11-24T17:00:00Z"})");
  }
  static std::string NotFound(const std::string& what) {
    return api::Json{{"error_code", "RESOURCE_DOES_NOT_EXIST"}, {"message", what}}.dump();
  }

  api::testing::FakeApi api_;
  std::map<std::string, std::string> env_ = {
      {"ARBOR_API", api_.url()}, {"ARBOR_TOKEN", "tok"}, {"ARBOR_HOME", "/nonexistent"}};
};

TEST_F(WorkflowCommandTest, CiBranchCreatesWhenMissingWithTheTtlAndParent) {
  api_.On("GET", "projects/default/branches/pr-1", 404, NotFound("branch pr-1 does not exist"));
  api_.On("POST", "projects/default/branches", 200, BranchJson("pr-1"));
  ServeEndpoint("pr-1", "postgresql://owner@127.0.0.1:55434/postgres");
  auto r = Run({"ci", "branch", "--name", "pr-1", "--ttl", "2h", "--parent", "staging"});
  EXPECT_EQ(r.code, 0) << r.err;
  // The CI branch's own owner password: it opens this branch and no other.
  EXPECT_EQ(r.out, "export DATABASE_URL='postgresql://owner:pw@127.0.0.1:55434/postgres'\n");
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/pr-1/roles/owner:reset_password").method,
            "POST");
  auto post = api_.Last("POST", "projects/default/branches");
  EXPECT_EQ(post.params["branch_id"], "pr-1");
  auto body = api::Json::parse(post.body);
  EXPECT_EQ(body["spec"]["ttl"], "7200s");
  EXPECT_EQ(body["spec"]["source_branch"], "projects/default/branches/staging");
  EXPECT_NE(r.err.find("Created branch projects/default/branches/pr-1"), std::string::npos);
}

TEST_F(WorkflowCommandTest, CiBranchReusesOrResetsAnExistingBranch) {
  api_.On("GET", "projects/default/branches/pr-1", 200, BranchJson("pr-1"));
  api_.On("POST", "projects/default/branches/pr-1:reset", 200, BranchJson("pr-1"));
  ServeEndpoint("pr-1", "postgresql://u@h:1/postgres");
  auto reused = Run({"ci", "branch", "--name", "pr-1", "--format", "dotenv"});
  EXPECT_EQ(reused.code, 0) << reused.err;
  EXPECT_EQ(reused.out, "DATABASE_URL=postgresql://u:pw@h:1/postgres\n");
  EXPECT_EQ(api_.Last("POST", "projects/default/branches").method, "") << "nothing created";
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/pr-1:reset").method, "");
  auto reset = Run({"ci", "branch", "--name", "pr-1", "--reset", "--format", "dotenv"});
  EXPECT_EQ(reset.code, 0) << reset.err;
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/pr-1:reset").method, "POST");
  EXPECT_EQ(reset.out, reused.out) << "the same URL";
  // github: needs $GITHUB_ENV; without it nothing is sent (usage).
  auto gh = Run({"ci", "branch", "--name", "pr-1", "--format", "github"});
  EXPECT_EQ(gh.code, 2) << gh.err;
  auto bad = Run({"ci", "branch", "--name", "pr-1", "--format", "yaml"});
  EXPECT_EQ(bad.code, 2) << bad.err;
}

// The variable's name goes into $GITHUB_ENV and into shell code: a name that is not one
// ("X=1<newline>EVIL") would add lines of its own. Refused before anything is asked or written.
TEST_F(WorkflowCommandTest, CiBranchRefusesAVariableThatIsNotAName) {
  api_.On("GET", "projects/default/branches/pr-1", 200, BranchJson("pr-1"));
  ServeEndpoint("pr-1", "postgresql://u@h:1/postgres");
  std::string github_env = ::testing::TempDir() + "/github_env_" + std::to_string(getpid());
  { std::ofstream(github_env) << "KEEP=1\n"; }
  env_["GITHUB_ENV"] = github_env;
  for (const char* bad : {"X=1\nEVIL", "X Y", "9X", ""}) {
    for (const char* format : {"github", "shell", "dotenv"}) {
      auto r = Run({"ci", "branch", "--name", "pr-1", "--format", format, "--variable", bad});
      EXPECT_EQ(r.code, 2) << format << " " << bad << ": " << r.out << r.err;
      EXPECT_EQ(r.out, "") << format;
      EXPECT_NE(r.err.find("--variable"), std::string::npos) << r.err;
    }
  }
  std::ifstream in(github_env);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "KEEP=1\n") << "$GITHUB_ENV untouched";
  EXPECT_TRUE(api_.requests().empty()) << "nothing asked of the server";
  auto ok = Run({"ci", "branch", "--name", "pr-1", "--format", "github", "--variable", "PG_URL"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  std::remove(github_env.c_str());
}

// `arbor git sync --hook` on a real repository (git init; no commit needed) against the fake
// API: what the hook does when a checkout brings a hostile .arbor.toml or hostile links.
class GitHookTest : public WorkflowCommandTest {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/arbor-git-hook-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    repo_ = dir_ + "/repo";
    ASSERT_EQ(std::system(("git init -q -b main " + ShellQuote(repo_)).c_str()), 0);
    Write(dir_ + "/outside.txt", kPrecious);
    api_.On("GET", "projects/default/branches/production", 200, BranchJson("production"));
    ServeEndpoint("production", "postgresql://u@h:1/postgres");
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Runs the post-checkout hook of a branch checkout; it must exit 0 whatever happens.
  std::string Hook() {
    auto r = Run({"git", "sync", "--repo", repo_, "--hook", "post-checkout", "--", "0", "0", "1"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "");
    return r.err;
  }
  // `err` is one line, a warning that says why.
  static void ExpectOneRefusal(const std::string& err, const std::string& why) {
    EXPECT_EQ(err.rfind("arbor: warning: ", 0), 0u) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find(why), std::string::npos) << err;
  }

  static constexpr const char* kPrecious = "precious\n";
  // The parent's URL in .env: a token (a checkout never gives the parent a new password).
  static constexpr const char* kUrl = "postgresql://u:eyJ.t.s@h:1/postgres";
  std::string dir_, repo_;
};

TEST_F(GitHookTest, AHostileArborTomlCannotWriteOutsideTheRepository) {
  for (std::string env_file :
       {std::string("../outside.txt"), dir_ + "/outside.txt", std::string("a/../../outside.txt")}) {
    Write(repo_ + "/.arbor.toml", "env_file = \"" + env_file + "\"\n");
    ExpectOneRefusal(Hook(), "env_file");
    EXPECT_EQ(Read(dir_ + "/outside.txt"), kPrecious) << env_file;
  }
  // A variable that is shell code when the env file is sourced.
  Write(repo_ + "/.env", "A=1\n");
  Write(repo_ + "/.arbor.toml", "variable = \"X=$(touch pwned)\"\n");
  ExpectOneRefusal(Hook(), "variable");
  EXPECT_EQ(Read(repo_ + "/.env"), "A=1\n");
  EXPECT_TRUE(api_.requests().empty()) << "refused before anything is asked of the server";
}

TEST_F(GitHookTest, ALinkInTheRepositoryCannotLeadTheWriteOutside) {
  namespace fs = std::filesystem;
  Write(repo_ + "/.arbor.toml", "");
  // A committed link where the old code put its temporary file.
  fs::create_symlink("../outside.txt", repo_ + "/.env.arbor-tmp");
  EXPECT_EQ(Hook(),
            "arbor: git branch main -> database branch production (expires in 2h); "
            "DATABASE_URL in .env updated\n");
  EXPECT_EQ(Read(dir_ + "/outside.txt"), kPrecious);
  EXPECT_FALSE(fs::is_symlink(repo_ + "/.env"));
  EXPECT_EQ(Read(repo_ + "/.env"), std::string("DATABASE_URL=") + kUrl + "\n");
  struct stat st;
  ASSERT_EQ(stat((repo_ + "/.env").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "it holds a password";
  fs::remove(repo_ + "/.env");

  // The env file itself a link out of the repository.
  fs::create_symlink("../outside.txt", repo_ + "/.env");
  ExpectOneRefusal(Hook(), "outside the repository");
  EXPECT_EQ(Read(dir_ + "/outside.txt"), kPrecious);
  EXPECT_TRUE(fs::is_symlink(repo_ + "/.env"));

  // Or a link to a file of .git: inside the repository, but not one of its files.
  fs::remove(repo_ + "/.env");
  fs::create_symlink(".git/config", repo_ + "/.env");
  const std::string git_config = Read(repo_ + "/.git/config");
  ExpectOneRefusal(Hook(), "in .git");
  EXPECT_EQ(Read(repo_ + "/.git/config"), git_config);

  // A directory on the way a link (here to the directory above the repository).
  fs::create_symlink("..", repo_ + "/up");
  Write(repo_ + "/.arbor.toml", "env_file = \"up/outside.txt\"\n");
  ExpectOneRefusal(Hook(), "symlink");
  EXPECT_EQ(Read(dir_ + "/outside.txt"), kPrecious);
}

TEST_F(GitHookTest, AnEnvFileLinkedInsideTheRepositoryStaysALink) {
  namespace fs = std::filesystem;
  fs::create_directories(repo_ + "/config");
  fs::create_directories(repo_ + "/shared");
  Write(repo_ + "/shared/app.env", "A=1\n");
  fs::create_symlink("../shared/app.env", repo_ + "/config/app.env");
  Write(repo_ + "/.arbor.toml", "env_file = \"config/app.env\"\nvariable = \"PG_URL\"\n");
  EXPECT_NE(Hook().find("PG_URL in config/app.env updated"), std::string::npos);
  EXPECT_TRUE(fs::is_symlink(repo_ + "/config/app.env"));
  EXPECT_EQ(Read(repo_ + "/shared/app.env"), std::string("A=1\nPG_URL=") + kUrl + "\n");
}

TEST_F(WorkflowCommandTest, CiCleanupOfAGoneBranchSucceeds) {
  api_.On("DELETE", "projects/default/branches/pr-9", 404, NotFound("branch pr-9 does not exist"));
  auto r = Run({"ci", "cleanup", "--name", "pr-9"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Branch projects/default/branches/pr-9 is already gone.\n");
}

TEST_F(WorkflowCommandTest, DiffErrorsAreNeverExitStatusOne) {
  api_.On("GET", "projects/default/branches/nosuch", 404,
          NotFound("branch projects/default/branches/nosuch does not exist"));
  auto missing = Run({"diff", "nosuch", "production"});
  EXPECT_EQ(missing.code, 5) << missing.err;
  EXPECT_EQ(missing.err, "arbor: branch projects/default/branches/nosuch does not exist\n");
  EXPECT_EQ(Run({"diff", "a", "b", "--format", "yaml"}).code, 2);
  EXPECT_EQ(Run({"diff", "Bad_Name", "b"}).code, 2);
  EXPECT_EQ(Run({"diff", "a@yesterday", "b"}).code, 2);
  env_["ARBOR_API"] = "http://127.0.0.1:1";
  EXPECT_EQ(Run({"diff", "a", "b"}).code, 3);
  EXPECT_EQ(Run({"migrate-check", "--target", "a", "--", "true"}).code, 3);
}

TEST_F(WorkflowCommandTest, MergeRefusesWhatItDoesNotSupportBeforeTouchingData) {
  auto branch = [](const std::string& id, const std::string& parent) {
    api::Branch b;
    b.name = "projects/default/branches/" + id;
    b.status.current_state = "READY";
    if (!parent.empty()) {
      b.spec.source_branch = "projects/default/branches/" + parent;
      b.status.source_branch = b.spec.source_branch;
      b.status.source_branch_time_us = 1'700'000'000'000'000;
    }
    return api::ToJson(b).dump();
  };
  api_.On("GET", "projects/default/branches/feat", 200, branch("feat", "dev"));
  api_.On("GET", "projects/default/branches/production", 200, branch("production", ""));
  api_.On("GET", "projects/default/branches/nosuch", 404,
          NotFound("branch projects/default/branches/nosuch does not exist"));
  // Not the source's parent: refused with the relation that is supported; no credentials
  // were asked for.
  auto r = Run({"merge", "feat", "--into", "production"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("only a merge into the branch's parent is supported"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("projects/default/branches/dev"), std::string::npos) << r.err;
  EXPECT_EQ(api_.Count("POST", "credentials"), 0);
  auto missing = Run({"merge", "nosuch", "--into", "production"});
  EXPECT_EQ(missing.code, 5) << missing.err;
  EXPECT_EQ(Run({"merge", "feat"}).code, 2);
  EXPECT_EQ(Run({"merge", "feat", "--into", "feat"}).code, 2);
  EXPECT_EQ(Run({"merge", "feat@-1h", "--into", "production"}).code, 2);
  env_["ARBOR_API"] = "http://127.0.0.1:1";
  EXPECT_EQ(Run({"merge", "feat", "--into", "production"}).code, 3);
}

}  // namespace
}  // namespace arbor::cli
