#include "cli/cli.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "api/client.h"
#include "api/names.h"
#include "api/types.h"
#include "cli/args.h"
#include "cli/local_socket.h"
#include "cli/mask_file.h"
#include "cli/render.h"
#include "cli/session.h"
#include "cli/settings.h"
#include "cli/workflow.h"
#include "common/clock.h"

namespace arbor::cli {
namespace {

using api::Json;

// The endpoints of every branch, in the order of `bs`: one call per branch, as the API has no
// project-wide endpoint list. (Measured: ~1 ms a call against the daemon, whose engine
// serializes requests, so issuing them in parallel gains nothing.)
Result<std::vector<std::vector<api::Endpoint>>> EndpointsOf(const api::ApiClient& c,
                                                            const std::vector<api::Branch>& bs) {
  std::vector<std::vector<api::Endpoint>> out(bs.size());
  for (size_t i = 0; i < bs.size(); ++i) {
    auto name = api::ParseBranchName(bs[i].name);
    if (!name.ok()) continue;  // not a name this API serves; nothing to ask
    ARBOR_ASSIGN_OR_RETURN(out[i], c.ListEndpoints(*name));
  }
  return out;
}

// The state of each branch's endpoints, for the tree: "ACTIVE", "IDLE,ACTIVE", or "-".
Result<std::map<std::string, std::string>> EndpointStates(const api::ApiClient& c,
                                                          const std::vector<api::Branch>& bs) {
  ARBOR_ASSIGN_OR_RETURN(auto all, EndpointsOf(c, bs));
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string states;
    for (const auto& e : all[i]) states += (states.empty() ? "" : ",") + e.status.current_state;
    out[bs[i].name] = states.empty() ? "-" : states;
  }
  return out;
}

// Adds a hint in CLI terms to the server's expiration message.
Status WithExpiryHint(Status st) {
  if (st.ok() || st.message().rfind("Expiration must be specified", 0) != 0) return st;
  return Status(st.code(),
                st.message() + " (with the CLI: --ttl DUR, --expire-time TIME or --no-expiry)");
}

// ---- status ----

Status CmdStatus(const Session& s) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::ServerStatus st, c.GetStatus());
  ARBOR_ASSIGN_OR_RETURN(auto branches, c.ListBranches(s.ProjectId()));
  ARBOR_ASSIGN_OR_RETURN(auto all, EndpointsOf(c, branches));
  std::vector<api::Endpoint> running;
  for (auto& eps : all) {
    for (auto& e : eps) {
      if (e.status.current_state != "IDLE") running.push_back(std::move(e));
    }
  }
  if (s.Json()) {
    Json j = api::ToJson(st);
    j["running_endpoints"] = api::ToJsonList("e", running)["e"];
    s.PrintJson(j);
    return Status::Ok();
  }
  s.Print(
      RenderFields({{"version", st.version},
                    {"pid", std::to_string(st.pid)},
                    {"data dir", st.data_dir},
                    {"api", st.api},
                    {"proxy", st.proxy},
                    {"local socket", st.proxy_socket_dir.empty() ? "none" : st.proxy_socket_dir},
                    {"endpoint ports", st.endpoint_ports},
                    {"compute limits", st.compute_limits.empty() ? "unknown" : st.compute_limits},
                    {"console", st.console ? st.api + "/ (`arbor console` logs you in)"
                                           : "not built (make console)"},
                    {"metrics", st.api + "/metrics (with a token)" +
                                    (st.metrics.empty() ? "" : ", and " + st.metrics)},
                    {"project", s.project + " (" + std::to_string(branches.size()) +
                                    (branches.size() == 1 ? " branch, " : " branches, ") +
                                    std::to_string(running.size()) + " running)"}}));
  if (!running.empty()) s.Print("\n" + RenderEndpoints(running));
  return Status::Ok();
}

// ---- branch ----

struct CreateOpts {
  std::string name, parent, at, lsn, ttl, expire_time, from_snapshot, mask, cu;
  bool no_expiry = false, is_protected = false;
};

// --cu MIN-MAX (or one size, for both): compute units, 0.25 to 8.
std::pair<double, double> ParseCuRange(const std::string& text) {
  auto number = [&](const std::string& t) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != t.size() || !(v > 0)) {
      Usage("--cu " + text + ": expected MIN-MAX in compute units, e.g. 0.25-2 or 1");
    }
    return v;
  };
  size_t dash = text.find('-');
  if (dash == std::string::npos) {
    double v = number(text);
    return {v, v};
  }
  return {number(text.substr(0, dash)), number(text.substr(dash + 1))};
}

Status CmdBranchCreate(const Session& s, const CreateOpts& o) {
  api::BranchName name = s.Branch(o.name);
  api::BranchSpec spec;
  int expiries = !o.ttl.empty() + !o.expire_time.empty() + o.no_expiry;
  if (expiries > 1) {
    Usage("choose one of --ttl, --expire-time and --no-expiry: a branch either expires or not");
  }
  if (!o.at.empty() && !o.lsn.empty()) Usage("choose at most one of --at and --lsn");
  if (!o.parent.empty()) {
    api::BranchName parent = s.Branch(o.parent);
    if (parent.project != name.project) {
      Usage("--parent " + o.parent + " is not in project " + name.project);
    }
    spec.source_branch = parent.ToString();
  }
  if (!o.at.empty()) spec.source_branch_time_us = OrUsage(ParseTimeArg(o.at, s.Now()));
  if (!o.lsn.empty()) spec.source_branch_lsn = OrUsage(api::ParseLsn(o.lsn));
  if (!o.ttl.empty()) spec.ttl_s = OrUsage(ParseDurationArg(o.ttl));
  if (!o.expire_time.empty()) spec.expire_time_us = OrUsage(ParseTimeArg(o.expire_time, s.Now()));
  if (o.no_expiry) spec.no_expiry = true;
  if (o.is_protected) spec.is_protected = true;
  if (!o.from_snapshot.empty()) spec.source_snapshot = o.from_snapshot;
  std::optional<std::pair<double, double>> cu;
  if (!o.cu.empty()) cu = ParseCuRange(o.cu);
  if (!o.mask.empty()) {
    std::ifstream in(o.mask, std::ios::binary);
    if (!in) Usage("--mask " + o.mask + ": cannot read it");
    std::stringstream ss;
    ss << in.rdbuf();
    spec.masking = OrUsage(ParseMaskFile(ss.str(), o.mask));
  }

  auto c = s.Client();
  if (expiries == 0) {
    // The project's default TTL, when one is configured (arbor project update --default-ttl).
    auto project = c.GetProject(name.project);
    if (project.ok() && project->spec.default_branch_ttl_s) {
      spec.ttl_s = *project->spec.default_branch_ttl_s;
    }
  }
  auto b = c.CreateBranch(name.project, name.branch, spec);
  if (!b.ok()) return WithExpiryHint(b.status());
  if (cu) {
    // The new branch's endpoint has not started yet: its size applies from its first start.
    auto sized = c.UpdateEndpointSize(api::EndpointName{name.project, name.branch, kPrimary},
                                      cu->first, cu->second);
    if (!sized.ok()) {
      return Status(
          sized.status().code(),
          "branch " + b->name + " was made, but its size was not set: " + sized.status().message() +
              " (set it with arbor endpoint update " + name.branch + " --min-cu MIN --max-cu MAX)");
    }
  }
  if (s.Json()) {
    s.PrintJson(api::ToJson(*b));
    return Status::Ok();
  }
  s.Print("Created branch " + b->name + ".\n" + RenderBranch(*b, {}, s.Now()) +
          "Connect with: arbor psql " + name.branch +
          (name.project != "default" ? " --project " + name.project : "") + "\n");
  return Status::Ok();
}

// The deleted branches not yet purged: when each was deleted, when it goes for good, and the
// bytes it wrote (what a purge frees, less what compaction shares).
Status CmdBranchListDeleted(const Session& s) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(auto all, c.ListBranches(s.ProjectId(), /*show_deleted=*/true));
  std::vector<api::Branch> deleted;
  for (const auto& b : all) {
    if (b.status.deleted) deleted.push_back(b);
  }
  if (s.Json()) {
    s.PrintJson(api::ToJsonList("branches", deleted));
    return Status::Ok();
  }
  if (deleted.empty()) {
    s.Print("No deleted branches in project " + s.ProjectId() + ".\n");
    return Status::Ok();
  }
  std::vector<Row> rows;
  for (const auto& b : deleted) {
    auto time = [](const std::optional<int64_t>& t) {
      return t ? api::FormatTime(*t) : std::string("-");
    };
    rows.push_back({ShortName(b.name), time(b.status.delete_time_us), time(b.status.purge_time_us),
                    HumanBytes(b.status.written_bytes)});
  }
  s.Print(RenderTable({"NAME", "DELETED AT", "PURGE AT", "WRITTEN"}, rows) +
          "Bring one back with: arbor branch undelete NAME\n");
  return Status::Ok();
}

Status CmdBranchUndelete(const Session& s, const std::string& text, const std::string& new_name) {
  api::BranchName name = s.Branch(text);
  std::optional<std::string> new_id;
  if (!new_name.empty()) {
    api::BranchName n = s.Branch(new_name);
    if (n.project != name.project) Usage("--new-name " + new_name + " is not in " + name.project);
    new_id = n.branch;
  }
  ARBOR_ASSIGN_OR_RETURN(api::UndeleteResult r, s.Client().UndeleteBranch(name, new_id));
  if (s.Json()) {
    s.PrintJson(api::ToJson(r));
    return Status::Ok();
  }
  std::string out = "Undeleted branch " + r.branch.name + ".\n";
  for (const auto& n : r.notes) out += "Note: " + n + "\n";
  s.Print(out + RenderBranch(r.branch, r.endpoints, s.Now()));
  return Status::Ok();
}

Status CmdBranchPurge(const Session& s, const std::string& text) {
  api::BranchName name = s.Branch(text);
  ARBOR_RETURN_IF_ERROR(s.Client().PurgeBranch(name));
  if (s.Json()) {
    s.PrintJson(Json::object());
  } else {
    s.Print("Purged branch " + name.ToString() +
            " for good; its space is freed in the background.\n");
  }
  return Status::Ok();
}

