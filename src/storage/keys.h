#pragma once

// Internal: the byte layout of the store's RocksDB keys and values. Documented in
// docs/storage-format.md; change both together.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "storage/store.h"

namespace arbor::storage::keys {

// The format this code reads and writes, stored under kFormatKey.
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr std::string_view kFormatKey = "m:format";
inline constexpr std::string_view kMagic = "arbor-store";
inline constexpr std::string_view kNextInodeKey = "m:next_ino";
inline constexpr std::string_view kTimelinePrefix = "m:tl:";       // + timeline id (8 bytes BE)
inline constexpr std::string_view kGcFloorPrefix = "m:gc_floor:";  // + root id (8 bytes BE)
inline constexpr std::string_view kCatalogPrefix = "c:";           // + the control plane's key
// u64: the first seq from which every mutation has a change record (Kind::kChange).
inline constexpr std::string_view kChangeIndexFromKey = "m:change_index_from";

// Data keys start with 't', the timeline id, then a kind byte.
inline constexpr char kData = 't';
enum class Kind : char {
  kAttr = 'A',     // t tl A ino ~seq
  kBlock = 'B',    // t tl B ino block ~seq
  kDirent = 'D',   // t tl D dir name \0 ~seq
  kTime = 'T',     // t tl T seq           -> wall time (µs)
  kWritten = 'W',  // t tl W               -> bytes written since fork
  kWal = 'L',      // t tl L end_lsn       -> seq of the first write reaching end_lsn
  kChange = 'C',   // t tl C seq           -> the attributes and blocks that seq wrote
};

// Versioned values start with a tag byte.
inline constexpr char kTombstone = 0;
inline constexpr char kPresent = 1;

void PutBE64(std::string* out, uint64_t v);
uint64_t GetBE64(std::string_view in);  // REQUIRES: in.size() >= 8

// The key of `timeline`'s data of one kind, up to (not including) the version suffix.
std::string TimelinePrefix(TimelineId tl);  // t tl
std::string AttrPrefix(TimelineId tl, InodeId ino);
std::string BlockPrefix(TimelineId tl, InodeId ino, uint64_t block);
std::string BlockInodePrefix(TimelineId tl, InodeId ino);  // every block of one inode
std::string DirentPrefix(TimelineId tl, InodeId dir, std::string_view name);
std::string DirPrefix(TimelineId tl, InodeId dir);  // every dirent of one directory
std::string KindPrefix(TimelineId tl, Kind kind);
std::string TimeKey(TimelineId tl, Seq seq);
std::string WrittenKey(TimelineId tl);
std::string WalKey(TimelineId tl, Lsn end);
std::string ChangeKey(TimelineId tl, Seq seq);
std::string TimelineRecordKey(TimelineId tl);
std::string GcFloorKey(TimelineId root);

// Appends the version suffix: ~seq big-endian, so newer versions sort first.
void AppendVersion(std::string* key, Seq seq);
// The seq of a versioned key. REQUIRES: key.size() >= 8.
Seq VersionOf(std::string_view key);
// A versioned key without its version suffix.
std::string_view Unversioned(std::string_view key);

std::string EncodeAttr(const Attr& attr);
Result<Attr> DecodeAttr(std::string_view in);
std::string EncodeDirent(InodeId child, FileKind kind);
Result<DirEntry> DecodeDirent(std::string_view name, std::string_view in);
std::string EncodeTimeline(const TimelineInfo& info);

// One entry of a change record: the attribute record of `ino` (code 0) or its block
// `code - 1`.
struct ChangeEntry {
  uint64_t ino = 0;
  uint64_t code = 0;
  auto operator<=>(const ChangeEntry&) const = default;
};
inline ChangeEntry AttrChange(InodeId ino) { return {ino.value(), 0}; }
inline ChangeEntry BlockChange(InodeId ino, uint64_t block) { return {ino.value(), block + 1}; }
// The value of a change record: u8 encoding (1), then for each entry in (ino, code) order a
// LEB128 varint of the inode's delta from the previous entry's, and the code as a varint:
// relative to the previous code when the inode is the same, absolute otherwise. Sorts and
// deduplicates `entries`. About 2 bytes per block of a run of blocks of one file.
std::string EncodeChanges(std::vector<ChangeEntry>* entries);
// Appends the entries of a change record to `out`. Corruption if malformed.
Status DecodeChanges(std::string_view in, std::vector<ChangeEntry>* out);
Result<TimelineInfo> DecodeTimeline(std::string_view in);

}  // namespace arbor::storage::keys
