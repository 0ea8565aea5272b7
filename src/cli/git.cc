// `arbor git install | uninstall | status | sync | prune`: a database branch per git branch
// (docs/workflow.md). The pure rules (name mapping, env rewriting, config, hook text) are
// in git_config.h; this file does the I/O: git, the hook files, the env file and the API.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include "cli/git_config.h"
#include "cli/local_socket.h"
#include "cli/process.h"
#include "cli/render.h"
#include "cli/workflow_internal.h"

namespace arbor::cli {
namespace {

namespace fs = std::filesystem;

// The hook must never hold up git: a daemon that does not answer quickly is reported as a
// warning and the checkout goes on.
constexpr int kHookConnectTimeoutS = 2;
constexpr int kHookReadTimeoutS = 20;

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `content` to `path` through a temporary file and a rename, so that a reader never
// sees half a file. The temporary file is made new beside `path` by mkostemp (a fresh name,
// O_EXCL: never a file or link already there, whatever the work tree holds). `path` itself
// is replaced, never followed: a symlink there becomes the file (EnvFileTarget resolves the
// env file's link first). An existing file keeps its mode; a new one gets `mode`. With
// `secret` (the content holds a password), group and other lose every bit either way.
Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode,
                       bool secret = false) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) mode = st.st_mode & 07777;
  if (secret) mode &= ~static_cast<mode_t>(077);
  std::string tmp = path + ".arbor-XXXXXX";
  int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot write " + path + ": " + std::strerror(errno));
  bool ok = fchmod(fd, mode) == 0;
  for (size_t done = 0; ok && done < content.size();) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return Status::IOError("cannot write " + path);
  }
  return Status::Ok();
}

std::string RealPath(const std::string& path) {
  char* real = realpath(path.c_str(), nullptr);
  if (real == nullptr) return "";
  std::string out = real;
  free(real);
  return out;
}

// The file to rewrite for `env_file` (ValidateEnvFile'd) in the work tree `top`. The links
// in the work tree may be a pull request's too, so the write stays inside: refused
// (FailedPrecondition) when a directory on the way is a symlink, or when the file is a
// symlink whose target, fully resolved, is missing or not a file of the work tree. A link
// that stays inside is followed (an env file shared through one stays a link), and the file
// it resolves to is returned.
Result<std::string> EnvFileTarget(const std::string& top, const std::string& env_file) {
  const std::string what = "env_file '" + env_file + "'";
  std::string root = RealPath(top);
  if (root.empty()) return Status::IOError("cannot resolve " + top + ": " + std::strerror(errno));
  std::string path = root;
  size_t pos = 0;
  for (size_t slash; (slash = env_file.find('/', pos)) != std::string::npos; pos = slash + 1) {
    std::string part = env_file.substr(pos, slash - pos);
    if (part.empty() || part == ".") continue;
    path += "/" + part;
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      return Status::FailedPrecondition(what + ": " + env_file.substr(0, slash) +
                                        " is a symlink; refused, nothing written");
    }
  }
  path += "/" + env_file.substr(pos);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return path;
  std::string target = RealPath(path);
  if (target.empty()) {
    return Status::FailedPrecondition(what + " is a symlink to a missing file; refused, nothing " +
                                      "written");
  }
  if (target.rfind(root + "/", 0) != 0) {
    return Status::FailedPrecondition(what + " is a symlink to " + target +
                                      ", outside the repository; refused, nothing written");
  }
  if (!ValidateEnvFile(target.substr(root.size() + 1), "").ok()) {
    return Status::FailedPrecondition(what + " is a symlink to " + target +
                                      ", in .git; refused, nothing written");
  }
  return target;
}