Status CmdBranchList(const Session& s) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(auto branches, c.ListBranches(s.ProjectId()));
  if (s.Json()) {
    s.PrintJson(api::ToJsonList("branches", branches));
    return Status::Ok();
  }
  ARBOR_ASSIGN_OR_RETURN(auto states, EndpointStates(c, branches));
  s.Print(RenderBranchTree(branches, states, s.Now()));
  return Status::Ok();
}

Status CmdBranchGet(const Session& s, const std::string& text) {
  api::BranchName name = s.Branch(text);
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::Branch b, c.GetBranch(name));
  if (s.Json()) {
    s.PrintJson(api::ToJson(b));
    return Status::Ok();
  }
  ARBOR_ASSIGN_OR_RETURN(auto eps, c.ListEndpoints(name));
  s.Print(RenderBranch(b, eps, s.Now()));
  return Status::Ok();
}

Status CmdBranchDelete(const Session& s, const std::string& text, bool seed) {
  api::BranchName name = s.Branch(text);
  ARBOR_RETURN_IF_ERROR(s.Client().DeleteBranch(name));
  if (s.Json(seed)) {
    s.PrintJson(Json::object());
  } else {
    s.Print("Deleted branch " + name.ToString() +
            ". It stays recoverable for the project's history window:\n  arbor branch undelete " +
            name.branch + "\n");
  }
  return Status::Ok();
}

struct UpdateOpts {
  std::string name, ttl, expire_time;
  bool no_expiry = false, protect = false, unprotect = false;
};

Status CmdBranchUpdate(const Session& s, const UpdateOpts& o) {
  api::BranchName name = s.Branch(o.name);
  if (!o.ttl.empty() + !o.expire_time.empty() + o.no_expiry > 1) {
    Usage("choose one of --ttl, --expire-time and --no-expiry: a branch either expires or not");
  }
  if (o.protect && o.unprotect) Usage("choose one of --protect and --unprotect");
  api::BranchSpec spec;
  std::string mask;
  auto add = [&](const char* field) { mask += (mask.empty() ? "" : ",") + std::string(field); };
  if (o.protect || o.unprotect) {
    spec.is_protected = o.protect;
    add("spec.is_protected");
  }
  if (!o.ttl.empty()) {
    spec.ttl_s = OrUsage(ParseDurationArg(o.ttl));
    add("spec.ttl");
  }
  if (!o.expire_time.empty()) {
    spec.expire_time_us = OrUsage(ParseTimeArg(o.expire_time, s.Now()));
    add("spec.expire_time");
  }
  if (o.no_expiry) {
    spec.no_expiry = true;
    add("spec.no_expiry");
  }
  if (mask.empty()) {
    Usage("nothing to change: give --protect, --unprotect, --ttl, --expire-time or --no-expiry");
  }
  ARBOR_ASSIGN_OR_RETURN(api::Branch b, s.Client().UpdateBranch(name, spec, mask));
  if (s.Json()) {
    s.PrintJson(api::ToJson(b));
    return Status::Ok();
  }
  s.Print("Updated branch " + b.name + ".\n" + RenderBranch(b, {}, s.Now()));
  return Status::Ok();
}

Status CmdProjectGet(const Session& s) {
  ARBOR_ASSIGN_OR_RETURN(api::Project p, s.Client().GetProject(s.project));
  if (s.Json()) {
    s.PrintJson(api::ToJson(p));
    return Status::Ok();
  }
  auto dur = [](const std::optional<int64_t>& v) {
    return v ? api::FormatDuration(*v) : std::string("none");
  };
  std::string schedule = "none";
  if (const auto& sc = p.spec.snapshot_schedule) {
    schedule = ShortName(sc->branch) + " every " + api::FormatDuration(sc->every_s) + ", keep " +
               std::to_string(sc->keep);
  }
  s.Print("name                " + p.name + "\ndefault branch      " + p.status.default_branch +
          "\nhistory retention   " + dur(p.spec.history_retention_s) + "\ndefault branch TTL  " +
          dur(p.spec.default_branch_ttl_s) + "\nsnapshot schedule   " + schedule + "\n");
  return Status::Ok();
}

struct ProjectUpdateOpts {
  std::string default_ttl, retention, snapshot_every, snapshot_branch;
  std::optional<int64_t> snapshot_keep;
  bool no_snapshot_schedule = false;
};

Status CmdProjectUpdate(const Session& s, const ProjectUpdateOpts& o) {
  api::ProjectSpec spec;
  if (!o.default_ttl.empty()) spec.default_branch_ttl_s = OrUsage(ParseDurationArg(o.default_ttl));
  if (!o.retention.empty()) spec.history_retention_s = OrUsage(ParseDurationArg(o.retention));
  const bool schedule = !o.snapshot_every.empty() || o.snapshot_keep || !o.snapshot_branch.empty();
  if (schedule && o.no_snapshot_schedule) {
    Usage("choose --no-snapshot-schedule or a schedule (--snapshot-every, --snapshot-keep)");
  }
  if (schedule && (o.snapshot_every.empty() || !o.snapshot_keep)) {
    Usage("a snapshot schedule needs --snapshot-every and --snapshot-keep");
  }
  // Every flag is checked before anything is sent.
  const int64_t every_s = schedule ? OrUsage(ParseDurationArg(o.snapshot_every)) : 0;
  if (!spec.default_branch_ttl_s && !spec.history_retention_s && !schedule &&
      !o.no_snapshot_schedule) {
    Usage("give --default-ttl, --history-retention, or a snapshot schedule");
  }
  auto c = s.Client();
  if (spec.default_branch_ttl_s || spec.history_retention_s) {
    ARBOR_RETURN_IF_ERROR(c.UpdateProject(s.project, spec).status());
  }
  if (schedule || o.no_snapshot_schedule) {
    std::optional<api::SnapshotScheduleSpec> sched;
    if (schedule) {
      std::string branch = o.snapshot_branch;
      if (branch.empty()) {
        ARBOR_ASSIGN_OR_RETURN(api::Project p, c.GetProject(s.project));
        branch = p.status.default_branch;
      }
      sched = api::SnapshotScheduleSpec{branch, every_s, *o.snapshot_keep};
    }
    ARBOR_RETURN_IF_ERROR(c.SetSnapshotSchedule(s.project, sched).status());
  }
  return CmdProjectGet(s);
}

Status CmdBranchReset(const Session& s, const std::string& text, const std::string& at) {
  api::BranchName name = s.Branch(text);
  api::PointInTime when;
  if (!at.empty()) when.source_branch_time_us = OrUsage(ParseTimeArg(at, s.Now()));
  ARBOR_ASSIGN_OR_RETURN(api::Branch b, s.Client().ResetBranch(name, when));
  if (s.Json()) {
    s.PrintJson(api::ToJson(b));
    return Status::Ok();
  }
  std::string parent = b.status.source_branch ? ShortName(*b.status.source_branch) : "its parent";
  std::string t = b.status.source_branch_time_us
                      ? " as of " + api::FormatTime(*b.status.source_branch_time_us)
                      : "";
  s.Print("Reset branch " + b.name + " to " + parent + t + ".\n" + RenderBranch(b, {}, s.Now()));
  return Status::Ok();
}

Status CmdBranchRestore(const Session& s, const std::string& text, const std::string& at,
                        const std::string& lsn) {
  api::BranchName name = s.Branch(text);
  if (at.empty() == lsn.empty()) Usage("give exactly one of --at TIME and --lsn LSN");
  api::PointInTime when;
  if (!at.empty()) when.source_branch_time_us = OrUsage(ParseTimeArg(at, s.Now()));
  if (!lsn.empty()) when.source_branch_lsn = OrUsage(api::ParseLsn(lsn));
  ARBOR_ASSIGN_OR_RETURN(api::RestoreResult r, s.Client().RestoreBranch(name, when));
  if (s.Json()) {
    s.PrintJson(api::ToJson(r));
    return Status::Ok();
  }
  std::string point = !at.empty() ? api::FormatTime(*when.source_branch_time_us)
                                  : "LSN " + api::FormatLsn(*when.source_branch_lsn);
  s.Print("Restored branch " + r.branch.name + " to its state at " + point + ".\n" +
          "Its previous state is kept as branch " + r.backup_branch + ".\n");
  return Status::Ok();
}

// ---- snapshots ----

// "1.5 MB": sizes for people.
std::string SizeText(int64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) v /= 1000, ++u;
  char buf[32];
  snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

struct SnapshotOpts {
  std::string branch, name, at, ttl, expire_time;
  bool no_expiry = false;
};

Status CmdSnapshotCreate(const Session& s, const SnapshotOpts& o) {
  api::BranchName b = s.Branch(o.branch);
  if (!o.ttl.empty() + !o.expire_time.empty() + o.no_expiry > 1) {
    Usage("choose one of --ttl, --expire-time and --no-expiry: a snapshot either expires or not");
  }
  api::SnapshotSpec spec;
  if (!o.at.empty()) spec.source_branch_time_us = OrUsage(ParseTimeArg(o.at, s.Now()));
  if (!o.ttl.empty()) spec.ttl_s = OrUsage(ParseDurationArg(o.ttl));
  if (!o.expire_time.empty()) spec.expire_time_us = OrUsage(ParseTimeArg(o.expire_time, s.Now()));
  if (o.no_expiry) spec.no_expiry = true;
  std::string name = o.name;
  if (name.empty()) {
    time_t secs = s.Now() / 1'000'000;
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "snap-%Y%m%dt%H%M%Sz", &tm);
    name = buf;
  }
  auto snap = s.Client().CreateSnapshot(b, name, spec);
  if (!snap.ok()) return WithExpiryHint(snap.status());
  if (s.Json()) {
    s.PrintJson(api::ToJson(*snap));
    return Status::Ok();
  }
  s.Print("Created snapshot " + snap->name + " (the state of " + b.branch + " at " +
          api::FormatTime(snap->status.source_branch_time_us) + ").\n" +
          "Branch from it with: arbor branch create NAME --from-snapshot " + b.branch + "/" + name +
          " --ttl 7d\n");
  return Status::Ok();
}

