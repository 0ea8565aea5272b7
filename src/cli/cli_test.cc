// The arbor command as a user runs it: arguments in, screen and exit code out, against an
// in-process HTTP server answering with docs/api.md's bodies.
#include "cli/cli.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "api/names.h"
#include "api/testing/fake_api.h"
#include "api/types.h"
#include "cli/testing.h"

namespace arbor::cli {
namespace {

using api::Json;
using api::testing::FakeApi;

const int64_t kNow = 1795536000LL * 1'000'000;  // 2026-11-24T16:00:00Z
const int64_t kMin = 60'000'000;

api::Branch MakeBranch(const std::string& id, const std::string& parent, int64_t age_min) {
  api::Branch b;
  b.name = "projects/default/branches/" + id;
  b.uid = "br-" + id;
  b.create_time_us = kNow - age_min * kMin;
  b.status.current_state = "READY";
  b.status.logical_size_bytes = 40960000;
  b.status.written_bytes = 8192;
  if (parent.empty()) {
    b.spec.no_expiry = true;
  } else {
    b.spec.source_branch = "projects/default/branches/" + parent;
    b.spec.ttl_s = 3600;
    b.status.source_branch = b.spec.source_branch;
    b.status.source_branch_time_us = b.create_time_us;
    b.status.expire_time_us = b.create_time_us + 3600 * 1'000'000LL;
  }
  b.spec.is_protected = false;
  return b;
}

api::Endpoint MakeEndpoint(const std::string& branch, const std::string& state, int port) {
  api::Endpoint e;
  e.name = "projects/default/branches/" + branch + "/endpoints/primary";
  e.uid = "ep-" + branch;
  e.create_time_us = kNow;
  e.spec.endpoint_type = api::kEndpointTypeReadWrite;
  e.spec.suspend_timeout_s = 300;
  e.status = {state,        "127.0.0.1",
              port,         "postgresql://owner@127.0.0.1:" + std::to_string(port) + "/postgres",
              std::nullopt, std::nullopt};
  return e;
}

std::string Error(const std::string& code, const std::string& message) {
  return Json{{"error_code", code}, {"message", message}}.dump();
}

class CliTest : public ::testing::Test {
 protected:
  using Outcome = testing::Outcome;

  void SetUp() override {
    auto prod = MakeBranch("production", "", 600);
    prod.status.is_default = true;
    prod.spec.is_protected = true;
    dev_ = MakeBranch("dev", "production", 65);
    auto fix = MakeBranch("dev-fix", "dev", 5);
    api_.On("GET", "projects/default/branches", 200,
            api::ToJsonList("branches", std::vector<api::Branch>{fix, prod, dev_}).dump());
    api_.On("GET", "projects/default/branches/dev", 200, api::ToJson(dev_).dump());
    auto eps = [](const std::string& b, const std::string& state, int port) {
      return api::ToJsonList("endpoints", std::vector<api::Endpoint>{MakeEndpoint(b, state, port)})
          .dump();
    };
    api_.On("GET", "projects/default/branches/production/endpoints", 200,
            eps("production", "ACTIVE", 55433));
    api_.On("GET", "projects/default/branches/dev/endpoints", 200, eps("dev", "IDLE", 55434));
    api_.On("GET", "projects/default/branches/dev-fix/endpoints", 200, R"({"endpoints": []})");
  }

  Outcome Run(const std::vector<std::string>& args, const AddCommands& add = nullptr) {
    return testing::RunCli(args, env_, kNow, &exec_argv_, add);
  }