std::string TrimNl(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// `git -C dir ARGS`: its stdout without the final newline; FailedPrecondition with git's
// message when it fails.
Result<std::string> Git(const std::string& dir, std::vector<std::string> args) {
  std::vector<std::string> argv = {"git", "-C", dir};
  argv.insert(argv.end(), args.begin(), args.end());
  ARBOR_ASSIGN_OR_RETURN(ProcessResult r, RunProcess(argv, {}));
  if (r.exit_code != 0) {
    std::string msg = TrimNl(r.err);
    return Status::FailedPrecondition("git " + args[0] + ": " +
                                      (msg.empty() ? "failed" : OneLineOf(msg)));
  }
  return TrimNl(r.out);
}

// Whether `git ARGS` exits 0 (for yes/no questions like merge-base --is-ancestor).
bool GitYes(const std::string& dir, std::vector<std::string> args) {
  std::vector<std::string> argv = {"git", "-C", dir};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunProcess(argv, {});
  return r.ok() && r->exit_code == 0;
}

std::string Under(const std::string& top, const std::string& path) {
  return fs::path(path).is_absolute() ? path : (fs::path(top) / path).string();
}

// The repository the command acts on: its top directory, hooks directory (core.hooksPath
// respected) and common git directory (where the hook's record lives).
struct Repo {
  std::string top;
  std::string hooks;
  std::string common_dir;
  std::string RecordPath() const { return common_dir + "/arbor-branches.json"; }
  std::string ConfigPath() const { return top + "/" + kConfigFile; }
};

// `path` relative to the repository's top when it is inside it ("`.git/hooks`"), for messages.
std::string Shown(const Repo& repo, const std::string& path) {
  std::error_code ec;
  fs::path rel = fs::relative(path, repo.top, ec);
  if (ec || rel.empty() || rel.native().rfind("..", 0) == 0) return path;
  return rel.string();
}

Result<Repo> OpenRepo(const std::string& dir) {
  Repo r;
  auto top = Git(dir, {"rev-parse", "--show-toplevel"});
  if (!top.ok()) {
    return Status::FailedPrecondition("not in a git repository (" + dir +
                                      "): run this inside one, or give --repo DIR");
  }
  r.top = *top;
  ARBOR_ASSIGN_OR_RETURN(std::string hooks, Git(r.top, {"rev-parse", "--git-path", "hooks"}));
  r.hooks = Under(r.top, hooks);
  ARBOR_ASSIGN_OR_RETURN(std::string common, Git(r.top, {"rev-parse", "--git-common-dir"}));
  r.common_dir = Under(r.top, common);
  return r;
}

Result<GitConfig> LoadConfig(const Repo& repo) {
  auto text = ReadFile(repo.ConfigPath());
  if (!text.ok()) {
    return Status::FailedPrecondition(std::string("no ") + kConfigFile + " in " + repo.top +
                                      ": run `arbor git install` first");
  }
  return ParseGitConfig(*text);
}

Result<HookRecords> LoadRecords(const Repo& repo) {
  auto text = ReadFile(repo.RecordPath());
  if (!text.ok()) return HookRecords{};
  return ParseHookRecords(*text);
}

// The current branch; NotFound when HEAD is detached.
Result<std::string> CurrentBranch(const Repo& repo) {
  auto b = Git(repo.top, {"symbolic-ref", "--quiet", "--short", "HEAD"});
  if (!b.ok() || b->empty()) return Status::NotFound("HEAD is detached: no git branch");
  return *b;
}

bool BranchExists(const Repo& repo, const std::string& b) {
  return GitYes(repo.top, {"rev-parse", "--verify", "--quiet", "refs/heads/" + b});
}

// The git branch that maps to the parent: origin's HEAD, else main, else master, else
// init.defaultBranch, else the current branch.
std::string DetectDefaultBranch(const Repo& repo) {
  auto origin = Git(repo.top, {"symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"});
  if (origin.ok() && origin->rfind("origin/", 0) == 0) return origin->substr(7);
  for (const char* b : {"main", "master"}) {
    if (BranchExists(repo, b)) return b;
  }
  auto init = Git(repo.top, {"config", "init.defaultBranch"});
  if (init.ok() && !init->empty()) return *init;
  auto cur = CurrentBranch(repo);
  return cur.ok() ? *cur : "main";
}

std::string SelfBinary() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("arbor") : p.string();
}

