#include "fs/wal.h"

#include <algorithm>
#include <cstring>

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

}  // namespace arbor::fs
