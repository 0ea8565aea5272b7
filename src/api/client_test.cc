#include "api/client.h"

#include <gtest/gtest.h>

#include "api/testing/fake_api.h"

namespace arbor::api {
namespace {

using testing::FakeApi;

const char kBranch[] = R"({"name": "projects/default/branches/dev", "uid": "br-1",
  "create_time": "2026-11-24T16:00:00.000000Z",
  "spec": {"source_branch": "projects/default/branches/production", "ttl": "3600s"},
  "status": {"current_state": "READY", "default": false, "logical_size_bytes": 40960000,
             "written_bytes": 8192, "expire_time": "2026-11-24T17:00:00.000000Z",
             "source_branch": "projects/default/branches/production",
             "source_branch_time": "2026-11-24T16:00:00.000000Z"}})";

class ClientTest : public ::testing::Test {
 protected:
  FakeApi api_;
  ApiClient client_{ClientOptions{api_.url(), "secret-token"}};
  BranchName dev_{"default", "dev"};
};

TEST_F(ClientTest, CreateBranchSendsTheSpecAndTheTokenAndReadsTheAnswer) {
  api_.On("POST", "projects/default/branches", 200, kBranch);
  BranchSpec spec;
  spec.source_branch = "projects/default/branches/production";
  spec.ttl_s = 3600;
  auto b = client_.CreateBranch("default", "dev", spec);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->name, "projects/default/branches/dev");
  EXPECT_EQ(b->status.logical_size_bytes, 40960000);

  auto req = api_.Last("POST", "projects/default/branches");
  EXPECT_EQ(req.authorization, "Bearer secret-token");
  EXPECT_EQ(req.params["branch_id"], "dev");
  EXPECT_EQ(Json::parse(req.body),
            Json::parse(R"({"spec": {"source_branch": "projects/default/branches/production",
                                     "ttl": "3600s"}})"));
}

TEST_F(ClientTest, ServerErrorsKeepTheServersMessageAndMapTheCode) {
  struct Case {
    int http;
    const char* error_code;
    Code code;
  } cases[] = {
      {400, "INVALID_PARAMETER_VALUE", Code::kInvalidArgument},
      {400, "FAILED_PRECONDITION", Code::kFailedPrecondition},
      {400, "OUT_OF_RANGE", Code::kOutOfRange},
      {401, "UNAUTHENTICATED", Code::kFailedPrecondition},
      {404, "RESOURCE_DOES_NOT_EXIST", Code::kNotFound},
      {409, "RESOURCE_ALREADY_EXISTS", Code::kAlreadyExists},
      {503, "TEMPORARILY_UNAVAILABLE", Code::kResourceExhausted},
      {500, "INTERNAL_ERROR", Code::kInternal},
      {501, "NOT_IMPLEMENTED", Code::kInternal},
      {418, "SOMETHING_NEW", Code::kInvalidArgument},
  };
  for (const auto& c : cases) {
    api_.On("GET", "projects/default/branches/dev", c.http,
            Json{{"error_code", c.error_code}, {"message", std::string("why: ") + c.error_code}}
                .dump());
    auto b = client_.GetBranch(dev_);
    ASSERT_FALSE(b.ok()) << c.error_code;
    EXPECT_EQ(b.status().code(), c.code) << c.error_code;
    EXPECT_EQ(b.status().message(), std::string("why: ") + c.error_code);
  }
}

TEST_F(ClientTest, ANonJsonErrorBodyIsReportedWithItsHttpStatus) {
  api_.On("GET", "status", 502, "<html>bad gateway</html>");
  auto st = client_.GetStatus();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), Code::kInternal);
  EXPECT_EQ(st.status().message(),
            "HTTP 502 from GET /api/2.0/postgres/status: '<html>bad gateway</html>'");
}

TEST_F(ClientTest, AnAnswerThatIsNotAsDocumentedIsInternal) {
  api_.On("GET", "projects/default/branches/dev", 200, R"({"name": 7})");
  auto b = client_.GetBranch(dev_);
  EXPECT_EQ(b.status().code(), Code::kInternal);
  EXPECT_EQ(b.status().message(),
            "the Arbor API's answer to GET projects/default/branches/dev is not as documented: "
            "branch.name: expected a string, got 7");
  api_.On("GET", "projects/default/branches", 200, "not json");
  auto list = client_.ListBranches("default");
  EXPECT_EQ(list.status().code(), Code::kInternal);
}