Status CmdSnapshotList(const Session& s, const std::string& branch) {
  api::BranchName b{s.ProjectId(), ""};
  if (!branch.empty()) b = s.Branch(branch);
  ARBOR_ASSIGN_OR_RETURN(std::vector<api::Snapshot> snaps, s.Client().ListSnapshots(b));
  if (s.Json()) {
    s.PrintJson(api::ToJsonList("snapshots", snaps));
    return Status::Ok();
  }
  std::vector<Row> rows;
  for (const api::Snapshot& sn : snaps) {
    std::string id = sn.name.substr(sn.name.rfind('/') + 1);
    rows.push_back({id, ShortName(sn.status.source_branch),
                    api::FormatTime(sn.status.source_branch_time_us),
                    SizeText(sn.status.exclusive_size_bytes),
                    sn.status.expire_time_us ? api::FormatTime(*sn.status.expire_time_us)
                                             : std::string("never"),
                    sn.status.scheduled ? "schedule" : "manual"});
  }
  s.Print(
      RenderTable({"SNAPSHOT", "BRANCH", "STATE AT", "EXCLUSIVE", "EXPIRES", "TAKEN BY"}, rows));
  return Status::Ok();
}

Status CmdSnapshotDelete(const Session& s, const std::string& branch, const std::string& name) {
  api::BranchName b = s.Branch(branch);
  ARBOR_RETURN_IF_ERROR(s.Client().DeleteSnapshot(b, name));
  if (s.Json()) {
    s.PrintJson(Json::object());
  } else {
    s.Print("Deleted snapshot " + b.ToString() + "/snapshots/" + name + ".\n");
  }
  return Status::Ok();
}

// ---- endpoints and connections ----

Status CmdEndpointStartStop(const Session& s, bool start, const std::string& branch,
                            const std::string& endpoint) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::EndpointName name, EndpointOf(s, c, branch, endpoint));
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, start ? c.StartEndpoint(name) : c.StopEndpoint(name));
  if (s.Json()) {
    s.PrintJson(api::ToJson(e));
  } else {
    s.Print(RenderEndpoints({e}));
  }
  return Status::Ok();
}

// `arbor endpoint create BRANCH ENDPOINT [--read-only]`: a read-only one is a read replica.
Status CmdEndpointCreate(const Session& s, const std::string& branch, const std::string& id,
                         bool read_only, const std::string& suspend_timeout, bool no_suspension) {
  api::EndpointSpec spec;
  spec.endpoint_type = read_only ? "ENDPOINT_TYPE_READ_ONLY" : "ENDPOINT_TYPE_READ_WRITE";
  if (!suspend_timeout.empty()) spec.suspend_timeout_s = OrUsage(ParseDurationArg(suspend_timeout));
  if (no_suspension) spec.no_suspension = true;
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, s.Client().CreateEndpoint(s.Branch(branch), id, spec));
  if (s.Json()) {
    s.PrintJson(api::ToJson(e));
  } else {
    s.Print(RenderEndpoints({e}));
  }
  return Status::Ok();
}

std::string Num(const char* format, double v) {
  char text[32];
  std::snprintf(text, sizeof text, format, v);
  return text;
}

// `arbor endpoint update BRANCH [--endpoint E] [--min-cu X] [--max-cu Y]`: its size.
Status CmdEndpointUpdate(const Session& s, const std::string& branch, const std::string& id,
                         std::optional<double> min_cu, std::optional<double> max_cu) {
  if (!min_cu && !max_cu) Usage("give --min-cu, --max-cu or both");
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::EndpointName name, EndpointOf(s, c, branch, id));
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, c.UpdateEndpointSize(name, min_cu, max_cu));
  if (s.Json()) {
    s.PrintJson(api::ToJson(e));
    return Status::Ok();
  }
  auto cu = [](std::optional<double> v) { return v ? Num("%g", *v) : std::string("?"); };
  std::vector<std::pair<std::string, std::string>> fields{
      {"endpoint", e.name},
      {"size",
       cu(e.spec.autoscaling_limit_min_cu) + "-" + cu(e.spec.autoscaling_limit_max_cu) + " CU"}};
  if (e.status.current_cu) {
    fields.push_back({"current", cu(e.status.current_cu) +
                                     " CU (CPU now; memory and PostgreSQL's settings follow "
                                     "the max at its next start)"});
  }
  s.Print("Updated endpoint " + e.name + ".\n" + RenderFields(fields));
  return Status::Ok();
}

// `arbor usage [--start T] [--end T]`: CU-seconds and written bytes per endpoint and hour.
// The console's URL with a one-time login link for the CLI's token. The code is in the
// fragment: browsers send it to no server and keep it out of Referer headers.
Status CmdConsole(const Session& s) {
  ARBOR_ASSIGN_OR_RETURN(Json j, s.Client().ConsoleLink());
  std::string base = s.Client().base_url();
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string url = base + "/#login=" + j.value("code", "");
  if (s.Json()) {
    s.PrintJson(Json{{"url", url}, {"expire_time", j.value("expire_time", "")}});
    return Status::Ok();
  }
  s.Print("Open the console (the link logs in once, until " + j.value("expire_time", "") +
          "):\n  " + url + "\nLater, log in at " + base +
          "/ with an API token (`arbor token create`).\n");
  return Status::Ok();
}

Status CmdUsage(const Session& s, const std::string& start, const std::string& end) {
  auto abs = [&](const std::string& t) {
    return t.empty() ? t : api::FormatTime(OrUsage(ParseTimeArg(t, s.Now())));
  };
  ARBOR_ASSIGN_OR_RETURN(Json j, s.Client().GetUsage(s.ProjectId(), abs(start), abs(end)));
  if (s.Json()) {
    s.PrintJson(j);
    return Status::Ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (const Json& u : j.value("usage", Json::array())) {
    std::string ep = u.value("endpoint", "");
    api::EndpointName name;
    if (auto parsed = api::ParseEndpointName(ep); parsed.ok()) name = *parsed;
    rows.push_back({u.value("hour", ""), name.branch.empty() ? ep : name.branch,
                    name.endpoint.empty() ? "" : name.endpoint,
                    Num("%.1f", u.value("cu_seconds", 0.0)),
                    HumanBytes(u.value("written_bytes", uint64_t{0}))});
  }
  const Json total = j.value("total", Json::object());
  rows.push_back({"total", "", "", Num("%.1f", total.value("cu_seconds", 0.0)),
                  HumanBytes(total.value("written_bytes", uint64_t{0}))});
  s.Print("Usage of projects/" + s.ProjectId() + " from " + j.value("start", "") + " to " +
          j.value("end", "") + "\n" +
          RenderTable({"HOUR", "BRANCH", "ENDPOINT", "CU-SECONDS", "WRITTEN"}, rows));
  return Status::Ok();
}

Status CmdEndpointDelete(const Session& s, const std::string& branch, const std::string& id) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::EndpointName name, EndpointOf(s, c, branch, id));
  ARBOR_RETURN_IF_ERROR(c.DeleteEndpoint(name));
  if (s.Json()) {
    s.PrintJson({{"endpoint", name.ToString()}});
  } else {
    s.Print("Deleted endpoint " + name.ToString() + "\n");
  }
  return Status::Ok();
}

// Role names the CLI puts into API paths: those the API accepts.
std::string CheckedRole(const std::string& role) {
  bool ok =
      !role.empty() && role.size() <= 63 && ((role[0] >= 'a' && role[0] <= 'z') || role[0] == '_');
  for (char c : role) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  }
  if (!ok) Usage("role '" + role + "' must be lowercase letters, digits, '_' or '-'");
  return role;
}

// ---- roles ----

Status CmdRoleCreate(const Session& s, const std::string& branch, const std::string& role,
                     bool reset) {
  api::BranchName b = s.Branch(branch);
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::Role r, reset ? c.ResetRolePassword(b, CheckedRole(role))
                                            : c.CreateRole(b, CheckedRole(role)));
  if (s.Json()) {
    s.PrintJson(api::ToJson(r));
  } else {
    s.Print("Role " + r.postgres_role + " on " + b.branch + (reset ? " has a new password" : "") +
            ". Its password (shown this once): " + r.password.value_or("") + "\n");
  }
  return Status::Ok();
}

Status CmdRoleList(const Session& s, const std::string& branch) {
  ARBOR_ASSIGN_OR_RETURN(std::vector<api::Role> roles, s.Client().ListRoles(s.Branch(branch)));
  if (s.Json()) {
    s.PrintJson(api::ToJsonList("roles", roles));
    return Status::Ok();
  }
  std::vector<Row> rows;
  for (const api::Role& r : roles) {
    rows.push_back({r.postgres_role, api::FormatTime(r.password_update_time_us),
                    r.password_applied ? "yes" : "at the next start"});
  }
  s.Print(RenderTable({"ROLE", "PASSWORD SET", "IN POSTGRES"}, rows));
  return Status::Ok();
}

// ---- databases ----

// `branch`, or the project's default branch when it is empty.
Result<api::BranchName> BranchOrDefault(const Session& s, const api::ApiClient& c,
                                        const std::string& branch) {
  if (branch.empty()) return DefaultBranch(c, s.ProjectId());
  return s.Branch(branch);
}

Status CmdDatabaseCreate(const Session& s, const std::string& branch, const std::string& name,
                         const std::string& owner) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::BranchName b, BranchOrDefault(s, c, branch));
  ARBOR_ASSIGN_OR_RETURN(api::Database d, c.CreateDatabase(b, name, owner));
  if (s.Json()) {
    s.PrintJson(api::Json{{"database", api::ToJson(d)}});
  } else {
    s.Print("Database " + d.name + " on " + b.branch + ", owned by " + d.owner_name + "\n");
  }
  return Status::Ok();
}

Status CmdDatabaseList(const Session& s, const std::string& branch) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::BranchName b, BranchOrDefault(s, c, branch));
  ARBOR_ASSIGN_OR_RETURN(std::vector<api::Database> dbs, c.ListDatabases(b));
  if (s.Json()) {
    s.PrintJson(api::ToJsonList("databases", dbs));
    return Status::Ok();
  }
  std::vector<Row> rows;
  for (const api::Database& d : dbs) rows.push_back({d.name, d.owner_name});
  s.Print(RenderTable({"DATABASE", "OWNER"}, rows));
  return Status::Ok();
}

Status CmdDatabaseDelete(const Session& s, const std::string& branch, const std::string& name,
                         bool force) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::BranchName b, BranchOrDefault(s, c, branch));
  ARBOR_RETURN_IF_ERROR(c.DeleteDatabase(b, name, force));
  if (s.Json()) {
    s.PrintJson(api::Json::object());
  } else {
    s.Print("Deleted database " + name + " on " + b.branch + "\n");
  }
  return Status::Ok();
}

