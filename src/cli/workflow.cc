// The developer workflow commands (docs/workflow.md): `git` (git.cc), `ci branch|cleanup`,
// `diff` and `migrate-check`.
//
// Exit codes of `diff` and `migrate-check` follow diff(1): 0 identical / the migration
// succeeded, 1 differences / the migration failed. Their errors therefore keep 2 (usage),
// 3 (unreachable) and 4 (server failure, or a catalog that could not be read), and use 5
// where the other commands use 1 (the server refused: no such branch, ...).

#include "cli/workflow.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>

#include "cli/git_config.h"
#include "cli/process.h"
#include "cli/render.h"
#include "cli/workflow_internal.h"
#include "datadiff/catalog.h"
#include "datadiff/schema_diff.h"

namespace arbor::cli {

[[noreturn]] void ExitWith(int exit_code, const std::string& message) {
  if (message.empty()) throw CLI::RuntimeError(exit_code);
  throw CLI::RuntimeError(message, exit_code);
}

Result<std::string> PrimaryConnectionString(const api::ApiClient& c,
                                            const api::BranchName& branch) {
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e,
                         c.GetEndpoint(api::EndpointName{branch.project, branch.branch, kPrimary}));
  if (!e.status.connection_string || e.status.connection_string->empty()) {
    return Status::FailedPrecondition("endpoint " + e.name + " has no connection string yet");
  }
  return *e.status.connection_string;
}

namespace {
// postgresql://USER@HOST... with `password` put in after USER.
std::string WithPassword(const std::string& base, const std::string& password) {
  size_t at = base.find('@');
  if (at == std::string::npos) return base;
  return base.substr(0, at) + ":" + password + base.substr(at);
}
}  // namespace

Result<std::string> RolePasswordUrl(const api::ApiClient& c, const api::BranchName& branch) {
  ARBOR_ASSIGN_OR_RETURN(std::string base, PrimaryConnectionString(c, branch));
  ARBOR_ASSIGN_OR_RETURN(api::Role r, c.ResetRolePassword(branch, "owner"));
  if (!r.password) return Status::Internal("the API answered a reset without the password");
  return WithPassword(base, *r.password);
}

Result<std::string> TokenUrl(const api::ApiClient& c, const api::BranchName& branch) {
  ARBOR_ASSIGN_OR_RETURN(std::string base, PrimaryConnectionString(c, branch));
  api::CredentialRequest req;
  req.endpoint = api::EndpointName{branch.project, branch.branch, kPrimary}.ToString();
  req.role = "owner";
  ARBOR_ASSIGN_OR_RETURN(api::Credential cred, c.GenerateCredential(req));
  return WithPassword(base, cred.token);
}

