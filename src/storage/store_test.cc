#include "storage/store.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "storage/keys.h"

namespace arbor::storage {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kDay = 86'400'000'000;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "arbor-store-test-XXXXXX").string();
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

std::unique_ptr<Store> OpenStore(const std::string& path, bool gc = false) {
  Store::Options o;
  o.path = path;
  o.background_gc = gc;
  o.block_cache_bytes = 16 << 20;
  o.wal_prefill_bytes = 1 << 20;  // as the crash writer's, so the spare is shared
  auto s = Store::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

std::string Block(char fill, size_t n = kBlockSize) { return std::string(n, fill); }

// Writes a whole regular file `ino` of `content` (attr + blocks) in one mutation, which
// also marks the timeline's WAL as reaching `wal_end` (when not 0).
Seq WriteFile(Store& st, TimelineId tl, InodeId ino, const std::string& content,
              Lsn wal_end = Lsn()) {
  Mutation m;
  m.MarkWalEnd(wal_end);
  Attr a;
  a.mode = 0100644;
  a.size = content.size();
  m.PutAttr(ino, a);
  for (size_t off = 0; off < content.size(); off += kBlockSize) {
    size_t n = std::min<size_t>(kBlockSize, content.size() - off);
    m.PutBlock(ino, off / kBlockSize, std::span<const char>(content.data() + off, n));
  }
  auto r = st.Apply(tl, std::move(m));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Seq(0);
}

std::string Read(Store& st, TimelineId tl, InodeId ino, Seq at = kSeqMax) {
  auto r = st.ReadFile(tl, at, ino, 0, 1 << 30);
  return r.ok() ? *r : "<" + r.status().ToString() + ">";
}

TEST(StoreTest, BranchIsolationBothWays) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  auto root = st->CreateRoot(kDay);
  ASSERT_TRUE(root.ok());
  InodeId f = *st->AllocateInode();
  WriteFile(*st, *root, f, "parent-v1");
  auto child = st->Branch(*root, st->Head());
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  auto sibling = st->Branch(*root, st->Head());
  ASSERT_TRUE(sibling.ok());

  WriteFile(*st, *child, f, "child-v2");
  WriteFile(*st, *root, f, "parent-v3");
  EXPECT_EQ(Read(*st, *child, f), "child-v2");
  EXPECT_EQ(Read(*st, *root, f), "parent-v3");
  EXPECT_EQ(Read(*st, *sibling, f), "parent-v1");

  // A file made on the child does not exist on the parent or the sibling.
  InodeId g = *st->AllocateInode();
  Mutation m;
  m.PutDirent(kRootInode, "only-on-child", g, FileKind::kRegular);
  ASSERT_TRUE(st->Apply(*child, std::move(m)).ok());
  WriteFile(*st, *child, g, "x");
  EXPECT_TRUE(st->Lookup(*child, kSeqMax, kRootInode, "only-on-child")->has_value());
  EXPECT_FALSE(st->Lookup(*root, kSeqMax, kRootInode, "only-on-child")->has_value());
  EXPECT_FALSE(st->Lookup(*sibling, kSeqMax, kRootInode, "only-on-child")->has_value());
  EXPECT_FALSE(st->GetAttr(*root, kSeqMax, g)->has_value());
}

TEST(StoreTest, HundredDeepChainSeesEachLevelsOwnWrites) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId tl = *st->CreateRoot(kDay);
  std::vector<TimelineId> chain{tl};
  std::vector<InodeId> files;
  InodeId z = *st->AllocateInode();
  for (int i = 0; i < 100; ++i) {
    InodeId f = *st->AllocateInode();
    files.push_back(f);
    WriteFile(*st, chain.back(), f, "level-" + std::to_string(i));
    // Every level also overwrites z, so each level sees a different version of it.
    WriteFile(*st, chain.back(), z, "zero@" + std::to_string(i));
    auto next = st->Branch(chain.back(), st->Head());
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    chain.push_back(*next);
  }
  for (int i = 0; i < 100; ++i) {
    // Level i sees files 0..i, file 0 as written at level i, and nothing made later.
    EXPECT_EQ(Read(*st, chain[i], files[i]), "level-" + std::to_string(i));
    EXPECT_EQ(Read(*st, chain[i], z), "zero@" + std::to_string(i));
    if (i + 1 < 100) {
      EXPECT_FALSE(st->GetAttr(chain[i], kSeqMax, files[i + 1])->has_value());
    }
  }
  EXPECT_EQ(Read(*st, chain[100], z), "zero@99");
  WriteFile(*st, chain[100], files[50], "deepest");
  EXPECT_EQ(Read(*st, chain[50], files[50]), "level-50");
  EXPECT_EQ(Read(*st, chain[100], files[50]), "deepest");
}

TEST(StoreTest, ReadsAtPastSeqsReturnExactlyWhatWasThere) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId tl = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  std::mt19937 rng(7);
  std::vector<std::pair<Seq, std::string>> history;
  std::string content;
  for (int i = 0; i < 300; ++i) {
    size_t off = rng() % (4 * kBlockSize);
    size_t len = 1 + rng() % (2 * kBlockSize);
    if (content.size() < off + len) content.resize(off + len, '\0');
    for (size_t j = 0; j < len; ++j) content[off + j] = static_cast<char>('a' + rng() % 26);
    if (rng() % 5 == 0) content.resize(rng() % content.size());  // shrink sometimes
    Mutation m;
    Attr a;
    a.mode = 0100600;
    auto cur = st->GetAttr(tl, kSeqMax, f);
    uint64_t old_size = cur->has_value() ? (*cur)->size : 0;
    ASSERT_TRUE(st->AddTruncate(tl, f, old_size, content.size(), &m).ok());
    a.size = content.size();
    m.PutAttr(f, a);
    for (size_t b = 0; b * kBlockSize < content.size(); ++b) {
      size_t n = std::min<size_t>(kBlockSize, content.size() - b * kBlockSize);
      m.PutBlock(f, b, std::span<const char>(content.data() + b * kBlockSize, n));
    }
    auto seq = st->Apply(tl, std::move(m));
    ASSERT_TRUE(seq.ok());
    history.emplace_back(*seq, content);
  }
  for (auto& [seq, expect] : history) ASSERT_EQ(Read(*st, tl, f, seq), expect) << seq.value();
  EXPECT_FALSE(st->GetAttr(tl, Seq(history[0].first.value() - 1), f)->has_value());
}

// A block is stored without its trailing zeros (Mutation::PutBlock): whatever the last
// non-zero byte's position, relative to the eight-byte steps of the scan, the block reads
// back exactly, and an all-zero block reads back as zeros.
TEST(StoreTest, BlocksWithTrailingZerosReadBackExactly) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId ino = *st->AllocateInode();
  const std::vector<size_t> last = {0, 1, 6, 7, 8, 9, 15, 16, 17, 4095, 8183, 8184, 8190, 8191};
  std::vector<std::string> blocks;
  Mutation m;
  for (size_t i = 0; i < last.size(); ++i) {
    std::string b(kBlockSize, '\0');
    b[last[i]] = static_cast<char>(1 + i);
    if (last[i] > 2) b[last[i] / 2] = 'm';  // a non-zero byte before the zeros in the middle
    blocks.push_back(b);
    m.PutBlock(ino, i, std::span<const char>(b));
  }
  blocks.emplace_back(kBlockSize, '\0');
  m.PutBlock(ino, last.size(), std::span<const char>(blocks.back()));
  ASSERT_TRUE(st->Apply(root, std::move(m)).ok());
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::string got(kBlockSize, 'x');
    ASSERT_TRUE(st->ReadBlock(root, kSeqMax, ino, i, std::span<char>(got)).ok());
    EXPECT_EQ(got, blocks[i]) << "block " << i;
  }
}

TEST(StoreTest, StoredSizeIsUpToTheLastNonZeroByte) {
  // (What the compute's write budget charges: arborfs's BudgetBytes.)
  for (size_t last : {0, 1, 6, 7, 8, 9, 15, 16, 17, 4095, 8183, 8184, 8190, 8191}) {
    std::string b(kBlockSize, '\0');
    b[last] = 'x';
    EXPECT_EQ(StoredSize(std::span<const char>(b)), last + 1) << last;
  }
  EXPECT_EQ(StoredSize(std::span<const char>(std::string(kBlockSize, '\0'))), 0u);
  EXPECT_EQ(StoredSize(std::span<const char>()), 0u);
}

