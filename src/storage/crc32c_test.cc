#include "storage/crc32c.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "storage/store.h"

namespace rocksdb::crc32c {
std::string IsFastCrc32Supported();
uint32_t Extend(uint32_t init_crc, const char* data, size_t n);
}  // namespace rocksdb::crc32c

namespace arbor::storage::crc32c {
namespace {

namespace fs = std::filesystem;

uint32_t Value(const std::string& s) { return Extend(0, s.data(), s.size()); }

TEST(Crc32cTest, StandardCheckValues) {
  EXPECT_EQ(Value("123456789"), 0xE3069283u);
  EXPECT_EQ(Value(""), 0u);
  // RFC 3720 (iSCSI), appendix B.4.
  EXPECT_EQ(Value(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Value(std::string(32, '\xff')), 0x62A8AB43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Value(up), 0x46DD794Eu);
  EXPECT_EQ(Value(down), 0x113FDB5Cu);
  EXPECT_EQ(ExtendReference(0, "123456789", 9), 0xE3069283u);
}

TEST(Crc32cTest, EqualsTheBitwiseReferenceAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(7);
  std::vector<char> buf(20000);
  for (auto& c : buf) c = static_cast<char>(rng());
  // Lengths around the three-lane blocks (3 KiB) and the 8-byte steps, at every alignment.
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 40; ++n) lengths.push_back(n);
  for (size_t base : {3072u, 6144u, 8192u, 9216u, 16384u}) {
    for (size_t d = 0; d < 10; ++d) {
      lengths.push_back(base + d);
      lengths.push_back(base - d - 1);
    }
  }
  for (int i = 0; i < 200; ++i) lengths.push_back(rng() % 19000);
  for (size_t n : lengths) {
    for (size_t offset = 0; offset < 8; ++offset) {
      uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(Extend(seed, buf.data() + offset, n), ExtendReference(seed, buf.data() + offset, n))
          << "length " << n << " offset " << offset;
    }
  }
}

TEST(Crc32cTest, ExtendAndCombineJoinPieces) {
  std::mt19937_64 rng(11);
  std::string data(12000, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  uint32_t whole = Value(data);
  for (int i = 0; i < 300; ++i) {
    size_t cut = rng() % (data.size() + 1);
    uint32_t a = Extend(0, data.data(), cut);
    uint32_t b = Extend(0, data.data() + cut, data.size() - cut);
    EXPECT_EQ(Extend(a, data.data() + cut, data.size() - cut), whole) << "cut " << cut;
    EXPECT_EQ(Combine(a, b, data.size() - cut), whole) << "cut " << cut;
  }
  EXPECT_EQ(Combine(Value("abc"), 0, 0), Value("abc"));
}

TEST(Crc32cTest, RocksDbUsesThisImplementation) {
  // The symbols RocksDB calls resolve here, not to librocksdb.a's software loop.
  EXPECT_NE(rocksdb::crc32c::IsFastCrc32Supported().find("Arbor"), std::string::npos);
  EXPECT_EQ(rocksdb::crc32c::Extend(0, "123456789", 9), 0xE3069283u);
  // And RocksDB's own code reports it: a store's RocksDB LOG names it at open.
  std::string tmpl = (fs::temp_directory_path() / "arbor-crc32c-test-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  {
    Store::Options o;
    o.path = tmpl + "/store";
    o.block_cache_bytes = 8 << 20;
    o.wal_prefill_bytes = 0;
    auto st = Store::Open(o);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
  }
  std::ifstream log(tmpl + "/store/LOG");
  std::stringstream text;
  text << log.rdbuf();
  fs::remove_all(tmpl);
  EXPECT_NE(text.str().find("Fast CRC32 supported: " + rocksdb::crc32c::IsFastCrc32Supported()),
            std::string::npos);
}

}  // namespace
}  // namespace arbor::storage::crc32c
