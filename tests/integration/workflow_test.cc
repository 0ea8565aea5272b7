// The developer workflow end to end (docs/workflow.md): real git repositories in temporary
// directories, the real arbor binary and daemon, real postgres. One daemon serves every
// test; each test uses its own branch names.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "testutil/daemon.h"

namespace arbor {
namespace {

namespace fs = std::filesystem;
using testutil::Daemon;
using testutil::json;
using testutil::Pg;

struct ShRun {
  int rc = -1;
  std::string out, err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A temporary directory, removed with everything in it when the object goes away.
class TempDir {
 public:
  explicit TempDir(const std::string& name) {
    std::string tmpl = (fs::temp_directory_path() / ("arbor-wf-" + name + "-XXXXXX")).string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class WorkflowTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = Daemon::Start("wf").release();
    // Git reads no configuration of this machine: its own global file, with an identity and
    // every directory trusted (the tests may run as root on directories made by root).
    gitconfig_ = daemon_->home() + "/gitconfig";
    WriteFile(gitconfig_,
              "[user]\n\temail = test@example.com\n\tname = Test\n[safe]\n\tdirectory = *\n"
              "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n");
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  // Runs `cmd` with sh in `dir`, with the daemon's ARBOR_HOME and the test's git config;
  // `arbor` on the command line is the binary under test.
  static ShRun Sh(const std::string& dir, const std::string& cmd, const std::string& env = "") {
    std::string err_file = daemon_->home() + "/sh.err";
    std::string script = "export ARBOR_HOME=" + Quote(daemon_->home()) +
                         " GIT_CONFIG_GLOBAL=" + Quote(gitconfig_) +
                         " GIT_CONFIG_NOSYSTEM=1; arbor() { " + ARBOR_BINARY + " \"$@\"; }; " +
                         (env.empty() ? "" : "export " + env + "; ") + "cd " + Quote(dir) +
                         " && { " + cmd + " ; } 2>" + Quote(err_file);
    std::string full = "sh -c " + Quote(script);
    ShRun r;
    FILE* p = popen(full.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int status = pclose(p);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.err = Slurp(err_file);
    return r;
  }

  // A new repository with one commit on main.
  static void InitRepo(const std::string& dir) {
    ShRun r = Sh(dir,
                 "git init -q -b main && echo one > file && git add file && "
                 "git commit -qm one");
    ASSERT_EQ(r.rc, 0) << r.err;
  }

  static json GetBranch(const std::string& id) {
    auto a = daemon_->Call("GET", "projects/default/branches/" + id);
    return a.status == 200 ? a.body : json();
  }
  // `text` with the password of every postgresql:// URL in it taken out, as an endpoint's own
  // connection string has none.
  static std::string WithoutPasswords(const std::string& text) {
    static const std::regex kUrl(R"(postgresql://([^:@/\s]+):[^@\s]+@)");
    return std::regex_replace(text, kUrl, "postgresql://$1@");
  }
  // The endpoint's URL (TCP), as `arbor ci branch` writes it: a CI job may run elsewhere.
  static std::string TcpUrlOf(const std::string& id) {
    auto a = daemon_->Call("GET", "projects/default/branches/" + id + "/endpoints/primary");
    return a.status == 200 ? a.body["status"].value("connection_string", "") : "";
  }
  // The URL the git hooks write: through the proxy's unix socket, as the daemon runs on this
  // host.
  static std::string UrlOf(const std::string& id) {
    std::string tcp = TcpUrlOf(id);
    return tcp.empty() ? "" : tcp + "?host=" + daemon_->home() + "/proxy";
  }
  static void DeleteBranch(const std::string& id) {
    (void)daemon_->Call("DELETE", "projects/default/branches/" + id);
  }
  static std::set<std::string> BranchIds() {
    std::set<std::string> out;
    auto a = daemon_->Call("GET", "projects/default/branches");
    for (const auto& b : a.body["branches"]) {
      std::string n = b["name"];
      out.insert(n.substr(n.rfind('/') + 1));
    }
    return out;
  }
  static std::string EnvVar(const std::string& env_text, const std::string& var) {
    std::istringstream in(env_text);
    std::string value;
    for (std::string l; std::getline(in, l);) {
      if (l.rfind(var + "=", 0) == 0) value = l.substr(var.size() + 1);
    }
    return value;
  }

  static Daemon* daemon_;
  static std::string gitconfig_;
};
Daemon* WorkflowTest::daemon_ = nullptr;
std::string WorkflowTest::gitconfig_;

// Deletes the named branches when the test ends, however it ends; children are listed after
// their parents and deleted first.
struct BranchCleanup {
  Daemon* daemon;
  std::vector<std::string> ids;
  ~BranchCleanup() {
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
      if (daemon != nullptr) (void)daemon->Call("DELETE", "projects/default/branches/" + *it);
    }
  }
};

TEST_F(WorkflowTest, HooksSwitchTheDatabaseBranchOnCheckout) {
  TempDir repo("hooks");
  const std::string dir = repo.path();
  InitRepo(dir);
  const std::string long_git = "Feature/JIRA-1234_" + std::string(70, 'X') + "!";
  auto fnv = [](const std::string& text) {  // the 8-digit FNV-1a hash of docs/workflow.md
    uint32_t h = 2166136261u;
    for (unsigned char c : text) {
      h ^= c;
      h *= 16777619u;
    }
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", h);
    return std::string(hex);
  };
  // The mapping of docs/workflow.md, recomputed by hand: lowercase, '_' and '!' to '-', cut
  // to 54 characters, then "-" and the hash.
  const std::string long_id =
      ("feature-jira-1234-" + std::string(70, 'x')).substr(0, 54) + "-" + fnv(long_git);
  // A second git branch whose name maps to the first one's id gets its own.
  const std::string twin_id = "feature-login-page-" + fnv("feature-login-page");
  BranchCleanup cleanup{daemon_, {"feature-login-page", long_id, twin_id}};

  // A hook that was there before, and an env file with other lines (a comment, a CRLF
  // line, no final newline) that must stay byte for byte.
  WriteFile(dir + "/.git/hooks/post-checkout", "#!/bin/sh\necho \"$@\" >> \"$(pwd)/orig.log\"\n");
  ASSERT_EQ(Sh(dir, "chmod +x .git/hooks/post-checkout").rc, 0);
  const std::string before_hook = Slurp(dir + "/.git/hooks/post-checkout");
  const std::string head = "# local settings\nSECRET=s3cr3t # keep\r\n";
  const std::string tail = "\nexport OTHER_URL=postgres://elsewhere\nLAST=1";
  WriteFile(dir + "/.env", head + "DATABASE_URL=postgresql://old" + tail);

  ShRun install = Sh(dir, "arbor git install");
  ASSERT_EQ(install.rc, 0) << install.err;
  EXPECT_NE(install.out.find("post-checkout.arbor-orig"), std::string::npos) << install.out;
  EXPECT_NE(Slurp(dir + "/.arbor.toml").find("default_branch = \"main\""), std::string::npos);

  ShRun co = Sh(dir, "git checkout -q -b feature/Login-Page");
  ASSERT_EQ(co.rc, 0) << co.err;
  json b = GetBranch("feature-login-page");
  ASSERT_FALSE(b.is_null()) << "the checkout made the branch; hook said: " << co.err;
  EXPECT_EQ(b["spec"].value("ttl", ""), "604800s");
  EXPECT_EQ(b["status"].value("source_branch", ""), "projects/default/branches/production");
  const std::string feature_url = UrlOf("feature-login-page");
  ASSERT_FALSE(feature_url.empty());
  EXPECT_EQ(WithoutPasswords(Slurp(dir + "/.env")), head + "DATABASE_URL=" + feature_url + tail)
      << "only the variable's line changes";
  // Item 4: the branch's own owner password. It opens the branch, and not its parent.
  const std::string feature_login = EnvVar(Slurp(dir + "/.env"), "DATABASE_URL");
  ASSERT_NE(feature_login, feature_url) << "a password is in .env";
  {
    struct stat st;
    ASSERT_EQ(stat((dir + "/.env").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 077, 0u) << "it holds a password";
  }
  EXPECT_NE(Slurp(dir + "/orig.log").find(" 1"), std::string::npos) << "the old hook ran";
  auto eps = daemon_->Call("GET", "projects/default/branches/feature-login-page/endpoints");
  EXPECT_EQ(eps.body["endpoints"][0]["status"].value("current_state", ""), "IDLE")
      << "the hook starts nothing";

  // Back to main: production's URL.
  ASSERT_EQ(Sh(dir, "git checkout -q main").rc, 0);
  const std::string prod_url = UrlOf("production");
  EXPECT_EQ(WithoutPasswords(EnvVar(Slurp(dir + "/.env"), "DATABASE_URL")), prod_url);
  EXPECT_NE(prod_url, feature_url);
  // The feature branch's password opens the feature branch, and not production.
  {
    daemon_->StartEndpoint("feature-login-page");
    Pg feature(feature_login);
    EXPECT_EQ(feature.One("select current_user"), "owner");
    size_t colon = feature_login.find(':', 13), at = feature_login.find('@');
    std::string on_prod = prod_url.substr(0, prod_url.find('@')) +
                          feature_login.substr(colon, at - colon) +
                          prod_url.substr(prod_url.find('@'));
    PGconn* c = PQconnectdb(on_prod.c_str());
    EXPECT_NE(PQstatus(c), CONNECTION_OK) << "a branch's password opened its parent";
    PQfinish(c);
  }

  // A checkout renews the TTL: shorten it, check the branch out again.
  auto patched =
      daemon_->Call("PATCH", "projects/default/branches/feature-login-page?update_mask=spec.ttl",
                    json{{"spec", {{"ttl", "3600s"}}}});
  ASSERT_EQ(patched.status, 200) << patched.body.dump();
  std::string short_expiry = patched.body["status"]["expire_time"];
  ASSERT_EQ(Sh(dir, "git checkout -q feature/Login-Page").rc, 0);
  EXPECT_EQ(WithoutPasswords(EnvVar(Slurp(dir + "/.env"), "DATABASE_URL")), feature_url);
  std::string renewed = GetBranch("feature-login-page")["status"]["expire_time"];
  EXPECT_GT(renewed, short_expiry);

  // Another git branch whose name maps alike: its own database branch, never the first's.
  ShRun twin = Sh(dir, "git checkout -q -b feature-login-page");
  ASSERT_EQ(twin.rc, 0) << twin.err;
  ASSERT_FALSE(GetBranch(twin_id).is_null()) << twin_id << "; hook said: " << twin.err;
  EXPECT_EQ(WithoutPasswords(EnvVar(Slurp(dir + "/.env"), "DATABASE_URL")), UrlOf(twin_id));
  EXPECT_NE(UrlOf(twin_id), feature_url);
  ASSERT_EQ(Sh(dir, "git checkout -q feature/Login-Page").rc, 0);
  EXPECT_EQ(WithoutPasswords(EnvVar(Slurp(dir + "/.env"), "DATABASE_URL")), feature_url)
      << "each keeps its own";

  // A name that needs the whole mapping.
  ShRun lg = Sh(dir, "git checkout -q -b " + Quote(long_git));
  ASSERT_EQ(lg.rc, 0) << lg.err;
  EXPECT_FALSE(GetBranch(long_id).is_null()) << long_id << "; hook said: " << lg.err;
  EXPECT_EQ(WithoutPasswords(EnvVar(Slurp(dir + "/.env"), "DATABASE_URL")), UrlOf(long_id));
  ShRun st = Sh(dir, "arbor git status");
  EXPECT_EQ(st.rc, 0) << st.err;
  EXPECT_NE(st.out.find(long_id), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("feature-login-page"), std::string::npos) << st.out;

  // The daemon unreachable: git still succeeds, with one warning line from arbor.
  ShRun down = Sh(dir, "git checkout -q main", "ARBOR_API=http://127.0.0.1:1");
  EXPECT_EQ(down.rc, 0) << down.err;
  EXPECT_EQ(Sh(dir, "git rev-parse --abbrev-ref HEAD").out, "main\n");
  int arbor_lines = 0;
  std::istringstream err_lines(down.err);
  for (std::string l; std::getline(err_lines, l);) arbor_lines += l.rfind("arbor:", 0) == 0;
  EXPECT_EQ(arbor_lines, 1) << down.err;
  EXPECT_NE(down.err.find("arbor: warning:"), std::string::npos) << down.err;
  EXPECT_EQ(WithoutPasswords(EnvVar(Slurp(dir + "/.env"), "DATABASE_URL")), UrlOf(long_id))
      << "left as it was";

  // Uninstall puts back exactly what was there.
  ShRun un = Sh(dir, "arbor git uninstall");
  EXPECT_EQ(un.rc, 0) << un.err;
  EXPECT_EQ(Slurp(dir + "/.git/hooks/post-checkout"), before_hook);
  EXPECT_FALSE(fs::exists(dir + "/.git/hooks/post-merge"));
  EXPECT_FALSE(fs::exists(dir + "/.git/hooks/post-checkout.arbor-orig"));
}

TEST_F(WorkflowTest, HooksFollowCoreHooksPathAndInstallTwiceChangesNothing) {
  TempDir repo("hookspath");
  const std::string dir = repo.path();
  InitRepo(dir);
  BranchCleanup cleanup{daemon_, {"hp-topic"}};
  ASSERT_EQ(Sh(dir, "git config core.hooksPath .githooks && mkdir .githooks").rc, 0);
  // A post-merge hook of the team's, which must keep running, and keep failing.
  const std::string team_hook = "#!/bin/sh\necho merged >> \"$(pwd)/merge.log\"\nexit 3\n";
  WriteFile(dir + "/.githooks/post-merge", team_hook);
  ASSERT_EQ(Sh(dir, "chmod +x .githooks/post-merge").rc, 0);
  for (int i = 0; i < 2; ++i) {
    ShRun install = Sh(dir, "arbor git install --env-file config/app.env --variable PG_URL");
    ASSERT_EQ(install.rc, 0) << install.err;
  }
  EXPECT_TRUE(fs::exists(dir + "/.githooks/post-checkout"));
  EXPECT_FALSE(fs::exists(dir + "/.git/hooks/post-checkout"));
  EXPECT_EQ(Slurp(dir + "/.githooks/post-merge.arbor-orig"), team_hook)
      << "a second install must not chain Arbor's hook to itself";
  // The env file is a link to a shared one: it stays a link, and the shared file changes.
  ASSERT_EQ(Sh(dir,
               "mkdir -p config shared && printf 'A=1\\n' > shared/app.env && "
               "ln -s ../shared/app.env config/app.env && git checkout -q -b hp-topic")
                .rc,
            0);
  EXPECT_TRUE(fs::is_symlink(dir + "/config/app.env"));
  EXPECT_EQ(WithoutPasswords(Slurp(dir + "/shared/app.env")),
            "A=1\nPG_URL=" + UrlOf("hp-topic") + "\n");

  // A merge runs the team's hook first (its status is git's to report), then Arbor's.
  ShRun merge = Sh(dir,
                   "git commit -q --allow-empty -m topic && git checkout -q main && "
                   "git merge -q --no-ff -m merge hp-topic");
  EXPECT_EQ(merge.rc, 0) << merge.err;
  EXPECT_EQ(Slurp(dir + "/merge.log"), "merged\n");
  EXPECT_NE(merge.err.find("database branch production"), std::string::npos) << merge.err;
  EXPECT_EQ(WithoutPasswords(Slurp(dir + "/shared/app.env")),
            "A=1\nPG_URL=" + UrlOf("production") + "\n");

  ASSERT_EQ(Sh(dir, "arbor git uninstall").rc, 0);
  EXPECT_EQ(Slurp(dir + "/.githooks/post-merge"), team_hook);
  EXPECT_FALSE(fs::exists(dir + "/.githooks/post-checkout"));
}

// A pull request's .arbor.toml and links are its author's: checking it out must not let the
// hook write outside the repository (`env_file = "../../.bashrc"`), nor write a variable
// that is code. Each hostile branch below, checked out with the hooks installed, leaves the
// file outside byte for byte as it was and creates nothing; git succeeds, and arbor says
// why in one line.
TEST_F(WorkflowTest, HostileArborTomlCannotWriteOutsideRepo) {
  TempDir tmp("hostile");
  const std::string dir = tmp.path() + "/repo";
  ASSERT_TRUE(fs::create_directory(dir));
  InitRepo(dir);
  BranchCleanup cleanup{
      daemon_,
      {"evil-rel", "evil-abs", "evil-var", "evil-link", "evil-dir", "evil-tmp", "ci-evil"}};
  const std::string outside = tmp.path() + "/outside.txt";
  const std::string precious = "export PATH=/usr/bin:/bin\n";  // a shell profile, say
  WriteFile(outside, precious);
  auto listing = [&]() {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp.path())) names.insert(e.path().string());
    return names;
  };
  const auto outside_names = listing();
  ShRun install = Sh(dir, "arbor git install && git add .arbor.toml && git commit -qm arbor");
  ASSERT_EQ(install.rc, 0) << install.err;
  ASSERT_EQ(Sh(dir, "arbor git sync").rc, 0);
  const std::string env_before = Slurp(dir + "/.env");
  ASSERT_NE(EnvVar(env_before, "DATABASE_URL"), "");