Status CmdEndpointList(const Session& s, const std::string& branch) {
  auto c = s.Client();
  std::vector<api::Endpoint> all;
  if (!branch.empty()) {
    ARBOR_ASSIGN_OR_RETURN(all, c.ListEndpoints(s.Branch(branch)));
  } else {
    ARBOR_ASSIGN_OR_RETURN(auto branches, c.ListBranches(s.ProjectId()));
    ARBOR_ASSIGN_OR_RETURN(auto per_branch, EndpointsOf(c, branches));
    for (auto& eps : per_branch) {
      for (auto& e : eps) all.push_back(std::move(e));
    }
  }
  if (s.Json()) {
    s.PrintJson(api::ToJsonList("endpoints", all));
  } else {
    s.Print(RenderEndpoints(all));
  }
  return Status::Ok();
}

// How a client logs in to an endpoint through the proxy.
struct Login {
  std::string host, port, user = "owner", password, dbname = "postgres";
  // The proxy's unix socket directory for a client on the daemon's host; empty: TCP.
  std::string socket_dir;
  int64_t expire_time_us = 0;  // of a token; 0 for a role password
  std::string Url() const {
    return Local("postgresql://" + user + ":" + password + "@" + host + ":" + port + "/" + dbname);
  }
  // The URL without the password, for a client that gets it apart (PGPASSWORD, PGPASSFILE).
  std::string UrlWithoutPassword() const {
    return Local("postgresql://" + user + "@" + host + ":" + port + "/" + dbname);
  }
  std::string Local(const std::string& url) const {
    return socket_dir.empty() ? url : WithSocketDir(url, socket_dir);
  }
};

// The endpoint's login as `role`: a fresh token as the password (lives `ttl`, default 1 h), or
// with `role_password` a new password for the role, which does not expire (and replaces the
// one it had). Starts nothing: the proxy wakes the compute when the client connects.
Result<Login> LoginFor(const Session& s, const api::ApiClient& c, const api::EndpointName& name,
                       bool role_password, const std::string& ttl, const std::string& role) {
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, c.GetEndpoint(name));
  Login login;
  login.user = CheckedRole(role);
  login.host = e.status.host.empty() ? "127.0.0.1" : e.status.host;
  login.port = std::to_string(e.status.port);
  if (role_password) {
    ARBOR_ASSIGN_OR_RETURN(api::Role r,
                           c.ResetRolePassword(api::BranchName{name.project, name.branch}, role));
    if (!r.password) return Status::Internal("the API answered a reset without the password");
    *s.io->err << "arbor: role " << role << " on " << name.branch
               << " has a new password; the one it had stops working\n";
    login.password = *r.password;
    return login;
  }
  api::CredentialRequest req;
  req.endpoint = name.ToString();
  req.role = role;
  if (!ttl.empty()) req.ttl_s = OrUsage(ParseDurationArg(ttl));
  ARBOR_ASSIGN_OR_RETURN(api::Credential cred, c.GenerateCredential(req));
  login.password = cred.token;
  login.expire_time_us = cred.expire_time_us;
  return login;
}

struct LoginOpts {
  std::string branch, endpoint = kPrimary, ttl, role = "owner";
  bool role_password = false;
  bool local = false;  // connection-string --local
  std::vector<std::string> extra;
};

// The endpoint a login goes to: the branch's, or for BRANCH@TIME the one pinned there.
Result<api::EndpointName> LoginEndpoint(const Session& s, const api::ApiClient& c,
                                        const LoginOpts& o) {
  if (!IsPinned(o.branch)) return EndpointOf(s, c, o.branch, o.endpoint);
  if (o.role_password) {
    Usage("--role-password sets a password on the branch now; " + o.branch +
          " serves the branch as it was, with the roles it had then. Log in with a token "
          "(the default)");
  }
  if (o.endpoint != kPrimary) Usage("--endpoint cannot be combined with BRANCH@TIME");
  return PinnedEndpoint(s, c, o.branch);
}

Status CmdConnectionString(const Session& s, const LoginOpts& o) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::EndpointName name, LoginEndpoint(s, c, o));
  ARBOR_ASSIGN_OR_RETURN(Login login, LoginFor(s, c, name, o.role_password, o.ttl, o.role));
  if (o.local) {
    auto dir = LocalSocketDir(s, c, login.Url());
    if (!dir.ok()) {
      return Status::FailedPrecondition("no local connection string: " + dir.status().message());
    }
    login.socket_dir = *dir;
  }
  if (s.Json()) {
    s.PrintJson({{"endpoint", name.ToString()}, {"connection_string", login.Url()}});
  } else {
    s.Print(login.Url() + "\n");
  }
  return Status::Ok();
}

Status CmdPsql(const Session& s, const LoginOpts& o) {
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::EndpointName name, LoginEndpoint(s, c, o));
  ARBOR_ASSIGN_OR_RETURN(Login login, LoginFor(s, c, name, o.role_password, o.ttl, o.role));
  // On the daemon's host, through the proxy's unix socket: no TCP on the way.
  if (auto dir = LocalSocketDir(s, c, login.Url()); dir.ok()) login.socket_dir = *dir;
  std::vector<std::string> argv;
  argv.push_back(access(kDebianPsql, X_OK) == 0 ? kDebianPsql : "psql");
  argv.push_back(login.UrlWithoutPassword());  // the password goes in the environment
  argv.insert(argv.end(), o.extra.begin(), o.extra.end());
  s.io->out->flush();
  s.io->err->flush();
  std::string why = s.io->exec(argv, {{"PGPASSWORD", login.password}});
  return Status::NotFound("cannot run " + argv[0] + ": " + why + " (install postgresql-client-15)");
}

