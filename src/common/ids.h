#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

namespace arbor {

// A strong integer id: ids of different kinds never convert into each other.
template <typename Tag>
class StrongId {
 public:
  constexpr StrongId() = default;
  constexpr explicit StrongId(uint64_t v) : v_(v) {}
  constexpr uint64_t value() const { return v_; }
  constexpr auto operator<=>(const StrongId&) const = default;
  std::string ToString() const { return std::to_string(v_); }

 private:
  uint64_t v_ = 0;
};

struct TimelineIdTag {};
struct SeqTag {};
struct InodeIdTag {};
struct LsnTag {};

// A timeline of the store; one per branch. 0 is never a valid timeline.
using TimelineId = StrongId<TimelineIdTag>;
// A store-wide, strictly increasing mutation number. Not a PostgreSQL LSN.
using Seq = StrongId<SeqTag>;
// A file or directory of a timeline's tree. The root directory is kRootInode.
using InodeId = StrongId<InodeIdTag>;
// A PostgreSQL WAL position (pg_lsn). Not a Seq.
using Lsn = StrongId<LsnTag>;

inline constexpr InodeId kRootInode{1};
// Reads "at the head": the newest version of everything.
inline constexpr Seq kSeqMax{std::numeric_limits<uint64_t>::max()};

}  // namespace arbor

template <typename Tag>
struct std::hash<arbor::StrongId<Tag>> {
  size_t operator()(const arbor::StrongId<Tag>& id) const noexcept {
    return std::hash<uint64_t>()(id.value());
  }
};
