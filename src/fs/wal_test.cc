#include "fs/wal.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace arbor::fs {
namespace {

std::string Page(uint64_t pageaddr, size_t used, uint16_t magic = kWalPageMagic) {
  std::string p(kWalPageSize, '\0');
  uint16_t info = 0x2;
  std::memcpy(p.data(), &magic, 2);
  std::memcpy(p.data() + 2, &info, 2);
  std::memcpy(p.data() + 8, &pageaddr, 8);
  for (size_t i = 24; i < used; ++i) p[i] = 'r';
  return p;
}

TEST(WalTest, EndIsTheLastWrittenByteOfTheLastPage) {
  uint64_t seg = 5 * kWalSegmentSize;
  std::string two = Page(seg + 3 * kWalPageSize, kWalPageSize) + Page(seg + 4 * kWalPageSize, 100);
  auto end = WalEndOfWrite(3 * kWalPageSize, two);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(*end, seg + 4 * kWalPageSize + 104);  // 100 rounded up to 8
}

TEST(WalTest, NotWalIsNotMarked) {
  std::string p = Page(kWalPageSize, 500);
  EXPECT_FALSE(WalEndOfWrite(kWalPageSize, std::string_view(p).substr(0, 4096)));  // partial
  EXPECT_FALSE(WalEndOfWrite(100, p));                                             // unaligned
  EXPECT_FALSE(WalEndOfWrite(2 * kWalPageSize, p));  // address is elsewhere
  EXPECT_FALSE(WalEndOfWrite(kWalPageSize, Page(kWalPageSize, 500, 0x1234)));  // no magic
  std::string data_page(kWalPageSize, 'x');                                    // a heap page
  EXPECT_FALSE(WalEndOfWrite(0, data_page));
}

}  // namespace
}  // namespace arbor::fs