TEST_F(ClientTest, ListsResetRestoreEndpointsAndCredentials) {
  api_.On("GET", "projects/default/branches", 200,
          std::string(R"({"branches": [)") + kBranch + "]}");
  auto list = client_.ListBranches("default");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 1u);

  api_.On("POST", "projects/default/branches/dev:reset", 200, kBranch);
  PointInTime at;
  at.source_branch_time_us = 1795536000LL * 1'000'000;
  ASSERT_TRUE(client_.ResetBranch(dev_, at).ok());
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/dev:reset").body,
            R"({"source_branch_time":"2026-11-24T16:00:00.000000Z"})");
  ASSERT_TRUE(client_.ResetBranch(dev_, {}).ok());
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/dev:reset").body, "{}");

  api_.On("POST", "projects/default/branches/dev:restore", 200,
          std::string(R"({"backup_branch": "projects/default/branches/dev-backup-x", "branch": )") +
              kBranch + "}");
  PointInTime lsn;
  lsn.source_branch_lsn = Lsn(0x16B3740);
  auto r = client_.RestoreBranch(dev_, lsn);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->backup_branch, "projects/default/branches/dev-backup-x");
  EXPECT_EQ(api_.Last("POST", "projects/default/branches/dev:restore").body,
            R"({"source_branch_lsn":"0/16B3740"})");

  const char kEp[] = R"({"name": "projects/default/branches/dev/endpoints/primary",
    "status": {"current_state": "ACTIVE", "host": "127.0.0.1", "port": 55434,
               "connection_string": "postgresql://postgres:pw@127.0.0.1:55434/postgres"}})";
  api_.On("POST", "projects/default/branches/dev/endpoints/primary:start", 200, kEp);
  auto e = client_.StartEndpoint({"default", "dev", "primary"});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->status.port, 55434);

  api_.On("POST", "credentials", 200, R"({"token": "jwt", "expire_time": "2026-11-24T17:00:00Z"})");
  auto cred = client_.GenerateCredential({"projects/default/branches/dev/endpoints/primary", 600});
  ASSERT_TRUE(cred.ok());
  EXPECT_EQ(cred->token, "jwt");
  EXPECT_EQ(Json::parse(api_.Last("POST", "credentials").body),
            Json::parse(R"({"endpoint": "projects/default/branches/dev/endpoints/primary",
                            "ttl": "600s"})"));

  api_.On("DELETE", "projects/default/branches/dev", 200, "{}");
  EXPECT_TRUE(client_.DeleteBranch(dev_).ok());
}

TEST_F(ClientTest, ChangedPagesSendsTheOtherEndpointAndReadsTheRanges) {
  api_.On("GET", "projects/default/branches/production/endpoints/primary/changed_pages", 200,
          R"({"complete": true, "databases": [{"oid": 5, "relations": [
                {"relfilenode": 16384, "whole": false, "pages": [[0, 0], [3, 7]]},
                {"relfilenode": 16390, "whole": true, "pages": []}]}]})");
  EndpointName prod{"default", "production", "primary"};
  EndpointName dev{"default", "dev", "primary"};
  auto cp = client_.GetChangedPages(prod, dev);
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  EXPECT_TRUE(cp->complete);
  ASSERT_EQ(cp->databases.count(5), 1u);
  const auto& rels = cp->databases.at(5);
  ASSERT_EQ(rels.size(), 2u);
  EXPECT_EQ(rels[0].relfilenode, 16384u);
  EXPECT_FALSE(rels[0].whole);
  EXPECT_EQ(rels[0].pages, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 0}, {3, 7}}));
  EXPECT_TRUE(rels[1].whole);
  auto req =
      api_.Last("GET", "projects/default/branches/production/endpoints/primary/changed_pages");
  EXPECT_EQ(req.params["against"], "projects/default/branches/dev/endpoints/primary");

  api_.On("GET", "projects/default/branches/production/endpoints/primary/changed_pages", 200,
          R"({"complete": false, "reason": "older than the change index", "databases": []})");
  cp = client_.GetChangedPages(prod, dev);
  ASSERT_TRUE(cp.ok());
  EXPECT_FALSE(cp->complete);
  EXPECT_EQ(cp->reason, "older than the change index");
  api_.On("GET", "projects/default/branches/production/endpoints/primary/changed_pages", 200,
          R"({"complete": true, "databases": [{"oid": 5, "relations": [{"relfilenode": -1,
              "pages": []}]}]})");
  EXPECT_EQ(client_.GetChangedPages(prod, dev).status().code(), Code::kInternal);
}

TEST_F(ClientTest, AnUpdateSendsItsMask) {
  api_.On("PATCH", "projects/default/branches/dev", 200, kBranch);
  BranchSpec spec;
  spec.is_protected = true;
  ASSERT_TRUE(client_.UpdateBranch(dev_, spec, "spec.is_protected").ok());
  auto req = api_.Last("PATCH", "projects/default/branches/dev");
  EXPECT_EQ(req.params["update_mask"], "spec.is_protected");
  EXPECT_EQ(req.body, R"({"spec":{"is_protected":true}})");
}

TEST(ClientUnreachable, ConnectionRefusedIsUnavailableWithAHint) {
  std::string url;
  {
    FakeApi gone;
    url = gone.url();
  }  // the port is closed now
  ApiClient client(ClientOptions{url, "t"});
  auto st = client.GetStatus();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), Code::kUnavailable);
  EXPECT_EQ(st.status().message(), "cannot connect to the Arbor API at " + url +
                                       ": is the Arbor daemon running? start it with `arbor up`");
}

TEST(ClientUnreachable, ABadBaseUrlIsInvalidArgument) {
  ApiClient client(ClientOptions{"127.0.0.1:8432", "t"});
  auto st = client.GetStatus();
  EXPECT_EQ(st.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(st.status().message(),
            "the API address '127.0.0.1:8432' must look like http://127.0.0.1:8432");
}

TEST(ClientPrefix, ABaseUrlWithAPathKeepsIt) {
  FakeApi api;
  api.On("GET", "status", 200, R"({"version": "0.1.0", "pid": 7})");
  ApiClient client(ClientOptions{api.url() + "/", ""});
  auto st = client.GetStatus();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->pid, 7);
  EXPECT_EQ(api.Last("GET", "status").authorization, "");
}

}  // namespace
}  // namespace arbor::api
