#pragma once

// Internal to storage: a RocksDB FileSystem that gives the write-ahead log files of the store
// pre-written space, so that a Sync of the log is an overwrite instead of an append.
//
// Why: every PostgreSQL commit on arborfs ends in Store::Sync, which is an fdatasync of the
// RocksDB WAL. On ext4 an fdatasync after an append must also commit the file's new size
// through the journal; after an overwrite of blocks that are already written it flushes only
// the data (measured here: about 2.5x cheaper). PostgreSQL does the same with its own WAL,
// which it writes into zero-filled 16 MB segments.
//
// How, and why it is safe (docs/storage-format.md, "WAL files"):
//   - A background thread keeps one spare file of `prefill_bytes`, filled with 0xFF and
//     fsynced, under a name RocksDB ignores. A new WAL file takes the spare by rename; the log
//     then overwrites it from offset 0. Without a spare ready, the WAL is an ordinary file.
//   - 0xFF bytes never parse as a log record (the length field reads 65535, more than a log
//     block), so RocksDB's reader, in kPointInTimeRecovery, stops at the first byte the log
//     did not write: exactly where an appended log would have ended. A torn or unsynced tail
//     reads as a stop too, never as a hole (zeros would be skipped silently; 0xFF is not).
//   - Recovery stops at the first such stop in any WAL and ignores the logs after it, so only
//     the newest WAL may end in fill: when RocksDB creates the next WAL, the previous one is
//     truncated to what it wrote and fsynced before the first record of the new one is
//     written. Store::Open flushes after recovery, so a log recovered with a fill tail is never
//     replayed again ahead of a newer log.
//   - The first Sync of each WAL file is a full fsync plus an fsync of the directory (the
//     rename and the size); later Syncs are fdatasync.
//
// Thread-safety: the FileSystem is thread-safe. A WAL file takes Append/Flush/Close from
// RocksDB's single log writer, and Sync from any thread (IsSyncThreadSafe).

#include <memory>
#include <string>

namespace rocksdb {
class FileSystem;
}

namespace arbor::storage {

// Wraps `base` for the store in `dir`. `prefill_bytes` is the size of each spare WAL file; 0
// turns pre-filling off (plain appended WAL files).
std::shared_ptr<rocksdb::FileSystem> NewWalFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                      std::string dir, uint64_t prefill_bytes);

// The name of the spare file inside the store directory (tests and docs).
inline constexpr const char* kWalSpareName = "ARBOR-WAL-SPARE";

}  // namespace arbor::storage