TEST(StoreTest, TruncateThenExtendReadsZerosOnBranchAndParent) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  std::string data = Block('x', 3 * kBlockSize + 100);
  WriteFile(*st, root, f, data);
  TimelineId child = *st->Branch(root, st->Head());

  for (TimelineId tl : {child, root}) {
    Mutation m;
    ASSERT_TRUE(st->AddTruncate(tl, f, data.size(), 10, &m).ok());
    Attr a;
    a.mode = 0100644;
    a.size = 10;
    m.PutAttr(f, a);
    ASSERT_TRUE(st->Apply(tl, std::move(m)).ok());
    Mutation grow;
    a.size = data.size();  // extend without writing
    grow.PutAttr(f, a);
    ASSERT_TRUE(st->Apply(tl, std::move(grow)).ok());
    EXPECT_EQ(Read(*st, tl, f), std::string(10, 'x') + std::string(data.size() - 10, '\0'))
        << "timeline " << tl.value();
  }
}

TEST(StoreTest, RenameReplacingTargetIsOneStep) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId tl = *st->CreateRoot(kDay);
  InodeId a = *st->AllocateInode(), b = *st->AllocateInode();
  Mutation m;
  m.PutDirent(kRootInode, "a", a, FileKind::kRegular);
  m.PutDirent(kRootInode, "b", b, FileKind::kRegular);
  Seq before = *st->Apply(tl, std::move(m));
  Mutation rename;
  rename.DeleteDirent(kRootInode, "a");
  rename.PutDirent(kRootInode, "b", a, FileKind::kRegular);
  rename.DeleteAttr(b);
  Seq after = *st->Apply(tl, std::move(rename));
  EXPECT_EQ(after.value(), before.value() + 1);  // one seq: no state in between exists
  auto old_names = *st->ReadDir(tl, before, kRootInode);
  auto new_names = *st->ReadDir(tl, after, kRootInode);
  ASSERT_EQ(old_names.size(), 2u);
  ASSERT_EQ(new_names.size(), 1u);
  EXPECT_EQ(new_names[0], (DirEntry{"b", a, FileKind::kRegular}));
}

TEST(StoreTest, ReadDirMergesAncestryAndHonoursDeletes) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  Mutation m;
  for (std::string n : {"base", "gone", "kept"}) {
    m.PutDirent(kRootInode, n, *st->AllocateInode(), FileKind::kRegular);
  }
  ASSERT_TRUE(st->Apply(root, std::move(m)).ok());
  TimelineId child = *st->Branch(root, st->Head());
  Mutation c;
  c.DeleteDirent(kRootInode, "gone");
  c.PutDirent(kRootInode, "added", *st->AllocateInode(), FileKind::kDirectory);
  ASSERT_TRUE(st->Apply(child, std::move(c)).ok());
  std::vector<std::string> names;
  auto entries = st->ReadDir(child, kSeqMax, kRootInode);
  ASSERT_TRUE(entries.ok());
  for (auto& e : *entries) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"added", "base", "kept"}));
  EXPECT_EQ(st->ReadDir(root, kSeqMax, kRootInode)->size(), 3u);
}

TEST(StoreTest, TimeIndexMapsBothWays) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  int64_t t0 = 1'700'000'000'000'000;
  st->SetClockForTesting(t0);
  TimelineId tl = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  std::vector<Seq> seqs;
  for (int i = 1; i <= 10; ++i) {
    st->SetClockForTesting(t0 + i * 1000);
    seqs.push_back(WriteFile(*st, tl, f, "v" + std::to_string(i)));
  }
  st->SetClockForTesting(t0 + 20'000);
  for (int i = 1; i <= 10; ++i) {
    EXPECT_EQ(*st->SeqAtTime(tl, t0 + i * 1000), seqs[i - 1]);
    EXPECT_EQ(*st->SeqAtTime(tl, t0 + i * 1000 + 999), seqs[i - 1]);
    EXPECT_EQ(*st->TimeOfSeq(tl, seqs[i - 1]), t0 + i * 1000);
  }
  EXPECT_EQ(Read(*st, tl, f, *st->SeqAtTime(tl, t0 + 5500)), "v5");
  // The future and before creation are refused, naming the allowed range.
  auto future = st->SeqAtTime(tl, t0 + 30'000);
  EXPECT_EQ(future.status().code(), Code::kOutOfRange);
  EXPECT_NE(future.status().message().find("allowed range"), std::string::npos);
  EXPECT_EQ(st->SeqAtTime(tl, t0 - 1).status().code(), Code::kOutOfRange);
  // A child with no writes of its own answers with its fork point.
  TimelineId child = *st->Branch(tl, seqs[3]);
  EXPECT_EQ(Read(*st, child, f), "v4");
  EXPECT_EQ(*st->TimeOfSeq(child, seqs[3]), t0 + 4000);
}

TEST(StoreTest, WalMarksMapLsnToTheFirstSeqThatReachedIt) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId tl = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  std::vector<Seq> seqs;
  for (uint64_t end : {0x1000, 0x2000, 0x3000}) {
    Mutation m;
    m.PutBlock(f, end / 0x1000, std::span<const char>("wal", 3));
    m.MarkWalEnd(Lsn(end));
    seqs.push_back(*st->Apply(tl, std::move(m)));
  }
  EXPECT_EQ(*st->SeqAtLsn(tl, Lsn(0x0800)), seqs[0]);
  EXPECT_EQ(*st->SeqAtLsn(tl, Lsn(0x1000)), seqs[0]);
  EXPECT_EQ(*st->SeqAtLsn(tl, Lsn(0x1001)), seqs[1]);
  EXPECT_EQ(*st->SeqAtLsn(tl, Lsn(0x3000)), seqs[2]);
  auto past = st->SeqAtLsn(tl, Lsn(0x3001));
  EXPECT_EQ(past.status().code(), Code::kOutOfRange);
  EXPECT_NE(past.status().message().find("0/3000"), std::string::npos) << past.status().message();
  // A branch's WAL continues its parent's up to the fork; the parent's later WAL is not its.
  TimelineId child = *st->Branch(tl, seqs[1]);
  EXPECT_EQ(*st->SeqAtLsn(child, Lsn(0x1800)), seqs[1]);
  EXPECT_EQ(st->SeqAtLsn(child, Lsn(0x2800)).status().code(), Code::kOutOfRange);
}

TEST(StoreTest, CatalogKeysChangeAtomicallyWithTimelines) {
  TempDir dir;
  TimelineId child;
  {
    auto st = OpenStore(dir.path());
    TimelineId root = *st->CreateRoot(kDay);
    ASSERT_TRUE(st->WriteMeta({{"project/p", "root"}}).ok());
    auto b = st->Branch(root, st->Head(), [](TimelineId id) {
      return MetaWrites{{"branch/p/dev", "timeline " + id.ToString()}};
    });
    ASSERT_TRUE(b.ok());
    child = *b;
    auto rows = *st->ScanMeta("branch/");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].first, "branch/p/dev");
    EXPECT_EQ(rows[0].second, "timeline " + child.ToString());
  }
  // Synced: present after reopen, with its timeline.
  auto st = OpenStore(dir.path());
  EXPECT_EQ(st->ScanMeta("")->size(), 2u);
  EXPECT_TRUE(st->GetTimeline(child).ok());
  ASSERT_TRUE(st->DeleteTimeline(child, {{"branch/p/dev", std::nullopt}}).ok());
  EXPECT_TRUE(st->ScanMeta("branch/")->empty());
  EXPECT_EQ(st->ScanMeta("project/")->size(), 1u);
}

