// `arbor bisect`: finds the commit that made a check go false, by binary search over the
// branch's own write history (GET .../history), each probe on a read-only endpoint pinned at
// one state. docs/workflow.md has the user's view.
#include "cli/bisect.h"

#include <libpq-fe.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/client.h"
#include "api/names.h"
#include "cli/args.h"
#include "cli/workflow_internal.h"

namespace arbor::cli {

std::vector<int> NextProbes(int lo, int hi) {
  if (hi - lo <= 2) return {lo + 1};
  std::vector<int> mids{lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3};
  if (mids[0] == mids[1]) mids.pop_back();
  return mids;
}

int Narrow(const std::vector<int>& probes, const std::vector<bool>& good, int* lo, int* hi) {
  for (size_t i = 0; i < probes.size() && i < good.size(); ++i) {
    if (!good[i]) {
      *hi = probes[i];
      return static_cast<int>(i);
    }
    *lo = probes[i];
  }
  return -1;
}

namespace {

struct BisectOpts {
  std::string branch, check, since, until, database;
};

// What one probe saw.
struct Probe {
  bool good = false;
  std::string replay_time;  // the commit time of the last transaction the state holds, if any
  std::string error;        // the check failed there (a dropped table...): counts as bad
  std::string bad_input;    // the check is not one boolean: the bisect stops (exit 2)
};

// A bad --check: no single boolean, or an error of the query. Exit status 2.
[[noreturn]] void BadCheck(const std::string& why) { ExitWith(2, "--check: " + why); }

std::string OneLine(const char* text) {
  std::string s = text == nullptr ? "" : text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

// Runs the check on the state at `url`: its one row of one boolean says whether it is good.
Result<Probe> RunCheck(const std::string& url, const std::string& database,
                       const std::string& sql) {
  const char* keys[] = {"dbname", "connect_timeout", database.empty() ? nullptr : "dbname",
                        nullptr};
  const char* values[] = {url.c_str(), "30", database.empty() ? nullptr : database.c_str(),
                          nullptr};
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdbParams(keys, values, 1), PQfinish);
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::Unavailable("cannot connect to a probe: " +
                               OneLine(conn ? PQerrorMessage(conn.get()) : "out of memory"));
  }
  Probe out;
  {
    std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(conn.get(), sql.c_str()), PQclear);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
      out.error = OneLine(PQresultErrorMessage(r.get()));
      return out;
    }
    constexpr Oid kBoolOid = 16;
    if (PQnfields(r.get()) != 1 || PQftype(r.get(), 0) != kBoolOid) {
      out.bad_input =
          "it must return one boolean column (true is good), e.g. "
          "\"select count(*) = 32 from final_entities\"";
      return out;
    }
    if (PQntuples(r.get()) != 1 || PQgetisnull(r.get(), 0, 0)) {
      out.bad_input = "it must return exactly one row holding true or false; it returned " +
                      std::to_string(PQntuples(r.get())) + " rows" +
                      (PQntuples(r.get()) == 1 ? " (NULL)" : "");
      return out;
    }
    out.good = std::string(PQgetvalue(r.get(), 0, 0)) == "t";
  }
  std::unique_ptr<PGresult, decltype(&PQclear)> t(
      PQexec(conn.get(), "select pg_last_xact_replay_timestamp()"), PQclear);
  if (PQresultStatus(t.get()) == PGRES_TUPLES_OK && PQntuples(t.get()) == 1 &&
      !PQgetisnull(t.get(), 0, 0)) {
    out.replay_time = PQgetvalue(t.get(), 0, 0);
  }
  return out;
}

// Probes the branch's state at a time or LSN on a pinned endpoint, deleted after.
class Prober {
 public:
  Prober(const api::ApiClient& c, api::BranchName branch, const BisectOpts& o)
      : c_(c), branch_(std::move(branch)), o_(o) {}

