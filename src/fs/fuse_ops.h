#pragma once

#include <atomic>

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include "common/rate_limiter.h"
#include "fs/arborfs.h"
#include "fs/filesystem.h"

namespace arbor::fs {

// What every FUSE callback reaches through fuse_req_userdata. Owned by the Mount.
struct SessionContext {
  FileSystem* fs = nullptr;
  MountOptions options;
  // Every WRITE waits here for its bytes before it reaches the store (Mount::SetWriteRate).
  RateLimiter write_limiter;
  // Mount::DiscardWrites: WRITEs are answered without reaching the store.
  std::atomic<bool> discard_writes{false};
  // FSYNC requests received (Mount::Fsyncs).
  std::atomic<uint64_t> fsyncs{0};
};

// The one table of operations: each callback asks FileSystem for the work and sends the
// reply; FsError -> errno happens in exactly one place (ToErrno). No exception leaves it.
const fuse_lowlevel_ops& Operations();

// The errno for an FsError (0 for kOk).
int ToErrno(FsError e);

}  // namespace arbor::fs