bool IsOurHook(const std::string& path) {
  auto text = ReadFile(path);
  return text.ok() && text->find(kHookMarker) != std::string::npos;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

api::ApiClient ClientFor(const Session& s, bool hook) {
  Settings st = ResolveSettings(s.api_flag, s.io->getenv);
  api::ClientOptions o;
  o.base_url = st.api_url;
  o.token = st.token;
  o.auth_hint = AuthHint(st);
  if (hook) {
    o.connect_timeout_s = kHookConnectTimeoutS;
    o.read_timeout_s = kHookReadTimeoutS;
  }
  return api::ApiClient(o);
}

// ---- install / uninstall ----

struct InstallOpts {
  std::string repo = ".", parent, ttl, env_file, variable, default_branch;
};

Status CmdInstall(const Session& s, const InstallOpts& o) {
  Status flags = o.env_file.empty() ? Status::Ok() : ValidateEnvFile(o.env_file, "--env-file");
  if (flags.ok() && !o.variable.empty()) flags = ValidateEnvVariable(o.variable, "--variable");
  if (!flags.ok()) Usage(flags.message());
  ARBOR_ASSIGN_OR_RETURN(Repo repo, OpenRepo(o.repo));
  std::string report;
  // The configuration: kept when present (it may be committed and shared).
  if (Exists(repo.ConfigPath())) {
    ARBOR_RETURN_IF_ERROR(LoadConfig(repo).status());
    report += std::string("Kept the existing ") + kConfigFile + ".\n";
  } else {
    GitConfig c;
    c.project = s.ProjectId();
    if (!o.parent.empty()) c.parent = s.Branch(o.parent).branch;
    if (!o.ttl.empty()) {
      OrUsage(ParseDurationArg(o.ttl));
      c.ttl = o.ttl;
    }
    if (!o.env_file.empty()) c.env_file = o.env_file;
    if (!o.variable.empty()) c.variable = o.variable;
    c.default_branch = o.default_branch.empty() ? DetectDefaultBranch(repo) : o.default_branch;
    ARBOR_RETURN_IF_ERROR(WriteFileAtomic(repo.ConfigPath(), FormatGitConfig(c), 0644));
    report += std::string("Wrote ") + kConfigFile + ": project " + c.project + ", parent " +
              c.parent + ", ttl " + c.ttl + ", " + c.variable + " in " + c.env_file + "; git " +
              c.default_branch + " uses " + c.parent + " itself.\n";
  }
  std::error_code ec;
  fs::create_directories(repo.hooks, ec);
  if (ec) return Status::IOError("cannot create " + repo.hooks + ": " + ec.message());
  std::string binary = SelfBinary();
  for (const char* name : kHookNames) {
    std::string path = repo.hooks + "/" + name;
    std::string orig = path + kOrigSuffix;
    std::string kept;
    if (Exists(path) && !IsOurHook(path)) {
      if (Exists(orig)) {
        return Status::FailedPrecondition(path + " and " + orig +
                                          " both exist; move one of them away first");
      }
      if (rename(path.c_str(), orig.c_str()) != 0) {
        return Status::IOError("cannot move " + path + " to " + orig);
      }
      kept =
          std::string(" (the existing one is kept as ") + name + kOrigSuffix + " and runs first)";
    }
    ARBOR_RETURN_IF_ERROR(WriteFileAtomic(path, HookScript(name, binary), 0755));
    report +=
        std::string("Installed the ") + name + " hook in " + Shown(repo, repo.hooks) + kept + ".\n";
  }
  report +=
      "A checkout now switches the database branch; `arbor git sync` does it for the "
      "current branch now.\n";
  s.Print(report);
  return Status::Ok();
}

Status CmdUninstall(const Session& s, const std::string& dir) {
  ARBOR_ASSIGN_OR_RETURN(Repo repo, OpenRepo(dir));
  std::string report;
  for (const char* name : kHookNames) {
    std::string path = repo.hooks + "/" + name;
    std::string orig = path + kOrigSuffix;
    if (Exists(path) && !IsOurHook(path)) {
      report += std::string("Left ") + Shown(repo, path) + ": it is not Arbor's.\n";
      continue;
    }
    if (Exists(path) && unlink(path.c_str()) != 0) {
      return Status::IOError("cannot remove " + path);
    }
    if (Exists(orig)) {
      if (rename(orig.c_str(), path.c_str()) != 0) {
        return Status::IOError("cannot move " + orig + " back to " + path);
      }
      report += std::string("Removed the ") + name + " hook and put back the one it replaced.\n";
    } else {
      report += std::string("Removed the ") + name + " hook.\n";
    }
  }
  report += std::string("Kept ") + kConfigFile +
            " and the database branches (`arbor git prune` deletes those of gone branches).\n";
  s.Print(report);
  return Status::Ok();
}

// ---- sync ----

struct SyncOpts {
  std::string repo = ".";
  std::string hook;  // the hook that runs it; empty: a user
  std::vector<std::string> hook_args;
};

// Ensures the database branch of the current git branch and points the env file at it.
// Returns the one line that says what happened; empty when there is nothing to do.
Result<std::string> Sync(const Session& s, const SyncOpts& o) {
  ARBOR_ASSIGN_OR_RETURN(Repo repo, OpenRepo(o.repo));
  ARBOR_ASSIGN_OR_RETURN(GitConfig cfg, LoadConfig(repo));
  auto cur = CurrentBranch(repo);
  if (!cur.ok()) {
    if (!o.hook.empty()) return std::string();  // a detached checkout (rebase, bisect)
    return cur.status();
  }
  ARBOR_RETURN_IF_ERROR(api::ValidateId(cfg.project, std::string(kConfigFile) + ": project"));
  ARBOR_RETURN_IF_ERROR(api::ValidateId(cfg.parent, std::string(kConfigFile) + ": parent"));
  auto ttl = ParseDurationArg(cfg.ttl);
  if (!ttl.ok()) {
    return Status::InvalidArgument(std::string(kConfigFile) + ": ttl: " + ttl.status().message());
  }
  // Where the connection string goes is settled before anything is made.
  ARBOR_ASSIGN_OR_RETURN(std::string env_path, EnvFileTarget(repo.top, cfg.env_file));
  // The parent needs no records (nor a readable records file).
  HookRecords records;
  if (DatabaseBranchFor(cfg, *cur) != cfg.parent) {
    ARBOR_ASSIGN_OR_RETURN(records, LoadRecords(repo));
  }
  std::string db = DatabaseBranchFor(cfg, records, *cur);
  api::BranchName name{cfg.project, db};
  api::BranchName parent{cfg.project, cfg.parent};
  api::ApiClient c = ClientFor(s, !o.hook.empty());

  std::string what;
  auto existing = c.GetBranch(name);
  if (!existing.ok() && existing.status().code() != Code::kNotFound) return existing.status();
  api::Branch b;
  if (existing.ok()) {
    b = *existing;
    // A checkout renews the TTL of a branch that expires (never of a protected or root one).
    if (db != cfg.parent && b.status.expire_time_us && !b.spec.is_protected.value_or(false)) {
      api::BranchSpec spec;
      spec.ttl_s = *ttl;
      ARBOR_ASSIGN_OR_RETURN(b, c.UpdateBranch(name, spec, "spec.ttl"));
      what = "expires in " + HumanDuration(*ttl);
    } else {
      what = b.status.expire_time_us ? "expires " + ExpiryText(b, s.Now()) : "never expires";
    }
  } else {
    if (db == cfg.parent) return existing.status();  // the parent itself is gone
    api::BranchSpec spec;
    spec.source_branch = parent.ToString();
    spec.ttl_s = *ttl;
    auto created = c.CreateBranch(name.project, name.branch, spec);
    if (!created.ok() && created.status().code() == Code::kAlreadyExists) {
      created = c.GetBranch(name);  // another checkout made it meanwhile
    }
    if (!created.ok()) return created.status();
    b = *created;
    what = "created from " + cfg.parent + ", expires in " + HumanDuration(*ttl);
  }
  std::string recorded_uid;
  if (auto it = records.find(*cur); it != records.end()) recorded_uid = it->second.uid;
  if (db != cfg.parent) {
    HookRecord rec{*cur, db, b.uid};
    auto it = records.find(*cur);
    if (it == records.end() || it->second.db_branch != rec.db_branch || it->second.uid != rec.uid) {
      records[*cur] = rec;
      ARBOR_RETURN_IF_ERROR(WriteFileAtomic(repo.RecordPath(), FormatHookRecords(records), 0644));
    }
  }
  auto old_file = ReadFile(env_path);
  std::string old = old_file.ok() ? *old_file : std::string();
  // The developer's own branch gets its own owner password, which does not expire: set once,
  // then kept while the line still logs in to that same branch. The parent (production, say)
  // is never given a new password by a checkout: it gets a token, valid an hour.
  ARBOR_ASSIGN_OR_RETURN(std::string base, PrimaryConnectionString(c, name));
  // On the daemon's host, through the proxy's unix socket (ARBOR_LOCAL_SOCKET=0: TCP).
  auto local = LocalSocketDir(s, c, base);
  auto localize = [&](std::string u) { return local.ok() ? WithSocketDir(u, *local) : u; };
  base = localize(base);
  std::string kept = EnvValue(old, cfg.variable);
  std::string url;
  if (db == cfg.parent) {
    ARBOR_ASSIGN_OR_RETURN(url, TokenUrl(c, name));
    url = localize(url);
  } else if (recorded_uid == b.uid && SameLogin(kept, base)) {
    url = kept;
  } else {
    ARBOR_ASSIGN_OR_RETURN(url, RolePasswordUrl(c, name));
    url = localize(url);
  }
  std::string updated = RewriteEnvVar(old, cfg.variable, url);
  std::string env_note = cfg.variable + " in " + cfg.env_file + " already set";
  if (updated != old) {
    ARBOR_RETURN_IF_ERROR(WriteFileAtomic(env_path, updated, 0600, /*secret=*/true));
    env_note = cfg.variable + " in " + cfg.env_file + " updated";
  }
  return "git branch " + *cur + " -> database branch " + db + " (" + what + "); " + env_note;
}

Status CmdSync(const Session& s, const SyncOpts& o) {
  if (o.hook.empty()) {
    ARBOR_ASSIGN_OR_RETURN(std::string line, Sync(s, o));
    s.Print(line.empty() ? "" : line + "\n");
    return Status::Ok();
  }
  // A hook: whatever happens, one line on stderr and exit 0, so git goes on.
  // post-checkout's third argument is 1 for a branch checkout and 0 for a file checkout.
  if (o.hook == "post-checkout" && o.hook_args.size() >= 3 && o.hook_args[2] != "1") {
    return Status::Ok();
  }
  std::string line;
  try {
    auto r = Sync(s, o);
    if (r.ok()) {
      line = r->empty() ? "" : "arbor: " + *r;
    } else {
      line = "arbor: warning: database branch not switched: " + OneLineOf(r.status().message());
    }
  } catch (const std::exception& e) {
    line = "arbor: warning: database branch not switched: " + OneLineOf(e.what());
  }
  if (!line.empty()) *s.io->err << line << "\n";
  return Status::Ok();
}

// ---- status ----

Status CmdStatus(const Session& s, const std::string& dir) {
  ARBOR_ASSIGN_OR_RETURN(Repo repo, OpenRepo(dir));
  ARBOR_ASSIGN_OR_RETURN(GitConfig cfg, LoadConfig(repo));
  ARBOR_ASSIGN_OR_RETURN(HookRecords records, LoadRecords(repo));
  std::string hooks;
  for (const char* name : kHookNames) {
    std::string path = repo.hooks + "/" + name;
    hooks += (hooks.empty() ? "" : ", ") + std::string(name) +
             (IsOurHook(path) ? " installed" : " not installed");
  }
  auto cur = CurrentBranch(repo);
  ARBOR_ASSIGN_OR_RETURN(
      std::string refs,
      Git(repo.top, {"for-each-ref", "--format=%(refname:short)", "refs/heads/"}));
  std::vector<std::string> git_branches;
  std::set<std::string> seen;
  std::istringstream in(refs);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && seen.insert(l).second) git_branches.push_back(l);
  }

  auto c = s.Client();
  auto listed = c.ListBranches(cfg.project);
  std::map<std::string, api::Branch> by_id;
  if (listed.ok()) {
    for (const auto& b : *listed) by_id[ShortName(b.name)] = b;
  }
  std::vector<Row> rows;
  auto add = [&](const std::string& git, const std::string& db, bool gone) {
    std::string mark = cur.ok() && *cur == git ? "* " : "  ";
    std::string exists = "?", expires = "?";
    if (listed.ok()) {
      auto it = by_id.find(db);
      exists = it == by_id.end() ? "no" : "yes";
      expires = it == by_id.end() ? "-" : ExpiryText(it->second, s.Now());
    }
    rows.push_back({mark + git + (gone ? " (deleted)" : ""), db, exists, expires});
  };
  for (const auto& g : git_branches) add(g, DatabaseBranchFor(cfg, records, g), false);
  for (const auto& [git, rec] : records) {
    if (!seen.count(git)) add(git, rec.db_branch, true);
  }
  if (s.Json()) {
    api::Json list = api::Json::array();
    for (const auto& r : rows) {
      list.push_back({{"git_branch", r[0].substr(2)},
                      {"current", r[0][0] == '*'},
                      {"database_branch", r[1]},
                      {"exists", r[2] == "?" ? api::Json() : api::Json(r[2] == "yes")},
                      {"expires", r[3]}});
    }
    s.PrintJson({{"repository", repo.top},
                 {"project", cfg.project},
                 {"parent", cfg.parent},
                 {"default_branch", cfg.default_branch},
                 {"hooks", hooks},
                 {"branches", list}});
  } else {
    s.Print(RenderFields({{"repository", repo.top},
                          {"hooks", hooks},
                          {"config", std::string(kConfigFile) + ": project " + cfg.project +
                                         ", parent " + cfg.parent + ", ttl " + cfg.ttl + ", " +
                                         cfg.variable + " in " + cfg.env_file},
                          {"default branch", cfg.default_branch + " -> " + cfg.parent}}) +
            "\n" + RenderTable({"  GIT BRANCH", "DATABASE BRANCH", "EXISTS", "EXPIRES"}, rows));
  }
  return listed.status();
}