TEST(StoreTest, WrongRequestsGetClearErrorsAndChangeNothing) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  WriteFile(*st, root, f, "precious");
  TimelineId child = *st->Branch(root, st->Head());

  auto past_head = st->Branch(root, Seq(st->Head().value() + 5));
  EXPECT_EQ(past_head.status().code(), Code::kOutOfRange);
  EXPECT_EQ(st->Branch(TimelineId(999), st->Head()).status().code(), Code::kNotFound);
  Status del = st->DeleteTimeline(root);
  EXPECT_EQ(del.code(), Code::kFailedPrecondition);
  EXPECT_NE(del.message().find("children"), std::string::npos);
  EXPECT_EQ(st->Apply(TimelineId(999), Mutation()).status().code(), Code::kNotFound);
  Mutation bad;
  bad.PutDirent(kRootInode, "a/b", f, FileKind::kRegular);
  EXPECT_EQ(st->Apply(root, std::move(bad)).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(st->CreateRoot(0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(st->SetHistoryWindow(child, kDay).code(), Code::kInvalidArgument);

  EXPECT_EQ(Read(*st, root, f), "precious");
  EXPECT_EQ(Read(*st, child, f), "precious");
  EXPECT_EQ(st->ListTimelines().size(), 2u);

  // Deleting the leaf works, and frees its range; the parent is untouched.
  WriteFile(*st, child, f, "child data");
  ASSERT_TRUE(st->DeleteTimeline(child).ok());
  EXPECT_EQ(st->GetTimeline(child).status().code(), Code::kNotFound);
  EXPECT_EQ(Read(*st, root, f), "precious");
  EXPECT_TRUE(st->DeleteTimeline(root).ok());
}

// The compaction that frees a deleted timeline's space runs after DeleteTimeline returned,
// and writers of other timelines do not wait for it: the test holds the compaction open.
TEST(StoreTest, DeleteReturnsAndOthersWriteWhileItsCompactionRuns) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  WriteFile(*st, root, f, "kept");
  TimelineId child = *st->Branch(root, st->Head());
  for (int i = 0; i < 64; ++i) WriteFile(*st, child, f, Block('c', 16 * kBlockSize));
  ASSERT_TRUE(st->Sync(child).ok());

  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  TimelineId compacted;
  st->SetCompactionHookForTesting([&](TimelineId id) {
    std::unique_lock l(mu);
    entered = true;
    compacted = id;
    cv.notify_all();
    cv.wait(l, [&] { return release; });
  });
  auto let_go = [&] {
    std::lock_guard l(mu);
    release = true;
    cv.notify_all();
  };
  ASSERT_TRUE(st->DeleteTimeline(child, {{"branch/p/dev", std::nullopt}}).ok());
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(30), [&] { return entered; }));
  }
  EXPECT_EQ(compacted, child);
  EXPECT_EQ(st->GetTimeline(child).status().code(), Code::kNotFound);
  // While the compaction is held open: another timeline writes, syncs and branches.
  auto other = std::async(std::launch::async, [&] {
    WriteFile(*st, root, f, "written meanwhile");
    return st->Sync(root).ok() && st->Branch(root, st->Head()).ok();
  });
  bool prompt = other.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  let_go();
  EXPECT_TRUE(prompt) << "a write of another timeline waited for the delete's compaction";
  EXPECT_TRUE(other.get());
  st->WaitForCompactions();
  EXPECT_EQ(Read(*st, root, f), "written meanwhile");
}

TEST(StoreTest, BranchBelowHorizonIsRefused) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  int64_t t0 = 1'700'000'000'000'000;
  st->SetClockForTesting(t0);
  TimelineId tl = *st->CreateRoot(3'600'000'000);  // one hour
  InodeId f = *st->AllocateInode();
  Seq older = WriteFile(*st, tl, f, "older");
  Seq old = WriteFile(*st, tl, f, "old");
  st->SetClockForTesting(t0 + 2 * 3'600'000'000);
  WriteFile(*st, tl, f, "new");
  st->SetClockForTesting(t0 + 2 * 3'600'000'000 + 10);
  // The state at the horizon's time is still there; anything older is not.
  EXPECT_EQ(*st->Horizon(tl), old);
  EXPECT_TRUE(st->Branch(tl, old).ok());
  auto r = st->Branch(tl, older);
  EXPECT_EQ(r.status().code(), Code::kOutOfRange);
  EXPECT_NE(r.status().message().find("horizon"), std::string::npos);
}

// Security finding 9. GC drops what the window no longer covers; raising the window
// afterwards (PATCH history_retention_duration) used to make that collected history look
// branchable again, and a branch there forked at a state that never existed. The GC floor
// refuses it, on the root and on its children, by time and by LSN, also after a restart.
TEST(StoreTest, RaisingTheWindowDoesNotMakeCollectedHistoryBranchable) {
  TempDir dir;
  const int64_t t0 = 1'700'000'000'000'000, hour = 3'600'000'000;
  auto at = [&](double hours) { return t0 + static_cast<int64_t>(hours * hour); };
  TimelineId root, child;
  InodeId f, g;
  std::vector<Seq> v;  // the root's versions of f, an hour apart: "v0" at 0h ... "v5" at 5h
  {
    auto st = OpenStore(dir.path());
    st->SetClockForTesting(at(0));
    root = *st->CreateRoot(hour);
    f = *st->AllocateInode();
    g = *st->AllocateInode();
    v.push_back(WriteFile(*st, root, f, "v0", Lsn(0x1000)));
    st->SetClockForTesting(at(0.5));
    child = *st->Branch(root, v[0]);
    for (int i = 1; i <= 5; ++i) {
      st->SetClockForTesting(at(i));
      v.push_back(WriteFile(*st, root, f, "v" + std::to_string(i), Lsn(0x1000 * (i + 1))));
      st->SetClockForTesting(at(i + 0.2));
      WriteFile(*st, child, g, "c" + std::to_string(i));
    }
    // A one-hour window at 5.5h: states before 4.5h go, and with them v0..v3 (v0 stays for
    // the child's fork) and the child's c1..c3.
    st->SetClockForTesting(at(5.5));
    auto dropped = st->RunGc();
    ASSERT_TRUE(dropped.ok()) << dropped.status().ToString();
    ASSERT_GT(*dropped, 0u);
    ASSERT_TRUE(st->SetHistoryWindow(root, 24 * hour).ok());
  }
  std::string floor = FormatRfc3339(at(4.5));
  auto refused = [&](const Result<Seq>& r, const std::string& what) {
    EXPECT_EQ(r.status().code(), Code::kOutOfRange) << what << " was accepted";
    EXPECT_NE(r.status().message().find("earliest time still available, " + floor),
              std::string::npos)
        << what << ": " << r.status().message();
    EXPECT_NE(r.status().message().find("history window 24h"), std::string::npos)
        << what << ": " << r.status().message();
  };
  auto check = [&](Store& st) {
    // Collected: refused, naming the earliest time still available.
    refused(st.SeqAtTime(root, at(2)), "a time on the root before the floor");
    if (auto s2 = st.SeqAtTime(root, at(2)); s2.ok()) {  // what accepting it used to give
      EXPECT_EQ(Read(st, root, f, *s2), "v2") << "the state at 2h never existed";
    }
    refused(st.SeqAtTime(root, at(4.5) - 1), "a time on the root just before the floor");
    refused(st.SeqAtTime(child, at(2)), "a time on the child before the floor");
    refused(st.SeqAtLsn(root, Lsn(0x2000)), "an LSN the root reached before the floor");
    auto below = st.Branch(root, v[2]);
    EXPECT_EQ(below.status().code(), Code::kOutOfRange) << "a branch at a collected seq";
    EXPECT_NE(below.status().message().find(floor), std::string::npos) << below.status().message();
    auto range = st.TimeRange(root);
    ASSERT_TRUE(range.ok());
    EXPECT_EQ(range->first, at(4.5));
    // Still there: the state at the floor and after it, exactly.
    auto s = st.SeqAtTime(root, at(4.5));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ(*s, v[4]);
    EXPECT_EQ(Read(st, root, f, *s), "v4");
    EXPECT_EQ(Read(st, root, f, *st.SeqAtTime(root, at(5.2))), "v5");
    EXPECT_EQ(*st.SeqAtLsn(root, Lsn(0x5000)), v[4]);
    auto b = st.Branch(root, *s);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(Read(st, *b, f), "v4");
    auto cs = st.SeqAtTime(child, at(4.5));
    ASSERT_TRUE(cs.ok()) << cs.status().ToString();
    EXPECT_EQ(Read(st, child, g, *cs), "c4");
    EXPECT_EQ(Read(st, child, f, *cs), "v0");  // its fork point, kept by GC
    ASSERT_TRUE(st.DeleteTimeline(*b).ok());
  };
  {
    auto st = OpenStore(dir.path());
    st->SetClockForTesting(at(5.5));
    check(*st);
  }
  // The floor is in the store: a restart keeps it.
  auto st = OpenStore(dir.path());
  st->SetClockForTesting(at(5.5));
  check(*st);

  // Shrinking then growing the window: the floor rises to what the small window let GC
  // collect, and growing again brings none of it back.
  st->SetClockForTesting(at(8));
  Seq v6 = WriteFile(*st, root, f, "v6");
  st->SetClockForTesting(at(9.5));
  ASSERT_TRUE(st->SetHistoryWindow(root, hour).ok());
  EXPECT_EQ(st->SeqAtTime(root, at(6)).status().code(), Code::kOutOfRange);  // the window
  ASSERT_TRUE(st->RunGc().ok());
  ASSERT_TRUE(st->SetHistoryWindow(root, 48 * hour).ok());
  auto again = st->SeqAtTime(root, at(6));
  EXPECT_EQ(again.status().code(), Code::kOutOfRange);
  EXPECT_NE(again.status().message().find("earliest time still available, " +
                                          FormatRfc3339(at(8.5)) + " (history window 48h"),
            std::string::npos)
      << again.status().message();
  EXPECT_EQ(Read(*st, root, f, *st->SeqAtTime(root, at(8.5))), "v6");
  EXPECT_EQ(*st->SeqAtTime(root, at(8.5)), v6);
  // The floor never goes down: a GC pass under the wider window leaves it where it was.
  ASSERT_TRUE(st->RunGc().ok());
  EXPECT_EQ(st->TimeRange(root)->first, at(8.5));
  // Once the window itself is the tighter bound, it is the one that refuses, as always.
  st->SetClockForTesting(at(60));
  auto old = st->SeqAtTime(root, at(11));
  EXPECT_EQ(old.status().code(), Code::kOutOfRange);
  EXPECT_NE(old.status().message().find(FormatRfc3339(at(12))), std::string::npos)
      << old.status().message();
  EXPECT_EQ(Read(*st, root, f, *st->SeqAtTime(root, at(12))), "v6");
}

// A store whose GC ran before the floor was recorded: on open, the floor comes back from
// what that GC left (each timeline's time index starts at the horizon it used).
TEST(StoreTest, GcFloorIsRecoveredForStoresFromBeforeIt) {
  TempDir dir;
  const int64_t t0 = 1'700'000'000'000'000, hour = 3'600'000'000;
  TimelineId root;
  InodeId f;
  std::vector<Seq> v;
  {
    auto st = OpenStore(dir.path());
    st->SetClockForTesting(t0);
    root = *st->CreateRoot(hour);
    f = *st->AllocateInode();
    for (int i = 0; i <= 5; ++i) {
      st->SetClockForTesting(t0 + i * hour);
      v.push_back(WriteFile(*st, root, f, "v" + std::to_string(i)));
    }
    st->SetClockForTesting(t0 + 5 * hour + hour / 2);
    ASSERT_GT(*st->RunGc(), 0u);
  }
  {  // What such a store looks like: no floor key.
    rocksdb::DBOptions dbo;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
        {"index", rocksdb::ColumnFamilyOptions()}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(dbo, dir.path(), cfs, &handles, &db).ok());
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    int erased = 0;
    for (it->Seek("m:gc_floor:"); it->Valid() && it->key().starts_with("m:gc_floor:"); it->Next()) {
      ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), it->key()).ok());
      ++erased;
    }
    it.reset();
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
    (void)erased;  // 0 on a build from before the floor
  }
  auto st = OpenStore(dir.path());
  st->SetClockForTesting(t0 + 5 * hour + hour / 2);
  ASSERT_TRUE(st->SetHistoryWindow(root, 24 * hour).ok());
  EXPECT_EQ(st->SeqAtTime(root, t0 + 2 * hour).status().code(), Code::kOutOfRange);
  EXPECT_EQ(st->Branch(root, v[2]).status().code(), Code::kOutOfRange);
  // The first state GC kept: v4, whose stamp is the recovered floor.
  EXPECT_EQ(st->TimeRange(root)->first, t0 + 4 * hour);
  EXPECT_EQ(Read(*st, root, f, *st->SeqAtTime(root, t0 + 4 * hour)), "v4");
}

