#include "fs/filesystem.h"

#include <gtest/gtest.h>
#include <linux/fs.h>
#include <stdlib.h>

#include <filesystem>
#include <random>

namespace arbor::fs {
namespace {

class FileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/arborfs-unit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    storage::Store::Options o;
    o.path = dir_ + "/store";
    o.background_gc = false;
    auto s = storage::Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    auto tl = store_->CreateRoot(3600'000'000, 0, 0);
    ASSERT_TRUE(tl.ok());
    tl_ = *tl;
    fs_ = std::make_unique<FileSystem>(store_.get(), tl_);
  }
  void TearDown() override {
    fs_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  InodeId CreateFile(std::string_view name, InodeId parent = kRootInode) {
    auto e = fs_->Create(parent, name, 0644, caller_, true, false);
    EXPECT_TRUE(e.ok());
    return e.ok() ? e->ino : InodeId();
  }
  std::string ReadAll(InodeId ino) {
    auto a = fs_->GetAttr(ino);
    auto d = fs_->Read(ino, 0, a->size + 100);
    EXPECT_TRUE(d.ok());
    return d.ok() ? *d : "";
  }

  std::string dir_;
  std::unique_ptr<storage::Store> store_;
  TimelineId tl_;
  std::unique_ptr<FileSystem> fs_;
  Caller caller_{1000, 1000};
};

TEST_F(FileSystemTest, WritesAcrossBlockEdgesReadBackLikeAFile) {
  InodeId f = CreateFile("f");
  std::string model;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300; ++i) {
    uint64_t off = rng() % 40000;
    size_t len = 1 + rng() % 20000;
    std::string data(len, '\0');
    for (auto& c : data) c = static_cast<char>('a' + rng() % 26);
    ASSERT_EQ(*fs_->Write(f, off, data), len);
    if (model.size() < off + len) model.resize(off + len, '\0');
    model.replace(off, len, data);
    if (i % 17 == 0) {
      uint64_t size = rng() % 50000;
      SetAttrRequest r;
      r.size = size;
      ASSERT_TRUE(fs_->SetAttr(f, r).ok());
      model.resize(size, '\0');
    }
  }
  EXPECT_EQ(fs_->GetAttr(f)->size, model.size());
  EXPECT_EQ(ReadAll(f), model);
  auto part = fs_->Read(f, 8000, 500);
  EXPECT_EQ(*part, model.substr(8000, 500));
}

TEST_F(FileSystemTest, TruncateDownThenUpReadsZeros) {
  InodeId f = CreateFile("f");
  std::string data(20000, 'x');
  ASSERT_TRUE(fs_->Write(f, 0, data).ok());
  SetAttrRequest down;
  down.size = 100;
  ASSERT_TRUE(fs_->SetAttr(f, down).ok());
  SetAttrRequest up;
  up.size = 20000;
  ASSERT_TRUE(fs_->SetAttr(f, up).ok());
  std::string want = std::string(100, 'x') + std::string(19900, '\0');
  EXPECT_EQ(ReadAll(f), want);
}

TEST_F(FileSystemTest, OrphansOfACrashedServerAreFreedAtTheNextMount) {
  InodeId f = CreateFile("f");  // open: its data stays after the unlink
  std::string data(3 * storage::kBlockSize, 'x');
  ASSERT_TRUE(fs_->Write(f, 0, std::span<const char>(data)).ok());
  InodeId kept = CreateFile("kept");
  ASSERT_TRUE(fs_->Write(kept, 0, std::span<const char>(data)).ok());
  ASSERT_TRUE(fs_->Unlink(kRootInode, "f").ok());
  auto before = store_->GetAttr(tl_, kSeqMax, f);
  ASSERT_TRUE(before.ok() && before->has_value());
  EXPECT_EQ((*before)->nlink, 0u);

  // The server dies with `f` still open: a new one mounts the same timeline.
  FileSystem next(store_.get(), tl_);
  auto freed = next.ReclaimOrphans();
  ASSERT_TRUE(freed.ok());
  EXPECT_EQ(*freed, 1u);
  auto after = store_->GetAttr(tl_, kSeqMax, f);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->has_value());
  std::string block(storage::kBlockSize, 'y');
  ASSERT_TRUE(store_->ReadBlock(tl_, kSeqMax, f, 0, std::span<char>(block)).ok());
  EXPECT_EQ(block, std::string(storage::kBlockSize, '\0'));
  // Files with names are untouched, and a second pass finds nothing.
  auto k = store_->ReadFile(tl_, kSeqMax, kept, 0, data.size());
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(*k, data);
  auto again = next.ReclaimOrphans();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);
}

