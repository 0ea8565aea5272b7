#include "api/types.h"

#include <gtest/gtest.h>

namespace arbor::api {
namespace {

// The examples of docs/api.md, verbatim.
const char kBranchJson[] = R"({
  "name": "projects/default/branches/dev",
  "uid": "br-1e2d3c4b5a697887",
  "create_time": "2026-11-24T16:00:00.000000Z",
  "spec": {
    "source_branch": "projects/default/branches/production",
    "source_branch_time": "2026-11-24T15:59:00.000000Z",
    "ttl": "3600s",
    "is_protected": false
  },
  "status": {
    "current_state": "READY",
    "default": false,
    "logical_size_bytes": 40960000,
    "written_bytes": 8192,
    "expire_time": "2026-11-24T17:00:00.000000Z",
    "source_branch": "projects/default/branches/production",
    "source_branch_time": "2026-11-24T15:59:00.000000Z",
    "source_branch_lsn": "0/16B3740"
  }
})";

const char kEndpointJson[] = R"({
  "name": "projects/default/branches/production/endpoints/primary",
  "uid": "ep-0a1b2c3d4e5f6a7b",
  "create_time": "2026-11-24T16:00:00.000000Z",
  "spec": {"endpoint_type": "ENDPOINT_TYPE_READ_WRITE", "suspend_timeout_duration": "300s"},
  "status": {
    "current_state": "ACTIVE",
    "host": "127.0.0.1",
    "port": 55433,
    "connection_string": "postgresql://postgres:PASSWORD@127.0.0.1:55433/postgres"
  }
})";

const char kProjectJson[] = R"({
  "name": "projects/default",
  "uid": "prj-5c1d0b2e8f7a4a6b",
  "create_time": "2026-11-24T16:00:00.000000Z",
  "spec": {"history_retention_duration": "86400s"},
  "status": {"default_branch": "projects/default/branches/production"}
})";

const int64_t k16h = 1795536000LL * 1'000'000;  // 2026-11-24T16:00:00Z

TEST(Types, BranchFromTheDocsReadsAndWritesBackIdentically) {
  auto b = ParseAs<Branch>(kBranchJson, "branch");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->name, "projects/default/branches/dev");
  EXPECT_EQ(b->create_time_us, k16h);
  EXPECT_EQ(b->spec.ttl_s, 3600);
  EXPECT_EQ(b->spec.source_branch_time_us, k16h - 60'000'000);
  EXPECT_FALSE(b->spec.no_expiry.has_value());
  EXPECT_EQ(b->spec.is_protected, false);
  EXPECT_EQ(b->status.current_state, "READY");
  EXPECT_FALSE(b->status.is_default);
  EXPECT_EQ(b->status.logical_size_bytes, 40960000);
  EXPECT_EQ(b->status.written_bytes, 8192);
  EXPECT_EQ(b->status.expire_time_us, k16h + 3'600'000'000);
  EXPECT_EQ(b->status.source_branch_lsn, Lsn(0x16B3740));
  EXPECT_EQ(ToJson(*b), Json::parse(kBranchJson));
}

TEST(Types, EndpointAndProjectFromTheDocsRoundTrip) {
  auto e = ParseAs<Endpoint>(kEndpointJson, "endpoint");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->status.port, 55433);
  EXPECT_EQ(e->spec.suspend_timeout_s, 300);
  EXPECT_EQ(ToJson(*e), Json::parse(kEndpointJson));

  auto p = ParseAs<Project>(kProjectJson, "project");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->spec.history_retention_s, 86400);
  EXPECT_EQ(p->status.default_branch, "projects/default/branches/production");
  EXPECT_EQ(ToJson(*p), Json::parse(kProjectJson));
}

TEST(Types, SpecWritesOnlyTheFieldsThatAreSet) {
  BranchSpec spec;
  spec.no_expiry = true;
  EXPECT_EQ(ToJson(spec).dump(), R"({"no_expiry":true})");
  spec = {};
  spec.source_branch_lsn = Lsn(0x16B3740);
  spec.expire_time_us = k16h;
  EXPECT_EQ(ToJson(spec).dump(),
            R"({"expire_time":"2026-11-24T16:00:00.000000Z","source_branch_lsn":"0/16B3740"})");
  EXPECT_EQ(ToJson(BranchSpec{}).dump(), "{}");
}