// ---- prune ----

Status CmdPrune(const Session& s, const std::string& dir, bool yes) {
  ARBOR_ASSIGN_OR_RETURN(Repo repo, OpenRepo(dir));
  ARBOR_ASSIGN_OR_RETURN(GitConfig cfg, LoadConfig(repo));
  ARBOR_ASSIGN_OR_RETURN(HookRecords records, LoadRecords(repo));
  if (!BranchExists(repo, cfg.default_branch)) {
    return Status::FailedPrecondition("the default git branch '" + cfg.default_branch + "' (" +
                                      kConfigFile + ": default_branch) does not exist");
  }
  auto cur = CurrentBranch(repo);
  auto c = s.Client();
  struct Candidate {
    HookRecord rec;
    std::string reason;
  };
  std::vector<Candidate> doomed;
  std::vector<std::string> notes;
  HookRecords keep = records;
  for (const auto& [git, rec] : records) {
    if (git == cfg.default_branch || rec.db_branch == cfg.parent) continue;
    std::string reason;
    if (!BranchExists(repo, git)) {
      reason = "git branch deleted";
    } else if (!(cur.ok() && *cur == git) &&
               GitYes(repo.top, {"merge-base", "--is-ancestor", "refs/heads/" + git,
                                 "refs/heads/" + cfg.default_branch})) {
      reason = "merged into " + cfg.default_branch;
    } else {
      continue;
    }
    auto b = c.GetBranch(api::BranchName{cfg.project, rec.db_branch});
    if (!b.ok() && b.status().code() == Code::kNotFound) {
      keep.erase(git);  // expired or deleted already
      continue;
    }
    if (!b.ok()) return b.status();
    if (!rec.uid.empty() && b->uid != rec.uid) {
      notes.push_back("skipped " + rec.db_branch + ": it is not the branch the hook made");
      keep.erase(git);
      continue;
    }
    if (b->spec.is_protected.value_or(false) || b->status.is_default) {
      notes.push_back("skipped " + rec.db_branch + ": protected");
      continue;
    }
    doomed.push_back({rec, reason});
  }
  for (const auto& n : notes) s.Print(n + "\n");
  auto save = [&]() { return WriteFileAtomic(repo.RecordPath(), FormatHookRecords(keep), 0644); };
  if (doomed.empty()) {
    s.Print("Nothing to prune.\n");
    return keep.size() == records.size() ? Status::Ok() : save();
  }
  std::vector<Row> rows;
  for (const auto& d : doomed) rows.push_back({d.rec.db_branch, d.rec.git_branch, d.reason});
  s.Print(RenderTable({"DATABASE BRANCH", "GIT BRANCH", "WHY"}, rows));
  if (!yes) {
    s.Print(doomed.size() == 1
                ? std::string("Delete this database branch? [y/N] ")
                : "Delete these " + std::to_string(doomed.size()) + " database branches? [y/N] ");
    s.io->out->flush();
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      s.Print("Nothing deleted.\n");
      return Status::Ok();
    }
  }
  Status first_error;
  for (const auto& d : doomed) {
    Status st = c.DeleteBranch(api::BranchName{cfg.project, d.rec.db_branch});
    if (st.ok() || st.code() == Code::kNotFound) {
      keep.erase(d.rec.git_branch);
      s.Print("Deleted " + d.rec.db_branch + ".\n");
    } else {
      *s.io->err << "arbor: " << d.rec.db_branch << ": " << st.message() << "\n";
      if (first_error.ok()) first_error = st;
    }
  }
  ARBOR_RETURN_IF_ERROR(save());
  return first_error;
}

}  // namespace