bool SameLogin(const std::string& url, const std::string& base) {
  size_t at = url.find('@'), base_at = base.find('@');
  size_t colon = url.find(':', url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
  if (at == std::string::npos || base_at == std::string::npos || colon == std::string::npos ||
      colon > at) {
    return false;
  }
  return url.substr(0, colon) == base.substr(0, base_at) && url.substr(at) == base.substr(base_at);
}

std::string RandomSuffix() {
  std::random_device rd;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06x", static_cast<unsigned>(rd() & 0xffffff));
  return buf;
}

std::string OneLineOf(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

namespace {
// diff and migrate-check's "the server refused", which the other commands report as 1.
constexpr int kRefusedExit = 5;
}  // namespace

[[noreturn]] void FailDiffLike(const Status& st) {
  int code = ExitCodeFor(st);
  if (code == static_cast<int>(Exit::kRejected)) code = kRefusedExit;
  ExitWith(code, st.message());
}

namespace {

// A branch made for one command (a point in time to read, a migration to try). Deleted
// when the command ends, whatever happens; its short TTL reaps it if the CLI dies first.
// Not thread-safe; borrows the client, which must outlive it.
class TempBranch {
 public:
  TempBranch(const api::ApiClient& c, api::BranchName name) : c_(c), name_(std::move(name)) {}
  ~TempBranch() {
    if (made_) (void)c_.DeleteBranch(name_);
  }
  TempBranch(const TempBranch&) = delete;
  TempBranch& operator=(const TempBranch&) = delete;

  Result<api::Branch> Create(const api::BranchName& parent, std::optional<int64_t> at_us,
                             int64_t ttl_s) {
    api::BranchSpec spec;
    spec.source_branch = parent.ToString();
    spec.source_branch_time_us = at_us;
    spec.ttl_s = ttl_s;
    auto b = c_.CreateBranch(name_.project, name_.branch, spec);
    made_ = b.ok();
    return b;
  }
  const api::BranchName& name() const { return name_; }

 private:
  const api::ApiClient& c_;
  api::BranchName name_;
  bool made_ = false;
};

// "check-" + target + "-" + suffix, cut to a valid id.
api::BranchName TempName(const std::string& project, const std::string& prefix,
                         const std::string& base) {
  std::string stem = prefix + "-" + base;
  if (stem.size() > api::kMaxIdLength - 7) stem.resize(api::kMaxIdLength - 7);
  while (!stem.empty() && stem.back() == '-') stem.pop_back();
  return api::BranchName{project, stem + "-" + RandomSuffix()};
}

// Starts the branch's primary endpoint and returns its connection string, with a fresh token
// for owner as the password.
Result<std::string> StartAndConnect(const api::ApiClient& c, const api::BranchName& b) {
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e,
                         c.StartEndpoint(api::EndpointName{b.project, b.branch, kPrimary}));
  return TokenUrl(c, b);
}

DiffFormat ParseFormat(const std::string& f) {
  if (f == "text") return DiffFormat::kText;
  if (f == "markdown" || f == "md") return DiffFormat::kMarkdown;
  if (f == "json") return DiffFormat::kJson;
  Usage("--format: expected text, markdown or json, got '" + f + "'");
}

// ---- ci ----

struct CiOpts {
  std::string name, ttl, parent, format = "shell", variable = "DATABASE_URL";
  bool reset = false;
};

Status CmdCiBranch(const Session& s, const CiOpts& o) {
  Status variable = ValidateEnvVariable(o.variable, "--variable");
  if (!variable.ok()) Usage(variable.message());
  api::BranchName name = s.Branch(o.name);
  std::optional<int64_t> ttl;
  if (!o.ttl.empty()) ttl = OrUsage(ParseDurationArg(o.ttl));
  std::optional<api::BranchName> parent;
  if (!o.parent.empty()) parent = s.Branch(o.parent);
  if (o.format != "shell" && o.format != "dotenv" && o.format != "github") {
    Usage("--format: expected shell, dotenv or github, got '" + o.format + "'");
  }
  std::string github_env;
  if (o.format == "github") {
    github_env = s.io->getenv("GITHUB_ENV").value_or("");
    if (github_env.empty()) Usage("--format github: $GITHUB_ENV is not set");
  }
  auto c = s.Client();
  std::string what;
  auto b = c.GetBranch(name);
  if (!b.ok() && b.status().code() != Code::kNotFound) return b.status();
  if (!b.ok()) {
    api::BranchSpec spec;
    if (parent) spec.source_branch = parent->ToString();
    if (!ttl) {
      auto project = c.GetProject(name.project);
      ttl = project.ok() && project->spec.default_branch_ttl_s ? *project->spec.default_branch_ttl_s
                                                               : 24 * 3600;
    }
    spec.ttl_s = ttl;
    b = c.CreateBranch(name.project, name.branch, spec);
    what = "Created";
    if (!b.ok() && b.status().code() == Code::kAlreadyExists) {  // a concurrent re-run
      b = c.GetBranch(name);
      what = "Reused";
    }
    if (!b.ok()) return b.status();
  } else {
    what = "Reused";
  }
  if (what == "Reused") {
    if (o.reset) {
      ARBOR_ASSIGN_OR_RETURN(*b, c.ResetBranch(name, {}));
      what = "Reset";
    } else if (ttl && b->status.expire_time_us && !b->spec.is_protected.value_or(false)) {
      api::BranchSpec spec;
      spec.ttl_s = ttl;
      ARBOR_ASSIGN_OR_RETURN(*b, c.UpdateBranch(name, spec, "spec.ttl"));
    }
  }
  // The CI branch's own owner password (every branch has its own): it opens this branch only.
  ARBOR_ASSIGN_OR_RETURN(std::string url, RolePasswordUrl(c, name));
  std::string parent_text =
      b->status.source_branch ? " (from " + ShortName(*b->status.source_branch) + ")" : "";
  *s.io->err << what << " branch " << b->name << parent_text << ", expires "
             << ExpiryText(*b, s.Now()) << ".\n";
  if (s.Json()) {
    s.PrintJson({{"branch", b->name}, {"action", what}, {"database_url", url}});
    return Status::Ok();
  }
  if (o.format == "shell") {
    s.Print("export " + o.variable + "=" + ShellQuote(url) + "\n");
  } else if (o.format == "dotenv") {
    s.Print(o.variable + "=" + url + "\n");
  } else {
    // GitHub masks the password in the job's logs from here on.
    auto at = url.find('@'), colon = url.find(':', url.find("://") + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      s.Print("::add-mask::" + url.substr(colon + 1, at - colon - 1) + "\n");
    }
    std::ofstream out(github_env, std::ios::app);
    out << o.variable << "=" << url << "\n";
    if (!out) return Status::IOError("cannot append to $GITHUB_ENV (" + github_env + ")");
    s.Print("Appended " + o.variable + " to $GITHUB_ENV.\n");
  }
  return Status::Ok();
}

Status CmdCiCleanup(const Session& s, const std::string& text) {
  api::BranchName name = s.Branch(text);
  Status st = s.Client().DeleteBranch(name);
  if (st.code() == Code::kNotFound) {
    s.Print("Branch " + name.ToString() + " is already gone.\n");
    return Status::Ok();
  }
  ARBOR_RETURN_IF_ERROR(st);
  s.Print("Deleted branch " + name.ToString() + ".\n");
  return Status::Ok();
}

// ---- diff ----

struct DiffOpts {
  std::string a, b, format = "text", database, ttl = "1h";
  bool data = false;
  std::vector<std::string> tables;
};

using Side = DiffSide;

}  // namespace

Result<DiffSide> ResolveSide(const Session& s, const api::ApiClient& c, const std::string& text) {
  DiffSide side;
  if (!IsPinned(text)) {
    api::BranchName b = s.Branch(text);
    side.label = b.branch;
    ARBOR_RETURN_IF_ERROR(c.GetBranch(b).status());
    side.endpoint = api::EndpointName{b.project, b.branch, kPrimary};
    return side;
  }
  ARBOR_ASSIGN_OR_RETURN(side.endpoint, PinnedEndpoint(s, c, text));
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, c.GetEndpoint(side.endpoint));
  side.label = datadiff::PinnedLabel(side.endpoint.branch, e.spec.source_branch_time_us,
                                     e.spec.source_branch_lsn);
  return side;
}