TEST(Types, NoExpiryBranchHasNoExpireTime) {
  Branch b;
  b.name = "projects/default/branches/keep";
  b.spec.no_expiry = true;
  Json j = ToJson(b);
  EXPECT_FALSE(j["status"].contains("expire_time"));
  Branch back;
  ASSERT_TRUE(FromJson(j, &back).ok());
  EXPECT_FALSE(back.status.expire_time_us.has_value());
  EXPECT_EQ(back.spec.no_expiry, true);
}

TEST(Types, WrongTypesAreRefusedNamingTheField) {
  auto spec_error = [](const char* text) {
    BranchSpec s;
    return FromJson(Json::parse(text), &s, "spec").message();
  };
  EXPECT_EQ(spec_error(R"({"ttl": 3600})"), "spec.ttl: expected a string, got 3600");
  EXPECT_EQ(spec_error(R"({"ttl": "1h"})"),
            "spec.ttl: '1h' is not a duration in whole seconds (e.g. \"3600s\")");
  EXPECT_EQ(spec_error(R"({"no_expiry": "yes"})"),
            "spec.no_expiry: expected true or false, got \"yes\"");
  EXPECT_EQ(spec_error(R"({"is_protected": 1})"),
            "spec.is_protected: expected true or false, got 1");
  EXPECT_NE(spec_error(R"({"source_branch_time": "yesterday"})")
                .find("spec.source_branch_time: "
                      "'yesterday' is not an RFC"),
            std::string::npos);
  EXPECT_EQ(spec_error(R"({"source_branch_lsn": "16B3740"})"),
            "spec.source_branch_lsn: '16B3740' is not an LSN (e.g. \"0/16B3740\")");
  EXPECT_EQ(spec_error(R"([1, 2])"), "spec: expected an object, got [1,2]");

  Branch b;
  auto st = FromJson(Json::parse(R"({"name": "projects/p/branches/b",
                                     "status": {"logical_size_bytes": "big"}})"),
                     &b);
  EXPECT_EQ(st.message(), "branch.status.logical_size_bytes: expected an integer, got \"big\"");
  st = FromJson(Json::parse(R"({"name": "projects/p/branches/b",
                                "status": {"written_bytes": 1.5}})"),
                &b);
  EXPECT_EQ(st.message(), "branch.status.written_bytes: expected an integer, got 1.5");
  st = FromJson(Json::parse(R"({"uid": "x"})"), &b);
  EXPECT_EQ(st.message(), "branch.name is required");
  Endpoint e;
  st = FromJson(Json::parse(R"({"name": "x", "status": {"port": 70000}})"), &e);
  EXPECT_EQ(st.message(), "endpoint.status.port: 70000 is not a TCP port");
}

TEST(Types, NullIsAbsentAndUnknownFieldsAreIgnored) {
  BranchSpec s;
  ASSERT_TRUE(FromJson(Json::parse(R"({"ttl": null, "future_field": 1})"), &s).ok());
  EXPECT_FALSE(s.ttl_s.has_value());
  EXPECT_EQ(UnknownFields(Json::parse(R"({"ttl": "1s", "tll": "2s"})"),
                          {"ttl", "expire_time", "no_expiry"}, "spec")
                .message(),
            "spec.tll is not a known field");
  EXPECT_TRUE(UnknownFields(Json::parse(R"({"ttl": "1s"})"), {"ttl"}, "spec").ok());
}