  Result<Probe> At(std::optional<int64_t> time_us, std::optional<Lsn> lsn) {
    ++count_;
    api::EndpointSpec spec;
    spec.endpoint_type = api::kEndpointTypeReadOnly;
    spec.source_branch_time_us = time_us;
    spec.source_branch_lsn = lsn;
    std::string id = PinnedEndpointId(time_us, lsn);
    api::EndpointName name{branch_.project, branch_.branch, id};
    auto made = c_.CreateEndpoint(branch_, id, spec);
    if (!made.ok() && made.status().code() != Code::kAlreadyExists) return made.status();
    auto probe = [&]() -> Result<Probe> {
      ARBOR_ASSIGN_OR_RETURN(std::string url, ConnectEndpoint(c_, name));
      return RunCheck(url, o_.database, o_.check);
    }();
    // A probe's endpoint made here goes at once (its files are thrown away).
    if (made.ok()) (void)c_.DeleteEndpoint(name);
    return probe;
  }
  int count() const { return count_.load(); }

 private:
  const api::ApiClient& c_;
  api::BranchName branch_;
  const BisectOpts& o_;
  std::atomic<int> count_ = 0;
};

// The probes at `at` (times or LSNs), at once, one thread each: the machine's cores replay
// their WAL in parallel. A check that is not one boolean ends the command (exit 2).
Result<std::vector<Probe>> ProbeAll(
    Prober& prober, const std::vector<std::pair<std::optional<int64_t>, std::optional<Lsn>>>& at) {
  std::vector<std::future<Result<Probe>>> running;
  for (const auto& [t, l] : at) {
    running.push_back(std::async(std::launch::async, [&prober, t, l] { return prober.At(t, l); }));
  }
  std::vector<Result<Probe>> got;
  for (auto& f : running) got.push_back(f.get());
  std::vector<Probe> out;
  for (auto& r : got) {
    ARBOR_RETURN_IF_ERROR(r.status());
    if (!r->bad_input.empty()) BadCheck(r->bad_input);
    out.push_back(*r);
  }
  return out;
}

std::string CompactTime(int64_t us) {
  std::string t = api::FormatTime(us);  // 2026-11-30T10:00:00.123456Z
  std::string out;
  for (char ch : t.substr(0, 19)) {
    if (ch != '-' && ch != ':') out += static_cast<char>(ch == 'T' ? 't' : ch);
  }
  return out + "z";
}