TEST(StoreTest, UsageCountsLogicalSizeAndWrittenBytes) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId a = *st->AllocateInode(), b = *st->AllocateInode();
  WriteFile(*st, root, a, Block('a', 20000));
  WriteFile(*st, root, b, Block('b', 5000));
  EXPECT_EQ(st->GetUsage(root)->logical_size_bytes, 25000u);
  TimelineId child = *st->Branch(root, st->Head());
  EXPECT_EQ(st->GetUsage(child)->logical_size_bytes, 25000u);
  EXPECT_EQ(st->GetUsage(child)->written_bytes, 0u);
  WriteFile(*st, child, b, Block('c', 9000));
  EXPECT_EQ(st->GetUsage(child)->logical_size_bytes, 29000u);
  EXPECT_GE(st->GetUsage(child)->written_bytes, 9000u);
  EXPECT_LT(st->GetUsage(child)->written_bytes, 9000u + 1024);
  EXPECT_EQ(st->GetUsage(root)->logical_size_bytes, 25000u);
}

TEST(StoreTest, StateSurvivesReopen) {
  TempDir dir;
  TimelineId root, child;
  InodeId f;
  Seq head;
  {
    auto st = OpenStore(dir.path());
    root = *st->CreateRoot(kDay);
    f = *st->AllocateInode();
    WriteFile(*st, root, f, "hello");
    child = *st->Branch(root, st->Head());
    WriteFile(*st, child, f, "bye");
    ASSERT_TRUE(st->Sync(child).ok());
    head = st->Head();
  }
  auto st = OpenStore(dir.path());
  EXPECT_GE(st->Head(), head);
  EXPECT_EQ(Read(*st, root, f), "hello");
  EXPECT_EQ(Read(*st, child, f), "bye");
  EXPECT_GT(st->AllocateInode()->value(), f.value());
  auto t = st->GetTimeline(child);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->parent, root);
  // New seqs continue after the old ones.
  EXPECT_GT(WriteFile(*st, root, f, "again"), head);
}

// A child process writes and syncs, reporting each synced mutation, and is SIGKILLed.
TEST(StoreTest, SyncedMutationsSurviveSigkill) {
  TempDir dir;
  TimelineId tl;
  {
    auto st = OpenStore(dir.path());
    tl = *st->CreateRoot(kDay);
    ASSERT_TRUE(st->Sync(tl).ok());
  }
  uint64_t next_ino = 0;
  std::map<uint64_t, uint64_t> acked;  // ino -> value
  int fill_tails = 0;                  // rounds whose newest WAL ended in fill
  // Under ThreadSanitizer the writer is not what is being checked, and a report from inside
  // the uninstrumented RocksDB would end it before its first sync.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("TSAN_OPTIONS=")) continue;
    env_strings.emplace_back(*e);
  }
  env_strings.emplace_back("TSAN_OPTIONS=report_bugs=0");
  std::vector<char*> writer_env;
  for (auto& e : env_strings) writer_env.push_back(e.data());
  writer_env.push_back(nullptr);
  for (int round = 0; round < 20; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // A fresh process (not just a fork of this threaded one) plays the writer.
      close(fds[0]);
      std::string fd = std::to_string(fds[1]), tl_arg = std::to_string(tl.value());
      const char* argv[] = {"storage_test", "--crash-writer", dir.path().c_str(),
                            tl_arg.c_str(), fd.c_str(),       nullptr};
      execve("/proc/self/exe", const_cast<char* const*>(argv), writer_env.data());
      _exit(127);
    }
    close(fds[1]);
    // Wait for the writer's first synced mutation (however slow the machine), then kill it at
    // a moment that differs from round to round.
    uint64_t rec[2];
    struct pollfd pfd {
      fds[0], POLLIN, 0
    };
    ASSERT_EQ(poll(&pfd, 1, 120'000), 1) << "the writer synced nothing within 120 s";
    if (read(fds[0], rec, sizeof rec) != static_cast<ssize_t>(sizeof rec)) {
      int status = 0;
      waitpid(pid, &status, 0);
      FAIL() << "the writer ended before its first sync, status " << status;
    }
    acked[rec[0]] = rec[1];
    usleep((round * 7'919) % 40'000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
    while (read(fds[0], rec, sizeof rec) == sizeof rec) acked[rec[0]] = rec[1];
    close(fds[0]);
    // Did the kill leave the newest WAL ending in pre-written fill (the case wal_file.h is
    // about)? It must happen in some rounds, or this test does not test it.
    std::string newest;
    for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
      std::string name = e.path().filename().string();
      if (name.ends_with(".log") && name > newest) newest = name;
    }
    if (!newest.empty()) {
      std::ifstream f(dir.path() + "/" + newest, std::ios::binary | std::ios::ate);
      auto size = static_cast<std::streamoff>(f.tellg());
      if (size > 0) {
        f.seekg(size - 1);
        fill_tails += f.get() == 0xff;
      }
    }

    auto st = OpenStore(dir.path());
    ASSERT_TRUE(st) << "round " << round;
    for (auto& [ino, v] : acked) {
      std::string buf(kBlockSize, '\0');
      ASSERT_TRUE(st->ReadBlock(tl, kSeqMax, InodeId(ino), 0, std::span<char>(buf)).ok());
      uint64_t got;
      std::memcpy(&got, buf.data(), 8);
      ASSERT_EQ(got, v) << "synced mutation of inode " << ino << " lost in round " << round;
    }
    next_ino = std::max(next_ino, st->AllocateInode()->value());
  }
  ASSERT_GE(acked.size(), 20u);
  EXPECT_GT(fill_tails, 0) << "no kill left a WAL ending in fill";
  EXPECT_GT(next_ino, acked.rbegin()->first);  // ids are never handed out twice
}

TEST(StoreTest, GcKeepsEveryLegalReadAndDropsTheRest) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  int64_t t0 = 1'700'000'000'000'000;
  int64_t hour = 3'600'000'000;
  st->SetClockForTesting(t0);
  TimelineId root = *st->CreateRoot(hour);
  std::vector<InodeId> files;
  for (int i = 0; i < 4; ++i) files.push_back(*st->AllocateInode());
  std::mt19937 rng(11);
  std::vector<Seq> seqs;
  std::vector<TimelineId> children;
  // Three hours of history, a write a minute, a branch now and then.
  for (int minute = 0; minute < 180; ++minute) {
    st->SetClockForTesting(t0 + minute * int64_t{60'000'000});
    InodeId f = files[rng() % files.size()];
    seqs.push_back(WriteFile(*st, root, f, Block('a' + minute % 26, 1 + rng() % 20000)));
    if (minute % 45 == 10) children.push_back(*st->Branch(root, st->Head()));
    if (minute == 100) {
      Mutation del;  // an unlinked file: its versions become garbage below the horizon
      ASSERT_TRUE(
          st->AddTruncate(root, files[3], (*st->GetAttr(root, kSeqMax, files[3]))->size, 0, &del)
              .ok());
      del.DeleteAttr(files[3]);
      ASSERT_TRUE(st->Apply(root, std::move(del)).ok());
    }
  }
  int64_t now = t0 + 180 * int64_t{60'000'000};
  st->SetClockForTesting(now);
  Seq horizon = *st->Horizon(root);
  ASSERT_GT(horizon, seqs.front());

  // Every legal read: seqs at or above the horizon on the root, and every child.
  struct Probe {
    TimelineId tl;
    Seq at;
    InodeId f;
    std::string content;
    bool exists;
  };
  std::vector<Probe> probes;
  for (Seq s : seqs) {
    if (s < horizon) continue;
    for (InodeId f : files) {
      auto a = st->GetAttr(root, s, f);
      probes.push_back({root, s, f, Read(*st, root, f, s), a->has_value()});
    }
  }
  for (TimelineId c : children) {
    for (InodeId f : files) {
      probes.push_back({c, kSeqMax, f, Read(*st, c, f), st->GetAttr(c, kSeqMax, f)->has_value()});
    }
  }
  auto dropped = st->RunGc();
  ASSERT_TRUE(dropped.ok()) << dropped.status().ToString();
  EXPECT_GT(*dropped, 100u) << "GC dropped nothing that was shadowed below the horizon";
  for (const Probe& p : probes) {
    EXPECT_EQ(Read(*st, p.tl, p.f, p.at), p.content)
        << "timeline " << p.tl.value() << " seq " << p.at.value() << " inode " << p.f.value();
    EXPECT_EQ(st->GetAttr(p.tl, p.at, p.f)->has_value(), p.exists);
  }
  // A second pass finds nothing more to drop (and skips the unchanged timelines).
  EXPECT_EQ(*st->RunGc(), 0u);
  // Later writes, once the horizon passes them, make the shadowed versions droppable again.
  InodeId f0 = files[0];
  for (int i = 0; i < 5; ++i) {
    st->SetClockForTesting(now + (i + 1) * int64_t{60'000'000});
    WriteFile(*st, root, f0, "late " + std::to_string(i));
  }
  st->SetClockForTesting(now + 3 * hour);
  EXPECT_GE(*st->RunGc(), 4u);
  EXPECT_EQ(Read(*st, root, f0), "late 4");
  for (TimelineId c : children) EXPECT_TRUE(st->GetAttr(c, kSeqMax, f0).ok());
}