  // The pull requests, made with the hooks off: a commit on a branch of main each.
  const std::string no_hooks = "git -c core.hooksPath=/dev/null ";
  struct Evil {
    std::string branch, toml, links, why;
  };
  const std::vector<Evil> evils = {
      {"evil-rel", "env_file = \"../outside.txt\"\n", "", "env_file"},
      {"evil-abs", "env_file = \"" + outside + "\"\n", "", "env_file"},
      {"evil-var", "variable = \"X=$(touch pwned)\"\n", "", "variable"},
      {"evil-link", "env_file = \"app.env\"\n", "ln -s ../outside.txt app.env", "outside"},
      {"evil-dir", "env_file = \"up/outside.txt\"\n", "ln -s .. up", "symlink"},
      // The old code's fixed temporary name, committed as a link; the config is main's.
      {"evil-tmp", "", "ln -s ../outside.txt .env.arbor-tmp", ""},
  };
  for (const Evil& e : evils) {
    ShRun made = Sh(dir, no_hooks + "checkout -q -b " + e.branch + " main");
    ASSERT_EQ(made.rc, 0) << made.err;
    if (!e.toml.empty()) WriteFile(dir + "/.arbor.toml", e.toml);
    made = Sh(dir, (e.links.empty() ? "true" : e.links) + " && git add -f .arbor.toml " +
                       (e.links.empty() ? "" : e.links.substr(e.links.rfind(' ') + 1)) +
                       " && git commit -qm evil && " + no_hooks + "checkout -q main");
    ASSERT_EQ(made.rc, 0) << made.err;
  }
  for (const Evil& e : evils) {
    SCOPED_TRACE(e.branch);
    WriteFile(outside, precious);  // each case on its own, even when an earlier one failed
    WriteFile(dir + "/.env", env_before);
    ShRun co = Sh(dir, "git checkout -q " + e.branch);
    EXPECT_EQ(co.rc, 0) << co.err;
    EXPECT_EQ(Sh(dir, "git rev-parse --abbrev-ref HEAD").out, e.branch + "\n");
    EXPECT_EQ(Slurp(outside), precious) << "the file outside is untouched";
    EXPECT_EQ(listing(), outside_names) << "nothing made beside the repository";
    EXPECT_FALSE(fs::exists(dir + "/pwned"));
    std::vector<std::string> lines;
    std::istringstream err_lines(co.err);
    for (std::string l; std::getline(err_lines, l);) lines.push_back(l);
    EXPECT_EQ(lines.size(), 1u) << co.err;
    lines.resize(1);
    if (e.why.empty()) {
      // Nothing to refuse: the env file itself is written, and only it.
      EXPECT_EQ(lines[0].rfind("arbor: git branch evil-tmp -> database branch evil-tmp", 0), 0u)
          << co.err;
      EXPECT_EQ(WithoutPasswords(EnvVar(Slurp(dir + "/.env"), "DATABASE_URL")), UrlOf("evil-tmp"));
      EXPECT_FALSE(fs::is_symlink(dir + "/.env"));
      EXPECT_TRUE(fs::is_symlink(dir + "/.env.arbor-tmp"));
    } else {
      EXPECT_EQ(lines[0].rfind("arbor: warning: database branch not switched: ", 0), 0u) << co.err;
      EXPECT_NE(lines[0].find(e.why), std::string::npos) << co.err;
      EXPECT_EQ(Slurp(dir + "/.env"), env_before);
      EXPECT_TRUE(GetBranch(e.branch).is_null()) << "refused before anything was made";
    }
    ASSERT_EQ(Sh(dir, "git checkout -q main").rc, 0);
  }

