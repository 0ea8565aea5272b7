#include "storage/keys.h"

#include <gtest/gtest.h>

#include <algorithm>

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

TEST(KeysTest, ChangeRecordsRoundTripCompactlyAndRejectGarbage) {
  std::vector<ChangeEntry> in;
  for (uint64_t b = 0; b < 128; ++b) in.push_back(BlockChange(InodeId(70000), 1000 + b));
  in.push_back(AttrChange(InodeId(70000)));
  in.push_back(BlockChange(InodeId(5), ~uint64_t{0} - 1));  // the largest block number
  in.push_back(AttrChange(InodeId(3)));
  in.push_back(BlockChange(InodeId(70000), 1000));  // a duplicate
  std::vector<ChangeEntry> want = in;
  std::sort(want.begin(), want.end());
  want.erase(std::unique(want.begin(), want.end()), want.end());
  std::string v = EncodeChanges(&in);
  EXPECT_EQ(in, want);
  EXPECT_LT(v.size(), 2 * 128 + 32u) << "a run of blocks should cost about 2 bytes a block";
  std::vector<ChangeEntry> out;
  ASSERT_TRUE(DecodeChanges(v, &out).ok());
  EXPECT_EQ(out, want);

  std::vector<ChangeEntry> none;
  out.clear();
  ASSERT_TRUE(DecodeChanges(EncodeChanges(&none), &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(DecodeChanges("", &out).code(), Code::kCorruption);
  EXPECT_EQ(DecodeChanges(std::string("\x02", 1), &out).code(), Code::kCorruption);
  EXPECT_EQ(DecodeChanges(v.substr(0, v.size() - 1), &out).code(), Code::kCorruption);
  EXPECT_EQ(DecodeChanges(std::string("\x01\x80", 2), &out).code(), Code::kCorruption);
  // A change key sorts with its timeline's index keys, by seq.
  EXPECT_LT(ChangeKey(TimelineId(1), Seq(9)), ChangeKey(TimelineId(1), Seq(10)));
  EXPECT_EQ(ChangeKey(TimelineId(1), Seq(9)).size(), TimeKey(TimelineId(1), Seq(9)).size());
}

}  // namespace
}  // namespace arbor::storage::keys