namespace {

Result<std::string> ConnectEndpointImpl(const api::ApiClient& c, const api::EndpointName& name) {
  ARBOR_ASSIGN_OR_RETURN(api::Endpoint e, c.StartEndpoint(name));
  if (!e.status.connection_string) {
    return Status::Internal("endpoint " + name.ToString() + " has no connection string");
  }
  api::CredentialRequest req;
  req.endpoint = name.ToString();
  req.role = "owner";
  ARBOR_ASSIGN_OR_RETURN(api::Credential cred, c.GenerateCredential(req));
  return WithPassword(*e.status.connection_string, cred.token);
}

Result<Catalog> ReadSide(const api::ApiClient& c, const Side& side, const std::string& db) {
  ARBOR_ASSIGN_OR_RETURN(std::string url, ConnectEndpointImpl(c, side.endpoint));
  return ReadCatalog(url, db);
}

Status CmdDiff(const Session& s, const DiffOpts& o) {
  if (o.data) return CmdDataDiff(s, DataDiffOpts{o.a, o.b, o.format, o.database, o.tables});
  if (!o.tables.empty()) Usage("--table needs --data");
  DiffFormat format = ParseFormat(o.format);
  auto c = s.Client();
  auto run = [&]() -> Result<std::vector<Change>> {
    ARBOR_ASSIGN_OR_RETURN(Side a, ResolveSide(s, c, o.a));
    ARBOR_ASSIGN_OR_RETURN(Side b, ResolveSide(s, c, o.b));
    ARBOR_ASSIGN_OR_RETURN(Catalog ca, ReadSide(c, a, o.database));
    ARBOR_ASSIGN_OR_RETURN(Catalog cb, ReadSide(c, b, o.database));
    auto changes = CompareCatalogs(ca, cb);
    s.Print(RenderDiff(changes, a.label, b.label, s.Json() ? DiffFormat::kJson : format));
    return changes;
  };
  auto changes = run();
  if (!changes.ok()) FailDiffLike(changes.status());
  if (!changes->empty()) ExitWith(1, "");
  return Status::Ok();
}

// ---- migrate-check ----

struct MigrateOpts {
  std::string target, format = "text", database, ttl = "1h";
  std::vector<std::string> command;
};

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.2fs" : "%.1fs", s);
  return buf;
}

