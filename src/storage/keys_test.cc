#include "storage/keys.h"

#include <gtest/gtest.h>

namespace arbor::storage::keys {
namespace {

TEST(KeysTest, NewerVersionsSortFirst) {
  std::string a = AttrPrefix(TimelineId(1), InodeId(5)), b = a;
  AppendVersion(&a, Seq(10));
  AppendVersion(&b, Seq(11));
  EXPECT_LT(b, a);
  EXPECT_EQ(VersionOf(a), Seq(10));
  EXPECT_EQ(Unversioned(a), AttrPrefix(TimelineId(1), InodeId(5)));
}

TEST(KeysTest, DirentNamesDoNotInterleave) {
  // Every version of "a" sorts before any key of "a\x01..." or "ab".
  std::string a_old = DirentPrefix(TimelineId(1), InodeId(1), "a");
  AppendVersion(&a_old, Seq(1));
  std::string ab = DirentPrefix(TimelineId(1), InodeId(1), "ab");
  AppendVersion(&ab, Seq(999));
  EXPECT_LT(a_old, ab);
}

TEST(KeysTest, AttrRoundTripsAndRejectsGarbage) {
  Attr a;
  a.kind = FileKind::kSymlink;
  a.mode = 0120777;
  a.uid = 101;
  a.size = 7;
  a.mtime_ns = -5;
  a.symlink_target = "target!";
  auto d = DecodeAttr(EncodeAttr(a));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, a);
  std::string bad = EncodeAttr(a);
  bad.resize(bad.size() - 3);
  EXPECT_EQ(DecodeAttr(bad).status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeAttr("").status().code(), Code::kCorruption);
}

TEST(KeysTest, TimelineRoundTrips) {
  TimelineInfo t;
  t.id = TimelineId(4);
  t.parent = TimelineId(2);
  t.fork_seq = Seq(77);
  t.create_seq = Seq(80);
  t.create_time_us = 123;
  t.fork_time_us = 120;
  t.root = TimelineId(1);
  auto d = DecodeTimeline(EncodeTimeline(t));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->fork_seq, Seq(77));
  EXPECT_EQ(d->root, TimelineId(1));
  EXPECT_EQ(DecodeTimeline("xx").status().code(), Code::kCorruption);
}

}  // namespace
}  // namespace arbor::storage::keys