TEST(Types, ListsAndSmallBodies) {
  std::vector<Branch> list;
  Json j = Json::parse(std::string(R"({"branches": [)") + kBranchJson + "]}");
  ASSERT_TRUE(FromJsonList(j, "branches", &list).ok());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(ToJsonList("branches", list), j);
  EXPECT_EQ(FromJsonList(Json::parse(R"({"branches": {}})"), "branches", &list).message(),
            "branches: expected an array, got {}");
  EXPECT_EQ(
      FromJsonList(Json::parse(R"({"branches": [{"name": 5}]})"), "branches", &list).message(),
      "branches[0].name: expected a string, got 5");

  auto cred =
      ParseAs<Credential>(R"({"token": "t", "expire_time": "2026-11-24T16:00:00Z"})", "credential");
  ASSERT_TRUE(cred.ok());
  EXPECT_EQ(cred->expire_time_us, k16h);
  EXPECT_EQ(ToJson(CredentialRequest{"projects/p/branches/b/endpoints/primary", 600}).dump(),
            R"({"endpoint":"projects/p/branches/b/endpoints/primary","ttl":"600s"})");

  auto err =
      ParseAs<ApiError>(R"({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "m"})", "error");
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err->error_code, "RESOURCE_DOES_NOT_EXIST");

  auto restore = ParseAs<RestoreResult>(
      std::string(R"({"backup_branch": "projects/default/branches/dev-backup-1", "branch": )") +
          kBranchJson + "}",
      "restore");
  ASSERT_TRUE(restore.ok()) << restore.status().ToString();
  EXPECT_EQ(restore->branch.name, "projects/default/branches/dev");
  EXPECT_FALSE(ParseAs<RestoreResult>(R"({"backup_branch": "x"})", "restore").ok());
}

TEST(Types, DatabaseRoundTripsAndNeedsEveryField) {
  Json j = Json::parse(
      R"({"name": "shop", "owner_name": "app", "branch": "projects/default/branches/dev"})");
  auto d = ParseAs<Database>(j.dump(), "database");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->owner_name, "app");
  EXPECT_EQ(ToJson(*d), j);
  EXPECT_FALSE(ParseAs<Database>(R"({"name": "shop", "branch": "b"})", "database").ok());
  std::vector<Database> list;
  ASSERT_TRUE(FromJsonList(Json{{"databases", Json::array({j})}}, "databases", &list).ok());
  EXPECT_EQ(list.size(), 1u);
}

TEST(Types, DeletedBranchAndUndeleteRoundTrip) {
  Json j = Json::parse(kBranchJson);
  j["status"]["current_state"] = "DELETED";
  j["status"]["deleted"] = true;
  j["status"]["delete_time"] = "2026-11-24T16:30:00.000000Z";
  j["status"]["purge_time"] = "2026-11-25T16:30:00.000000Z";
  Branch b;
  ASSERT_TRUE(FromJson(j, &b).ok());
  EXPECT_TRUE(b.status.deleted);
  ASSERT_TRUE(b.status.purge_time_us.has_value());
  EXPECT_EQ(*b.status.purge_time_us - *b.status.delete_time_us, int64_t{86'400} * 1'000'000);
  EXPECT_EQ(ToJson(b), j);
  // A live branch says nothing of deletion.
  Branch live;
  ASSERT_TRUE(FromJson(Json::parse(kBranchJson), &live).ok());
  EXPECT_FALSE(ToJson(live)["status"].contains("deleted"));

  Json u{{"branch", Json::parse(kBranchJson)},
         {"endpoints", Json::array({Json::parse(kEndpointJson)})},
         {"notes", Json::array({"its expiry had passed"})}};
  UndeleteResult r;
  ASSERT_TRUE(FromJson(u, &r).ok());
  EXPECT_EQ(r.branch.name, "projects/default/branches/dev");
  ASSERT_EQ(r.endpoints.size(), 1u);
  EXPECT_EQ(r.endpoints[0].status.port, 55433);
  EXPECT_EQ(r.notes, std::vector<std::string>{"its expiry had passed"});
  EXPECT_EQ(ToJson(r), u);
  UndeleteResult bad;
  EXPECT_FALSE(FromJson(Json{{"branch", Json::parse(kBranchJson)}, {"notes", 7}}, &bad).ok());
  EXPECT_FALSE(FromJson(Json{{"notes", Json::array()}}, &bad).ok());
}

TEST(Types, ParseJsonObjectRefusesNonObjectsWithoutThrowing) {
  EXPECT_EQ(ParseJsonObject("{", "body").status().message(), "body is not valid JSON");
  EXPECT_EQ(ParseJsonObject("[]", "body").status().message(), "body must be a JSON object, got []");
  EXPECT_EQ(ParseJsonObject("", "body").status().message(), "body is not valid JSON");
  EXPECT_TRUE(ParseJsonObject("{\"spec\": {}}", "body").ok());
}

}  // namespace
}  // namespace arbor::api