// A child's exclusive size is what GC frees once it is gone: the versions only its fork point
// keeps, counted exactly (the change index is off so that GC's count is versions alone).
TEST(StoreTest, ExclusiveSizeIsWhatGcFreesOnceTheChildIsGone) {
  TempDir dir;
  Store::Options o;
  o.path = dir.path();
  o.background_gc = false;
  o.block_cache_bytes = 16 << 20;
  o.wal_prefill_bytes = 1 << 20;
  o.change_index = false;
  auto opened = Store::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto st = std::move(opened).value();
  int64_t t0 = 1'700'000'000'000'000;
  int64_t hour = 3'600'000'000;
  st->SetClockForTesting(t0);
  TimelineId root = *st->CreateRoot(hour);
  InodeId big = *st->AllocateInode(), small = *st->AllocateInode();
  WriteFile(*st, root, big, Block('a', 10 * kBlockSize));
  WriteFile(*st, root, small, "one");
  st->SetClockForTesting(t0 + 1000);
  Seq at = st->Head();
  TimelineId snap = *st->Branch(root, at);
  TimelineId twin = *st->Branch(root, at);  // a second child at the same point
  ASSERT_EQ(st->GetTimeline(twin)->fork_seq, st->GetTimeline(snap)->fork_seq);
  // Nothing is shadowed yet: the fork point keeps nothing on its own.
  EXPECT_EQ(st->ExclusiveSizes(root)->at(snap).versions, 0u);
  st->SetClockForTesting(t0 + 2000);
  WriteFile(*st, root, big, Block('b', 10 * kBlockSize));
  // Shadowed but inside the history window: reads at the horizon still need it.
  EXPECT_EQ(st->ExclusiveSizes(root)->at(snap).versions, 0u);

  // Past the window, GC keeps the children's versions, and they still read them. Two
  // children at the same point: neither holds anything alone.
  st->SetClockForTesting(t0 + 3 * hour);
  ASSERT_TRUE(st->RunGc().ok());
  EXPECT_EQ(Read(*st, snap, big), Block('a', 10 * kBlockSize));
  auto sizes = st->ExclusiveSizes(root);
  ASSERT_TRUE(sizes.ok()) << sizes.status().ToString();
  EXPECT_EQ(sizes->at(snap).versions, 0u);
  EXPECT_EQ(sizes->at(twin).versions, 0u);
  ASSERT_TRUE(st->DeleteTimeline(twin).ok());
  // The twin's going frees nothing: the snapshot still keeps it.
  EXPECT_EQ(*st->RunGc(), 0u);
  ExclusiveSize excl = st->ExclusiveSizes(root)->at(snap);
  EXPECT_EQ(excl.versions, 11u);  // the old attribute and ten blocks of `big`
  EXPECT_GT(excl.bytes, 10 * kBlockSize);
  EXPECT_LT(excl.bytes, 11 * kBlockSize);

  // Once the snapshot goes, GC drops exactly those versions.
  ASSERT_TRUE(st->DeleteTimeline(snap).ok());
  auto dropped = st->RunGc();
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(*dropped, excl.versions);
  EXPECT_EQ(Read(*st, root, big), Block('b', 10 * kBlockSize));
  EXPECT_EQ(Read(*st, root, small), "one");
  EXPECT_TRUE(st->ExclusiveSizes(root)->empty());
  EXPECT_EQ(st->ExclusiveSizes(TimelineId(999)).status().code(), Code::kNotFound);
}

TEST(StoreTest, NotAStoreOrUnknownFormatGivesClearError) {
  TempDir dir;
  { std::ofstream(dir.path() + "/notes.txt") << "hello"; }
  Store::Options o;
  o.path = dir.path();
  auto r = Store::Open(o);
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find("not an Arbor store"), std::string::npos);

  o.path = dir.path() + "/notes.txt";
  EXPECT_EQ(Store::Open(o).status().code(), Code::kCorruption);

  TempDir other;
  {
    rocksdb::DB* db = nullptr;
    rocksdb::Options ro;
    ro.create_if_missing = true;
    ASSERT_TRUE(rocksdb::DB::Open(ro, other.path(), &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "m:format", "arbor-store:99").ok());
    delete db;
  }
  o.path = other.path();
  auto v = Store::Open(o);
  EXPECT_EQ(v.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(v.status().message().find("version 99"), std::string::npos);

  TempDir foreign;
  {
    rocksdb::DB* db = nullptr;
    rocksdb::Options ro;
    ro.create_if_missing = true;
    ASSERT_TRUE(rocksdb::DB::Open(ro, foreign.path(), &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "someone", "else").ok());
    delete db;
  }
  auto names = [](const std::string& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
  };
  std::set<std::string> before = names(foreign.path());
  o.path = foreign.path();
  o.wal_prefill_bytes = 1 << 20;
  EXPECT_EQ(Store::Open(o).status().code(), Code::kCorruption);
  // Refused without a write: no spare WAL file or anything else was left in the directory.
  EXPECT_EQ(names(foreign.path()), before);
}

