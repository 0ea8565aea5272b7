#include "storage/keys.h"

#include <algorithm>
#include <cstring>

namespace arbor::storage::keys {
namespace {

void PutU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<const char*>(&v), 4); }
void PutU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), 8); }

// Little reader over a value; every Get fails softly on short input.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v) { return Take(v, 1); }
  bool U32(uint32_t* v) { return Take(v, 4); }
  bool U64(uint64_t* v) { return Take(v, 8); }
  bool I64(int64_t* v) { return Take(v, 8); }
  bool Bytes(std::string* s, size_t n) {
    if (in_.size() < n) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  size_t left() const { return in_.size(); }

 private:
  bool Take(void* v, size_t n) {
    if (in_.size() < n) return false;
    std::memcpy(v, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view in_;
};

bool ValidKind(uint8_t k) { return k >= 1 && k <= 3; }

}  // namespace

void PutBE64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(b, 8);
}

uint64_t GetBE64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

std::string TimelinePrefix(TimelineId tl) {
  std::string k(1, kData);
  PutBE64(&k, tl.value());
  return k;
}

std::string KindPrefix(TimelineId tl, Kind kind) {
  std::string k = TimelinePrefix(tl);
  k.push_back(static_cast<char>(kind));
  return k;
}

std::string AttrPrefix(TimelineId tl, InodeId ino) {
  std::string k = KindPrefix(tl, Kind::kAttr);
  PutBE64(&k, ino.value());
  return k;
}

std::string BlockInodePrefix(TimelineId tl, InodeId ino) {
  std::string k = KindPrefix(tl, Kind::kBlock);
  PutBE64(&k, ino.value());
  return k;
}

std::string BlockPrefix(TimelineId tl, InodeId ino, uint64_t block) {
  std::string k = BlockInodePrefix(tl, ino);
  PutBE64(&k, block);
  return k;
}

std::string DirPrefix(TimelineId tl, InodeId dir) {
  std::string k = KindPrefix(tl, Kind::kDirent);
  PutBE64(&k, dir.value());
  return k;
}

std::string DirentPrefix(TimelineId tl, InodeId dir, std::string_view name) {
  std::string k = DirPrefix(tl, dir);
  k.append(name);
  k.push_back('\0');
  return k;
}

std::string TimeKey(TimelineId tl, Seq seq) {
  std::string k = KindPrefix(tl, Kind::kTime);
  PutBE64(&k, seq.value());
  return k;
}

std::string WrittenKey(TimelineId tl) { return KindPrefix(tl, Kind::kWritten); }

std::string WalKey(TimelineId tl, Lsn end) {
  std::string k = KindPrefix(tl, Kind::kWal);
  PutBE64(&k, end.value());
  return k;
}

std::string ChangeKey(TimelineId tl, Seq seq) {
  std::string k = KindPrefix(tl, Kind::kChange);
  PutBE64(&k, seq.value());
  return k;
}

std::string TimelineRecordKey(TimelineId tl) {
  std::string k(kTimelinePrefix);
  PutBE64(&k, tl.value());
  return k;
}

std::string GcFloorKey(TimelineId root) {
  std::string k(kGcFloorPrefix);
  PutBE64(&k, root.value());
  return k;
}

void AppendVersion(std::string* key, Seq seq) { PutBE64(key, ~seq.value()); }

Seq VersionOf(std::string_view key) { return Seq(~GetBE64(key.substr(key.size() - 8))); }

std::string_view Unversioned(std::string_view key) { return key.substr(0, key.size() - 8); }

std::string EncodeAttr(const Attr& a) {
  std::string out;
  out.push_back(kPresent);
  out.push_back(static_cast<char>(a.kind));
  PutU32(&out, a.mode);
  PutU32(&out, a.uid);
  PutU32(&out, a.gid);
  PutU32(&out, a.nlink);
  PutU64(&out, a.size);
  PutU64(&out, static_cast<uint64_t>(a.atime_ns));
  PutU64(&out, static_cast<uint64_t>(a.mtime_ns));
  PutU64(&out, static_cast<uint64_t>(a.ctime_ns));
  PutU32(&out, static_cast<uint32_t>(a.symlink_target.size()));
  out.append(a.symlink_target);
  return out;
}

