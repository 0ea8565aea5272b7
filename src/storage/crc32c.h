#pragma once

// Internal to storage: CRC32C (Castagnoli) for RocksDB, computed with the CPU's crc32
// instruction.
//
// Why: Debian builds RocksDB portable, so its crc32c is the table-driven software loop. Every
// byte the store writes passes through it at least twice (the WAL record, then the blob or SST
// block at flush), and it was the largest single item in the server's profile under
// `pgbench -i` (about 9% of the busy CPU). The SSE4.2 instruction is several times faster.
//
// How: crc32c.cc defines the three functions of RocksDB's internal crc32c unit
// (rocksdb::crc32c::Extend, Crc32cCombine and IsFastCrc32Supported). The store links RocksDB
// statically, and our object is linked ahead of librocksdb.a, so the archive's own crc32c
// object is never pulled in and every RocksDB checksum goes through these. Had both been
// linked, the link would fail with a duplicate symbol; it cannot silently pick one.
//
// The values are the same CRC32C RocksDB has always written (tested against the standard
// check value and a bitwise reference), so stores written before and after read each other.
// A CPU without SSE4.2 gets a table-driven loop.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace arbor::storage::crc32c {

// Extends the CRC32C `crc` of some bytes with `n` more bytes (crc 0 starts a new one).
uint32_t Extend(uint32_t crc, const char* data, size_t n);

// The CRC32C of A followed by B, from crc(A), crc(B) and the length of B.
uint32_t Combine(uint32_t crc_a, uint32_t crc_b, size_t len_b);

// The bitwise reference (one bit at a time), for tests.
uint32_t ExtendReference(uint32_t crc, const char* data, size_t n);

// "sse4.2" or "software": what Extend uses on this CPU.
std::string_view Implementation();

}  // namespace arbor::storage::crc32c
