#include "fs/wal.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "storage/crc32c.h"

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

TEST(WalTest, FileNamesFollowPostgres) {
  EXPECT_EQ(WalFileName(1, 0x9000000), "000000010000000000000009");
  EXPECT_EQ(WalFileName(2, 0x9FFFFFF), "000000020000000000000009");
  EXPECT_EQ(WalFileName(0x1A, (uint64_t{3} << 32) + 0xFF000000), "0000001A00000003000000FF");
}

TEST(WalTest, ASegmentStartsWithItsOwnLongHeader) {
  uint64_t seg = 10 * kWalSegmentSize;
  std::string first = Page(seg, 40);
  uint16_t info = 0x2 | 0x1;  // long header, continuation
  std::memcpy(first.data() + 2, &info, 2);
  EXPECT_TRUE(StartsWalSegment(first, seg));
  // A recycled segment still holds an older segment's pages.
  EXPECT_FALSE(StartsWalSegment(first, seg + kWalSegmentSize));
  std::string short_header = Page(seg, 40);
  info = 0x1;
  std::memcpy(short_header.data() + 2, &info, 2);
  EXPECT_FALSE(StartsWalSegment(short_header, seg));
  EXPECT_FALSE(StartsWalSegment(Page(seg, 40, 0xD10D), seg));
  EXPECT_FALSE(StartsWalSegment(std::string(kWalPageSize, '\0'), 0));
  EXPECT_FALSE(StartsWalSegment(first.substr(0, 15), seg));
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

// WAL as PostgreSQL lays it out, for WalRecordsEnd: records (header, payload, CRC) written
// from `begin` on, across page headers (long at a segment's start), 8-byte aligned.
class WalWriter {
 public:
  explicit WalWriter(uint64_t begin) : begin_(begin), pos_(begin) {}

  // Appends a record of `total` bytes; returns the LSN after it.
  uint64_t Record(uint32_t total, uint8_t rmid = 10, uint8_t info = 0) {
    std::string rec(total, '\0');
    std::memcpy(rec.data(), &total, 4);
    rec[16] = static_cast<char>(info);
    rec[17] = static_cast<char>(rmid);
    for (size_t i = 24; i < total; ++i) rec[i] = static_cast<char>('a' + i % 26);
    uint32_t crc = storage::crc32c::Extend(0, rec.data() + 24, total - 24);
    crc = storage::crc32c::Extend(crc, rec.data(), 20);
    std::memcpy(rec.data() + 20, &crc, 4);
    pos_ = (pos_ + 7) & ~uint64_t{7};
    bool first = true;
    size_t done = 0;
    while (done < rec.size()) {
      if (pos_ % kWalPageSize == 0) Header(pos_, !first || done > 0);
      first = false;
      size_t take = std::min<uint64_t>(rec.size() - done, kWalPageSize - pos_ % kWalPageSize);
      Put(pos_, rec.substr(done, take));
      pos_ += take;
      done += take;
    }
    return pos_;
  }
  // Moves to the next segment (after an XLOG_SWITCH).
  void NextSegment() { pos_ = (pos_ + kWalSegmentSize - 1) / kWalSegmentSize * kWalSegmentSize; }
  std::string& bytes() { return buf_; }
  uint64_t begin() const { return begin_; }

 private:
  void Header(uint64_t page, bool continues) {
    std::string h(page % kWalSegmentSize == 0 ? 40 : 24, '\0');
    uint16_t magic = kWalPageMagic, info = (continues ? 1 : 0) | (h.size() == 40 ? 2 : 0);
    std::memcpy(h.data(), &magic, 2);
    std::memcpy(h.data() + 2, &info, 2);
    std::memcpy(h.data() + 8, &page, 8);
    Put(page, h);
    pos_ = page + h.size();
  }
  void Put(uint64_t at, const std::string& data) {
    uint64_t off = at - begin_;
    if (buf_.size() < off + data.size()) {
      buf_.resize((off + data.size() + kWalPageSize - 1) / kWalPageSize * kWalPageSize, '\0');
    }
    std::memcpy(buf_.data() + off, data.data(), data.size());
  }
  uint64_t begin_, pos_;
  std::string buf_;
};

TEST(WalRecordsEndTest, StopsAfterTheLastWholeRecord) {
  uint64_t begin = 7 * kWalSegmentSize + 3 * kWalPageSize;
  WalWriter w(begin);
  uint64_t a = w.Record(100);
  uint64_t b = w.Record(60);
  EXPECT_EQ(WalRecordsEnd(begin + 24, begin, w.bytes()), b);  // from the page's first record
  EXPECT_EQ(WalRecordsEnd(a, begin, w.bytes()), b);
  EXPECT_EQ(WalRecordsEnd(b, begin, w.bytes()), b);  // nothing after it: zeros
}

TEST(WalRecordsEndTest, FollowsARecordAcrossPagesAndStopsWhereItIsTorn) {
  uint64_t begin = 7 * kWalSegmentSize + 3 * kWalPageSize;
  WalWriter w(begin);
  uint64_t a = w.Record(8000);
  uint64_t b = w.Record(3000);  // straddles into the next page, after its header
  ASSERT_GT(b, begin + kWalPageSize);
  EXPECT_EQ(WalRecordsEnd(begin + 24, begin, w.bytes()), b);
  // The next page not written yet: the record is incomplete.
  std::string cut = w.bytes().substr(0, kWalPageSize);
  EXPECT_EQ(WalRecordsEnd(begin + 24, begin, cut), a);
  // A byte of the second record changed: its CRC fails.
  std::string torn = w.bytes();
  torn[a - begin + 40] ^= 1;
  EXPECT_EQ(WalRecordsEnd(begin + 24, begin, torn), a);
  // A page that is not the one expected there (recycled) ends the WAL too.
  std::string stale = w.bytes();
  uint64_t wrong = 1;
  std::memcpy(stale.data() + kWalPageSize + 8, &wrong, 8);
  EXPECT_EQ(WalRecordsEnd(begin + 24, begin, stale), a);
}

TEST(WalRecordsEndTest, AnXlogSwitchEndsItsSegment) {
  uint64_t begin = 8 * kWalSegmentSize - kWalPageSize;  // the last page of segment 7
  WalWriter w(begin);
  w.Record(200);
  w.Record(32, /*rmid=*/0, /*info=*/0x40);
  EXPECT_EQ(WalRecordsEnd(begin + 24, begin, w.bytes()), 8 * kWalSegmentSize);
  w.NextSegment();
  uint64_t next = w.Record(500);  // after the long header of segment 8
  // Where a standby that replayed the switch stands: the segment's end.
  EXPECT_EQ(WalRecordsEnd(8 * kWalSegmentSize, begin, w.bytes()), next);
  EXPECT_EQ(WalRecordsEnd(begin + 24, begin, w.bytes()), next);
}

}  // namespace
}  // namespace arbor::fs
