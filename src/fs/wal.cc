#include "fs/wal.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "storage/crc32c.h"

namespace arbor::fs {

std::optional<uint64_t> WalEndOfWrite(uint64_t offset, std::span<const char> data) {
  if (offset % kWalPageSize != 0 || data.empty() || data.size() % kWalPageSize != 0) {
    return std::nullopt;
  }
  uint64_t end = 0;
  for (size_t p = 0; p < data.size(); p += kWalPageSize) {
    const char* page = data.data() + p;
    uint16_t magic, info;
    uint64_t pageaddr;
    std::memcpy(&magic, page, 2);
    std::memcpy(&info, page + 2, 2);
    std::memcpy(&pageaddr, page + 8, 8);
    // xlp_info has four flag bits; the address is page aligned and names this very page.
    if (magic != kWalPageMagic || (info & ~0xF) != 0 || pageaddr % kWalPageSize != 0 ||
        pageaddr % kWalSegmentSize != (offset + p) % kWalSegmentSize) {
      return std::nullopt;
    }
    size_t last = kWalPageSize;
    while (last > 0 && page[last - 1] == 0) --last;
    end = std::max(end, pageaddr + ((last + 7) & ~size_t{7}));
  }
  return end;
}

namespace {

constexpr uint64_t kShortHeader = 24;   // MAXALIGN(sizeof(XLogPageHeaderData))
constexpr uint64_t kLongHeader = 40;    // MAXALIGN(sizeof(XLogLongPageHeaderData))
constexpr uint64_t kRecordHeader = 24;  // sizeof(XLogRecord)
constexpr uint16_t kFirstIsContRecord = 0x0001;

uint64_t HeaderSize(uint64_t page_lsn) {
  return page_lsn % kWalSegmentSize == 0 ? kLongHeader : kShortHeader;
}

// The WAL of [begin, begin + size) read as PostgreSQL's reader reads it: the payload of each
// page, after its header.
class WalStream {
 public:
  WalStream(uint64_t begin, std::span<const char> wal) : begin_(begin), wal_(wal) {}

  // Where a record that follows one ending at `end` starts.
  static uint64_t NextRecord(uint64_t end) {
    uint64_t pos = (end + 7) & ~uint64_t{7};
    if (pos % kWalPageSize == 0) pos += HeaderSize(pos);
    return pos;
  }

  // Copies `n` payload bytes from `pos` (not inside a page header) into `out`, and sets
  // `*after` to the LSN after the last one. A page entered on the way must have a valid
  // header that marks it as continuing a record. False if the bytes are not all there.
  bool Read(uint64_t pos, uint64_t n, char* out, uint64_t* after) const {
    while (n > 0) {
      if (pos % kWalPageSize == 0) {
        if (!PageContinues(pos)) return false;
        pos += HeaderSize(pos);
      }
      uint64_t room = kWalPageSize - pos % kWalPageSize;
      uint64_t take = std::min(room, n);
      if (pos < begin_ || pos + take > begin_ + wal_.size()) return false;
      if (out != nullptr) {
        std::memcpy(out, wal_.data() + (pos - begin_), take);
        out += take;
      }
      pos += take;
      n -= take;
    }
    *after = pos;
    return true;
  }

  // The page at `page_lsn` has a valid header, and says it starts with a record's continuation.
  bool PageContinues(uint64_t page_lsn) const {
    if (page_lsn < begin_ || page_lsn + kWalPageSize > begin_ + wal_.size()) return false;
    const char* page = wal_.data() + (page_lsn - begin_);
    uint16_t magic, info;
    uint64_t pageaddr;
    std::memcpy(&magic, page, 2);
    std::memcpy(&info, page + 2, 2);
    std::memcpy(&pageaddr, page + 8, 8);
    return magic == kWalPageMagic && pageaddr == page_lsn && (info & kFirstIsContRecord) != 0;
  }

  // The page holding `pos` has a valid header (the start of a record on it needs one).
  bool PageValid(uint64_t pos) const {
    uint64_t page_lsn = pos / kWalPageSize * kWalPageSize;
    if (page_lsn < begin_ || page_lsn + kWalPageSize > begin_ + wal_.size()) return false;
    const char* page = wal_.data() + (page_lsn - begin_);
    uint16_t magic;
    uint64_t pageaddr;
    std::memcpy(&magic, page, 2);
    std::memcpy(&pageaddr, page + 8, 8);
    return magic == kWalPageMagic && pageaddr == page_lsn;
  }

 private:
  uint64_t begin_;
  std::span<const char> wal_;
};

}  // namespace

uint64_t WalRecordsEnd(uint64_t from, uint64_t begin, std::span<const char> wal) {
  WalStream stream(begin, wal);
  uint64_t end = from;
  std::string record;
  while (true) {
    uint64_t pos = WalStream::NextRecord(end);
    if (!stream.PageValid(pos)) return end;
    char header[kRecordHeader];
    uint64_t after = 0;
    if (!stream.Read(pos, kRecordHeader, header, &after)) return end;
    uint32_t total;
    std::memcpy(&total, header, 4);
    if (total < kRecordHeader || total > (1u << 30)) return end;  // zeros, or not a record
    record.resize(total);
    if (!stream.Read(pos, total, record.data(), &after)) return end;
    // xl_crc (at 20) covers the data after the header, then the header up to xl_crc.
    uint32_t want;
    std::memcpy(&want, record.data() + 20, 4);
    uint32_t crc = storage::crc32c::Extend(0, record.data() + kRecordHeader, total - kRecordHeader);
    crc = storage::crc32c::Extend(crc, record.data(), 20);
    if (crc != want) return end;
    end = after;
    // XLOG_SWITCH (rmgr 0, info 0x40): the rest of the segment is unused.
    uint8_t info = static_cast<uint8_t>(record[16]), rmid = static_cast<uint8_t>(record[17]);
    if (rmid == 0 && (info & 0xF0) == 0x40) {
      end = (end + kWalSegmentSize - 1) / kWalSegmentSize * kWalSegmentSize;
    }
  }
}

std::string WalFileName(uint32_t tli, uint64_t lsn) {
  constexpr uint64_t kPerId = (uint64_t{1} << 32) / kWalSegmentSize;  // segments per xlogid
  uint64_t segno = lsn / kWalSegmentSize;
  char name[32];
  snprintf(name, sizeof name, "%08X%08X%08X", tli, static_cast<uint32_t>(segno / kPerId),
           static_cast<uint32_t>(segno % kPerId));
  return name;
}

bool StartsWalSegment(std::span<const char> head, uint64_t segment_start) {
  constexpr uint16_t kLongHeaderFlag = 0x0002;  // XLP_LONG_HEADER
  if (head.size() < 16) return false;
  uint16_t magic, info;
  uint64_t pageaddr;
  std::memcpy(&magic, head.data(), 2);
  std::memcpy(&info, head.data() + 2, 2);
  std::memcpy(&pageaddr, head.data() + 8, 8);
  return magic == kWalPageMagic && (info & kLongHeaderFlag) != 0 && pageaddr == segment_start;
}

}  // namespace arbor::fs