Result<Attr> DecodeAttr(std::string_view in) {
  Reader r(in);
  Attr a;
  uint8_t tag = 0, kind = 0;
  uint32_t target_len = 0;
  if (!r.U8(&tag) || tag != kPresent || !r.U8(&kind) || !ValidKind(kind) || !r.U32(&a.mode) ||
      !r.U32(&a.uid) || !r.U32(&a.gid) || !r.U32(&a.nlink) || !r.U64(&a.size) ||
      !r.I64(&a.atime_ns) || !r.I64(&a.mtime_ns) || !r.I64(&a.ctime_ns) || !r.U32(&target_len) ||
      !r.Bytes(&a.symlink_target, target_len)) {
    return Status::Corruption("malformed attribute record");
  }
  a.kind = static_cast<FileKind>(kind);
  return a;
}

std::string EncodeDirent(InodeId child, FileKind kind) {
  std::string out;
  out.push_back(kPresent);
  out.push_back(static_cast<char>(kind));
  PutU64(&out, child.value());
  return out;
}

Result<DirEntry> DecodeDirent(std::string_view name, std::string_view in) {
  Reader r(in);
  uint8_t tag = 0, kind = 0;
  uint64_t child = 0;
  if (!r.U8(&tag) || tag != kPresent || !r.U8(&kind) || !ValidKind(kind) || !r.U64(&child)) {
    return Status::Corruption("malformed directory entry");
  }
  return DirEntry{std::string(name), InodeId(child), static_cast<FileKind>(kind)};
}

std::string EncodeTimeline(const TimelineInfo& t) {
  std::string out;
  PutU32(&out, 1);  // record version
  PutU64(&out, t.id.value());
  PutU64(&out, t.parent.value());
  PutU64(&out, t.fork_seq.value());
  PutU64(&out, t.create_seq.value());
  PutU64(&out, static_cast<uint64_t>(t.create_time_us));
  PutU64(&out, static_cast<uint64_t>(t.fork_time_us));
  PutU64(&out, static_cast<uint64_t>(t.history_window_us));
  out.push_back(static_cast<char>(t.state));
  PutU64(&out, t.root.value());
  return out;
}

Result<TimelineInfo> DecodeTimeline(std::string_view in) {
  Reader r(in);
  TimelineInfo t;
  uint32_t version = 0;
  uint64_t id, parent, fork, create;
  uint8_t state = 0;
  uint64_t root = 0;
  if (!r.U32(&version) || version != 1 || !r.U64(&id) || !r.U64(&parent) || !r.U64(&fork) ||
      !r.U64(&create) || !r.I64(&t.create_time_us) || !r.I64(&t.fork_time_us) ||
      !r.I64(&t.history_window_us) || !r.U8(&state) || !r.U64(&root) ||
      (state != 1 && state != 2)) {
    return Status::Corruption("malformed timeline record");
  }
  t.id = TimelineId(id);
  t.parent = TimelineId(parent);
  t.fork_seq = Seq(fork);
  t.create_seq = Seq(create);
  t.state = static_cast<TimelineState>(state);
  t.root = TimelineId(root);
  return t;
}

namespace {

constexpr char kChangesEncoding = 1;

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    uint8_t b = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    if (shift == 63 && b > 1) return false;  // more than 64 bits
    r |= uint64_t{b & 0x7fu} << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string EncodeChanges(std::vector<ChangeEntry>* entries) {
  std::sort(entries->begin(), entries->end());
  entries->erase(std::unique(entries->begin(), entries->end()), entries->end());
  std::string out;
  out.reserve(1 + 2 * entries->size() + 8);
  out.push_back(kChangesEncoding);
  ChangeEntry prev;
  bool first = true;
  for (const ChangeEntry& e : *entries) {
    uint64_t d = e.ino - prev.ino;
    PutVarint(&out, d);
    PutVarint(&out, d == 0 && !first ? e.code - prev.code : e.code);
    prev = e;
    first = false;
  }
  return out;
}

Status DecodeChanges(std::string_view in, std::vector<ChangeEntry>* out) {
  if (in.empty() || in[0] != kChangesEncoding) return Status::Corruption("malformed change record");
  in.remove_prefix(1);
  ChangeEntry prev;
  bool first = true;
  while (!in.empty()) {
    uint64_t d, c;
    if (!GetVarint(&in, &d) || !GetVarint(&in, &c)) {
      return Status::Corruption("malformed change record");
    }
    ChangeEntry e{prev.ino + d, d == 0 && !first ? prev.code + c : c};
    out->push_back(e);
    prev = e;
    first = false;
  }
  return Status::Ok();
}

}  // namespace arbor::storage::keys
