#include "cli/git_config.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "api/names.h"

namespace arbor::cli {
namespace {

bool IsIdChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// If `line` assigns `variable`, sets *export_prefix (e.g. "export ") and *value_start.
bool AssignsVar(std::string_view line, std::string_view variable, std::string* export_prefix,
                size_t* value_start) {
  size_t i = 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  size_t lead = i;
  if (line.substr(i, 7) == "export " || line.substr(i, 7) == "export\t") {
    i += 7;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  }
  if (line.substr(i, variable.size()) != variable) return false;
  i += variable.size();
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  if (i >= line.size() || line[i] != '=') return false;
  *export_prefix = i > lead && line.substr(lead, 6) == "export" ? "export " : "";
  *value_start = i + 1;
  return true;
}

std::string EnvQuote(std::string_view value) {
  bool plain = true;
  for (char c : value) {
    if (c == ' ' || c == '\t' || c == '#' || c == '"' || c == '\'' || c == '$' || c == '`' ||
        c == '\\' || c == '\n') {
      plain = false;
    }
  }
  if (plain) return std::string(value);
  return ShellQuote(value);
}

// `s` for a one-line message: control characters as \xNN.
std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool IsDotGit(std::string_view part) {
  if (part.size() != 4 || part[0] != '.') return false;
  for (size_t i = 1; i < 4; ++i) {
    char c = part[i] >= 'A' && part[i] <= 'Z' ? static_cast<char>(part[i] - 'A' + 'a') : part[i];
    if (c != "git"[i - 1]) return false;
  }
  return true;
}

std::string Unquote(std::string_view v) {
  v = Trim(v);
  if (v.size() >= 2 && (v.front() == '\'' || v.front() == '"') && v.back() == v.front()) {
    return std::string(v.substr(1, v.size() - 2));
  }
  return std::string(v);
}

}  // namespace

std::string ShortHash(std::string_view text) {
  uint32_t h = 2166136261u;
  for (unsigned char c : text) {
    h ^= c;
    h *= 16777619u;
  }
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", h);
  return buf;
}

std::string MapGitBranch(std::string_view git_branch) {
  std::string out;
  for (char c : git_branch) {
    char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    char m = IsIdChar(l) ? l : '-';
    if (m == '-' && (out.empty() || out.back() == '-')) continue;  // collapse, trim leading
    out += m;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.empty()) return "b-" + ShortHash(git_branch);
  if (!(out[0] >= 'a' && out[0] <= 'z')) out = "b-" + out;
  if (out.size() > api::kMaxIdLength) {
    out.resize(api::kMaxIdLength - 9);
    while (!out.empty() && out.back() == '-') out.pop_back();
    out += "-" + ShortHash(git_branch);
  }
  return out;
}

std::string ShellQuote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string RewriteEnvVar(std::string_view content, std::string_view variable,
                          std::string_view value) {
  std::string out;
  bool found = false;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t nl = content.find('\n', pos);
    size_t end = nl == std::string_view::npos ? content.size() : nl + 1;
    std::string_view line = content.substr(pos, end - pos);
    std::string_view body = line;
    std::string ending;
    if (!body.empty() && body.back() == '\n') {
      body.remove_suffix(1);
      ending = "\n";
      if (!body.empty() && body.back() == '\r') {
        body.remove_suffix(1);
        ending = "\r\n";
      }
    }
    std::string export_prefix;
    size_t value_start = 0;
    if (AssignsVar(body, variable, &export_prefix, &value_start)) {
      out += export_prefix + std::string(variable) + "=" + EnvQuote(value) + ending;
      found = true;
    } else {
      out += line;
    }
    pos = end;
  }
  if (!found) {
    if (!out.empty() && out.back() != '\n') out += '\n';
    out += std::string(variable) + "=" + EnvQuote(value) + "\n";
  }
  return out;
}

std::string EnvValue(std::string_view content, std::string_view variable) {
  std::string value;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t nl = content.find('\n', pos);
    size_t end = nl == std::string_view::npos ? content.size() : nl;
    std::string_view line = content.substr(pos, end - pos);
    std::string export_prefix;
    size_t start = 0;
    if (AssignsVar(line, variable, &export_prefix, &start)) value = Unquote(line.substr(start));
    pos = end + 1;
  }
  return value;
}