std::string SizeChange(int64_t before, int64_t after, const char* arrow = "->") {
  int64_t d = after - before;
  return HumanBytes(before) + " " + arrow + " " + HumanBytes(after) + " (" + (d < 0 ? "-" : "+") +
         HumanBytes(d < 0 ? -d : d) + ")";
}

// `url` (postgresql://user:pw@host:port/db?opts) with another database.
std::string WithDatabase(const std::string& url, const std::string& database) {
  size_t at = url.find('@');
  size_t slash = url.find('/', at == std::string::npos ? url.find("://") + 3 : at);
  if (slash == std::string::npos) return url + "/" + database;
  size_t end = url.find('?', slash);
  return url.substr(0, slash + 1) + database + (end == std::string::npos ? "" : url.substr(end));
}

std::string CommandText(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    bool plain = !a.empty() && a.find_first_not_of(
                                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
                                   "UVWXYZ0123456789-_./=:@%+,") == std::string::npos;
    out += (out.empty() ? "" : " ") + (plain ? a : ShellQuote(a));
  }
  return out;
}

Status CmdMigrateCheck(const Session& s, const MigrateOpts& o) {
  DiffFormat format = ParseFormat(o.format);
  if (o.command.empty())
    Usage(
        "give the migration command after --: arbor migrate-check "
        "--target production -- ./migrate.sh");
  api::BranchName target = s.Branch(o.target);
  int64_t ttl = OrUsage(ParseDurationArg(o.ttl));
  auto c = s.Client();

  struct Outcome {
    int exit_code = -1;
    double seconds = 0;
    int64_t size_before = 0, size_after = 0;
    std::vector<Change> changes;
    std::string diff_error;
    std::string branch;
  };
  auto run = [&]() -> Result<Outcome> {
    Outcome out;
    ARBOR_RETURN_IF_ERROR(c.GetBranch(target).status());
    TempBranch temp(c, TempName(target.project, "check", target.branch));
    out.branch = temp.name().branch;
    ARBOR_ASSIGN_OR_RETURN(api::Branch made, temp.Create(target, std::nullopt, ttl));
    out.size_before = made.status.logical_size_bytes;
    ARBOR_ASSIGN_OR_RETURN(std::string url, StartAndConnect(c, temp.name()));
    // Read from the branch before the migration: the target's schema, without touching it.
    ARBOR_ASSIGN_OR_RETURN(Catalog before, ReadCatalog(url, o.database));
    ARBOR_ASSIGN_OR_RETURN(auto parts, ConnInfoParts(url));
    ProcessOptions po;
    po.capture = false;
    po.env = {{"DATABASE_URL", url}};
    for (const auto& [key, var] : {std::pair<const char*, const char*>{"host", "PGHOST"},
                                   {"port", "PGPORT"},
                                   {"user", "PGUSER"},
                                   {"password", "PGPASSWORD"},
                                   {"dbname", "PGDATABASE"}}) {
      auto it = parts.find(key);
      if (it != parts.end()) po.env.push_back({var, it->second});
    }
    if (!o.database.empty()) {
      po.env[0].second = WithDatabase(url, o.database);
      po.env.push_back({"PGDATABASE", o.database});
    }
    auto t0 = std::chrono::steady_clock::now();
    auto pr = RunProcess(o.command, po);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // A command that cannot start fails like one the shell cannot find: status 127.
    out.exit_code = pr.ok() ? pr->exit_code : 127;
    if (!pr.ok()) *s.io->err << "arbor: " << pr.status().message() << "\n";
    auto after = ReadCatalog(url, o.database);
    if (after.ok()) {
      out.changes = CompareCatalogs(before, *after);
    } else {
      out.diff_error = after.status().message();
    }
    // A stopped compute has written everything back: the size is the migration's.
    (void)c.StopEndpoint(api::EndpointName{temp.name().project, temp.name().branch, kPrimary});
    auto b = c.GetBranch(temp.name());
    out.size_after = b.ok() ? b->status.logical_size_bytes : out.size_before;
    return out;
  };
  auto r = run();
  if (!r.ok()) FailDiffLike(r.status());
  const Outcome& out = *r;
  bool ok = out.exit_code == 0;
  std::string result =
      ok ? "succeeded" : "failed (exit status " + std::to_string(out.exit_code) + ")";
  std::string after_label = target.branch + " + migration";
  if (s.Json() || format == DiffFormat::kJson) {
    api::Json j{{"target", target.ToString()},
                {"branch", out.branch},
                {"command", o.command},
                {"succeeded", ok},
                {"exit_status", out.exit_code},
                {"duration_seconds", out.seconds},
                {"logical_size_before_bytes", out.size_before},
                {"logical_size_after_bytes", out.size_after},
                {"schema_diff", DiffToJson(out.changes, target.branch, after_label)}};
    if (!out.diff_error.empty()) j["schema_diff_error"] = out.diff_error;
    s.PrintJson(j);
  } else if (format == DiffFormat::kMarkdown) {
    std::string md = std::string("## Migration check: ") + (ok ? "✅ " : "❌ ") + result +
                     "\n\n| | |\n| --- | --- |\n| target | `" + target.branch +
                     "` (untouched; run on a branch of it) |\n| command | `" +
                     CommandText(o.command) + "` |\n| duration | " + Seconds(out.seconds) +
                     " |\n| logical size | " + SizeChange(out.size_before, out.size_after, "→") +
                     " |\n\n";
    if (!out.diff_error.empty())
      md += "Schema diff unavailable: " + out.diff_error + "\n";
    else
      md += RenderDiff(out.changes, target.branch, after_label, DiffFormat::kMarkdown);
    s.Print(md);
  } else {
    std::string text =
        RenderFields({{"target", target.branch + " (untouched)"},
                      {"branch", out.branch + " (deleted)"},
                      {"command", CommandText(o.command)},
                      {"result", result},
                      {"duration", Seconds(out.seconds)},
                      {"logical size", SizeChange(out.size_before, out.size_after)}});
    text += "\n";
    if (!out.diff_error.empty())
      text += "Schema diff unavailable: " + out.diff_error + "\n";
    else
      text += RenderDiff(out.changes, target.branch, after_label, DiffFormat::kText);
    s.Print(text);
  }
  if (!ok) ExitWith(1, "");
  return Status::Ok();
}

}  // namespace