TEST(StoreTest, CorruptedFilesGiveClearErrorNotCrash) {
  TempDir dir;
  TimelineId tl;
  InodeId f;
  {
    auto st = OpenStore(dir.path());
    tl = *st->CreateRoot(kDay);
    f = *st->AllocateInode();
    WriteFile(*st, tl, f, Block('q', 5 * kBlockSize));
  }
  // Damage the manifest pointer: the store refuses to open, with a message.
  { std::ofstream(dir.path() + "/CURRENT", std::ios::trunc) << "MANIFEST-garbage\n"; }
  Store::Options o;
  o.path = dir.path();
  auto r = Store::Open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.status().message().empty());
}

TEST(StoreTest, ConcurrentReadersAndWritersOnSeveralTimelines) {
  TempDir dir;
  auto st = OpenStore(dir.path(), /*gc=*/false);
  TimelineId root = *st->CreateRoot(kDay);
  InodeId shared = *st->AllocateInode();
  WriteFile(*st, root, shared, Block('s', 4 * kBlockSize));
  std::vector<TimelineId> tls;
  for (int i = 0; i < 4; ++i) tls.push_back(*st->Branch(root, st->Head()));
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      InodeId own = *st->AllocateInode();
      for (int n = 0; n < 200; ++n) {
        std::string v = "t" + std::to_string(i) + "n" + std::to_string(n);
        WriteFile(*st, tls[i], own, v);
        if (Read(*st, tls[i], own) != v) failed = true;
        if (Read(*st, tls[i], shared) != Block('s', 4 * kBlockSize)) failed = true;
        if (n % 50 == 0 && !st->Sync(tls[i]).ok()) failed = true;
      }
    });
    threads.emplace_back([&, i] {
      for (int n = 0; n < 200; ++n) {
        if (Read(*st, tls[i], shared) != Block('s', 4 * kBlockSize)) failed = true;
        (void)st->ReadDir(tls[i], kSeqMax, kRootInode);
      }
    });
  }
  threads.emplace_back([&] {
    for (int n = 0; n < 20; ++n) {
      auto b = st->Branch(root, st->Head());
      if (!b.ok() || !st->DeleteTimeline(*b).ok()) failed = true;
    }
    if (!st->RunGc().ok()) failed = true;
  });
  for (auto& t : threads) t.join();
  EXPECT_FALSE(failed.load());
}

// ---- Changes ----

// Writes block `block` of `ino` filled with `fill`, alone in one mutation.
Seq WriteBlock(Store& st, TimelineId tl, InodeId ino, uint64_t block, char fill) {
  Mutation m;
  std::string data = Block(fill);
  m.PutBlock(ino, block, std::span<const char>(data));
  auto r = st.Apply(tl, std::move(m));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Seq(0);
}

std::set<std::pair<uint64_t, uint64_t>> BlocksOf(const ChangeSet& cs) {
  std::set<std::pair<uint64_t, uint64_t>> out;
  for (const BlockRef& b : cs.blocks) out.insert({b.ino.value(), b.block});
  return out;
}

std::set<uint64_t> AttrsOf(const ChangeSet& cs) {
  std::set<uint64_t> out;
  for (InodeId i : cs.attrs) out.insert(i.value());
  return out;
}

ChangeSet MustChanges(Store& st, TimelineId a, Seq a_at, TimelineId b, Seq b_at) {
  auto r = st.Changes(a, a_at, b, b_at);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return {};
  // The contract: sorted and unique.
  EXPECT_TRUE(std::is_sorted(r->blocks.begin(), r->blocks.end()));
  EXPECT_EQ(std::adjacent_find(r->blocks.begin(), r->blocks.end()), r->blocks.end());
  EXPECT_TRUE(std::is_sorted(r->attrs.begin(), r->attrs.end()));
  EXPECT_EQ(std::adjacent_find(r->attrs.begin(), r->attrs.end()), r->attrs.end());
  return *r;
}

// The brute-force answer: every block of `inos` (blocks [0, max_blocks)) and every attribute
// that reads differently at the two points.
struct Diff {
  std::set<std::pair<uint64_t, uint64_t>> blocks;
  std::set<uint64_t> attrs;
};
Diff BruteForce(Store& st, TimelineId a, Seq a_at, TimelineId b, Seq b_at,
                const std::vector<InodeId>& inos, uint64_t max_blocks) {
  Diff d;
  std::string x(kBlockSize, '\0'), y(kBlockSize, '\0');
  for (InodeId ino : inos) {
    auto aa = st.GetAttr(a, a_at, ino), ba = st.GetAttr(b, b_at, ino);
    EXPECT_TRUE(aa.ok() && ba.ok());
    if (*aa != *ba) d.attrs.insert(ino.value());
    for (uint64_t blk = 0; blk < max_blocks; ++blk) {
      EXPECT_TRUE(st.ReadBlock(a, a_at, ino, blk, std::span<char>(x)).ok());
      EXPECT_TRUE(st.ReadBlock(b, b_at, ino, blk, std::span<char>(y)).ok());
      if (x != y) d.blocks.insert({ino.value(), blk});
    }
  }
  return d;
}

void ExpectSuperset(const ChangeSet& cs, const Diff& d, const std::string& where) {
  auto blocks = BlocksOf(cs);
  auto attrs = AttrsOf(cs);
  for (const auto& b : d.blocks) {
    EXPECT_TRUE(blocks.count(b)) << where << ": block " << b.second << " of inode " << b.first
                                 << " differs but is not reported";
  }
  for (uint64_t i : d.attrs) {
    EXPECT_TRUE(attrs.count(i)) << where << ": attribute of inode " << i
                                << " differs but is not reported";
  }
}

using BlockSet = std::set<std::pair<uint64_t, uint64_t>>;

TEST(StoreChangesTest, ChildVsParentHasWritesOfBothSidesSinceTheFork) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  WriteFile(*st, root, f, Block('a', 4 * kBlockSize));
  Seq fork = st->Head();
  TimelineId child = *st->Branch(root, fork);
  WriteBlock(*st, root, f, 1, 'p');   // on the parent after the fork
  WriteBlock(*st, child, f, 2, 'c');  // on the child only
  InodeId g = *st->AllocateInode();
  WriteFile(*st, child, g, "new on the child");

  for (bool swap : {false, true}) {
    ChangeSet cs = swap ? MustChanges(*st, root, kSeqMax, child, kSeqMax)
                        : MustChanges(*st, child, kSeqMax, root, kSeqMax);
    EXPECT_EQ(BlocksOf(cs), (BlockSet{{f.value(), 1}, {f.value(), 2}, {g.value(), 0}}));
    EXPECT_EQ(AttrsOf(cs), (std::set<uint64_t>{g.value()}));
    EXPECT_EQ(cs.ancestor, root);
    EXPECT_EQ(cs.ancestor_seq, fork);
  }
  // The child at its fork point against the parent: only the parent's write.
  ChangeSet at_fork = MustChanges(*st, child, fork, root, kSeqMax);
  EXPECT_EQ(BlocksOf(at_fork), (BlockSet{{f.value(), 1}}));
  // Nothing differs between a point and itself.
  ChangeSet same = MustChanges(*st, child, kSeqMax, child, kSeqMax);
  EXPECT_TRUE(same.blocks.empty() && same.attrs.empty());
}

TEST(StoreChangesTest, GrandchildVsItsGrandparentsSiblingBranch) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  WriteBlock(*st, root, f, 0, 'a');  // shared by everyone: not a change
  Seq f1 = st->Head();
  TimelineId c1 = *st->Branch(root, f1);
  WriteBlock(*st, root, f, 1, 'b');  // seen by the sibling only
  Seq f2 = st->Head();
  TimelineId sibling = *st->Branch(root, f2);
  WriteBlock(*st, root, f, 2, 'c');  // seen by neither
  WriteBlock(*st, c1, f, 3, 'd');    // seen by the grandchild
  Seq g_fork = st->Head();
  TimelineId grandchild = *st->Branch(c1, g_fork);
  WriteBlock(*st, c1, f, 4, 'e');          // after the grandchild's fork: not seen
  WriteBlock(*st, grandchild, f, 5, 'f');  // the grandchild's own
  WriteBlock(*st, sibling, f, 6, 'g');     // the sibling's own

  ChangeSet cs = MustChanges(*st, grandchild, kSeqMax, sibling, kSeqMax);
  EXPECT_EQ(BlocksOf(cs),
            (BlockSet{{f.value(), 1}, {f.value(), 3}, {f.value(), 5}, {f.value(), 6}}));
  EXPECT_EQ(cs.ancestor, root);
  EXPECT_EQ(cs.ancestor_seq, f1);
  ExpectSuperset(cs, BruteForce(*st, grandchild, kSeqMax, sibling, kSeqMax, {f}, 8), "gc/sib");
  // The grandchild against its parent: the parent's later write and the grandchild's own.
  ChangeSet up = MustChanges(*st, grandchild, kSeqMax, c1, kSeqMax);
  EXPECT_EQ(BlocksOf(up), (BlockSet{{f.value(), 4}, {f.value(), 5}}));
  EXPECT_EQ(up.ancestor, c1);
  EXPECT_EQ(up.ancestor_seq, g_fork);
  // Against the root, which is an ancestor of it.
  ChangeSet top = MustChanges(*st, root, kSeqMax, grandchild, kSeqMax);
  EXPECT_EQ(BlocksOf(top),
            (BlockSet{{f.value(), 1}, {f.value(), 2}, {f.value(), 3}, {f.value(), 5}}));
}

