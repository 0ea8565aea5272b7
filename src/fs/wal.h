#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace arbor::fs {

// PostgreSQL 15's WAL page layout, as far as arborfs needs it (access/xlog_internal.h).
inline constexpr uint16_t kWalPageMagic = 0xD110;
inline constexpr uint64_t kWalPageSize = 8192;
inline constexpr uint64_t kWalSegmentSize = 16ull << 20;  // initdb's default, which Arbor uses

// If `data`, written at `offset` of a file, is WAL — whole 8 KiB pages, each starting with a
// page header that carries the WAL magic and its own address (which matches its place in a
// 16 MiB segment) — returns the LSN up to which the write holds WAL. Otherwise nullopt.
//
// PostgreSQL writes WAL in whole pages and zero-fills a page's unused tail, and records are
// 8-byte aligned; so the end is the page's address plus its last non-zero byte rounded up to
// 8. This never exceeds the true end (a record ending in zero bytes makes it lower), so a
// branch "where the WAL reached L" may fork a write later than the earliest, never earlier.
std::optional<uint64_t> WalEndOfWrite(uint64_t offset, std::span<const char> data);

// Where a standby that has replayed up to `from` (pg_last_wal_replay_lsn(): the end of the last
// record it replayed) stops when it reads `wal`, the WAL bytes of LSNs [begin, begin +
// wal.size()) with `begin` page aligned and <= `from`: the end of the last whole record after
// `from` that has valid page headers and a matching CRC, or `from` if there is none. Like
// PostgreSQL's reader it follows records across pages and segments (a record may straddle
// pages, a page starts with a header, an XLOG_SWITCH record ends its segment), and it stops at
// zeros, a torn record or a page that does not belong there.
uint64_t WalRecordsEnd(uint64_t from, uint64_t begin, std::span<const char> wal);

// The name of the file in pg_wal that holds `lsn` on PostgreSQL timeline `tli`
// ("000000010000000000000009" for 0/9000000 on timeline 1).
std::string WalFileName(uint32_t tli, uint64_t lsn);

// True if `head`, the first bytes of a WAL segment file, is the header of its first page as
// PostgreSQL writes it for the segment that starts at `segment_start`: the WAL magic, the long
// header's flag and that page address. False for a recycled segment not yet rewritten (it
// still holds an older segment's pages), for zeros and for anything shorter than a header.
bool StartsWalSegment(std::span<const char> head, uint64_t segment_start);

}  // namespace arbor::fs
