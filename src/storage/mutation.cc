#include <cassert>
#include <cstdint>
#include <cstring>

#include "storage/keys.h"
#include "storage/store.h"

namespace arbor::storage {

void Mutation::PutAttr(InodeId ino, const Attr& attr) {
  ops_.push_back({Op::kPutAttr, ino, 0, {}, attr.kind, {}, keys::EncodeAttr(attr)});
}

void Mutation::DeleteAttr(InodeId ino) { ops_.push_back({Op::kDelAttr, ino, 0, {}, {}, {}, {}}); }

void Mutation::PutDirent(InodeId dir, std::string_view name, InodeId child, FileKind kind) {
  ops_.push_back({Op::kPutDirent, dir, 0, child, kind, std::string(name), {}});
}

void Mutation::DeleteDirent(InodeId dir, std::string_view name) {
  ops_.push_back({Op::kDelDirent, dir, 0, {}, {}, std::string(name), {}});
}

size_t StoredSize(std::span<const char> data) {
  // Eight bytes at a time, then byte by byte: the zero-filled blocks of a new WAL segment are
  // scanned whole.
  size_t n = data.size();
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, data.data() + n - 8, 8);
    if (word != 0) break;
    n -= 8;
  }
  while (n > 0 && data[n - 1] == 0) --n;
  return n;
}

void Mutation::PutBlock(InodeId ino, uint64_t block, std::span<const char> data) {
  assert(data.size() <= kBlockSize);
  // Trailing zeros are implied: a block is stored without them.
  const size_t n = StoredSize(data);
  if (n == 0) {
    ZeroBlock(ino, block);
    return;
  }
  std::string v;
  v.reserve(n + 1);
  v.push_back(keys::kPresent);
  v.append(data.data(), n);
  ops_.push_back({Op::kPutBlock, ino, block, {}, {}, {}, std::move(v)});
}

void Mutation::ZeroBlock(InodeId ino, uint64_t block) {
  ops_.push_back({Op::kZeroBlock, ino, block, {}, {}, {}, {}});
}

}  // namespace arbor::storage