TEST(StoreChangesTest, TwoSeqsOfOneTimeline) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode();
  Seq s1 = WriteBlock(*st, root, f, 0, 'a');
  WriteBlock(*st, root, f, 1, 'b');
  Seq s3 = WriteBlock(*st, root, f, 2, 'c');
  WriteBlock(*st, root, f, 3, 'd');  // after both points
  for (bool swap : {false, true}) {
    ChangeSet cs =
        swap ? MustChanges(*st, root, s3, root, s1) : MustChanges(*st, root, s1, root, s3);
    EXPECT_EQ(BlocksOf(cs), (BlockSet{{f.value(), 1}, {f.value(), 2}}));
    EXPECT_EQ(cs.ancestor, root);
    EXPECT_EQ(cs.ancestor_seq, s1);
  }
}

TEST(StoreChangesTest, TruncationAndAttributeChangesAreReported) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId root = *st->CreateRoot(kDay);
  InodeId f = *st->AllocateInode(), g = *st->AllocateInode(), h = *st->AllocateInode();
  WriteFile(*st, root, f, Block('a', 4 * kBlockSize));
  WriteFile(*st, root, g, Block('b', 2 * kBlockSize));
  TimelineId child = *st->Branch(root, st->Head());
  {
    // Truncate f to one and a half blocks on the child.
    Mutation m;
    ASSERT_TRUE(st->AddTruncate(child, f, 4 * kBlockSize, kBlockSize + 100, &m).ok());
    Attr a = **st->GetAttr(child, kSeqMax, f);
    a.size = kBlockSize + 100;
    m.PutAttr(f, a);
    ASSERT_TRUE(st->Apply(child, std::move(m)).ok());
  }
  {
    // Unlink g and create h on the parent.
    Mutation m;
    ASSERT_TRUE(st->AddTruncate(root, g, 2 * kBlockSize, 0, &m).ok());
    m.DeleteAttr(g);
    Attr a;
    a.mode = 0100644;
    m.PutAttr(h, a);
    ASSERT_TRUE(st->Apply(root, std::move(m)).ok());
  }
  ChangeSet cs = MustChanges(*st, child, kSeqMax, root, kSeqMax);
  EXPECT_EQ(
      BlocksOf(cs),
      (BlockSet{{f.value(), 1}, {f.value(), 2}, {f.value(), 3}, {g.value(), 0}, {g.value(), 1}}));
  EXPECT_EQ(AttrsOf(cs), (std::set<uint64_t>{f.value(), g.value(), h.value()}));
  ExpectSuperset(cs, BruteForce(*st, child, kSeqMax, root, kSeqMax, {f, g, h}, 6), "truncate");
}

TEST(StoreChangesTest, SupersetOfBruteForceOnRandomWorkloads) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    TempDir dir;
    auto st = OpenStore(dir.path());
    std::mt19937 rng(seed);
    TimelineId root = *st->CreateRoot(kDay);
    std::vector<InodeId> inos;
    for (int i = 0; i < 5; ++i) inos.push_back(*st->AllocateInode());
    std::vector<TimelineId> tls = {root};
    std::map<TimelineId, std::vector<Seq>> points;  // legal read seqs of each timeline
    points[root].push_back(st->Head());
    constexpr uint64_t kMaxBlocks = 8;
    for (int step = 0; step < 120; ++step) {
      TimelineId tl = tls[rng() % tls.size()];
      InodeId ino = inos[rng() % inos.size()];
      int op = rng() % 10;
      if (op == 0 && tls.size() < 6) {
        // A branch at one of the parent's points, or at its head.
        const auto& ps = points[tl];
        Seq at = rng() % 2 ? st->Head() : ps[rng() % ps.size()];
        auto c = st->Branch(tl, at);
        ASSERT_TRUE(c.ok()) << c.status().ToString();
        tls.push_back(*c);
        points[*c].push_back(at);  // its fork point reads the parent there
        continue;
      }
      auto attr = st->GetAttr(tl, kSeqMax, ino);
      ASSERT_TRUE(attr.ok());
      Mutation m;
      if (op <= 2 && attr->has_value()) {
        // Truncate (or unlink) to a random smaller size.
        uint64_t old_size = (*attr)->size, new_size = old_size ? rng() % old_size : 0;
        ASSERT_TRUE(st->AddTruncate(tl, ino, old_size, new_size, &m).ok());
        if (op == 1 && new_size == 0) {
          m.DeleteAttr(ino);
        } else {
          Attr a = **attr;
          a.size = new_size;
          m.PutAttr(ino, a);
        }
      } else {
        uint64_t blk = rng() % kMaxBlocks;
        std::string data(kBlockSize, static_cast<char>('a' + rng() % 3));  // rewrites happen
        m.PutBlock(ino, blk, std::span<const char>(data));
        Attr a = attr->has_value() ? **attr : Attr{};
        a.mode = 0100644;
        uint64_t end = (blk + 1) * kBlockSize;
        if (end > a.size || rng() % 4 == 0) {
          a.size = std::max(a.size, end);
          m.PutAttr(ino, a);
        }
      }
      auto s = st->Apply(tl, std::move(m));
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      points[tl].push_back(*s);
    }
    for (TimelineId tl : tls) points[tl].push_back(kSeqMax);
    for (int probe = 0; probe < 25; ++probe) {
      TimelineId a = tls[rng() % tls.size()], b = tls[rng() % tls.size()];
      Seq a_at = points[a][rng() % points[a].size()], b_at = points[b][rng() % points[b].size()];
      std::string where = "seed " + std::to_string(seed) + ": (" + a.ToString() + " at " +
                          a_at.ToString() + ") vs (" + b.ToString() + " at " + b_at.ToString() +
                          ")";
      auto cs = st->Changes(a, a_at, b, b_at);
      ASSERT_TRUE(cs.ok()) << where << ": " << cs.status().ToString();
      ExpectSuperset(*cs, BruteForce(*st, a, a_at, b, b_at, inos, kMaxBlocks), where);
    }
  }
}

TEST(StoreChangesTest, DifferentTreesAreRefused) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  TimelineId r1 = *st->CreateRoot(kDay), r2 = *st->CreateRoot(kDay);
  TimelineId c1 = *st->Branch(r1, st->Head());
  auto cs = st->Changes(c1, kSeqMax, r2, kSeqMax);
  ASSERT_FALSE(cs.ok());
  EXPECT_EQ(cs.status().code(), Code::kInvalidArgument) << cs.status().ToString();
  EXPECT_EQ(st->Changes(TimelineId(999), kSeqMax, r1, kSeqMax).status().code(), Code::kNotFound);
}

TEST(StoreChangesTest, IndexSurvivesReopen) {
  TempDir dir;
  InodeId f;
  TimelineId root, child;
  {
    auto st = OpenStore(dir.path());
    root = *st->CreateRoot(kDay);
    f = *st->AllocateInode();
    WriteFile(*st, root, f, Block('a', 3 * kBlockSize));
    child = *st->Branch(root, st->Head());
    WriteBlock(*st, root, f, 0, 'p');
    WriteBlock(*st, child, f, 1, 'c');
  }
  auto st = OpenStore(dir.path());
  ASSERT_TRUE(st);
  EXPECT_EQ(BlocksOf(MustChanges(*st, child, kSeqMax, root, kSeqMax)),
            (BlockSet{{f.value(), 0}, {f.value(), 1}}));
  WriteBlock(*st, child, f, 2, 'c');  // and it goes on after the reopen
  EXPECT_EQ(BlocksOf(MustChanges(*st, child, kSeqMax, root, kSeqMax)),
            (BlockSet{{f.value(), 0}, {f.value(), 1}, {f.value(), 2}}));
}