  // The same rules for the flags that write .arbor.toml, and for `ci branch --variable`,
  // which goes into $GITHUB_ENV: a usage error, and nothing written.
  const std::string fresh = tmp.path() + "/fresh";
  ASSERT_TRUE(fs::create_directory(fresh));
  InitRepo(fresh);
  for (const std::string& flags :
       std::vector<std::string>{"--env-file ../outside.txt", "--env-file " + Quote(outside),
                                "--variable \"$(printf 'X=1\\nEVIL')\""}) {
    ShRun bad = Sh(fresh, "arbor git install " + flags);
    EXPECT_EQ(bad.rc, 2) << flags << ": " << bad.out << bad.err;
    EXPECT_FALSE(fs::exists(fresh + "/.arbor.toml")) << flags;
    EXPECT_FALSE(fs::exists(fresh + "/.git/hooks/post-checkout")) << flags;
  }
  WriteFile(outside, precious);
  ShRun ci = Sh(tmp.path(),
                "arbor ci branch --name ci-evil --format github --variable \"$(printf "
                "'X=1\\nEVIL')\"",
                "GITHUB_ENV=" + Quote(tmp.path() + "/github_env"));
  EXPECT_EQ(ci.rc, 2) << ci.out << ci.err;
  EXPECT_FALSE(fs::exists(tmp.path() + "/github_env"));
  EXPECT_TRUE(GetBranch("ci-evil").is_null());
  EXPECT_EQ(Slurp(outside), precious);
}

TEST_F(WorkflowTest, PruneDeletesExactlyTheBranchesOfDeletedAndMergedGitBranches) {
  TempDir repo("prune");
  const std::string dir = repo.path();
  InitRepo(dir);
  BranchCleanup cleanup{daemon_, {"pr-merged", "pr-deleted", "pr-kept", "pr-unrelated"}};
  // A branch nobody's hook made, with a name a git branch could map to.
  auto made = daemon_->Call("POST", "projects/default/branches?branch_id=pr-unrelated",
                            json{{"spec", {{"ttl", "3600s"}}}});
  ASSERT_EQ(made.status, 200) << made.body.dump();
  ASSERT_EQ(Sh(dir, "arbor git install").rc, 0);
  for (const char* b : {"pr-merged", "pr-deleted", "pr-kept"}) {
    ShRun r = Sh(dir, std::string("git checkout -q -b ") + b + " main && echo " + b + " > " + b +
                          " && git add " + b + " && git commit -qm " + b);
    ASSERT_EQ(r.rc, 0) << r.err;
    ASSERT_FALSE(GetBranch(b).is_null()) << b << ": " << r.err;
  }
  ShRun r = Sh(dir,
               "git checkout -q main && git merge -q --no-ff -m merge pr-merged && "
               "git branch -q -D pr-deleted");
  ASSERT_EQ(r.rc, 0) << r.err;

  // Asked, and answered no: nothing goes.
  ShRun no = Sh(dir, "echo n | arbor git prune");
  EXPECT_EQ(no.rc, 0) << no.err;
  EXPECT_NE(no.out.find("pr-merged"), std::string::npos) << no.out;
  EXPECT_NE(no.out.find("pr-deleted"), std::string::npos) << no.out;
  EXPECT_EQ(no.out.find("pr-kept"), std::string::npos) << no.out;
  EXPECT_FALSE(GetBranch("pr-merged").is_null());

  ShRun yes = Sh(dir, "arbor git prune --yes");
  EXPECT_EQ(yes.rc, 0) << yes.err;
  EXPECT_TRUE(GetBranch("pr-merged").is_null());
  EXPECT_TRUE(GetBranch("pr-deleted").is_null());
  EXPECT_FALSE(GetBranch("pr-kept").is_null());
  EXPECT_FALSE(GetBranch("pr-unrelated").is_null());
  EXPECT_FALSE(GetBranch("production").is_null());
  ShRun again = Sh(dir, "arbor git prune --yes");
  EXPECT_EQ(again.rc, 0) << again.err;
  EXPECT_NE(again.out.find("Nothing to prune."), std::string::npos) << again.out;
}

TEST_F(WorkflowTest, CiBranchIsIdempotentAndResetReturnsToTheParent) {
  TempDir tmp("ci");
  BranchCleanup cleanup{daemon_, {"ci-parent", "ci-pr-7"}};
  auto parent = daemon_->Call("POST", "projects/default/branches?branch_id=ci-parent",
                              json{{"spec", {{"ttl", "3600s"}}}});
  ASSERT_EQ(parent.status, 200) << parent.body.dump();
  Pg(daemon_->Connect("ci-parent")).Query("create table ci_t(x int); insert into ci_t values (1)");

  ShRun first = Sh(tmp.path(), "arbor ci branch --name ci-pr-7 --parent ci-parent --ttl 2h");
  ASSERT_EQ(first.rc, 0) << first.err;
  std::string uid = GetBranch("ci-pr-7")["uid"];
  ShRun second = Sh(tmp.path(), "arbor ci branch --name ci-pr-7 --parent ci-parent --ttl 2h");
  ASSERT_EQ(second.rc, 0) << second.err;
  EXPECT_EQ(WithoutPasswords(first.out), WithoutPasswords(second.out));
  EXPECT_EQ(GetBranch("ci-pr-7")["uid"], uid) << "the same branch";
  EXPECT_EQ(WithoutPasswords(first.out),
            "export DATABASE_URL=" + Quote(TcpUrlOf("ci-pr-7")) + "\n");

  // dotenv form, then the URL works.
  ShRun dotenv = Sh(tmp.path(), "arbor ci branch --name ci-pr-7 --format dotenv");
  ASSERT_EQ(dotenv.rc, 0) << dotenv.err;
  std::string url = EnvVar(dotenv.out, "DATABASE_URL");
  daemon_->StartEndpoint("ci-pr-7");
  Pg(url).Query("insert into ci_t values (2)");
  EXPECT_EQ(Pg(url).One("select count(*) from ci_t"), "2");

  ShRun reset = Sh(tmp.path(), "arbor ci branch --name ci-pr-7 --reset --format github",
                   "GITHUB_ENV=" + Quote(tmp.path() + "/github_env"));
  ASSERT_EQ(reset.rc, 0) << reset.err;
  EXPECT_EQ(WithoutPasswords(Slurp(tmp.path() + "/github_env")),
            "DATABASE_URL=" + WithoutPasswords(url) + "\n");
  // The job's log masks the password it wrote.
  std::string reset_url = EnvVar(Slurp(tmp.path() + "/github_env"), "DATABASE_URL");
  std::string reset_pw = reset_url.substr(reset_url.find(':', 13) + 1);
  reset_pw = reset_pw.substr(0, reset_pw.find('@'));
  EXPECT_NE(reset.out.find("::add-mask::" + reset_pw), std::string::npos) << reset.out;
  EXPECT_EQ(GetBranch("ci-pr-7")["uid"], uid);
  daemon_->StartEndpoint("ci-pr-7");
  EXPECT_EQ(Pg(reset_url).One("select count(*) from ci_t"), "1") << "the row inserted is gone";

  ShRun c1 = Sh(tmp.path(), "arbor ci cleanup --name ci-pr-7");
  EXPECT_EQ(c1.rc, 0) << c1.err;
  EXPECT_TRUE(GetBranch("ci-pr-7").is_null());
  ShRun c2 = Sh(tmp.path(), "arbor ci cleanup --name ci-pr-7");
  EXPECT_EQ(c2.rc, 0) << "already gone is success: " << c2.err;
}

// The objects of every kind the diff covers, on a base branch.
const char kBaseSchema[] = R"sql(
create schema wf;
create extension hstore;
create type wf.mood as enum ('ok', 'sad');
create type wf.pair as (a int, b int);
create domain wf.posint as int check (value > 0);
create type wf.span as range (subtype = int4);
create sequence wf.seq1;
create table wf.items (
  id int generated always as identity primary key,
  qty int not null default 1,
  price numeric,
  total numeric generated always as (qty * price) stored,
  note text
);
create index items_qty on wf.items (qty);
alter table wf.items add constraint price_pos check (price >= 0);
create view wf.v_items as select id from wf.items;
create materialized view wf.mv_items as select count(*) as n from wf.items;
create function wf.f(a int) returns int language sql as 'select a + 1';
create procedure wf.p(a int) language sql as 'select a';
create function wf.trg_fn() returns trigger language plpgsql as 'begin return new; end';
create trigger trg before insert on wf.items for each row execute function wf.trg_fn();
alter table wf.items enable row level security;
create policy pol on wf.items using (qty > 0);
create role wf_reader nologin;
-- owner is no superuser: giving an object away needs membership in the new owner's role,
-- and the new owner needs CREATE on the object's schema.
grant wf_reader to owner;
grant create on schema wf to wf_reader;
create table wf.acl (k int, v text);
grant select on wf.acl to wf_reader;
grant update (v) on wf.acl to wf_reader;
comment on table wf.acl is 'granted';
)sql";

// One change of each kind, on a child of the base.
const char kChanges[] = R"sql(
create schema wf_new;
create extension citext;
drop extension hstore;
alter type wf.mood add value 'meh';
alter type wf.pair add attribute c int;
alter domain wf.posint add constraint small check (value < 1000000);
create type wf.span2 as range (subtype = int8);
alter sequence wf.seq1 increment by 5;
create table wf.extra (x int);
alter table wf.items alter column note type varchar(20);
alter table wf.items alter column qty set default 2;
alter table wf.items alter column price set not null;
alter table wf.items alter column id set generated by default;
alter table wf.items alter column total drop expression;
create index items_note on wf.items (note);
drop index wf.items_qty;
alter table wf.items add constraint qty_pos check (qty > 0);
create or replace view wf.v_items as select id, qty from wf.items;
drop materialized view wf.mv_items;
create materialized view wf.mv_items as select sum(qty) as n from wf.items;
create or replace function wf.f(a int) returns int language sql as 'select a + 2';
create or replace procedure wf.p(a int) language sql as 'select a + 1';
alter table wf.items disable trigger trg;
alter policy pol on wf.items using (qty > 1);
grant insert on wf.acl to wf_reader with grant option;
revoke update (v) on wf.acl from wf_reader;
comment on table wf.acl is 'granted twice';
comment on column wf.acl.k is 'the key';
revoke execute on function wf.f(int) from public;
grant usage on schema wf to wf_reader;
alter sequence wf.seq1 owner to wf_reader;
)sql";

TEST_F(WorkflowTest, DiffFindsEveryKindOfChangeAndNothingBetweenEqualBranches) {
  TempDir tmp("diff");
  BranchCleanup cleanup{daemon_, {"df-base", "df-same", "df-mod"}};
  for (const char* id : {"df-base"}) {
    auto a = daemon_->Call("POST", std::string("projects/default/branches?branch_id=") + id,
                           json{{"spec", {{"ttl", "3600s"}}}});
    ASSERT_EQ(a.status, 200) << a.body.dump();
  }
  {
    Pg base(daemon_->Connect("df-base"));
    base.Query(kBaseSchema);
  }
  for (const char* id : {"df-same", "df-mod"}) {
    auto a = daemon_->Call(
        "POST", std::string("projects/default/branches?branch_id=") + id,
        json{{"spec", {{"ttl", "3600s"}, {"source_branch", "projects/default/branches/df-base"}}}});
    ASSERT_EQ(a.status, 200) << a.body.dump();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string before_changes = testutil::Rfc3339(testutil::NowMicros());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  {
    Pg mod(daemon_->Connect("df-mod"));
    mod.Query(kChanges);
  }

  ShRun same = Sh(tmp.path(), "arbor diff df-base df-same");
  EXPECT_EQ(same.rc, 0) << same.out << same.err;
  EXPECT_NE(same.out.find("No schema differences."), std::string::npos) << same.out;

  ShRun j = Sh(tmp.path(), "arbor diff df-base df-mod --format json");
  ASSERT_EQ(j.rc, 1) << j.err;
  json doc = json::parse(j.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << j.out;
  EXPECT_EQ(doc["identical"], false);
  auto find = [&](const std::string& kind, const std::string& name) -> json {
    for (const auto& c : doc["changes"]) {
      if (c["kind"] == kind && c["name"] == name) return c;
    }
    return json();
  };
  auto expect_change = [&](const std::string& kind, const std::string& name,
                           const std::string& change, const std::string& field = "") {
    json c = find(kind, name);
    ASSERT_FALSE(c.is_null()) << kind << " " << name << " missing from\n" << j.out;
    EXPECT_EQ(c["change"], change) << c.dump();
    if (!field.empty()) {
      EXPECT_TRUE(c["fields"].contains(field)) << field << ": " << c.dump();
    }
  };
  expect_change("schema", "wf_new", "added");
  expect_change("extension", "citext", "added");
  expect_change("extension", "hstore", "removed");
  expect_change("type", "wf.mood", "changed", "labels");
  expect_change("type", "wf.pair", "changed", "attributes");
  expect_change("type", "wf.posint", "changed", "constraints");
  expect_change("type", "wf.span2", "added");
  expect_change("sequence", "wf.seq1", "changed", "increment");
  expect_change("table", "wf.extra", "added");
  expect_change("column", "wf.extra.x", "added");
  expect_change("column", "wf.items.note", "changed", "type");
  expect_change("column", "wf.items.qty", "changed", "default");
  expect_change("column", "wf.items.price", "changed", "not_null");
  expect_change("column", "wf.items.id", "changed", "identity");
  expect_change("column", "wf.items.total", "changed", "generated");
  expect_change("index", "wf.items_note", "added");
  expect_change("index", "wf.items_qty", "removed");
  expect_change("constraint", "wf.items.qty_pos", "added");
  expect_change("view", "wf.v_items", "changed", "definition");
  expect_change("view", "wf.mv_items", "changed", "definition");
  expect_change("function", "wf.f(a integer)", "changed", "definition");
  expect_change("function", "wf.p(IN a integer)", "changed", "definition");
  expect_change("trigger", "wf.items.trg", "changed", "enabled");
  expect_change("policy", "wf.items.pol", "changed", "using");
  // Privileges, comments and owners.
  expect_change("table", "wf.acl", "changed", "privileges");
  expect_change("table", "wf.acl", "changed", "comment");
  expect_change("column", "wf.acl.k", "changed", "comment");
  expect_change("column", "wf.acl.v", "changed", "privileges");
  expect_change("function", "wf.f(a integer)", "changed", "privileges");
  expect_change("schema", "wf", "changed", "privileges");
  expect_change("sequence", "wf.seq1", "changed", "owner");
  {
    json acl = find("table", "wf.acl")["fields"]["privileges"];
    EXPECT_EQ(acl["from"], "wf_reader: SELECT") << acl.dump();
    EXPECT_EQ(acl["to"], "wf_reader: INSERT (grantable), SELECT") << acl.dump();
    EXPECT_EQ(find("column", "wf.acl.v")["fields"]["privileges"]["to"], "") << j.out;
    json f = find("function", "wf.f(a integer)")["fields"]["privileges"];
    EXPECT_EQ(f["to"], "public: EXECUTE revoked") << f.dump();
    EXPECT_EQ(find("schema", "wf")["fields"]["privileges"]["to"], "wf_reader: CREATE, USAGE")
        << j.out;
  }
  // Nothing else: the objects that did not change are not listed.
  EXPECT_TRUE(find("table", "wf.items").is_null()) << j.out;
  EXPECT_TRUE(find("column", "wf.items.qty").value("fields", json::object()).size() == 1) << j.out;

  ShRun text = Sh(tmp.path(), "arbor diff df-base df-mod");
  EXPECT_EQ(text.rc, 1) << text.err;
  EXPECT_NE(text.out.find("+ schema"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("type: text -> character varying(20)"), std::string::npos) << text.out;
  ShRun md = Sh(tmp.path(), "arbor diff df-base df-mod --format markdown");
  EXPECT_EQ(md.rc, 1) << md.err;
  EXPECT_NE(md.out.find("| added | schema | `wf_new` |"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("```diff"), std::string::npos) << md.out;

  // A side at a point in time: df-mod before its changes equals the base. The temporary
  // branch is gone afterwards.
  auto ids_before = BranchIds();
  ShRun past = Sh(tmp.path(), "arbor diff df-base df-mod@" + before_changes);
  EXPECT_EQ(past.rc, 0) << past.out << past.err;
  ShRun past_vs_now =
      Sh(tmp.path(), "arbor diff --format json df-mod@" + before_changes + " df-mod");
  EXPECT_EQ(past_vs_now.rc, 1) << past_vs_now.err;
  EXPECT_EQ(BranchIds(), ids_before) << "the temporary branches are deleted";

  // Errors are not "different": a missing branch is 5.
  ShRun missing = Sh(tmp.path(), "arbor diff df-base df-nosuch");
  EXPECT_EQ(missing.rc, 5) << missing.err;
  EXPECT_NE(missing.err.find("df-nosuch"), std::string::npos) << missing.err;
}

TEST_F(WorkflowTest, MigrateCheckReportsAndNeverTouchesTheTarget) {
  TempDir tmp("migrate");
  BranchCleanup cleanup{daemon_, {"mc-target"}};
  auto t = daemon_->Call("POST", "projects/default/branches?branch_id=mc-target",
                         json{{"spec", {{"ttl", "3600s"}}}});
  ASSERT_EQ(t.status, 200) << t.body.dump();
  const std::string target_url = daemon_->Connect("mc-target");
  Pg(target_url).Query("create table mc(id int primary key); insert into mc values (1)");
  const std::string columns_sql =
      "select string_agg(column_name, ',' order by ordinal_position) from "
      "information_schema.columns where table_name = 'mc'";
  auto ids_before = BranchIds();

  // Fails halfway: the first statement commits, the second fails.
  ShRun failed = Sh(tmp.path(),
                    "arbor migrate-check --target mc-target -- sh -c 'psql \"$DATABASE_URL\" -v "
                    "ON_ERROR_STOP=1 -c \"alter table mc add column half int\" -c \"select "
                    "nosuch\"'");
  EXPECT_NE(failed.rc, 0) << failed.out << failed.err;
  EXPECT_NE(failed.out.find("failed (exit status"), std::string::npos) << failed.out;
  EXPECT_NE(failed.out.find("+ column  public.mc.half"), std::string::npos) << failed.out;
  EXPECT_NE(failed.err.find("nosuch"), std::string::npos) << "the command's output: " << failed.err;
  EXPECT_EQ(Pg(target_url).One(columns_sql), "id") << "the target is unchanged";
  EXPECT_EQ(BranchIds(), ids_before) << "the temporary branch is deleted";

  // Succeeds, with libpq's variables only (no URL on the command line), in markdown.
  ShRun ok = Sh(tmp.path(),
                "arbor migrate-check --target mc-target --format markdown -- psql -v "
                "ON_ERROR_STOP=1 -c 'alter table mc add column email text not null default "
                "$$x$$' -c 'insert into mc select g from generate_series(2, 20000) g'");
  EXPECT_EQ(ok.rc, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("succeeded"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("| added | column | `public.mc.email` |"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("logical size"), std::string::npos) << ok.out;
  EXPECT_EQ(Pg(target_url).One(columns_sql), "id");
  EXPECT_EQ(Pg(target_url).One("select count(*) from mc"), "1");
  EXPECT_EQ(BranchIds(), ids_before);
}

}  // namespace
}  // namespace arbor
