#include "common/proc.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace arbor {
namespace {

TEST(ProcStat, ReadsStateAndParentWhateverTheName) {
  char old_name[17] = {};
  ASSERT_EQ(prctl(PR_GET_NAME, old_name), 0);
  // A name that looks like the fields after it.
  ASSERT_EQ(prctl(PR_SET_NAME, "a) Z 1 (b"), 0);
  auto st = ReadProcStat(getpid());
  ASSERT_EQ(prctl(PR_SET_NAME, old_name), 0);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->parent, getppid());
  EXPECT_EQ(st->state, 'R');  // this thread, reading
}

TEST(ProcStat, AProcessThatIsGoneHasNone) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  int status;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_FALSE(ReadProcStat(child).has_value());
}

}  // namespace
}  // namespace arbor
