#include "storage/crc32c.h"

#include <array>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace arbor::storage::crc32c {
namespace {

// The Castagnoli polynomial, bit-reflected: bit 31 holds x^0 and bit 0 holds x^31, the order
// in which CRC32C consumes the bits of each byte.
constexpr uint32_t kPoly = 0x82F63B78;

// a * b mod P, both in the reflected representation.
constexpr uint32_t MultModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 0; i < 32; ++i) {
    if (a & (0x80000000u >> i)) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;  // b *= x
  }
  return product;
}

// kPow2[k] = x^(2^k) mod P.
constexpr std::array<uint32_t, 67> MakePow2() {
  std::array<uint32_t, 67> t{};
  t[0] = 0x40000000;  // x^1
  for (size_t k = 1; k < t.size(); ++k) t[k] = MultModP(t[k - 1], t[k - 1]);
  return t;
}
constexpr auto kPow2 = MakePow2();

// x^(8n) mod P: what the CRC register is multiplied by when n zero bytes go past it.
constexpr uint32_t X8nModP(size_t n) {
  uint32_t p = 0x80000000;  // x^0
  for (size_t k = 3; n != 0; n >>= 1, ++k) {
    if (n & 1) p = MultModP(kPow2[k], p);
  }
  return p;
}

constexpr std::array<uint32_t, 256> MakeByteTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kByteTable = MakeByteTable();

// The register arithmetic: the raw state (no pre- or post-inversion) after `n` bytes.
uint32_t TableUpdate(uint32_t state, const uint8_t* p, size_t n) {
  for (; n > 0; --n) state = kByteTable[(state ^ *p++) & 0xff] ^ (state >> 8);
  return state;
}

#if defined(__x86_64__)
// Multiplication of a state by x^(8 * kLane) mod P (and by x^(16 * kLane)), done a byte of the
// state at a time: the product is linear in the state, so it is the XOR of four lookups.
constexpr size_t kLane = 1024;

struct ShiftTable {
  uint32_t t[4][256];
};

constexpr ShiftTable MakeShift(size_t bytes) {
  ShiftTable s{};
  uint32_t op = X8nModP(bytes);
  for (int b = 0; b < 4; ++b) {
    for (uint32_t v = 0; v < 256; ++v) s.t[b][v] = MultModP(op, v << (8 * b));
  }
  return s;
}
constexpr ShiftTable kShiftOneLane = MakeShift(kLane);
constexpr ShiftTable kShiftTwoLanes = MakeShift(2 * kLane);

inline uint32_t Shift(const ShiftTable& s, uint32_t state) {
  return s.t[0][state & 0xff] ^ s.t[1][(state >> 8) & 0xff] ^ s.t[2][(state >> 16) & 0xff] ^
         s.t[3][state >> 24];
}

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The crc32 instruction: one 8-byte step has a latency of three cycles and a throughput of
// one, so long inputs run as three independent lanes of kLane bytes, joined with the shift
// tables (state(ABC) = state(A) * x^8|BC| + state0(B) * x^8|C| + state0(C)).
__attribute__((target("sse4.2"))) uint32_t Sse42Update(uint32_t state, const uint8_t* p, size_t n) {
  uint64_t a = state;
  while (n >= 3 * kLane) {
    uint64_t b = 0;
    uint64_t c = 0;
    for (size_t i = 0; i < kLane; i += 8) {
      a = _mm_crc32_u64(a, Load64(p + i));
      b = _mm_crc32_u64(b, Load64(p + kLane + i));
      c = _mm_crc32_u64(c, Load64(p + 2 * kLane + i));
    }
    a = Shift(kShiftTwoLanes, static_cast<uint32_t>(a)) ^
        Shift(kShiftOneLane, static_cast<uint32_t>(b)) ^ static_cast<uint32_t>(c);
    p += 3 * kLane;
    n -= 3 * kLane;
  }
  for (; n >= 8; n -= 8, p += 8) a = _mm_crc32_u64(a, Load64(p));
  uint32_t s = static_cast<uint32_t>(a);
  for (; n > 0; --n) s = _mm_crc32_u8(s, *p++);
  return s;
}
#endif

using UpdateFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

UpdateFn Choose() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) return Sse42Update;
#endif
  return TableUpdate;
}

UpdateFn Chosen() {
  static const UpdateFn fn = Choose();
  return fn;
}

}  // namespace

uint32_t Extend(uint32_t crc, const char* data, size_t n) {
  return ~Chosen()(~crc, reinterpret_cast<const uint8_t*>(data), n);
}

uint32_t Combine(uint32_t crc_a, uint32_t crc_b, size_t len_b) {
  // crc(AB) = crc(A) * x^(8|B|) + crc(B): the pre- and post-inversions cancel.
  return MultModP(X8nModP(len_b), crc_a) ^ crc_b;
}

uint32_t ExtendReference(uint32_t crc, const char* data, size_t n) {
  uint32_t state = ~crc;
  for (size_t i = 0; i < n; ++i) {
    state ^= static_cast<uint8_t>(data[i]);
    for (int k = 0; k < 8; ++k) state = (state & 1) ? (state >> 1) ^ kPoly : state >> 1;
  }
  return ~state;
}

std::string_view Implementation() { return Chosen() == TableUpdate ? "software" : "sse4.2"; }

}  // namespace arbor::storage::crc32c

// RocksDB's internal crc32c unit (util/crc32c.cc), replaced; see crc32c.h. The signatures are
// RocksDB 7's. The crc32c functions RocksDB inlines (Value, Mask, Unmask) call Extend.
namespace rocksdb::crc32c {

std::string IsFastCrc32Supported();
uint32_t Extend(uint32_t init_crc, const char* data, size_t n);
uint32_t Crc32cCombine(uint32_t crc1, uint32_t crc2, size_t crc2len);

std::string IsFastCrc32Supported() {
  return arbor::storage::crc32c::Implementation() == "software"
             ? "Not supported (Arbor's table-driven CRC32C)"
             : "Supported on x86 (Arbor's SSE4.2 CRC32C)";
}

uint32_t Extend(uint32_t init_crc, const char* data, size_t n) {
  return arbor::storage::crc32c::Extend(init_crc, data, n);
}

uint32_t Crc32cCombine(uint32_t crc1, uint32_t crc2, size_t crc2len) {
  return arbor::storage::crc32c::Combine(crc1, crc2, crc2len);
}

}  // namespace rocksdb::crc32c