  FakeApi api_;
  std::map<std::string, std::string> env_ = {
      {"ARBOR_API", api_.url()}, {"ARBOR_TOKEN", "tok"}, {"ARBOR_HOME", "/nonexistent"}};
  std::vector<std::string> exec_argv_;
  api::Branch dev_;
};

TEST_F(CliTest, BranchListDrawsTheTree) {
  auto r = Run({"branch", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "BRANCH                            STATE  COMPUTE  AGE   EXPIRES         LOGICAL   "
            "WRITTEN\n"
            "production (default) [protected]  READY  ACTIVE   10h   never           39.1 MiB  "
            "8.0 KiB\n"
            "└── dev                           READY  IDLE     1h5m  expired 5m ago  39.1 MiB  "
            "8.0 KiB\n"
            "    └── dev-fix                   READY  -        5m    in 55m          39.1 MiB  "
            "8.0 KiB\n")
      << r.out;
}

TEST_F(CliTest, ManyBranchesKeepTheirOrderAndOneFailureFailsTheList) {
  std::vector<api::Branch> many;
  std::string expected_endpoints = "BRANCH  ENDPOINT  STATE   ADDRESS          SUSPEND\n";
  for (int i = 0; i < 40; ++i) {
    std::string id = "b" + std::to_string(100 + i);
    many.push_back(MakeBranch(id, "", 40 - i));
    api_.On("GET", "projects/default/branches/" + id + "/endpoints", 200,
            api::ToJsonList("endpoints", std::vector<api::Endpoint>{MakeEndpoint(
                                             id, i % 2 ? "ACTIVE" : "IDLE", 50000 + i)})
                .dump());
    expected_endpoints += id + "    primary   " + (i % 2 ? "ACTIVE" : "IDLE  ") +
                          "  127.0.0.1:" + std::to_string(50000 + i) + "  after 5m idle\n";
  }
  api_.On("GET", "projects/default/branches", 200, api::ToJsonList("branches", many).dump());
  auto r = Run({"endpoint", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, expected_endpoints);

  api_.On("GET", "projects/default/branches/b117/endpoints", 500,
          Error("INTERNAL_ERROR", "endpoint table is broken"));
  r = Run({"branch", "list"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "arbor: endpoint table is broken\n");
}

TEST_F(CliTest, BranchListAsJsonIsTheApisList) {
  auto r = Run({"branch", "list", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  Json j = Json::parse(r.out);
  ASSERT_EQ(j["branches"].size(), 3u);
  EXPECT_EQ(j["branches"][2], api::ToJson(dev_));
  // JSON output needs no endpoint calls.
  EXPECT_EQ(api_.Last("GET", "projects/default/branches/dev/endpoints").method, "");
}

TEST_F(CliTest, BranchCreateSendsTheSpecAndShowsTheBranch) {
  api_.On("POST", "projects/default/branches", 200, api::ToJson(dev_).dump());
  auto r = Run({"branch", "create", "dev", "--ttl", "2h", "--at", "-5m", "--parent", "production"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto req = api_.Last("POST", "projects/default/branches");
  EXPECT_EQ(req.authorization, "Bearer tok");
  EXPECT_EQ(req.params["branch_id"], "dev");
  EXPECT_EQ(Json::parse(req.body),
            Json::parse(R"({"spec": {"source_branch": "projects/default/branches/production",
                                     "source_branch_time": "2026-11-24T15:55:00.000000Z",
                                     "ttl": "7200s"}})"));
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "Created branch projects/default/branches/dev.");
  EXPECT_NE(r.out.find("\nConnect with: arbor psql dev\n"), std::string::npos) << r.out;
}

TEST_F(CliTest, BranchCreateFlagsReachTheSpec) {
  api_.On("POST", "projects/other/branches", 200, api::ToJson(dev_).dump());
  auto r = Run({"--project", "other", "branch", "create", "keep", "--no-expiry", "--protected",
                "--lsn", "0/16B3740"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Json::parse(api_.Last("POST", "projects/other/branches").body),
            Json::parse(R"({"spec": {"no_expiry": true, "is_protected": true,
                                     "source_branch_lsn": "0/16B3740"}})"));
  api_.On("POST", "projects/default/branches", 200, api::ToJson(dev_).dump());
  r = Run({"branch", "create", "x", "--expire-time", "2026-11-25T00:00:00+01:00"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Json::parse(api_.Last("POST", "projects/default/branches").body),
            Json::parse(R"({"spec": {"expire_time": "2026-11-24T23:00:00.000000Z"}})"));
}

TEST_F(CliTest, TtlWithNoExpiryIsRefusedLocally) {
  auto r = Run({"branch", "create", "dev", "--ttl", "1h", "--no-expiry"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "arbor: choose one of --ttl, --expire-time and --no-expiry: a branch either expires "
            "or not (see --help)\n");
  EXPECT_TRUE(api_.requests().empty());
}

TEST_F(CliTest, MissingExpiryGetsTheServersMessageAndTheFlags) {
  api_.On("POST", "projects/default/branches", 400,
          Error("INVALID_PARAMETER_VALUE",
                "Expiration must be specified: set spec.ttl, spec.expire_time or spec.no_expiry"));
  auto r = Run({"branch", "create", "dev"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err,
            "arbor: Expiration must be specified: set spec.ttl, spec.expire_time or "
            "spec.no_expiry (with the CLI: --ttl DUR, --expire-time TIME or --no-expiry)\n");
}

TEST_F(CliTest, UsageErrorsExitTwoWithoutCallingTheServer) {
  struct Case {
    std::vector<std::string> args;
    std::string err;
  } cases[] = {
      {{"branch", "create", "Dev", "--ttl", "1h"},
       "arbor: branch id 'Dev' must start with a lowercase letter (see --help)\n"},
      {{"branch", "create", "dev", "--ttl", "90"},
       "arbor: '90' is not a duration: use e.g. 3600s, 90m, 2h, 7d or 1h30m (see --help)\n"},
      {{"branch", "create", "dev", "--ttl", "1h", "--at", "-5m", "--lsn", "0/1"},
       "arbor: --at excludes --lsn (see --help)\n"},
      {{"branch", "create", "dev", "--ttl", "1h", "--at", "yesterday"},
       "arbor: 'yesterday' is not a time: use RFC 3339 (2026-11-24T16:00:00Z), \"now\", how "
       "long ago (-5m, -30s, -2h) or from now (+2h) (see --help)\n"},
      {{"branch", "get", "../etc"},
       "arbor: branch id '../etc' must start with a lowercase letter (see --help)\n"},
      {{"branch", "restore", "dev"},
       "arbor: give exactly one of --at TIME and --lsn LSN (see --help)\n"},
      {{"branch"}, "arbor: A subcommand is required (see --help)\n"},
      {{"bogus"}, "arbor: unknown command 'bogus' (see arbor --help)\n"},
      {{"-o", "json", "branch", "bogus"},
       "arbor: unknown command 'branch bogus' (see arbor branch --help)\n"},
      {{"-o", "yaml", "status"}, "arbor: --output: yaml not in {table,json} (see --help)\n"},
      {{"postgres", "create-branch", "projects/default", "dev", "--json", "{spec"},
       "arbor: --json is not valid JSON (e.g. --json '{\"spec\": {\"ttl\": \"3600s\"}}') (see "
       "--help)\n"},
      {{"postgres", "get-branch", "dev"},
       "arbor: 'dev' is not a resource name of the form projects/{project}/branches/{branch} "
       "(see --help)\n"},
  };
  for (const auto& c : cases) {
    auto r = Run(c.args);
    EXPECT_EQ(r.code, 2) << c.args[0];
    EXPECT_EQ(r.err, c.err);
  }
  EXPECT_TRUE(api_.requests().empty());
}

TEST_F(CliTest, ServerRefusalsExitOneAndServerFailuresFour) {
  struct Case {
    int http;
    std::string code;
    int exit;
  } cases[] = {{404, "RESOURCE_DOES_NOT_EXIST", 1}, {400, "FAILED_PRECONDITION", 1},
               {409, "RESOURCE_ALREADY_EXISTS", 1}, {401, "UNAUTHENTICATED", 1},
               {500, "INTERNAL_ERROR", 4},          {503, "TEMPORARILY_UNAVAILABLE", 4}};
  for (const auto& c : cases) {
    api_.On("DELETE", "projects/default/branches/dev", c.http, Error(c.code, "no: " + c.code));
    auto r = Run({"branch", "delete", "dev"});
    EXPECT_EQ(r.code, c.exit) << c.code;
    EXPECT_EQ(r.out, "");
    // An authentication error also says which token was sent and where the CLI looked.
    std::string hint = c.http != 401 ? ""
                                     : "; the CLI sent the token from $ARBOR_TOKEN (ARBOR_HOME "
                                       "is /nonexistent; set it to the data directory `arbor "
                                       "up` printed, or ARBOR_TOKEN to a token)";
    EXPECT_EQ(r.err, "arbor: no: " + c.code + hint + "\n");
  }
  api_.On("DELETE", "projects/default/branches/dev", 200, "{}");
  auto r = Run({"branch", "delete", "dev"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out,
            "Deleted branch projects/default/branches/dev. It stays recoverable for the "
            "project's history window:\n  arbor branch undelete dev\n");
}

TEST_F(CliTest, DeletedBranchesAreListedUndeletedAndPurged) {
  api::Branch gone = dev_;
  gone.status.current_state = "DELETED";
  gone.status.deleted = true;
  gone.status.delete_time_us = kNow - 3'600'000'000;
  gone.status.purge_time_us = kNow + 82'800'000'000;
  gone.status.written_bytes = 3 << 20;
  api_.On("GET", "projects/default/branches", 200,
          api::ToJsonList("branches", std::vector<api::Branch>{dev_, gone}).dump());
  auto r = Run({"branch", "list", "--deleted"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(api_.Last("GET", "projects/default/branches").params["show_deleted"], "true");
  EXPECT_NE(r.out.find("NAME"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PURGE AT"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(api::FormatTime(*gone.status.purge_time_us)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3.0 MiB"), std::string::npos) << r.out;
  auto j = Run({"branch", "list", "--deleted", "-o", "json"});
  EXPECT_EQ(j.code, 0) << j.err;
  Json listed = Json::parse(j.out);
  ASSERT_EQ(listed["branches"].size(), 1u) << j.out;  // the deleted one only
  EXPECT_EQ(listed["branches"][0]["status"].value("purge_time", ""),
            api::FormatTime(*gone.status.purge_time_us));

  api::UndeleteResult back;
  back.branch = dev_;
  back.branch.name = "projects/default/branches/dev-old";
  back.notes = {"endpoint primary had port 1, which is no longer available; it now has port 2"};
  api_.On("POST", "projects/default/branches/dev:undelete", 200, api::ToJson(back).dump());
  auto u = Run({"branch", "undelete", "dev", "--new-name", "dev-old"});
  EXPECT_EQ(u.code, 0) << u.err;
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/dev:undelete").params["new_branch_id"],
            "dev-old");
  EXPECT_NE(u.out.find("Undeleted branch projects/default/branches/dev-old."), std::string::npos)
      << u.out;
  EXPECT_NE(u.out.find("Note: endpoint primary had port 1"), std::string::npos) << u.out;

  api_.On("POST", "projects/default/branches/dev:undelete", 409,
          Error("RESOURCE_ALREADY_EXISTS", "taken again; use ?new_branch_id="));
  auto refused = Run({"branch", "undelete", "dev"});
  EXPECT_EQ(refused.code, 1);
  EXPECT_EQ(
      api_.Last("POST", "projects/default/branches/dev:undelete").params.count("new_branch_id"),
      0u);
  EXPECT_EQ(refused.err, "arbor: taken again; use ?new_branch_id=\n");

  api_.On("DELETE", "projects/default/branches/dev", 200, "{}");
  auto p = Run({"branch", "delete", "dev", "--purge"});
  EXPECT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(api_.Last("DELETE", "projects/default/branches/dev").params["purge"], "true");
  EXPECT_NE(p.out.find("Purged branch projects/default/branches/dev"), std::string::npos);
}

TEST_F(CliTest, AnUnreachableDaemonExitsThreeWithAHint) {
  std::string url;
  {
    FakeApi gone;
    url = gone.url();
  }
  env_["ARBOR_API"] = url;
  auto r = Run({"status"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.err, "arbor: cannot connect to the Arbor API at " + url +
                       ": is the Arbor daemon running? start it with `arbor up`\n");
}

TEST_F(CliTest, AnAnswerNotAsDocumentedExitsFour) {
  api_.On("GET", "projects/default/branches/dev", 200, R"({"name": "x", "status": []})");
  auto r = Run({"branch", "get", "dev"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.err,
            "arbor: the Arbor API's answer to GET projects/default/branches/dev is not as "
            "documented: branch.status: expected an object, got []\n");
}

TEST_F(CliTest, TheApiAndTokenComeFromArborHomeUnlessOverridden) {
  char dir[] = "/tmp/arbor-cli-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::ofstream(std::string(dir) + "/api") << api_.url() << "\n";
  std::ofstream(std::string(dir) + "/admin-token") << "from-file\n";
  env_ = {{"ARBOR_HOME", dir}};
  api_.On("GET", "status", 200, R"({"version": "0.1.0", "pid": 42})");
  auto r = Run({"status"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(api_.Last("GET", "status").authorization, "Bearer from-file");

  env_["ARBOR_TOKEN"] = "from-env";
  env_["ARBOR_API"] = "http://127.0.0.1:1";  // --api wins over it
  r = Run({"--api", api_.url(), "status"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(api_.Last("GET", "status").authorization, "Bearer from-env");
  std::remove((std::string(dir) + "/api").c_str());
  std::remove((std::string(dir) + "/admin-token").c_str());
  rmdir(dir);
}

// Without ARBOR_HOME the CLI looks where `arbor up` writes by default: ~/.arbor.
TEST_F(CliTest, WithoutArborHomeTheCliLooksInDotArborOfHome) {
  char dir[] = "/tmp/arbor-cli-home-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string home = std::string(dir) + "/.arbor";
  ASSERT_EQ(mkdir(home.c_str(), 0700), 0);
  std::ofstream(home + "/api") << api_.url() << "\n";
  std::ofstream(home + "/admin-token") << "from-home\n";
  env_ = {{"HOME", dir}};
  api_.On("GET", "status", 200, R"({"version": "0.1.0", "pid": 42})");
  auto r = Run({"status"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(api_.Last("GET", "status").authorization, "Bearer from-home");
  std::remove((home + "/api").c_str());
  std::remove((home + "/admin-token").c_str());
  rmdir(home.c_str());
  rmdir(dir);
}

TEST_F(CliTest, AnAuthenticationErrorNamesTheHomeItLookedIn) {
  char dir[] = "/tmp/arbor-cli-home-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string home = std::string(dir) + "/.arbor";
  api_.On("GET", "projects/default/branches/dev", 401,
          Error("UNAUTHENTICATED", "missing or wrong token"));
  // No token anywhere: the CLI says which file it could not read.
  env_ = {{"HOME", dir}, {"ARBOR_API", api_.url()}};
  auto r = Run({"branch", "get", "dev"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "arbor: missing or wrong token; the CLI sent no token: " + home +
                       "/admin-token: No such file or directory (ARBOR_HOME is " + home +
                       "; set it to the data directory `arbor up` printed, or ARBOR_TOKEN to "
                       "a token)\n");
  EXPECT_EQ(api_.Last("GET", "projects/default/branches/dev").authorization, "");
  // A token from the home's file that the daemon refuses: the file is named.
  ASSERT_EQ(mkdir(home.c_str(), 0700), 0);
  std::ofstream(home + "/admin-token") << "stale\n";
  r = Run({"branch", "get", "dev"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the CLI sent the token from " + home + "/admin-token (ARBOR_HOME is " +
                       home + ";"),
            std::string::npos)
      << r.err;
  std::remove((home + "/admin-token").c_str());
  rmdir(home.c_str());
  rmdir(dir);
}

TEST_F(CliTest, ConsolePrintsAOneTimeLinkInTheFragment) {
  api_.On("POST", "/api/2.0/console/links", 200,
          R"J({"code": "c0de", "url": "http://elsewhere/#login=c0de",
              "expire_time": "2026-12-01T10:32:00.000000Z"})J");
  auto r = Run({"console"});
  ASSERT_EQ(r.code, 0) << r.err;
  // The CLI's own address, not the one the daemon reports; the code after '#', never in the
  // path or query that servers and proxies log.
  EXPECT_NE(r.out.find("  " + api_.url() + "/#login=c0de\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("until 2026-12-01T10:32:00.000000Z"), std::string::npos) << r.out;
  EXPECT_EQ(api_.Last("POST", "/api/2.0/console/links").authorization, "Bearer tok");
}

TEST_F(CliTest, StatusShowsTheDaemonAndWhatRuns) {
  api_.On("GET", "status", 200,
          R"J({"version": "0.1.0", "pid": 42, "data_dir": "/d", "api": "http://127.0.0.1:8432",
              "proxy": "127.0.0.1:55432", "proxy_socket_dir": "/d/proxy",
              "endpoint_ports": "55433-55999",
              "compute_limits": "cgroup v1 (cpu, cpuacct, memory)", "console": true,
              "metrics": "http://127.0.0.1:9187/metrics"})J");
  auto r = Run({"status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "version         0.1.0\n"
            "pid             42\n"
            "data dir        /d\n"
            "api             http://127.0.0.1:8432\n"
            "proxy           127.0.0.1:55432\n"
            "local socket    /d/proxy\n"
            "endpoint ports  55433-55999\n"
            "compute limits  cgroup v1 (cpu, cpuacct, memory)\n"
            "console         http://127.0.0.1:8432/ (`arbor console` logs you in)\n"
            "metrics         http://127.0.0.1:8432/metrics (with a token), and "
            "http://127.0.0.1:9187/metrics\n"
            "project         default (3 branches, 1 running)\n"
            "\n"
            "BRANCH      ENDPOINT  STATE   ADDRESS          SUSPEND\n"
            "production  primary   ACTIVE  127.0.0.1:55433  after 5m idle\n");
}

TEST_F(CliTest, EndpointsConnectionStringAndPsql) {
  auto r = Run({"endpoint", "list", "dev"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "BRANCH  ENDPOINT  STATE  ADDRESS          SUSPEND\n"
            "dev     primary   IDLE   127.0.0.1:55434  after 5m idle\n");

  api_.On("GET", "projects/default/branches/dev/endpoints/primary", 200,
          api::ToJson(MakeEndpoint("dev", "IDLE", 55434)).dump());
  api_.On("POST", "credentials", 200,
          R"({"token": "eyJ.t.s", "expire_time": "2026-11-24T17:00:00Z"})");
  r = Run({"connection-string", "dev", "--ttl", "10m"});
  ASSERT_EQ(r.code, 0) << r.err;
  // A fresh token for the endpoint is the password; nothing is started (the proxy wakes it).
  EXPECT_EQ(r.out, "postgresql://owner:eyJ.t.s@127.0.0.1:55434/postgres\n");
  EXPECT_EQ(Json::parse(api_.Last("POST", "credentials").body),
            Json::parse(R"({"endpoint": "projects/default/branches/dev/endpoints/primary",
                            "role": "owner", "ttl": "600s"})"));
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/dev/endpoints/primary:start").method, "");

  // --role-password sets a new password for the role, and says that the old one is gone.
  api_.On("POST", "projects/default/branches/dev/roles/owner:reset_password", 200,
          R"({"name": "projects/default/branches/dev/roles/owner",
              "create_time": "2026-11-24T16:00:00Z", "password": "fresh-pw",
              "status": {"postgres_role": "owner"}})");
  r = Run({"connection-string", "dev", "--role-password"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "postgresql://owner:fresh-pw@127.0.0.1:55434/postgres\n");
  EXPECT_NE(r.err.find("stops working"), std::string::npos) << r.err;

  testing::Launch launch;
  r = testing::RunCli({"psql", "dev", "--", "-c", "select 1"}, env_, kNow, &exec_argv_, nullptr,
                      &launch);
  ASSERT_EQ(exec_argv_.size(), 4u);
  EXPECT_TRUE(exec_argv_[0] == "psql" || exec_argv_[0] == "/usr/lib/postgresql/15/bin/psql");
  // 10b, "arbor psql and arbor run put passwords in argv": the token is in the environment,
  // not on the command line that `ps` shows.
  EXPECT_EQ(exec_argv_[1], "postgresql://owner@127.0.0.1:55434/postgres");
  EXPECT_EQ(exec_argv_[2], "-c");
  EXPECT_EQ(exec_argv_[3], "select 1");
  for (const auto& a : exec_argv_) EXPECT_EQ(a.find("eyJ.t.s"), std::string::npos) << a;
  EXPECT_EQ(launch.env, (Io::Env{{"PGPASSWORD", "eyJ.t.s"}}));
  EXPECT_EQ(r.code, 1);  // the fake exec "failed"
  EXPECT_EQ(r.err, "arbor: cannot run " + exec_argv_[0] +
                       ": No such file or directory (install postgresql-client-15)\n");

  // arbor run: the command is a child; its URL names no password, and PGPASSFILE holds the
  // token, refreshed while it runs (the fake child calls the refresh once).
  int credentials_before = api_.Count("POST", "credentials");
  r = testing::RunCli({"run", "dev", "--", "npm", "test"}, env_, kNow, &exec_argv_, nullptr,
                      &launch);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(launch.argv, (std::vector<std::string>{"npm", "test"}));
  std::map<std::string, std::string> env(launch.env.begin(), launch.env.end());
  EXPECT_EQ(env["DATABASE_URL"], "postgresql://owner@127.0.0.1:55434/postgres");
  EXPECT_EQ(env["PGUSER"], "owner");
  EXPECT_EQ(env.count("PGPASSWORD"), 0u);
  EXPECT_NE(env["PGPASSFILE"], "");
  EXPECT_GT(launch.refresh_every_s, 0);
  EXPECT_EQ(api_.Count("POST", "credentials") - credentials_before, 2)
      << "one token, then one refresh";
  struct stat st;
  EXPECT_NE(stat(env["PGPASSFILE"].c_str(), &st), 0) << "the password file is removed after";
  // The child's exit status is arbor run's.
  r = testing::RunCli({"run", "dev", "--", "false"}, env_, kNow, &exec_argv_, nullptr, &launch, 3);
  EXPECT_EQ(r.code, 3);
  r = Run({"run", "dev"});
  EXPECT_EQ(r.code, 2) << "no command is a usage error";
}

TEST_F(CliTest, EndpointStartWithoutABranchUsesTheDefaultBranch) {
  api_.On("GET", "projects/default", 200,
          R"({"name": "projects/default",
              "status": {"default_branch": "projects/default/branches/production"}})");
  api_.On("POST", "projects/default/branches/production/endpoints/primary:stop", 200,
          api::ToJson(MakeEndpoint("production", "IDLE", 55433)).dump());
  auto r = Run({"endpoint", "stop"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "BRANCH      ENDPOINT  STATE  ADDRESS          SUSPEND\n"
            "production  primary   IDLE   127.0.0.1:55433  after 5m idle\n");
}

TEST_F(CliTest, DatabaseCommandsSendTheApisShapeAndUseTheDefaultBranch) {
  api_.On("GET", "projects/default", 200,
          R"({"name": "projects/default",
              "status": {"default_branch": "projects/default/branches/production"}})");
  const std::string shop =
      R"({"name": "shop", "owner_name": "app", "branch": "projects/default/branches/dev"})";
  api_.On("POST", "projects/default/branches/dev/databases", 200, R"({"database": )" + shop + "}");
  auto r = Run({"database", "create", "shop", "--owner", "app", "--branch", "dev"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Database shop on dev, owned by app\n");
  EXPECT_EQ(Json::parse(api_.Last("POST", "projects/default/branches/dev/databases").body),
            Json::parse(R"({"database": {"name": "shop", "owner_name": "app"}})"));

  api_.On("GET", "projects/default/branches/production/databases", 200,
          R"({"databases": [{"name": "postgres", "owner_name": "owner",
                             "branch": "projects/default/branches/production"}]})");
  r = Run({"database", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "DATABASE  OWNER\npostgres  owner\n");

  api_.On(
      "DELETE", "projects/default/branches/dev/databases/my db", 409,
      R"({"error_code": "FAILED_PRECONDITION", "message": "database my db has open connections"})");
  r = Run({"database", "delete", "my db", "--branch", "dev"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("open connections"), std::string::npos) << r.err;
  EXPECT_EQ(
      api_.Last("DELETE", "projects/default/branches/dev/databases/my db").params.count("force"),
      0u);
  api_.On("DELETE", "projects/default/branches/dev/databases/my db", 200, "{}");
  r = Run({"database", "delete", "my db", "--branch", "dev", "--force"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(api_.Last("DELETE", "projects/default/branches/dev/databases/my db").params.at("force"),
            "true");
}

TEST_F(CliTest, ResetAndRestore) {
  api_.On("POST", "projects/default/branches/dev:reset", 200, api::ToJson(dev_).dump());
  auto r = Run({"branch", "reset", "dev", "--at", "-30s"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/dev:reset").body,
            R"({"source_branch_time":"2026-11-24T15:59:30.000000Z"})");
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')),
            "Reset branch projects/default/branches/dev to production as of "
            "2026-11-24T14:55:00.000000Z.");

  api_.On("POST", "projects/default/branches/dev:restore", 200,
          Json{{"branch", api::ToJson(dev_)},
               {"backup_branch", "projects/default/branches/dev-backup-20261124t160000z"}}
              .dump());
  r = Run({"branch", "restore", "dev", "--at", "2026-11-24T15:00:00Z"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Restored branch projects/default/branches/dev to its state at "
            "2026-11-24T15:00:00.000000Z.\n"
            "Its previous state is kept as branch "
            "projects/default/branches/dev-backup-20261124t160000z.\n");
}

TEST_F(CliTest, BranchUpdateSendsTheMaskOfTheFlagsGiven) {
  api_.On("PATCH", "projects/default/branches/dev", 200, api::ToJson(dev_).dump());
  auto r = Run({"branch", "update", "dev", "--ttl", "14d", "--protect"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto req = api_.Last("PATCH", "projects/default/branches/dev");
  EXPECT_EQ(req.params["update_mask"], "spec.is_protected,spec.ttl");
  EXPECT_EQ(Json::parse(req.body),
            Json::parse(R"({"spec": {"is_protected": true, "ttl": "1209600s"}})"));
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "Updated branch projects/default/branches/dev.");

  r = Run({"branch", "update", "dev"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "arbor: nothing to change: give --protect, --unprotect, --ttl, --expire-time or "
            "--no-expiry (see --help)\n");
}

TEST_F(CliTest, SeedVerbsTakeTheSeedsFormAndAnswerJson) {
  api_.On("POST", "projects/default/branches", 200, api::ToJson(dev_).dump());
  auto r = Run({"postgres", "create-branch", "projects/default", "dev", "--json",
                R"({"spec": {"source_branch": "projects/default/branches/production",
                             "ttl": "3600s", "future": 1}})"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto req = api_.Last("POST", "projects/default/branches");
  EXPECT_EQ(req.params["branch_id"], "dev");
  EXPECT_EQ(Json::parse(req.body)["spec"]["future"], 1);  // sent as given
  EXPECT_EQ(Json::parse(r.out), api::ToJson(dev_));

  r = Run({"postgres", "list-branches", "projects/default"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Json::parse(r.out)["branches"].size(), 3u);

  r = Run({"postgres", "get-branch", "projects/default/branches/dev", "-o", "table"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "name          projects/default/branches/dev");

  api_.On("POST", "credentials", 501,
          Error("NOT_IMPLEMENTED", "short-lived credentials arrive with the proxy"));
  r = Run({"postgres", "generate-database-credential",
           "projects/default/branches/dev/endpoints/primary"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.err, "arbor: short-lived credentials arrive with the proxy\n");
  EXPECT_EQ(Json::parse(api_.Last("POST", "credentials").body),
            Json::parse(R"({"endpoint": "projects/default/branches/dev/endpoints/primary"})"));

  api_.On("POST", "credentials", 200, R"({"token": "jwt", "expire_time": "2026-11-24T17:00:00Z"})");
  r = Run({"credential", "dev", "--ttl", "15m"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "token    jwt\nexpires  2026-11-24T17:00:00.000000Z\n");
  EXPECT_EQ(Json::parse(api_.Last("POST", "credentials").body)["ttl"], "900s");
}

TEST_F(CliTest, ServerCommandsPlugInAndReportTheirExitCode) {
  bool ran = false;
  auto add = [&](CLI::App& app) {
    auto* up = app.add_subcommand("up", "start the Arbor daemon");
    up->callback([&] {
      ran = true;
      throw CLI::RuntimeError(7);
    });
  };
  auto r = Run({"up"}, add);
  EXPECT_TRUE(ran);
  EXPECT_EQ(r.code, 7);
  EXPECT_EQ(r.err, "");
  r = Run({"down"}, [](CLI::App& app) {
    app.add_subcommand("down", "stop")->callback([] { throw CLI::Success(); });
  });
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.err, "");
  r = Run({"--help"}, add);
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("up "), std::string::npos);
  EXPECT_NE(r.out.find("branch"), std::string::npos);
  EXPECT_NE(r.out.find("Examples:"), std::string::npos);
}

TEST_F(CliTest, BashCompletionCompletesCommandsAndFlags) {
  auto r = Run({"completion", "bash"}, [](CLI::App& app) { app.add_subcommand("up", "start"); });
  ASSERT_EQ(r.code, 0) << r.err;
  char path[] = "/tmp/arbor-completion-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << r.out;
  // What bash offers after `arbor <words...> <cur><TAB>`.
  auto complete = [&](const std::string& words) {
    std::string cmd = std::string("bash -c 'source ") + path + "; COMP_WORDS=(arbor " + words +
                      "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _arbor; echo " +
                      "\"${COMPREPLY[*]}\"' 2>&1";
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[512];
    while (p != nullptr && fgets(buf, sizeof buf, p) != nullptr) out += buf;
    if (p != nullptr) pclose(p);
    return out;
  };
  EXPECT_EQ(complete("br"), "branch\n");
  EXPECT_EQ(complete("u"), "usage up\n");
  EXPECT_EQ(complete("up"), "up\n");
  EXPECT_EQ(complete("branch cr"), "create\n");
  EXPECT_EQ(complete("-o json branch create dev --no"), "--no-expiry\n");
  EXPECT_EQ(complete("postgres gen"), "generate-database-credential\n");
  std::remove(path);
}

}  // namespace
}  // namespace arbor::cli