void AddGitCommands(CLI::App& app, Session& s, Action* action) {
  auto* git = app.add_subcommand("git", "A database branch per git branch, through git hooks");
  git->require_subcommand(1);
  git->footer(
      "Examples:\n  arbor git install\n  git checkout -b feature/login   # the hook makes "
      "feature-login\n  arbor git status\n  arbor git prune");

  auto io = std::make_shared<InstallOpts>();
  auto* install = git->add_subcommand(
      "install", "Install the post-checkout and post-merge hooks and write .arbor.toml");
  install->add_option("--repo", io->repo, "the repository (default: the current directory)");
  install->add_option("--parent", io->parent, "the branch new ones fork (default production)");
  install->add_option("--ttl", io->ttl, "a branch expires this long after a checkout (7d)");
  install->add_option("--env-file", io->env_file, "the env file to rewrite (default .env)");
  install->add_option("--variable", io->variable, "the variable (default DATABASE_URL)");
  install->add_option("--default-branch", io->default_branch,
                      "the git branch that uses the parent itself (default: detected)");
  install->footer("Example:\n  arbor git install --ttl 14d");
  OnRun(install, action, [&s, io] { return CmdInstall(s, *io); });

  auto udir = std::make_shared<std::string>(".");
  auto* uninstall =
      git->add_subcommand("uninstall", "Remove the hooks, putting back the ones they replaced");
  uninstall->add_option("--repo", *udir, "the repository (default: the current directory)");
  OnRun(uninstall, action, [&s, udir] { return CmdUninstall(s, *udir); });

  auto so = std::make_shared<SyncOpts>();
  auto* sync = git->add_subcommand(
      "sync", "Ensure the current git branch's database branch; point the env file at it");
  sync->add_option("--repo", so->repo, "the repository (default: the current directory)");
  sync->add_option("--hook", so->hook, "run as this hook: never fails, one line on stderr");
  sync->add_option("hook_args", so->hook_args, "the hook's arguments, after --");
  OnRun(sync, action, [&s, so] { return CmdSync(s, *so); });

  auto sdir = std::make_shared<std::string>(".");
  auto* status = git->add_subcommand("status", "Show git branch -> database branch");
  status->add_option("--repo", *sdir, "the repository (default: the current directory)");
  OnRun(status, action, [&s, sdir] { return CmdStatus(s, *sdir); });

  auto po = std::make_shared<std::pair<std::string, bool>>(".", false);
  auto* prune = git->add_subcommand(
      "prune", "Delete the database branches of deleted or merged git branches");
  prune->add_option("--repo", po->first, "the repository (default: the current directory)");
  prune->add_flag("--yes,-y", po->second, "do not ask");
  prune->footer("Example:\n  arbor git prune --yes");
  OnRun(prune, action, [&s, po] { return CmdPrune(s, po->first, po->second); });
}

}  // namespace arbor::cli
