#include "cli/render.h"

#include <gtest/gtest.h>

#include "api/names.h"

namespace arbor::cli {
namespace {

const int64_t kNow = 1795536000LL * 1'000'000;  // 2026-11-24T16:00:00Z
const int64_t kMin = 60'000'000;

api::Branch Make(const std::string& id, const std::string& parent, int64_t age_min,
                 std::optional<int64_t> expires_in_min) {
  api::Branch b;
  b.name = "projects/default/branches/" + id;
  b.create_time_us = kNow - age_min * kMin;
  b.status.current_state = "READY";
  b.status.logical_size_bytes = 40960000;
  b.status.written_bytes = 8192;
  if (!parent.empty()) b.status.source_branch = "projects/default/branches/" + parent;
  if (expires_in_min) b.status.expire_time_us = kNow + *expires_in_min * kMin;
  return b;
}

TEST(RenderTable, AlignsColumnsWithoutTrailingSpaces) {
  EXPECT_EQ(RenderTable({"A", "BB"}, {{"xxx", "y"}, {"", "zz"}}),
            "A    BB\n"
            "xxx  y\n"
            "     zz\n");
}

TEST(RenderBranchTree, DrawsParentsAboveChildrenWithDefaultFirst) {
  auto prod = Make("production", "", 600, std::nullopt);
  prod.status.is_default = true;
  prod.spec.is_protected = true;
  prod.status.logical_size_bytes = int64_t{3} << 30;
  prod.status.written_bytes = int64_t{3} << 30;
  auto dev = Make("dev", "production", 65, 55);
  auto fix = Make("dev-fix", "dev", 5, 115);
  auto ci = Make("ci-42", "production", 2, -1);
  auto feature = Make("feature", "dev", 30, std::nullopt);
  auto orphan = Make("lost", "gone", 1, std::nullopt);
  std::map<std::string, std::string> eps = {{prod.name, "ACTIVE"}, {dev.name, "IDLE"}};
  // Input order does not matter.
  std::string out = RenderBranchTree({fix, ci, dev, orphan, feature, prod}, eps, kNow);
  EXPECT_EQ(out,
            "BRANCH                            STATE  COMPUTE  AGE   EXPIRES         LOGICAL   "
            "WRITTEN\n"
            "production (default) [protected]  READY  ACTIVE   10h   never           3.0 GiB   "
            "3.0 GiB\n"
            "├── dev                           READY  IDLE     1h5m  in 55m          39.1 MiB  "
            "8.0 KiB\n"
            "│   ├── feature                   READY  -        30m   never           39.1 MiB  "
            "8.0 KiB\n"
            "│   └── dev-fix                   READY  -        5m    in 1h55m        39.1 MiB  "
            "8.0 KiB\n"
            "└── ci-42                         READY  -        2m    expired 1m ago  39.1 MiB  "
            "8.0 KiB\n"
            "lost                              READY  -        1m    never           39.1 MiB  "
            "8.0 KiB\n")
      << out;
}

TEST(RenderBranchTree, EmptyProjectPrintsTheHeaderOnly) {
  EXPECT_EQ(RenderBranchTree({}, {}, kNow),
            "BRANCH  STATE  COMPUTE  AGE  EXPIRES  LOGICAL  WRITTEN\n");
}

TEST(RenderBranch, ShowsWhereItCameFromAndWhenItExpires) {
  auto dev = Make("dev", "production", 5, 55);
  dev.uid = "br-1";
  dev.status.source_branch_time_us = kNow - 6 * kMin;
  dev.status.source_branch_lsn = Lsn(0x16B3740);
  api::Endpoint ep;
  ep.name = dev.name + "/endpoints/primary";
  ep.status = {"IDLE", "127.0.0.1", 55434, std::nullopt, std::nullopt, std::nullopt};
  EXPECT_EQ(RenderBranch(dev, {ep}, kNow),
            "name              projects/default/branches/dev\n"
            "uid               br-1\n"
            "state             READY\n"
            "default           no\n"
            "protected         no\n"
            "created           2026-11-24T15:55:00.000000Z (5m ago)\n"
            "parent            projects/default/branches/production\n"
            "forked at         2026-11-24T15:54:00.000000Z\n"
            "forked at lsn     0/16B3740\n"
            "expires           2026-11-24T16:55:00.000000Z (in 55m)\n"
            "logical size      39.1 MiB\n"
            "written           8.0 KiB\n"
            "endpoint primary  IDLE 127.0.0.1:55434\n");
}

}  // namespace
}  // namespace arbor::cli