Status ValidateEnvFile(std::string_view env_file, std::string_view what) {
  auto refuse = [&](const std::string& why) {
    return Status::InvalidArgument(std::string(what) + ": '" + Printable(env_file) + "' " + why +
                                   "; it must be a file inside the repository, relative to its "
                                   "root");
  };
  if (env_file.empty()) return refuse("is empty");
  for (unsigned char c : env_file) {
    if (c < 0x20 || c == 0x7f) return refuse("holds a control character");
  }
  if (env_file.front() == '/') return refuse("is an absolute path");
  size_t pos = 0;
  while (true) {
    size_t slash = env_file.find('/', pos);
    std::string_view part = env_file.substr(
        pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (part == "..") return refuse("has a '..' component");
    if (IsDotGit(part)) return refuse("is in .git");
    if (slash == std::string_view::npos) {
      if (part.empty() || part == ".") return refuse("names a directory");
      break;
    }
    pos = slash + 1;
  }
  return Status::Ok();
}

Status ValidateEnvVariable(std::string_view variable, std::string_view what) {
  bool ok = !variable.empty() && !(variable[0] >= '0' && variable[0] <= '9');
  for (char c : variable) {
    ok = ok &&
         ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (ok) return Status::Ok();
  return Status::InvalidArgument(std::string(what) + ": '" + Printable(variable) +
                                 "' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
}

Result<GitConfig> ParseGitConfig(std::string_view text) {
  GitConfig c;
  size_t pos = 0;
  int line_no = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = Trim(text.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') {
      if (nl == std::string_view::npos) break;
      continue;
    }
    std::string where = std::string(kConfigFile) + " line " + std::to_string(line_no);
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return Status::InvalidArgument(where + ": expected key = \"value\", got '" +
                                     std::string(line) + "'");
    }
    std::string key(Trim(line.substr(0, eq)));
    std::string_view raw = Trim(line.substr(eq + 1));
    // A trailing comment after a quoted value.
    if (!raw.empty() && raw[0] == '"') {
      size_t close = raw.find('"', 1);
      if (close == std::string_view::npos) {
        return Status::InvalidArgument(where + ": unterminated string");
      }
      std::string_view rest = Trim(raw.substr(close + 1));
      if (!rest.empty() && rest[0] != '#') {
        return Status::InvalidArgument(where + ": unexpected '" + std::string(rest) + "'");
      }
      raw = raw.substr(0, close + 1);
    }
    std::string value = Unquote(raw);
    std::string* field = key == "project"          ? &c.project
                         : key == "parent"         ? &c.parent
                         : key == "ttl"            ? &c.ttl
                         : key == "env_file"       ? &c.env_file
                         : key == "variable"       ? &c.variable
                         : key == "default_branch" ? &c.default_branch
                                                   : nullptr;
    if (field == nullptr) {
      return Status::InvalidArgument(where + ": unknown key '" + key +
                                     "' (known: project, parent, ttl, env_file, variable, "
                                     "default_branch)");
    }
    *field = value;
    if (nl == std::string_view::npos) break;
  }
  ARBOR_RETURN_IF_ERROR(ValidateEnvFile(c.env_file, std::string(kConfigFile) + ": env_file"));
  ARBOR_RETURN_IF_ERROR(ValidateEnvVariable(c.variable, std::string(kConfigFile) + ": variable"));
  return c;
}

std::string FormatGitConfig(const GitConfig& c) {
  auto line = [](const char* key, const std::string& v) {
    return std::string(key) + " = \"" + v + "\"\n";
  };
  return "# Arbor: a database branch per git branch (arbor git install; docs/workflow.md).\n"
         "# parent: the branch new ones fork, and the one default_branch itself uses.\n"
         "# ttl: a branch expires this long after its last checkout.\n"
         "# env_file, variable: where the hook writes the branch's connection string.\n" +
         line("project", c.project) + line("parent", c.parent) + line("ttl", c.ttl) +
         line("env_file", c.env_file) + line("variable", c.variable) +
         line("default_branch", c.default_branch);
}

std::string DatabaseBranchFor(const GitConfig& c, std::string_view git_branch) {
  if (git_branch == c.default_branch) return c.parent;
  return MapGitBranch(git_branch);
}

std::string DatabaseBranchFor(const GitConfig& c, const HookRecords& records,
                              std::string_view git_branch) {
  auto own = records.find(std::string(git_branch));
  if (own != records.end() && !own->second.db_branch.empty()) return own->second.db_branch;
  std::string db = DatabaseBranchFor(c, git_branch);
  if (db == c.parent) return db;
  for (const auto& [git, rec] : records) {
    if (git == git_branch || rec.db_branch != db) continue;
    std::string base = db.substr(0, api::kMaxIdLength - 9);
    while (!base.empty() && base.back() == '-') base.pop_back();
    return base + "-" + ShortHash(git_branch);
  }
  return db;
}

Result<HookRecords> ParseHookRecords(std::string_view text) {
  HookRecords out;
  if (Trim(text).empty()) return out;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("branches") || !j["branches"].is_array()) {
    return Status::InvalidArgument("the hook's record is not {\"branches\": [...]}");
  }
  for (const auto& e : j["branches"]) {
    if (!e.is_object()) continue;
    HookRecord r{e.value("git_branch", ""), e.value("db_branch", ""), e.value("uid", "")};
    if (r.git_branch.empty() || r.db_branch.empty()) continue;
    out[r.git_branch] = r;
  }
  return out;
}

std::string FormatHookRecords(const HookRecords& r) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [git, rec] : r) {
    list.push_back(
        {{"git_branch", rec.git_branch}, {"db_branch", rec.db_branch}, {"uid", rec.uid}});
  }
  return nlohmann::json{{"branches", list}}.dump(2) + "\n";
}

std::string HookScript(std::string_view hook_name, std::string_view arbor_binary) {
  std::string name(hook_name);
  return "#!/bin/sh\n"
         "# " +
         std::string(kHookMarker) + ": written by `arbor git install`; `arbor git uninstall` " +
         "removes it and\n# puts back the hook that was here before (" + name + kOrigSuffix +
         "), which runs first.\n"
         "# It never fails the git command: on any error it prints one warning line.\n"
         "rc=0\n"
         "orig=\"$(dirname \"$0\")/" +
         name + kOrigSuffix +
         "\"\n"
         "if [ -x \"$orig\" ]; then\n"
         "  \"$orig\" \"$@\" || rc=$?\n"
         "fi\n"
         "arbor=" +
         ShellQuote(arbor_binary) +
         "\n"
         "[ -x \"$arbor\" ] || arbor=arbor\n"
         "if command -v \"$arbor\" >/dev/null 2>&1; then\n"
         "  \"$arbor\" git sync --hook " +
         name +
         " -- \"$@\" </dev/null || true\n"
         "else\n"
         "  echo \"arbor: warning: the arbor command was not found; database branch not "
         "switched\" >&2\n"
         "fi\n"
         "exit $rc\n";
}

}  // namespace arbor::cli