// Writes libpq's password file for `login` into `dir` (private), atomically: a client that
// reads it while it is being refreshed sees the old token or the new one, never a mix.
Status WritePassFile(const std::string& dir, const Login& login) {
  // host:port:database:user:password; ':' and '\\' are escaped (a token has neither).
  auto esc = [](const std::string& v) {
    std::string out;
    for (char ch : v) {
      if (ch == ':' || ch == '\\') out += '\\';
      out += ch;
    }
    return out;
  };
  std::string line = esc(login.host) + ":" + esc(login.port) + ":*:" + esc(login.user) + ":" +
                     esc(login.password) + "\n";
  // libpq looks a unix socket's login up under the socket directory's path.
  if (!login.socket_dir.empty()) {
    line += esc(login.socket_dir) + ":" + esc(login.port) + ":*:" + esc(login.user) + ":" +
            esc(login.password) + "\n";
  }
  std::string tmp = dir + "/pgpass.new";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("writing " + tmp + ": " + std::strerror(errno));
  bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  close(fd);
  if (!ok || rename(tmp.c_str(), (dir + "/pgpass").c_str()) != 0) {
    unlink(tmp.c_str());
    return Status::IOError("writing the password file in " + dir + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// `arbor run BRANCH -- CMD...`: CMD with DATABASE_URL (no password) and libpq's PG* variables
// set, and PGPASSFILE naming a private file that holds a token, refreshed before each token
// expires for as long as CMD runs. Every new connection of libpq, node-postgres, psycopg...
// reads the file, so a long-running app never needs a rotation cron.
Status CmdRun(const Session& s, const LoginOpts& o) {
  if (o.extra.empty()) Usage("give the command to run after --, e.g. arbor run dev -- npm test");
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::EndpointName name, LoginEndpoint(s, c, o));
  ARBOR_ASSIGN_OR_RETURN(Login login, LoginFor(s, c, name, o.role_password, o.ttl, o.role));
  if (auto dir = LocalSocketDir(s, c, login.Url()); dir.ok()) login.socket_dir = *dir;
  std::string base = s.io->getenv("XDG_RUNTIME_DIR").value_or("/tmp");
  std::string dir_template = base + "/arbor-run-XXXXXX";
  if (mkdtemp(dir_template.data()) == nullptr) {
    return Status::IOError("cannot make a private directory in " + base + ": " +
                           std::strerror(errno));
  }
  const std::string dir = dir_template;  // mkdtemp makes it 0700
  Status st = WritePassFile(dir, login);
  Io::Env env = {{"DATABASE_URL", login.UrlWithoutPassword()},
                 {"PGHOST", login.socket_dir.empty() ? login.host : login.socket_dir},
                 {"PGPORT", login.port},
                 {"PGUSER", login.user},
                 {"PGDATABASE", login.dbname},
                 {"PGPASSFILE", dir + "/pgpass"}};
  // A token is replaced when four fifths of its life are gone; a role password never.
  int64_t life_s =
      login.expire_time_us > 0 ? (login.expire_time_us - s.io->now_us()) / 1'000'000 : 0;
  int64_t every = login.expire_time_us > 0 ? std::max<int64_t>(30, life_s * 4 / 5) : 0;
  auto refresh = [&] {
    auto fresh = LoginFor(s, c, name, false, o.ttl, o.role);
    if (fresh.ok()) fresh->socket_dir = login.socket_dir;
    Status w = fresh.ok() ? WritePassFile(dir, *fresh) : fresh.status();
    if (!w.ok())
      *s.io->err << "arbor: refreshing the token for " << o.branch << ": " << w.message() << "\n";
  };
  Result<int> code = Status::Ok();
  if (st.ok()) {
    s.io->out->flush();
    s.io->err->flush();
    code = s.io->run_child(o.extra, env, every, refresh);
  }
  unlink((dir + "/pgpass").c_str());
  unlink((dir + "/pgpass.new").c_str());
  rmdir(dir.c_str());
  ARBOR_RETURN_IF_ERROR(st);
  if (!code.ok())
    return Status::NotFound("cannot run " + o.extra.front() + ": " + code.status().message());
  if (*code != 0) throw CLI::RuntimeError("", *code);  // the command's own exit status
  return Status::Ok();
}

Status CmdCredential(const Session& s, const std::string& endpoint_name, const std::string& ttl,
                     bool seed, const std::string& role = "") {
  api::CredentialRequest req;
  req.endpoint = endpoint_name;
  if (!role.empty()) req.role = role;
  if (!ttl.empty()) req.ttl_s = OrUsage(ParseDurationArg(ttl));
  ARBOR_ASSIGN_OR_RETURN(api::Credential cred, s.Client().GenerateCredential(req));
  if (s.Json(seed)) {
    s.PrintJson(api::ToJson(cred));
  } else {
    s.Print(
        RenderFields({{"token", cred.token}, {"expires", api::FormatTime(cred.expire_time_us)}}));
  }
  return Status::Ok();
}

// ---- the seed-compatible verbs ----

Status CmdSeedCreateBranch(const Session& s, const std::string& parent, const std::string& id,
                           const std::string& json_arg) {
  api::ProjectName project = OrUsage(api::ParseProjectName(parent));
  Status st = api::ValidateId(id, "branch id");
  if (!st.ok()) Usage(st.message());
  Json body = Json::object();
  if (!json_arg.empty()) {
    std::string text = json_arg;
    if (text[0] == '@') {
      std::ifstream in(text.substr(1));
      if (!in) Usage("--json " + text + ": cannot read " + text.substr(1));
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
    auto j = api::ParseJsonObject(text, "--json");
    if (!j.ok()) Usage(j.status().message() + R"( (e.g. --json '{"spec": {"ttl": "3600s"}}'))");
    body = std::move(j).value();
  }
  if (!body.contains("spec")) body["spec"] = Json::object();
  auto b = s.Client().CreateBranchRaw(project.project, id, body);
  if (!b.ok()) return b.status();
  if (s.Json(true)) {
    s.PrintJson(api::ToJson(*b));
  } else {
    s.Print(RenderBranch(*b, {}, s.Now()));
  }
  return Status::Ok();
}

Status CmdSeedListBranches(const Session& s, const std::string& parent) {
  api::ProjectName project = OrUsage(api::ParseProjectName(parent));
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(auto branches, c.ListBranches(project.project));
  if (s.Json(true)) {
    s.PrintJson(api::ToJsonList("branches", branches));
    return Status::Ok();
  }
  ARBOR_ASSIGN_OR_RETURN(auto states, EndpointStates(c, branches));
  s.Print(RenderBranchTree(branches, states, s.Now()));
  return Status::Ok();
}

Status CmdSeedGetBranch(const Session& s, const std::string& name_text) {
  api::BranchName name = OrUsage(api::ParseBranchName(name_text));
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(api::Branch b, c.GetBranch(name));
  if (s.Json(true)) {
    s.PrintJson(api::ToJson(b));
  } else {
    s.Print(RenderBranch(b, {}, s.Now()));
  }
  return Status::Ok();
}

// ---- wiring ----

void AddClientCommands(CLI::App& app, Session& s, Action* action) {
  // status
  auto* status = app.add_subcommand("status", "Show the daemon and the endpoints running");
  status->footer("Example:\n  arbor status\n  arbor status -o json");
  OnRun(status, action, [&s] { return CmdStatus(s); });

  auto* console = app.add_subcommand(
      "console", "Print the web console's URL, with a one-time login link (2 minutes)");
  console->footer("Example:\n  arbor console");
  OnRun(console, action, [&s] { return CmdConsole(s); });

  auto usage_range = std::make_shared<std::pair<std::string, std::string>>();
  auto* usage = app.add_subcommand(
      "usage", "CU-seconds and written bytes per endpoint and hour (default: the last 24 h)");
  usage->add_option("--start", usage_range->first, "from TIME (RFC 3339, or -7d)");
  usage->add_option("--end", usage_range->second, "until TIME (default: now)");
  usage->footer("Examples:\n  arbor usage\n  arbor usage --start -7d -o json");
  OnRun(usage, action,
        [&s, usage_range] { return CmdUsage(s, usage_range->first, usage_range->second); });

  // branch
  auto* branch = app.add_subcommand(
      "branch", "Create, list, inspect, update, delete, reset, restore branches");
  branch->require_subcommand(1);
  branch->footer(
      "Examples:\n  arbor branch create dev --ttl 7d\n  arbor branch list\n"
      "  arbor branch reset dev\n  arbor branch delete dev");

  auto co = std::make_shared<CreateOpts>();
  auto* create = branch->add_subcommand("create", "Create a branch (copies nothing)");
  create->add_option("name", co->name, "the new branch: dev, or projects/P/branches/dev")
      ->required();
  create->add_option("--parent,--from", co->parent,
                     "the branch to fork (default: the default branch)");
  auto* at = create->add_option("--at", co->at,
                                "fork the parent as it was at TIME (RFC 3339, or -5m, -2h)");
  auto* lsn = create->add_option("--lsn", co->lsn, "fork where the parent's WAL reached LSN");
  at->excludes(lsn);
  create->add_option("--ttl", co->ttl, "expire this long after creation (3600s, 90m, 2h, 7d)");
  create->add_option("--expire-time", co->expire_time, "expire at TIME (RFC 3339)");
  create->add_flag("--no-expiry", co->no_expiry, "never expire");
  create->add_flag("--protected", co->is_protected, "refuse deletion, reset and restore");
  auto* from_snap =
      create->add_option("--from-snapshot", co->from_snapshot,
                         "start from snapshot BRANCH/NAME (its branch is the parent)");
  from_snap->excludes(at)->excludes(lsn);
  create->add_option("--cu", co->cu,
                     "its endpoint's size in compute units, MIN-MAX or one size (0.25 to 8; "
                     "1 CU = 1 vCPU and 2 GiB; default: the project's, 0.25-1)");
  create->add_option("--mask", co->mask,
                     "mask columns inside the new branch before anyone connects: a TOML file "
                     "of [[rule]]s (see docs/cli.md)");
  create->footer(
      "One of --ttl, --expire-time and --no-expiry is required.\n"
      "Examples:\n"
      "  arbor branch create dev --ttl 7d\n"
      "  arbor branch create hotfix --parent production --at -15m --ttl 2h\n"
      "  arbor branch create audit --from-snapshot production/before-migration --ttl 1d\n"
      "  arbor branch create staging --no-expiry --protected\n"
      "  arbor branch create preview --from production --mask rules.toml --ttl 7d");
  OnRun(create, action, [&s, co] { return CmdBranchCreate(s, *co); });

  auto list_deleted = std::make_shared<bool>(false);
  auto* list = branch->add_subcommand("list", "Draw the project's branches as a tree");
  list->add_flag("--deleted", *list_deleted,
                 "list the deleted branches instead, with when each is purged");
  list->footer(
      "Example:\n  arbor branch list\n  arbor branch list -o json\n  arbor branch list --deleted");
  OnRun(list, action,
        [&s, list_deleted] { return *list_deleted ? CmdBranchListDeleted(s) : CmdBranchList(s); });

  auto get_name = std::make_shared<std::string>();
  auto* get = branch->add_subcommand("get", "Show one branch");
  get->add_option("name", *get_name, "dev, or projects/P/branches/dev")->required();
  get->footer("Example:\n  arbor branch get dev");
  OnRun(get, action, [&s, get_name] { return CmdBranchGet(s, *get_name); });

  auto del_name = std::make_shared<std::string>();
  auto del_purge = std::make_shared<bool>(false);
  auto* del = branch->add_subcommand(
      "delete", "Delete a branch and its endpoints (recoverable for the history window)");
  del->add_option("name", *del_name, "dev, or projects/P/branches/dev")->required();
  del->add_flag("--purge", *del_purge,
                "delete it for good now, with its data, freeing the space (admin; also for a "
                "branch already deleted)");
  del->footer(
      "A deleted branch can be undeleted until the project's history window has passed.\n"
      "Examples:\n  arbor branch delete dev\n  arbor branch delete dev --purge");
  OnRun(del, action, [&s, del_name, del_purge] {
    return *del_purge ? CmdBranchPurge(s, *del_name) : CmdBranchDelete(s, *del_name, false);
  });

  auto undel = std::make_shared<std::pair<std::string, std::string>>();
  auto* undelete = branch->add_subcommand(
      "undelete", "Bring back a deleted branch with its endpoints, ports and data");
  undelete->add_option("name", undel->first, "the deleted branch: dev, or projects/P/branches/dev")
      ->required();
  undelete->add_option("--new-name", undel->second,
                       "bring it back under this name (when a new branch took its name)");
  undelete->footer(
      "Examples:\n  arbor branch undelete dev\n  arbor branch undelete dev --new-name dev-old");
  OnRun(undelete, action,
        [&s, undel] { return CmdBranchUndelete(s, undel->first, undel->second); });

  auto uo = std::make_shared<UpdateOpts>();
  auto* update = branch->add_subcommand("update", "Change a branch's expiry or protection");
  update->add_option("name", uo->name, "dev, or projects/P/branches/dev")->required();
  update->add_option("--ttl", uo->ttl, "expire this long after creation (3600s, 2h, 7d)");
  update->add_option("--expire-time", uo->expire_time, "expire at TIME (RFC 3339)");
  update->add_flag("--no-expiry", uo->no_expiry, "never expire");
  update->add_flag("--protect", uo->protect, "refuse deletion, reset and restore");
  update->add_flag("--unprotect", uo->unprotect, "allow them again");
  update->footer(
      "Examples:\n  arbor branch update dev --ttl 14d\n  arbor branch update staging --protect");
  OnRun(update, action, [&s, uo] { return CmdBranchUpdate(s, *uo); });

  auto reset_opts = std::make_shared<std::pair<std::string, std::string>>();
  auto* reset = branch->add_subcommand("reset", "Give a branch its parent's state again");
  reset->add_option("name", reset_opts->first, "the branch to reset")->required();
  reset->add_option("--at", reset_opts->second, "the parent's state at TIME (default: now)");
  reset->footer("Examples:\n  arbor branch reset dev\n  arbor branch reset dev --at -1h");
  OnRun(reset, action,
        [&s, reset_opts] { return CmdBranchReset(s, reset_opts->first, reset_opts->second); });

  auto restore_opts = std::make_shared<std::array<std::string, 3>>();
  auto* restore = branch->add_subcommand(
      "restore", "Take a branch back to its own earlier state (the current one is kept)");
  restore->add_option("name", (*restore_opts)[0], "the branch to restore")->required();
  auto* rat = restore->add_option("--at", (*restore_opts)[1], "its state at TIME");
  auto* rlsn = restore->add_option("--lsn", (*restore_opts)[2], "its state at LSN");
  rat->excludes(rlsn);
  restore->footer(
      "Examples:\n  arbor branch restore production --at -10m\n"
      "  arbor branch restore dev --at 2026-11-24T16:00:00Z");
  OnRun(restore, action, [&s, restore_opts] {
    return CmdBranchRestore(s, (*restore_opts)[0], (*restore_opts)[1], (*restore_opts)[2]);
  });

  // snapshot
  auto* snapshot = app.add_subcommand(
      "snapshot", "Snapshots: a branch's state kept beyond the history window, to branch from");
  snapshot->require_subcommand(1);
  snapshot->footer(
      "A snapshot copies nothing; it keeps the versions its state needs, and `list` shows what\n"
      "each one alone keeps (EXCLUSIVE: what deleting it frees).\n"
      "Examples:\n  arbor snapshot create production before-migration --no-expiry\n"
      "  arbor snapshot create production --at -30m --ttl 7d\n  arbor snapshot list\n"
      "  arbor snapshot delete production before-migration");
  auto so = std::make_shared<SnapshotOpts>();
  auto* screate = snapshot->add_subcommand("create", "Take a snapshot of a branch (O(1))");
  screate->add_option("branch", so->branch, "the branch")->required();
  screate->add_option("name", so->name, "the snapshot's id (default: snap-<UTC time>)");
  screate->add_option("--at", so->at, "the branch's state at TIME (default: now)");
  screate->add_option("--ttl", so->ttl, "expire this long after creation (3600s, 2h, 7d)");
  screate->add_option("--expire-time", so->expire_time, "expire at TIME (RFC 3339)");
  screate->add_flag("--no-expiry", so->no_expiry, "never expire");
  OnRun(screate, action, [&s, so] { return CmdSnapshotCreate(s, *so); });
  auto* slist = snapshot->add_subcommand("list", "List the snapshots of a branch, or of all");
  slist->add_option("branch", so->branch, "the branch (default: every branch)");
  OnRun(slist, action, [&s, so] { return CmdSnapshotList(s, so->branch); });
  auto* sdelete = snapshot->add_subcommand("delete", "Delete a snapshot; GC frees what it kept");
  sdelete->add_option("branch", so->branch, "the branch")->required();
  sdelete->add_option("name", so->name, "the snapshot's id")->required();
  OnRun(sdelete, action, [&s, so] { return CmdSnapshotDelete(s, so->branch, so->name); });

  // project
  auto* project = app.add_subcommand("project", "Show or change the project's settings");
  project->require_subcommand(1);
  auto* pshow = project->add_subcommand("get", "Show the project");
  OnRun(pshow, action, [&s] { return CmdProjectGet(s); });
  auto popts = std::make_shared<ProjectUpdateOpts>();
  auto* pupdate = project->add_subcommand(
      "update", "Change the default TTL, the history window or the snapshot schedule");
  pupdate->add_option("--default-ttl", popts->default_ttl,
                      "TTL of branches created without an expiry (e.g. 7d)");
  pupdate->add_option("--history-retention", popts->retention,
                      "the point-in-time window (1h to 35d)");
  pupdate->add_option("--snapshot-every", popts->snapshot_every,
                      "take a scheduled snapshot this often (at least 60s; e.g. 1d)");
  pupdate->add_option("--snapshot-keep", popts->snapshot_keep,
                      "keep the newest N scheduled snapshots");
  pupdate->add_option("--snapshot-branch", popts->snapshot_branch,
                      "the branch the schedule snapshots (default: the default branch)");
  pupdate->add_flag("--no-snapshot-schedule", popts->no_snapshot_schedule,
                    "stop taking scheduled snapshots (those taken stay)");
  pupdate->footer(
      "Examples:\n  arbor project update --default-ttl 7d\n"
      "  arbor project update --snapshot-every 1d --snapshot-keep 7");
  OnRun(pupdate, action, [&s, popts] { return CmdProjectUpdate(s, *popts); });

  // endpoint
  // role
  auto* role = app.add_subcommand("role", "Login roles of a branch, with passwords Arbor sets");
  role->require_subcommand(1);
  role->footer(
      "Roles live in the branch's own catalog; a new branch gets fresh passwords for them.\n"
      "Examples:\n  arbor role create dev app\n  arbor role list dev\n"
      "  arbor role reset-password dev app\n  arbor role delete dev app");
  for (const char* verb : {"create", "reset-password", "delete"}) {
    auto args = std::make_shared<std::pair<std::string, std::string>>();
    std::string v = verb;
    auto* sub = role->add_subcommand(
        verb, v == "create"           ? "Create a login role; prints its password once"
              : v == "reset-password" ? "Give a role a new password; prints it once"
                                      : "Drop a role from the branch");
    sub->add_option("branch", args->first, "the branch")->required();
    sub->add_option("role", args->second, "the role's name")->required();
    OnRun(sub, action, [&s, args, v]() -> Status {
      if (v == "delete") {
        ARBOR_RETURN_IF_ERROR(
            s.Client().DeleteRole(s.Branch(args->first), CheckedRole(args->second)));
        if (!s.Json()) s.Print("Deleted role " + args->second + " on " + args->first + "\n");
        return Status::Ok();
      }
      return CmdRoleCreate(s, args->first, args->second, v == "reset-password");
    });
  }
  auto role_branch = std::make_shared<std::string>();
  auto* rlist = role->add_subcommand("list", "List a branch's roles");
  rlist->add_option("branch", *role_branch, "the branch")->required();
  OnRun(rlist, action, [&s, role_branch] { return CmdRoleList(s, *role_branch); });

  // database
  auto* database =
      app.add_subcommand("database", "Databases of a branch (CREATE DATABASE, DROP DATABASE)");
  database->require_subcommand(1);
  database->footer(
      "Databases live in the branch's own postgres: a branch made later has them, its parent\n"
      "does not. --branch defaults to the project's default branch.\n"
      "Examples:\n  arbor database create shop --owner app --branch dev\n"
      "  arbor database list --branch dev\n  arbor database delete shop --branch dev --force");
  struct DatabaseArgs {
    std::string name, owner, branch;
    bool force = false;
  };
  auto dargs = std::make_shared<DatabaseArgs>();
  auto* dcreate = database->add_subcommand("create", "Create a database on a branch");
  dcreate->add_option("name", dargs->name, "the database's name")->required();
  dcreate->add_option("--owner", dargs->owner, "the role that owns it (default: owner)");
  dcreate->add_option("--branch", dargs->branch, "the branch (default: the default branch)");
  OnRun(dcreate, action,
        [&s, dargs] { return CmdDatabaseCreate(s, dargs->branch, dargs->name, dargs->owner); });
  auto* dlist = database->add_subcommand("list", "List a branch's databases");
  dlist->add_option("--branch", dargs->branch, "the branch (default: the default branch)");
  OnRun(dlist, action, [&s, dargs] { return CmdDatabaseList(s, dargs->branch); });
  auto* ddelete = database->add_subcommand("delete", "Drop a database from a branch");
  ddelete->add_option("name", dargs->name, "the database's name")->required();
  ddelete->add_flag("--force", dargs->force, "end the sessions connected to it first");
  ddelete->add_option("--branch", dargs->branch, "the branch (default: the default branch)");
  OnRun(ddelete, action,
        [&s, dargs] { return CmdDatabaseDelete(s, dargs->branch, dargs->name, dargs->force); });

  // token
  auto* token = app.add_subcommand("token", "API tokens for a team: admin, developer or viewer");
  token->require_subcommand(1);
  token->footer(
      "A developer token changes unprotected branches and reads the rest of its project; a\n"
      "viewer token only reads. ARBOR_TOKEN selects the token the CLI uses.\n"
      "Examples:\n  arbor token create ci --role developer --project default --ttl 30d\n"
      "  arbor token list\n  arbor token revoke ci");
  auto tcreate_opts = std::make_shared<std::array<std::string, 4>>();
  auto* tcreate = token->add_subcommand("create", "Make a token; prints it once");
  tcreate->add_option("name", (*tcreate_opts)[0], "the token's name")->required();
  tcreate->add_option("--role", (*tcreate_opts)[1], "admin, developer or viewer")
      ->required()
      ->check(CLI::IsMember({"admin", "developer", "viewer"}));
  tcreate->add_option("--project", (*tcreate_opts)[2], "limit it to this project");
  tcreate->add_option("--ttl", (*tcreate_opts)[3], "how long it lives (default: until revoked)");
  OnRun(tcreate, action, [&s, tcreate_opts]() -> Status {
    api::ApiTokenRequest req;
    req.name = (*tcreate_opts)[0];
    req.role = (*tcreate_opts)[1];
    req.project = (*tcreate_opts)[2];
    if (!(*tcreate_opts)[3].empty()) req.ttl_s = OrUsage(ParseDurationArg((*tcreate_opts)[3]));
    ARBOR_ASSIGN_OR_RETURN(api::ApiToken t, s.Client().CreateApiToken(req));
    if (s.Json()) {
      s.PrintJson(api::ToJson(t));
    } else {
      s.Print(t.token.value_or("") + "\n");
      *s.io->err << "arbor: token " << t.name << " (" << t.role
                 << (t.project ? ", " + *t.project : std::string(", every project"))
                 << "); it is shown this once\n";
    }
    return Status::Ok();
  });
  auto* tlist = token->add_subcommand("list", "List tokens (never the tokens themselves)");
  OnRun(tlist, action, [&s]() -> Status {
    ARBOR_ASSIGN_OR_RETURN(std::vector<api::ApiToken> tokens, s.Client().ListApiTokens());
    if (s.Json()) {
      s.PrintJson(api::ToJsonList("tokens", tokens));
      return Status::Ok();
    }
    std::vector<Row> rows;
    for (const auto& t : tokens) {
      rows.push_back({t.name, t.role, t.project.value_or("every project"),
                      t.expire_time_us ? api::FormatTime(t.expire_time_us) : "never"});
    }
    s.Print(RenderTable({"NAME", "ROLE", "PROJECT", "EXPIRES"}, rows));
    return Status::Ok();
  });
  auto trevoke_name = std::make_shared<std::string>();
  auto* trevoke = token->add_subcommand("revoke", "Revoke a token: it stops working at once");
  trevoke->add_option("name", *trevoke_name, "the token's name")->required();
  OnRun(trevoke, action, [&s, trevoke_name]() -> Status {
    ARBOR_RETURN_IF_ERROR(s.Client().RevokeApiToken(*trevoke_name));
    if (!s.Json()) s.Print("Revoked token " + *trevoke_name + "\n");
    return Status::Ok();
  });

  auto* endpoint = app.add_subcommand("endpoint", "Start, stop and list computes");
  endpoint->require_subcommand(1);
  endpoint->footer("Examples:\n  arbor endpoint list\n  arbor endpoint start dev");
  for (bool start : {true, false}) {
    auto opts = std::make_shared<std::pair<std::string, std::string>>("", kPrimary);
    auto* sub = endpoint->add_subcommand(start ? "start" : "stop",
                                         start ? "Start a branch's postgres and wait until ready"
                                               : "Stop a branch's postgres (fast shutdown)");
    sub->add_option("branch", opts->first, "the branch (default: the default branch)");
    sub->add_option("--endpoint", opts->second, "the endpoint id")->capture_default_str();
    sub->footer(start ? "Example:\n  arbor endpoint start dev"
                      : "Example:\n  arbor endpoint stop dev");
    OnRun(sub, action,
          [&s, opts, start] { return CmdEndpointStartStop(s, start, opts->first, opts->second); });
  }
  struct EndpointCreateOpts {
    std::string branch, id, suspend_timeout;
    bool read_only = false, no_suspension = false;
  };
  auto epc = std::make_shared<EndpointCreateOpts>();
  auto* epcreate = endpoint->add_subcommand(
      "create", "Add an endpoint to a branch: --read-only makes a read replica");
  epcreate->add_option("branch", epc->branch, "the branch")->required();
  epcreate->add_option("endpoint", epc->id, "the new endpoint's id")->required();
  epcreate->add_flag("--read-only", epc->read_only,
                     "a read replica: a hot standby that follows the branch's primary, with "
                     "its own port and tokens");
  epcreate->add_option("--suspend-timeout", epc->suspend_timeout,
                       "suspend after this long idle (default 300s)");
  epcreate->add_flag("--no-suspension", epc->no_suspension, "never suspend it");
  epcreate->footer("Example:\n  arbor endpoint create production reader --read-only");
  OnRun(epcreate, action, [&s, epc] {
    return CmdEndpointCreate(s, epc->branch, epc->id, epc->read_only, epc->suspend_timeout,
                             epc->no_suspension);
  });
  struct EndpointUpdateOpts {
    std::string branch, id = kPrimary;
    std::optional<double> min_cu, max_cu;
  };
  auto epu = std::make_shared<EndpointUpdateOpts>();
  auto* epupdate = endpoint->add_subcommand(
      "update", "Change an endpoint's size: it autoscales between --min-cu and --max-cu");
  epupdate->add_option("branch", epu->branch, "the branch (default: the default branch)");
  epupdate->add_option("--endpoint", epu->id, "the endpoint id")->capture_default_str();
  epupdate->add_option("--min-cu", epu->min_cu, "its smallest size (0.25 to 8 CU)");
  epupdate->add_option("--max-cu", epu->max_cu, "its largest size (0.25 to 8 CU)");
  epupdate->footer(
      "1 CU = 1 vCPU and 2 GiB. The CPU limit changes at once on a running compute; memory\n"
      "and PostgreSQL's settings follow --max-cu from its next start (a raise of memory\n"
      "applies at once).\nExample:\n  arbor endpoint update production --min-cu 0.5 --max-cu 2");
  OnRun(epupdate, action,
        [&s, epu] { return CmdEndpointUpdate(s, epu->branch, epu->id, epu->min_cu, epu->max_cu); });
  auto epd = std::make_shared<std::pair<std::string, std::string>>();
  auto* epdelete = endpoint->add_subcommand("delete", "Delete an endpoint of a branch");
  epdelete->add_option("branch", epd->first, "the branch")->required();
  epdelete->add_option("endpoint", epd->second, "the endpoint id")->required();
  epdelete->footer("Example:\n  arbor endpoint delete production reader");
  OnRun(epdelete, action, [&s, epd] { return CmdEndpointDelete(s, epd->first, epd->second); });
  auto ep_branch = std::make_shared<std::string>();
  auto* eplist = endpoint->add_subcommand("list", "List endpoints (of one branch, or all)");
  eplist->add_option("branch", *ep_branch, "only this branch's endpoints");
  eplist->footer("Examples:\n  arbor endpoint list\n  arbor endpoint list dev");
  OnRun(eplist, action, [&s, ep_branch] { return CmdEndpointList(s, *ep_branch); });

  // connection-string, psql and run share how they log in.
  auto add_login = [](CLI::App* sub, LoginOpts* o) {
    sub->add_option("branch", o->branch,
                    "the branch; BRANCH@TIME (RFC 3339 or -10m) or BRANCH@lsn:X/Y reads its "
                    "past, read-only")
        ->required();
    sub->add_option("--endpoint", o->endpoint, "the endpoint id")->capture_default_str();
    sub->add_option("--ttl", o->ttl, "the token's lifetime, 300s to 3600s (default 1h)");
    sub->add_option("--role", o->role, "the role to log in as")->capture_default_str();
    sub->add_flag("--role-password", o->role_password,
                  "set and use a new password for the role, which does not expire, instead of "
                  "a token (the role's previous password stops working)");
  };
  auto cs_opts = std::make_shared<LoginOpts>();
  auto* cs = app.add_subcommand("connection-string",
                                "Print a branch's postgresql:// URL with a fresh token");
  add_login(cs, cs_opts.get());
  cs->add_flag("--local", cs_opts->local,
               "through the proxy's unix socket (?host=DIR), for a client on the daemon's host "
               "and OS user");
  cs->footer(
      "The compute starts when a client connects (the proxy wakes it).\n"
      "Examples:\n  psql \"$(arbor connection-string dev)\"\n"
      "  psql \"$(arbor connection-string dev --local)\"   # no TCP on this host\n"
      "  arbor connection-string dev --role-password   # for a .env file");
  OnRun(cs, action, [&s, cs_opts] { return CmdConnectionString(s, *cs_opts); });

  auto ps = std::make_shared<LoginOpts>();
  auto* psql = app.add_subcommand("psql", "Open psql on a branch");
  add_login(psql, ps.get());
  psql->add_option("args", ps->extra, "arguments for psql, after --");
  psql->footer(
      "On the daemon's host it connects through the proxy's unix socket (ARBOR_LOCAL_SOCKET=0:\n"
      "TCP).\nExamples:\n  arbor psql dev\n  arbor psql dev -- -c 'select 1'");
  OnRun(psql, action, [&s, ps] { return CmdPsql(s, *ps); });

  auto run = std::make_shared<LoginOpts>();
  auto* runcmd = app.add_subcommand(
      "run",
      "Run a command with DATABASE_URL, PGHOST..PGDATABASE and a self-refreshing PGPASSFILE");
  add_login(runcmd, run.get());
  runcmd->add_option("command", run->extra, "the command and its arguments, after --");
  runcmd->footer(
      "The command's PGPASSFILE holds a token that arbor replaces before it expires, for as\n"
      "long as the command runs; DATABASE_URL names no password. On the daemon's host it names\n"
      "the proxy's unix socket (?host=DIR; ARBOR_LOCAL_SOCKET=0: TCP).\n"
      "Examples:\n  arbor run dev -- npm test\n  arbor run dev -- pg_dump --schema-only");
  OnRun(runcmd, action, [&s, run] { return CmdRun(s, *run); });

  // credential
  auto cred = std::make_shared<std::array<std::string, 4>>();
  (*cred)[1] = kPrimary;
  (*cred)[3] = "owner";
  auto* credential = app.add_subcommand(
      "credential", "Issue a short-lived password (a signed token) for a branch's endpoint");
  credential->add_option("branch", (*cred)[0], "the branch")->required();
  credential->add_option("--endpoint", (*cred)[1], "the endpoint id")->capture_default_str();
  credential->add_option("--ttl", (*cred)[2], "how long it lives, 300s to 3600s (default 3600s)");
  credential->add_option("--role", (*cred)[3], "the role it logs in as")->capture_default_str();
  credential->footer("Example:\n  arbor credential dev --ttl 15m");
  OnRun(credential, action, [&s, cred] {
    api::BranchName b = s.Branch((*cred)[0]);
    Status st = api::ValidateId((*cred)[1], "endpoint id");
    if (!st.ok()) Usage("--endpoint: " + st.message());
    return CmdCredential(s, api::EndpointName{b.project, b.branch, (*cred)[1]}.ToString(),
                         (*cred)[2], false, CheckedRole((*cred)[3]));
  });

  // postgres: the seed's verbs, in the seed's form. JSON output unless -o table.
  auto* pg = app.add_subcommand("postgres", "Seed-compatible verbs on full resource names");
  pg->require_subcommand(1);
  pg->footer(
      "Examples:\n"
      "  arbor postgres create-branch projects/default dev --json '{\"spec\": {\"ttl\": "
      "\"3600s\"}}'\n"
      "  arbor postgres list-branches projects/default\n"
      "  arbor postgres get-branch projects/default/branches/dev\n"
      "  arbor postgres delete-branch projects/default/branches/dev\n"
      "  arbor postgres generate-database-credential "
      "projects/default/branches/dev/endpoints/primary");
  auto cb = std::make_shared<std::array<std::string, 3>>();
  auto* pcreate = pg->add_subcommand("create-branch", "POST projects/P/branches?branch_id=B");
  pcreate->add_option("parent", (*cb)[0], "projects/P")->required();
  pcreate->add_option("branch_id", (*cb)[1], "the new branch's id")->required();
  pcreate->add_option("--json", (*cb)[2], "the body, {\"spec\": {...}}, or @file");
  pcreate->footer(
      "The spec needs one of ttl, expire_time and no_expiry.\nExample:\n"
      "  arbor postgres create-branch projects/default dev --json "
      "'{\"spec\": {\"source_branch\": \"projects/default/branches/production\", \"ttl\": "
      "\"3600s\"}}'");
  OnRun(pcreate, action, [&s, cb] { return CmdSeedCreateBranch(s, (*cb)[0], (*cb)[1], (*cb)[2]); });

  auto gen = std::make_shared<std::pair<std::string, std::string>>();
  auto* pgen = pg->add_subcommand("generate-database-credential", "POST credentials");
  pgen->add_option("endpoint", gen->first, "projects/P/branches/B/endpoints/E")->required();
  pgen->add_option("--ttl", gen->second, "how long it lives (default 3600s)");
  OnRun(pgen, action, [&s, gen] {
    api::EndpointName e = OrUsage(api::ParseEndpointName(gen->first));
    return CmdCredential(s, e.ToString(), gen->second, true);
  });

  auto lb = std::make_shared<std::string>();
  auto* plist = pg->add_subcommand("list-branches", "GET projects/P/branches");
  plist->add_option("parent", *lb, "projects/P")->required();
  OnRun(plist, action, [&s, lb] { return CmdSeedListBranches(s, *lb); });

  auto gb = std::make_shared<std::string>();
  auto* pget = pg->add_subcommand("get-branch", "GET projects/P/branches/B");
  pget->add_option("name", *gb, "projects/P/branches/B")->required();
  OnRun(pget, action, [&s, gb] { return CmdSeedGetBranch(s, *gb); });

  auto db = std::make_shared<std::string>();
  auto* pdel = pg->add_subcommand("delete-branch", "DELETE projects/P/branches/B");
  pdel->add_option("name", *db, "projects/P/branches/B")->required();
  OnRun(pdel, action, [&s, db] {
    OrUsage(api::ParseBranchName(*db));
    return CmdBranchDelete(s, *db, true);
  });
}

// ---- bash completion ----

// Collects, for each visible command path (" branch create"), the words that may follow it:
// its subcommands and its flags.
void CollectCompletions(const CLI::App* app, const std::string& path,
                        std::vector<std::pair<std::string, std::string>>* out) {
  std::string words;
  auto add = [&](const std::string& w) { words += (words.empty() ? "" : " ") + w; };
  std::vector<const CLI::App*> subs =
      app->get_subcommands([](const CLI::App* a) { return !a->get_group().empty(); });
  for (const CLI::App* sub : subs) add(sub->get_name());
  for (const CLI::Option* opt : app->get_options()) {
    for (const auto& l : opt->get_lnames()) add("--" + l);
    for (const auto& sn : opt->get_snames()) add("-" + sn);
  }
  out->push_back({path, words});
  for (const CLI::App* sub : subs) CollectCompletions(sub, path + " " + sub->get_name(), out);
}

// A bash completion script for the whole app, server commands included.
std::string BashCompletion(const CLI::App& app) {
  std::vector<std::pair<std::string, std::string>> paths;
  CollectCompletions(&app, "", &paths);
  std::string known, cases;
  for (const auto& [path, words] : paths) {
    if (!path.empty()) known += "    \"" + path + "\") path=\"$path $w\" ;;\n";
    cases += "    \"" + path + "\") opts=\"" + words + "\" ;;\n";
  }
  return "# bash completion for arbor: eval \"$(arbor completion bash)\"\n"
         "_arbor() {\n"
         "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" path=\"\" opts=\"\" w i\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    w=\"${COMP_WORDS[i]}\"\n"
         "    case \"$path $w\" in\n" +
         known +
         "    esac\n"
         "  done\n"
         "  case \"$path\" in\n" +
         cases +
         "  esac\n"
         "  COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
         "}\n"
         "complete -F _arbor arbor\n";
}

// "--at -5m" would read as an unknown flag -5m: glue such values to their option.
std::vector<std::string> GlueNegativeTimes(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      out.insert(out.end(), args.begin() + i, args.end());
      break;
    }
    if ((args[i] == "--at" || args[i] == "--expire-time") && i + 1 < args.size() &&
        args[i + 1].size() > 1 && args[i + 1][0] == '-' && args[i + 1][1] >= '0' &&
        args[i + 1][1] <= '9') {
      out.push_back(args[i] + "=" + args[i + 1]);
      ++i;
      continue;
    }
    out.push_back(args[i]);
  }
  return out;
}

std::string ExecProcess(const std::vector<std::string>& argv, const Io::Env& env) {
  for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> c;
  for (const auto& a : argv) c.push_back(const_cast<char*>(a.c_str()));
  c.push_back(nullptr);
  if (argv[0].find('/') != std::string::npos) {
    execv(c[0], c.data());
  } else {
    execvp(c[0], c.data());
  }
  return std::strerror(errno);
}

volatile sig_atomic_t g_forward_signal = 0;
void RememberSignal(int sig) { g_forward_signal = sig; }

Result<int> RunChild(const std::vector<std::string>& argv, const Io::Env& env,
                     int64_t refresh_every_s, const std::function<void()>& refresh) {
  std::vector<char*> c;
  for (const auto& a : argv) c.push_back(const_cast<char*>(a.c_str()));
  c.push_back(nullptr);
  // Like system(3): the terminal's ^C and ^\ go to the child (same process group), and we
  // outlive them to clean up; SIGTERM and SIGHUP sent to us are passed on.
  struct sigaction ignore {
  }, remember{}, old_int{}, old_quit{}, old_term{}, old_hup{};
  ignore.sa_handler = SIG_IGN;
  remember.sa_handler = RememberSignal;
  sigaction(SIGINT, &ignore, &old_int);
  sigaction(SIGQUIT, &ignore, &old_quit);
  sigaction(SIGTERM, &remember, &old_term);
  sigaction(SIGHUP, &remember, &old_hup);
  auto restore = [&] {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGHUP, &old_hup, nullptr);
  };
  pid_t pid = fork();
  if (pid < 0) {
    restore();
    return Status::IOError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    if (argv[0].find('/') != std::string::npos) {
      execv(c[0], c.data());
    } else {
      execvp(c[0], c.data());
    }
    std::fprintf(stderr, "arbor: cannot run %s: %s\n", c[0], std::strerror(errno));
    _exit(127);
  }
  int64_t next = refresh_every_s > 0 ? MonoNanos() + refresh_every_s * 1'000'000'000 : 0;
  int status = 0;
  for (;;) {
    pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid) break;
    if (got < 0 && errno != EINTR) break;
    if (int sig = g_forward_signal; sig != 0) {
      g_forward_signal = 0;
      kill(pid, sig);
    }
    if (next != 0 && MonoNanos() >= next) {
      refresh();
      next = MonoNanos() + refresh_every_s * 1'000'000'000;
    }
    usleep(100'000);
  }
  restore();
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

Io Io::Process() {
  Io io;
  io.out = &std::cout;
  io.err = &std::cerr;
  io.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  io.now_us = [] { return WallMicros(); };
  io.exec = ExecProcess;
  io.run_child = RunChild;
  return io;
}

int Run(int argc, char** argv, const AddCommands& add_server_commands) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return RunWith(args, add_server_commands, Io::Process());
}