void AddWorkflowCommands(CLI::App& app, Session& s, Action* action) {
  AddGitCommands(app, s, action);
  AddBisectCommand(app, s, action);
  AddMergeCommand(app, s, action);

  // ci
  auto* ci = app.add_subcommand("ci", "A database branch per CI run");
  ci->require_subcommand(1);
  ci->footer(
      "Examples:\n  eval \"$(arbor ci branch --name pr-123 --ttl 2h)\"\n"
      "  arbor ci branch --name pr-123 --reset --format github\n"
      "  arbor ci cleanup --name pr-123");
  auto co = std::make_shared<CiOpts>();
  auto* cib = ci->add_subcommand(
      "branch", "Create the branch (or reuse it; --reset: reset it) and print its URL");
  cib->add_option("--name", co->name, "the branch, e.g. pr-123")->required();
  cib->add_option("--ttl", co->ttl, "expiry from now (default: the project's, else 1d)");
  cib->add_option("--parent", co->parent, "the branch to fork (default: the default branch)");
  cib->add_flag("--reset", co->reset, "reset an existing branch to its parent's state");
  cib->add_option("--format", co->format, "shell (export ...), dotenv, or github ($GITHUB_ENV)")
      ->capture_default_str();
  cib->add_option("--variable", co->variable, "the variable's name")->capture_default_str();
  OnRun(cib, action, [&s, co] { return CmdCiBranch(s, *co); });
  auto cname = std::make_shared<std::string>();
  auto* cic = ci->add_subcommand("cleanup", "Delete the branch (success if already gone)");
  cic->add_option("--name", *cname, "the branch, e.g. pr-123")->required();
  OnRun(cic, action, [&s, cname] { return CmdCiCleanup(s, *cname); });

  // diff
  auto d = std::make_shared<DiffOpts>();
  auto* diff = app.add_subcommand("diff", "Schema diff between two branches (exit 1: differ)");
  diff->add_option("from", d->a, "a branch, branch@TIME or branch@lsn:X/Y")->required();
  diff->add_option("to", d->b, "a branch, branch@TIME or branch@lsn:X/Y")->required();
  diff->add_option("--format", d->format, "text, markdown or json; with --data text, json or sql")
      ->capture_default_str();
  diff->add_option("--database", d->database, "the database to compare (default postgres)");
  diff->add_flag("--data", d->data,
                 "compare the rows too, reading only the pages either side wrote since they "
                 "diverged");
  diff->add_option("--table", d->tables, "with --data: only this table (repeatable)");
  diff->add_option("--ttl", d->ttl,
                   "ignored (a branch@TIME side is read through a pinned endpoint, which "
                   "deletes itself once idle)");
  diff->footer(
      "Exit status: 0 identical, 1 different, 2 usage, 3 daemon unreachable, 4 server or\n"
      "catalog failure, 5 refused (e.g. no such branch).\n"
      "Examples:\n  arbor diff production dev\n  arbor diff production@-1h production\n"
      "  arbor diff production pr-123 --format markdown\n"
      "  arbor diff --data production dev --table public.orders --format sql");
  OnRun(diff, action, [&s, d] { return CmdDiff(s, *d); });

  // migrate-check
  auto m = std::make_shared<MigrateOpts>();
  auto* mc = app.add_subcommand("migrate-check",
                                "Run a migration on a temporary branch of the target and report");
  mc->add_option("--target", m->target, "the branch to check against")->required();
  mc->add_option("--format", m->format, "text, markdown or json")->capture_default_str();
  mc->add_option("--database", m->database, "the database to compare (default postgres)");
  mc->add_option("--ttl", m->ttl, "TTL of the temporary branch")->capture_default_str();
  mc->add_option("command", m->command, "the migration command, after --")->required();
  mc->footer(
      "The command gets DATABASE_URL and PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE; its\n"
      "output goes to stderr. Exit status: 0 the migration succeeded, 1 it failed, 2-5 as for\n"
      "arbor diff.\n"
      "Example:\n  arbor migrate-check --target production -- psql -v ON_ERROR_STOP=1 -f m.sql");
  OnRun(mc, action, [&s, m] { return CmdMigrateCheck(s, *m); });
}

Result<std::string> ConnectEndpoint(const api::ApiClient& c, const api::EndpointName& name) {
  return ConnectEndpointImpl(c, name);
}

}  // namespace arbor::cli