Status CmdBisect(const Session& s, const BisectOpts& o) {
  if (o.check.empty()) Usage("--check: give a query returning one boolean (true is good)");
  api::BranchName branch = s.Branch(o.branch);
  std::optional<int64_t> since, until;
  if (!o.since.empty()) since = OrUsage(ParseTimeArg(o.since, s.Now()));
  if (!o.until.empty()) until = OrUsage(ParseTimeArg(o.until, s.Now()));
  auto c = s.Client();
  ARBOR_ASSIGN_OR_RETURN(std::vector<api::HistoryPoint> points, c.History(branch, since, until));
  if (points.empty()) {
    ExitWith(1, "no commit of " + branch.branch + " in the window: nothing to bisect");
  }
  Prober prober(c, branch, o);
  // The state at the end of the window must be bad, and the one at its start good. Without
  // --since the window starts at the first point still available.
  int64_t start_time = since.value_or(points.front().time_us - 1);
  int lo = since ? -1 : 0, hi = static_cast<int>(points.size()) - 1;
  if (hi <= lo) ExitWith(1, "the window holds one state only: widen it with --since");
  ARBOR_ASSIGN_OR_RETURN(
      std::vector<Probe> ends,
      ProbeAll(prober,
               {{std::nullopt, points.back().lsn},
                since ? std::make_pair(std::optional<int64_t>(start_time), std::optional<Lsn>())
                      : std::make_pair(std::optional<int64_t>(),
                                       std::optional<Lsn>(points.front().lsn))}));
  const Probe& start = ends[1];
  std::string start_text = api::FormatTime(since ? start_time : points.front().time_us);
  if (!start.error.empty()) {
    BadCheck("it fails at the start of the window (" + start_text +
             "), so it cannot tell good from bad there: " + start.error);
  }
  if (ends[0].good) {
    ExitWith(1, "the check is true at the end of the window (" +
                    api::FormatTime(points.back().time_us) +
                    "): it never turns false; nothing to find");
  }
  if (!start.good) {
    ExitWith(1, "the check is already false at the start of the window (" + start_text +
                    "): widen it with --since");
  }
  Probe first_bad = ends[0];
  // Two probes a round, splitting (lo, hi) in three: log3 rounds instead of log2.
  while (hi - lo > 1) {
    std::vector<int> mids = NextProbes(lo, hi);
    std::vector<std::pair<std::optional<int64_t>, std::optional<Lsn>>> at;
    for (int m : mids) at.push_back({std::nullopt, points[m].lsn});
    ARBOR_ASSIGN_OR_RETURN(std::vector<Probe> got, ProbeAll(prober, at));
    std::vector<bool> good;
    for (const Probe& p : got) good.push_back(p.good);
    int bad = Narrow(mids, good, &lo, &hi);
    if (bad >= 0) first_bad = got[bad];
  }
  int64_t good_time = lo >= 0 ? points[lo].time_us : start_time;
  std::optional<Lsn> good_lsn;
  if (lo >= 0) good_lsn = points[lo].lsn;
  const api::HistoryPoint& bad = points[hi];
  std::string recover = "arbor branch create " + branch.branch.substr(0, 36) + "-before-" +
                        CompactTime(bad.time_us) + " --parent " + branch.branch + " --at " +
                        api::FormatTime(good_time);
  if (s.Json()) {
    api::Json j{{"branch", "projects/" + branch.project + "/branches/" + branch.branch},
                {"last_good_time", api::FormatTime(good_time)},
                {"last_good_time_us", good_time},
                {"first_bad_time", api::FormatTime(bad.time_us)},
                {"first_bad_time_us", bad.time_us},
                {"first_bad_lsn", api::FormatLsn(bad.lsn)},
                {"points", points.size()},
                {"probes", prober.count()},
                {"command", recover}};
    if (good_lsn) j["last_good_lsn"] = api::FormatLsn(*good_lsn);
    if (!first_bad.replay_time.empty()) j["first_bad_commit_time"] = first_bad.replay_time;
    s.PrintJson(j);
    return Status::Ok();
  }
  std::string out = "Bisected " + branch.branch + ": " + std::to_string(points.size()) +
                    " states in the window, " + std::to_string(prober.count()) + " probes.\n";
  out += "  last good:  " + api::FormatTime(good_time) +
         (good_lsn ? "  (WAL to " + api::FormatLsn(*good_lsn) + ")" : "") + "\n";
  out += "  first bad:  " + api::FormatTime(bad.time_us) + "  (WAL to " + api::FormatLsn(bad.lsn) +
         ")\n";
  if (!first_bad.replay_time.empty()) {
    out += "  the first bad state's last commit: " + first_bad.replay_time + "\n";
  }
  out += "No transaction of " + branch.branch + " committed between the two.\n";
  out += "Branch off the last good state with:\n  " + recover + "\n";
  s.Print(out);
  return Status::Ok();
}

}  // namespace

void AddBisectCommand(CLI::App& app, Session& s, Action* action) {
  auto o = std::make_shared<BisectOpts>();
  auto* b = app.add_subcommand(
      "bisect", "Find the commit that made a check go false (exit 1: it never does)");
  b->add_option("branch", o->branch, "the branch")->required();
  b->add_option("--check", o->check, "a query returning one boolean: true is good")->required();
  b->add_option("--since", o->since,
                "the window's start: RFC 3339 or how long ago (-2h); default: the earliest "
                "time still available");
  b->add_option("--until", o->until, "the window's end (default: now)");
  b->add_option("--database", o->database, "the database the check runs in (default postgres)");
  b->footer(
      "Each probe reads one past state on a read-only endpoint pinned there; the branch is\n"
      "never touched. The search runs over the branch's own WAL writes, so the two answers\n"
      "are adjacent: no transaction committed between them.\n"
      "Exit status: 0 found, 1 the check never flips in the window, 2 bad input (a check\n"
      "that is not one boolean, a bad time), 3 daemon unreachable, 4 server failure.\n"
      "Example:\n"
      "  arbor bisect production --since -1h --check 'select count(*) = 32 from final_entities'");
  OnRun(b, action, [&s, o] { return CmdBisect(s, *o); });
}

}  // namespace arbor::cli