TEST_F(FileSystemTest, UnlinkWhileOpenKeepsDataUntilLastReleaseAndForget) {
  InodeId f = CreateFile("f");  // lookup 1, open 1
  ASSERT_TRUE(fs_->Write(f, 0, std::string("hello")).ok());
  ASSERT_TRUE(fs_->Unlink(kRootInode, "f").ok());
  EXPECT_EQ(fs_->Lookup(kRootInode, "f").status().code(), FsError::kNoEntry);
  EXPECT_EQ(ReadAll(f), "hello");
  ASSERT_TRUE(fs_->Write(f, 5, std::string(" world")).ok());
  EXPECT_EQ(ReadAll(f), "hello world");
  EXPECT_EQ(fs_->GetAttr(f)->nlink, 0u);
  fs_->Release(f);
  EXPECT_TRUE(store_->GetAttr(tl_, kSeqMax, f)->has_value());  // the kernel still knows it
  fs_->Forget(f, 1);
  EXPECT_FALSE(store_->GetAttr(tl_, kSeqMax, f)->has_value());
  EXPECT_EQ(fs_->GetAttr(f).status().code(), FsError::kNoEntry);
}

TEST_F(FileSystemTest, RenameReplacesTargetInOneMutation) {
  InodeId a = CreateFile("a");
  InodeId b = CreateFile("b");
  ASSERT_TRUE(fs_->Write(a, 0, std::string("new")).ok());
  ASSERT_TRUE(fs_->Write(b, 0, std::string("old")).ok());
  fs_->Release(b);
  fs_->Forget(b, 1);
  Seq before = store_->Head();
  ASSERT_TRUE(fs_->Rename(kRootInode, "a", kRootInode, "b", 0).ok());
  EXPECT_EQ(store_->Head().value(), before.value() + 1);
  auto e = fs_->Lookup(kRootInode, "b");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->ino, a);
  EXPECT_EQ(ReadAll(a), "new");
  EXPECT_FALSE(store_->GetAttr(tl_, kSeqMax, b)->has_value());
  EXPECT_EQ(fs_->Lookup(kRootInode, "a").status().code(), FsError::kNoEntry);
}

TEST_F(FileSystemTest, PosixErrors) {
  CreateFile("file");
  auto d = fs_->Mkdir(kRootInode, "dir", 0755, caller_);
  ASSERT_TRUE(d.ok());
  CreateFile("inner", d->ino);
  EXPECT_EQ(fs_->Rmdir(kRootInode, "dir").code(), FsError::kNotEmpty);
  EXPECT_EQ(fs_->Rmdir(kRootInode, "file").code(), FsError::kNotDir);
  EXPECT_EQ(fs_->Unlink(kRootInode, "dir").code(), FsError::kIsDir);
  EXPECT_EQ(fs_->Unlink(kRootInode, "nope").code(), FsError::kNoEntry);
  EXPECT_EQ(fs_->Rename(kRootInode, "file", kRootInode, "dir", 0).code(), FsError::kIsDir);
  EXPECT_EQ(fs_->Rename(kRootInode, "dir", kRootInode, "file", 0).code(), FsError::kNotDir);
  EXPECT_EQ(fs_->Rename(kRootInode, "file", d->ino, "inner", RENAME_NOREPLACE).code(),
            FsError::kExists);
  EXPECT_EQ(fs_->Rename(kRootInode, "file", d->ino, "inner", RENAME_EXCHANGE).code(),
            FsError::kInvalid);
  EXPECT_EQ(fs_->Create(kRootInode, "file", 0644, caller_, true, false).status().code(),
            FsError::kExists);
  EXPECT_EQ(fs_->Mkdir(kRootInode, std::string(256, 'n'), 0755, caller_).status().code(),
            FsError::kNameTooLong);
  EXPECT_EQ(fs_->Lookup(kRootInode, std::string(256, 'n')).status().code(), FsError::kNameTooLong);
  EXPECT_EQ(fs_->Fallocate(fs_->Lookup(kRootInode, "file")->ino, 1, 0, 10).code(),
            FsError::kNotSupported);
  // Directory link counts follow subdirectories.
  EXPECT_EQ(fs_->GetAttr(kRootInode)->nlink, 3u);
  ASSERT_TRUE(fs_->Mkdir(d->ino, "sub", 0755, caller_).ok());
  EXPECT_EQ(fs_->GetAttr(d->ino)->nlink, 3u);
  ASSERT_TRUE(fs_->Rename(d->ino, "sub", kRootInode, "sub", 0).ok());
  EXPECT_EQ(fs_->GetAttr(d->ino)->nlink, 2u);
  EXPECT_EQ(fs_->GetAttr(kRootInode)->nlink, 4u);
  EXPECT_EQ(fs_->GetAttr(fs_->Lookup(kRootInode, "file")->ino)->uid, 1000u);
}

TEST_F(FileSystemTest, SymlinkAndFallocate) {
  auto s = fs_->Symlink("../target", kRootInode, "l", caller_);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*fs_->Readlink(s->ino), "../target");
  InodeId f = CreateFile("f");
  ASSERT_TRUE(fs_->Fallocate(f, 0, 0, 20000).ok());
  EXPECT_EQ(fs_->GetAttr(f)->size, 20000u);
  EXPECT_EQ(ReadAll(f), std::string(20000, '\0'));
}

}  // namespace
}  // namespace arbor::fs