TEST(StoreChangesTest, GcKeepsWhatChangesNeedWithinTheHistoryWindow) {
  TempDir dir;
  auto st = OpenStore(dir.path());
  int64_t t0 = 1'700'000'000'000'000, minute = 60'000'000, hour = 60 * minute;
  st->SetClockForTesting(t0);
  TimelineId root = *st->CreateRoot(hour);
  std::vector<InodeId> inos = {*st->AllocateInode(), *st->AllocateInode()};
  WriteFile(*st, root, inos[0], Block('a', 4 * kBlockSize));
  WriteFile(*st, root, inos[1], Block('b', 4 * kBlockSize));
  st->SetClockForTesting(t0 + minute);
  TimelineId child = *st->Branch(root, st->Head());
  // Blocks written once, after the fork and long below the horizon: their records are what
  // GC must keep (folded), as nothing later writes them again.
  WriteBlock(*st, root, inos[0], 10, 'r');
  WriteBlock(*st, child, inos[1], 11, 'c');
  TimelineId child2;
  // Two hours of writes on both sides, often to the same blocks: versions and change
  // records that fall below the horizon.
  for (int m = 2; m < 120; ++m) {
    st->SetClockForTesting(t0 + m * minute);
    WriteBlock(*st, root, inos[m % 2], (m / 2) % 4, static_cast<char>('c' + m % 20));
    if (m % 3 == 0) WriteBlock(*st, child, inos[1], m % 4, static_cast<char>('A' + m % 20));
    if (m == 5) WriteBlock(*st, root, inos[0], 12, 'r');   // seen by child2, not child
    if (m == 10) child2 = *st->Branch(root, st->Head());   // a second fork below the horizon
    if (m == 11) WriteBlock(*st, root, inos[0], 13, 'r');  // after child2's fork
  }
  // A read point of the root inside the window, for a == b below.
  st->SetClockForTesting(t0 + 121 * minute);
  Seq mid = WriteBlock(*st, root, inos[0], 3, 'z');
  st->SetClockForTesting(t0 + 150 * minute);
  WriteBlock(*st, root, inos[1], 0, 'y');
  Seq horizon = *st->Horizon(root);
  ASSERT_GT(horizon, Seq(5));
  ASSERT_LE(horizon, mid);

  ChangeSet before = MustChanges(*st, child, kSeqMax, root, kSeqMax);
  for (uint64_t b : {10, 12, 13}) ASSERT_TRUE(BlocksOf(before).count({inos[0].value(), b}));
  ASSERT_TRUE(BlocksOf(before).count({inos[1].value(), 11}));
  ChangeSet before2 = MustChanges(*st, child2, kSeqMax, root, kSeqMax);
  ASSERT_FALSE(BlocksOf(before2).count({inos[0].value(), 12}));
  ASSERT_TRUE(BlocksOf(before2).count({inos[0].value(), 13}));
  ChangeSet siblings_before = MustChanges(*st, child, kSeqMax, child2, kSeqMax);
  ChangeSet recent_before = MustChanges(*st, root, mid, root, kSeqMax);
  auto dropped = st->RunGc();
  ASSERT_TRUE(dropped.ok()) << dropped.status().ToString();
  EXPECT_GT(*dropped, 50u);
  for (int round = 0; round < 2; ++round) {  // the second pass works on folded records
    ChangeSet after = MustChanges(*st, child, kSeqMax, root, kSeqMax);
    EXPECT_EQ(BlocksOf(after), BlocksOf(before));
    EXPECT_EQ(AttrsOf(after), AttrsOf(before));
    ExpectSuperset(after, BruteForce(*st, child, kSeqMax, root, kSeqMax, inos, 14), "after gc");
    // Exactly as before: a fold across child2's fork point would add block 12 here.
    EXPECT_EQ(BlocksOf(MustChanges(*st, child2, kSeqMax, root, kSeqMax)), BlocksOf(before2));
    EXPECT_EQ(BlocksOf(MustChanges(*st, child, kSeqMax, child2, kSeqMax)),
              BlocksOf(siblings_before));
    ChangeSet recent = MustChanges(*st, root, mid, root, kSeqMax);
    EXPECT_EQ(BlocksOf(recent), BlocksOf(recent_before));
    EXPECT_EQ(BlocksOf(recent), (BlockSet{{inos[1].value(), 0}}));
    // Later writes move the horizon past more records; GC folds them again.
    st->SetClockForTesting(t0 + 160 * minute);
    WriteBlock(*st, child, inos[0], 0, 'q');
    before = MustChanges(*st, child, kSeqMax, root, kSeqMax);
    siblings_before = MustChanges(*st, child, kSeqMax, child2, kSeqMax);
    ASSERT_TRUE(st->RunGc().ok());
  }
  // Below the horizon the records may be folded: refused, not answered wrongly.
  auto old = st->Changes(root, Seq(5), root, kSeqMax);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code(), Code::kOutOfRange) << old.status().ToString();
}

TEST(StoreChangesTest, RangesBeforeTheIndexExistedAreRefused) {
  TempDir dir;
  Store::Options o;
  o.path = dir.path();
  o.background_gc = false;
  o.block_cache_bytes = 16 << 20;
  o.wal_prefill_bytes = 1 << 20;
  o.change_index = false;  // as a build from before the change index
  TimelineId root;
  InodeId f;
  Seq old_write;
  {
    auto st = std::move(Store::Open(o)).value();
    root = *st->CreateRoot(kDay);
    f = *st->AllocateInode();
    old_write = WriteBlock(*st, root, f, 0, 'a');
  }
  o.change_index = true;
  Seq upgraded;
  TimelineId child;
  {
    auto st = std::move(Store::Open(o)).value();
    upgraded = st->Head();
    WriteBlock(*st, root, f, 1, 'b');
    auto cs = st->Changes(root, Seq(old_write.value() - 1), root, kSeqMax);
    ASSERT_FALSE(cs.ok());
    EXPECT_EQ(cs.status().code(), Code::kFailedPrecondition) << cs.status().ToString();
    // From the upgrade on, it answers.
    EXPECT_EQ(BlocksOf(MustChanges(*st, root, upgraded, root, kSeqMax)),
              (BlockSet{{f.value(), 1}}));
    child = *st->Branch(root, st->Head());
    WriteBlock(*st, child, f, 2, 'c');
    EXPECT_EQ(BlocksOf(MustChanges(*st, child, kSeqMax, root, kSeqMax)),
              (BlockSet{{f.value(), 2}}));
  }
  // An older build writes to the indexed store again: what it wrote has no change records.
  o.change_index = false;
  {
    auto st = std::move(Store::Open(o)).value();
    WriteBlock(*st, child, f, 3, 'd');
  }
  o.change_index = true;
  auto st = std::move(Store::Open(o)).value();
  auto cs = st->Changes(child, kSeqMax, root, kSeqMax);
  ASSERT_FALSE(cs.ok());
  EXPECT_EQ(cs.status().code(), Code::kFailedPrecondition) << cs.status().ToString();
  // A branch made now compares with its parent.
  TimelineId fresh = *st->Branch(child, st->Head());
  WriteBlock(*st, fresh, f, 4, 'e');
  EXPECT_EQ(BlocksOf(MustChanges(*st, fresh, kSeqMax, child, kSeqMax)), (BlockSet{{f.value(), 4}}));
}

}  // namespace

// The writer of SyncedMutationsSurviveSigkill: applies mutations forever, syncing every
// third one and reporting (inode, value) on `fd` only after its Sync returned.
int CrashWriter(const char* path, uint64_t timeline, int fd) {
  Store::Options o;
  o.path = path;
  o.background_gc = false;
  // Small memtables and spares: the writer goes through many WAL files, pre-written ones
  // (wal_file.h) and ones it outgrows, so kills land in every state of the log.
  o.write_buffer_bytes = 1 << 20;
  o.wal_prefill_bytes = 1 << 20;
  auto st = Store::Open(o);
  if (!st.ok()) return 3;
  TimelineId tl(timeline);
  for (int i = 0;; ++i) {
    InodeId ino = *(*st)->AllocateInode();
    uint64_t v = ino.value() * 7919;
    std::string payload(kBlockSize, static_cast<char>('a' + i % 26));
    std::memcpy(payload.data(), &v, 8);
    Mutation m;
    Attr a;
    a.size = kBlockSize;
    m.PutAttr(ino, a);
    m.PutBlock(ino, 0, std::span<const char>(payload));
    if (!(*st)->Apply(tl, std::move(m)).ok()) return 4;
    if (i % 3 == 0) {
      if (!(*st)->Sync(tl).ok()) return 5;
      uint64_t rec[2] = {ino.value(), v};
      if (write(fd, rec, sizeof rec) != sizeof rec) return 6;
    }
  }
}

}  // namespace arbor::storage

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--crash-writer") {
    return arbor::storage::CrashWriter(argv[2], std::stoull(argv[3]), std::stoi(argv[4]));
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
