#include "common/status.h"

#include <gtest/gtest.h>

#include "common/ids.h"

namespace arbor {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd");
  return x / 2;
}

Status Quarter(int x, int* out) {
  ARBOR_ASSIGN_OR_RETURN(int h, Half(x));
  ARBOR_ASSIGN_OR_RETURN(int q, Half(h));
  *out = q;
  return Status::Ok();
}

TEST(StatusTest, PropagatesFirstError) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  Status s = Quarter(6, &out);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.ToString(), "InvalidArgument: odd");
}

TEST(IdsTest, StrongIdsCompare) {
  EXPECT_LT(Seq(1), Seq(2));
  EXPECT_EQ(TimelineId(3), TimelineId(3));
  EXPECT_EQ(kSeqMax.value(), ~uint64_t{0});
}

}  // namespace
}  // namespace arbor
