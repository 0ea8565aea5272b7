// The data diff's proportional part: which pages of which relation files may differ between
// two endpoints (engine.h, ChangedPagesBetween; docs/workflow.md, "Data diff").
#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <tuple>

#include "common/log.h"
#include "control/engine.h"

namespace arbor::control {
namespace {

// PostgreSQL's segment size: 1 GiB files of 8 KiB pages (RELSEG_SIZE).
constexpr uint64_t kPagesPerSegment = 131072;

// Where one inode sits in PGDATA: base/<db>/<relfilenode>[.<segment>], main fork only.
struct RelFile {
  uint32_t db = 0;
  uint32_t relfilenode = 0;
  uint64_t segment = 0;
};

bool ParseU32(std::string_view s, uint32_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// "<relfilenode>" or "<relfilenode>.<segment>"; false for forks (_fsm, _vm, _init) and
// anything else.
bool ParseRelFileName(const std::string& name, uint32_t* rfn, uint64_t* segment) {
  size_t dot = name.find('.');
  std::string_view head(name.data(), dot == std::string::npos ? name.size() : dot);
  if (!ParseU32(head, rfn)) return false;
  *segment = 0;
  if (dot == std::string::npos) return true;
  uint32_t seg = 0;
  if (!ParseU32(std::string_view(name).substr(dot + 1), &seg)) return false;
  *segment = seg;
  return true;
}

// Every main-fork relation file of the tree at (tl, at), by inode. Costs one directory read
// per database: proportional to the number of files, never to their size.
Result<std::map<InodeId, RelFile>> RelationFiles(const storage::Store& store, TimelineId tl,
                                                 Seq at) {
  std::map<InodeId, RelFile> out;
  ARBOR_ASSIGN_OR_RETURN(auto base, store.Lookup(tl, at, kRootInode, "base"));
  if (!base || base->kind != storage::FileKind::kDirectory) return out;
  ARBOR_ASSIGN_OR_RETURN(auto dbs, store.ReadDir(tl, at, base->ino));
  for (const auto& d : dbs) {
    uint32_t db = 0;
    if (d.kind != storage::FileKind::kDirectory || !ParseU32(d.name, &db)) continue;
    ARBOR_ASSIGN_OR_RETURN(auto files, store.ReadDir(tl, at, d.ino));
    for (const auto& f : files) {
      RelFile rf;
      rf.db = db;
      if (f.kind != storage::FileKind::kRegular ||
          !ParseRelFileName(f.name, &rf.relfilenode, &rf.segment)) {
        continue;
      }
      out[f.ino] = rf;
    }
  }
  return out;
}

// (db, relfilenode, segment) -> inode, the inverse of RelationFiles.
using FileKey = std::tuple<uint32_t, uint32_t, uint64_t>;
std::map<FileKey, InodeId> ByPath(const std::map<InodeId, RelFile>& files) {
  std::map<FileKey, InodeId> out;
  for (const auto& [ino, f] : files) out[{f.db, f.relfilenode, f.segment}] = ino;
  return out;
}

}  // namespace

Result<ChangedPages> Engine::ChangedPagesBetween(const std::string& project,
                                                 const std::string& branch,
                                                 const std::string& endpoint,
                                                 const std::string& against_branch,
                                                 const std::string& against_endpoint) {
  // One side: the timeline it reads (the tree its files are named in), and every timeline
  // whose changes it may show.
  struct SideTimelines {
    TimelineId tree;
    std::vector<TimelineId> sources;
  };
  SideTimelines sides[2];
  std::vector<std::string> targets;
  std::string checkpoint_failure;
  {
    std::unique_lock l(mu_);
    // The write budgets the checkpoints lift come back before the lock goes, however this
    // block ends.
    LiftedBudgets lifted{this, {}};
    const std::pair<std::string, std::string> names[2] = {{branch, endpoint},
                                                          {against_branch, against_endpoint}};
    for (int i = 0; i < 2; ++i) {
      ARBOR_RETURN_IF_ERROR(WaitBranchFreeLocked(l, project, names[i].first));
      ARBOR_ASSIGN_OR_RETURN(EndpointRecord * e,
                             FindEndpoint(project, names[i].first, names[i].second));
      ARBOR_ASSIGN_OR_RETURN(BranchRecord * b, FindBranch(project, names[i].first));
      if (e->replica) {
        return Status::InvalidArgument("endpoint " + ComputeId(*e) +
                                       " is a read replica, which may lag its branch; compare "
                                       "the branch's read-write endpoint");
      }
      if (e->pinned) {
        sides[i].tree = e->timeline;
        sides[i].sources = {e->timeline, b->timeline};
      } else {
        sides[i].tree = b->timeline;
        sides[i].sources = {b->timeline};
      }
    }
    // Lifted only now: the wait for the second branch above may be long.
    for (const auto& name : names) {
      for (auto& cid : CheckpointTargetsLocked(project, name.first, &lifted.keys)) {
        if (std::find(targets.begin(), targets.end(), cid) == targets.end()) {
          targets.push_back(cid);
        }
      }
    }
    if (!targets.empty()) {
      Unlocked(l, [&] {
        for (const std::string& cid : targets) {
          Status st = supervisor_->Checkpoint(cid);
          if (st.ok()) continue;
          // Its dirty pages may not be in the store: the change set could miss them.
          log::warn("engine: changed pages: CHECKPOINT of {}: {}", cid, st.ToString());
          if (checkpoint_failure.empty()) {
            checkpoint_failure = "CHECKPOINT of " + cid + " failed: " + st.message();
          }
        }
        return 0;
      });
    }
  }
  if (!checkpoint_failure.empty()) {
    ChangedPages out;
    out.complete = false;
    out.reason = checkpoint_failure;
    return out;
  }
  // The store is thread-safe; from here on nothing needs the engine's lock. A timeline
  // deleted meanwhile (a reset) answers NotFound.
  Seq head = store_->Head();
  ChangedPages out;
  std::set<storage::BlockRef> blocks;
  for (TimelineId a : sides[0].sources) {
    for (TimelineId b : sides[1].sources) {
      auto changes = store_->Changes(a, head, b, head);
      if (!changes.ok()) {
        Code code = changes.status().code();
        if (code == Code::kFailedPrecondition || code == Code::kOutOfRange) {
          out.complete = false;
          out.reason = changes.status().message();
          return out;
        }
        return changes.status();
      }
      blocks.insert(changes->blocks.begin(), changes->blocks.end());
    }
  }
  std::map<InodeId, RelFile> files[2];
  std::map<FileKey, InodeId> paths[2];
  for (int i = 0; i < 2; ++i) {
    ARBOR_ASSIGN_OR_RETURN(files[i], RelationFiles(*store_, sides[i].tree, head));
    paths[i] = ByPath(files[i]);
  }
  // A relation is `whole` when one of its segments is a different file on the two sides.
  std::map<std::pair<uint32_t, uint32_t>, ChangedRelation> rels;
  for (int i = 0; i < 2; ++i) {
    for (const auto& [key, ino] : paths[i]) {
      auto other = paths[1 - i].find(key);
      if (other != paths[1 - i].end() && other->second == ino) continue;
      auto& r = rels[{std::get<0>(key), std::get<1>(key)}];
      r.relfilenode = std::get<1>(key);
      r.whole = true;
    }
  }
  std::map<std::pair<uint32_t, uint32_t>, std::vector<uint64_t>> pages;
  for (const storage::BlockRef& ref : blocks) {
    const RelFile* f = nullptr;
    for (int i = 0; i < 2 && f == nullptr; ++i) {
      auto it = files[i].find(ref.ino);
      if (it != files[i].end()) f = &it->second;
    }
    if (f == nullptr) continue;  // not a relation file (WAL, pg_xact, a fork, ...)
    pages[{f->db, f->relfilenode}].push_back(f->segment * kPagesPerSegment + ref.block);
  }
  for (auto& [key, list] : pages) {
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
    auto& r = rels[key];
    r.relfilenode = key.second;
    for (uint64_t p : list) {
      if (!r.pages.empty() && r.pages.back().second + 1 == p) {
        r.pages.back().second = p;
      } else {
        r.pages.push_back({p, p});
      }
    }
  }
  for (auto& [key, r] : rels) out.databases[key.first].push_back(std::move(r));
  return out;
}

}  // namespace arbor::control