int RunWith(const std::vector<std::string>& args, const AddCommands& add_server_commands,
            const Io& io) {
  std::ostream& err = *io.err;
  try {
    CLI::App app{"arbor: branchable, serverless PostgreSQL", "arbor"};
    app.fallthrough();
    app.require_subcommand(1);
    Session s;
    s.io = &io;
    s.output_opt = app.add_option("-o,--output", s.output, "output: table (default) or json")
                       ->check(CLI::IsMember({"table", "json"}));
    app.add_option("--api", s.api_flag,
                   "the API's URL (default: $ARBOR_API, else $ARBOR_HOME/api, else "
                   "http://127.0.0.1:8432)");
    app.add_option("--project", s.project, "the project of short branch names")
        ->capture_default_str();

    Action action;
    AddClientCommands(app, s, &action);
    AddWorkflowCommands(app, s, &action);
    if (add_server_commands) add_server_commands(app);
    // Set last: subcommands created after a footer inherit it.
    app.footer(
        "Environment: ARBOR_HOME (default ~/.arbor) holds the daemon's api and admin-token;\n"
        "ARBOR_API and ARBOR_TOKEN override them. Exit codes: 0 ok, 1 refused, 2 usage,\n"
        "3 daemon unreachable, 4 server error.\n"
        "Examples:\n"
        "  arbor up\n"
        "  arbor branch create dev --ttl 7d\n"
        "  arbor branch list\n"
        "  arbor psql dev");
    auto shell = std::make_shared<std::string>();
    auto* completion = app.add_subcommand("completion", "Print a shell completion script");
    completion->add_option("shell", *shell, "the shell")
        ->required()
        ->check(CLI::IsMember({"bash"}));
    completion->footer("Example:\n  eval \"$(arbor completion bash)\"  # e.g. in ~/.bashrc");
    OnRun(completion, &action, [&s, &app] {
      s.Print(BashCompletion(app));
      return Status::Ok();
    });

    std::vector<std::string> reversed = GlueNegativeTimes(args);
    std::reverse(reversed.begin(), reversed.end());
    try {
      app.parse(reversed);
      if (!action) return 0;  // a server command ran in its callback
      Status st = action();
      if (!st.ok()) err << "arbor: " << st.message() << "\n";
      return ExitCodeFor(st);
    } catch (const CLI::Success& e) {  // --help, --help-all, or a command's CLI::Success
      return app.exit(e, *io.out, err);
    } catch (const CLI::RuntimeError& e) {
      if (std::strlen(e.what()) != 0 && std::string(e.what()) != "Runtime error") {
        err << "arbor: " << e.what() << "\n";
      }
      return e.get_exit_code();
    } catch (const CLI::ParseError& e) {
      // "arbor bogus": CLI11 reports the missing subcommand; name the word it did not know.
      std::vector<std::string> rest = app.remaining(/*recurse=*/true);
      if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && !rest.empty()) {
        std::string path;
        for (const CLI::App* cur = &app; !cur->get_subcommands().empty();) {
          cur = cur->get_subcommands().front();
          path += cur->get_name() + " ";
        }
        err << "arbor: unknown command '" << path << rest.front() << "' (see arbor " << path
            << "--help)\n";
        return static_cast<int>(Exit::kUsage);
      }
      err << "arbor: " << e.what() << " (see --help)\n";
      return static_cast<int>(Exit::kUsage);
    }
  } catch (const std::exception& e) {
    err << "arbor: internal error: " << e.what() << "\n";
  } catch (...) {
    err << "arbor: internal error\n";
  }
  return static_cast<int>(Exit::kServerError);
}

}  // namespace arbor::cli
