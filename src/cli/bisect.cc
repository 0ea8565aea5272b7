// `arbor bisect`: the CLI side of POST .../branches/B:bisect (src/control/bisect.cc runs the
// search). docs/workflow.md has the user's view.
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "api/client.h"
#include "api/names.h"
#include "cli/args.h"
#include "cli/workflow_internal.h"

namespace arbor::cli {
namespace {

struct BisectOpts {
  std::string branch, check, since, until, database;
};

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
  api::Json body{{"check", o.check}};
  if (!o.since.empty()) body["since"] = api::FormatTime(OrUsage(ParseTimeArg(o.since, s.Now())));
  if (!o.until.empty()) body["until"] = api::FormatTime(OrUsage(ParseTimeArg(o.until, s.Now())));
  if (!o.database.empty()) body["database"] = o.database;
  auto answer = s.Client().Bisect(branch, body);
  if (!answer.ok()) {
    // A check that is not one boolean, or fails at the window's start: bad input.
    if (answer.status().code() == Code::kInvalidArgument) {
      ExitWith(2, "--check: " + answer.status().message());
    }
    return answer.status();
  }
  api::Json j = *answer;
  if (!j.value("found", false)) {
    if (s.Json()) s.PrintJson(j);
    ExitWith(1, j.value("reason", std::string("the check never turns false in the window")) +
                    "; nothing to find");
  }
  std::string good = j.value("last_good_time", std::string());
  std::string recover = "arbor branch create " + branch.branch.substr(0, 36) + "-before-" +
                        CompactTime(j.value("first_bad_time_us", int64_t{0})) + " --parent " +
                        branch.branch + " --at " + good;
  j["branch"] = "projects/" + branch.project + "/branches/" + branch.branch;
  j["command"] = recover;
  if (s.Json()) {
    s.PrintJson(j);
    return Status::Ok();
  }
  std::string good_lsn = j.value("last_good_lsn", std::string());
  std::string out = "Bisected " + branch.branch + ": " + std::to_string(j.value("points", 0)) +
                    " states in the window, " + std::to_string(j.value("probes", 0)) +
                    " probes on " + std::to_string(j.value("standbys", 0)) + " standbys.\n";
  out += "  last good:  " + good + (good_lsn.empty() ? "" : "  (WAL to " + good_lsn + ")") + "\n";
  out += "  first bad:  " + j.value("first_bad_time", std::string()) + "  (WAL to " +
         j.value("first_bad_lsn", std::string()) + ")\n";
  std::string commit = j.value("first_bad_commit_time", std::string());
  if (!commit.empty()) out += "  the first bad state's last commit: " + commit + "\n";
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
      "Each probe reads one past state on a read-only endpoint pinned there, as the role\n"
      "owner; the branch is never touched. The search runs over the branch's own WAL\n"
      "writes, so the two answers are adjacent: no transaction committed between them.\n"
      "Exit status: 0 found, 1 the check never flips in the window, 2 bad input (a check\n"
      "that is not one boolean, a bad time), 3 daemon unreachable, 4 server failure.\n"
      "Example:\n"
      "  arbor bisect production --since -1h --check 'select count(*) = 32 from final_entities'");
  OnRun(b, action, [&s, o] { return CmdBisect(s, *o); });
}

}  // namespace arbor::cli
