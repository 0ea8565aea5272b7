#include "proxy/router.h"

#include <vector>

namespace arbor::proxy {
namespace {

std::vector<std::string_view> Split(std::string_view s, std::string_view sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + sep.size();
  }
}

// One whitespace-separated word of a PostgreSQL options string: its raw text (escapes kept, to
// pass it on unchanged) and its value (backslash escapes removed).
struct Word {
  std::string_view raw;
  std::string value;
};

std::vector<Word> Words(std::string_view s) {
  std::vector<Word> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    if (i >= s.size()) break;
    size_t start = i;
    Word w;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
      if (s[i] == '\\' && i + 1 < s.size()) ++i;
      w.value.push_back(s[i]);
      ++i;
    }
    w.raw = s.substr(start, i - start);
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace

std::string EndpointName::ToString() const {
  return endpoint.empty() ? project + "/" + branch : project + "/" + branch + "/" + endpoint;
}

bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > 63 || id[0] < 'a' || id[0] > 'z') return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

Result<EndpointName> ParseEndpointName(std::string_view text) {
  auto parts = Split(text, "/");
  EndpointName n;
  if (parts.size() == 2 || parts.size() == 3) {
    n.project = parts[0];
    n.branch = parts[1];
    if (parts.size() == 3) n.endpoint = parts[2];
  } else if ((parts.size() == 4 || parts.size() == 6) && parts[0] == "projects" &&
             parts[2] == "branches" && (parts.size() == 4 || parts[4] == "endpoints")) {
    n.project = parts[1];
    n.branch = parts[3];
    if (parts.size() == 6) n.endpoint = parts[5];
  } else {
    return Status::InvalidArgument("'" + std::string(text) +
                                   "' is not an endpoint name: use <project>/<branch> or "
                                   "<project>/<branch>/<endpoint>");
  }
  bool has_endpoint = parts.size() == 3 || parts.size() == 6;
  // "<branch>@<time or lsn:X/Y>" names the branch's past (a pinned endpoint); the control plane
  // reads what follows the '@'.
  std::string_view branch_id = n.branch;
  size_t at = branch_id.find('@');
  bool pinned = at != std::string_view::npos;
  if (pinned) branch_id = branch_id.substr(0, at);
  if (pinned && (has_endpoint || at + 1 == n.branch.size())) {
    return Status::InvalidArgument("'" + std::string(text) +
                                   "' is not an endpoint name: use <project>/<branch>@<time>, "
                                   "with no endpoint id, for the branch's past");
  }
  if (!IsValidId(n.project) || !IsValidId(branch_id) || (has_endpoint && !IsValidId(n.endpoint))) {
    return Status::InvalidArgument("'" + std::string(text) +
                                   "' is not an endpoint name: ids are 1-63 lowercase letters, "
                                   "digits and hyphens, starting with a letter");
  }
  return n;
}

std::optional<EndpointName> EndpointFromSni(std::string_view host) {
  size_t dot = host.find('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;  // one label
  if (host.find_first_not_of("0123456789.") == std::string_view::npos) return std::nullopt;
  if (host.find(':') != std::string_view::npos) return std::nullopt;  // IPv6
  std::string_view label = host.substr(0, dot);
  auto parts = Split(label, "--");
  EndpointName n;
  if (parts.size() == 1) {
    n.project = "default";
    n.branch = parts[0];
  } else if (parts.size() == 2 || parts.size() == 3) {
    n.project = parts[0];
    n.branch = parts[1];
    if (parts.size() == 3) n.endpoint = parts[2];
  } else {
    return std::nullopt;
  }
  if (!IsValidId(n.project) || !IsValidId(n.branch) ||
      (!n.endpoint.empty() && !IsValidId(n.endpoint))) {
    return std::nullopt;
  }
  return n;
}

OptionsSplit SplitOptions(std::string_view options) {
  OptionsSplit out;
  auto words = Words(options);
  std::vector<std::string_view> kept;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& v = words[i].value;
    if (v.rfind("endpoint=", 0) == 0) {
      out.endpoint = v.substr(9);
    } else if (v.rfind("--endpoint=", 0) == 0) {
      out.endpoint = v.substr(11);
    } else if (v.rfind("-cendpoint=", 0) == 0) {
      out.endpoint = v.substr(11);
    } else if (v == "-c" && i + 1 < words.size() && words[i + 1].value.rfind("endpoint=", 0) == 0) {
      out.endpoint = words[i + 1].value.substr(9);
      ++i;
    } else {
      kept.push_back(words[i].raw);
    }
  }
  for (size_t i = 0; i < kept.size(); ++i) {
    if (i > 0) out.rest.push_back(' ');
    out.rest.append(kept[i]);
  }
  return out;
}

PasswordSplit SplitPassword(std::string_view password) {
  PasswordSplit out;
  if (password.rfind("endpoint=", 0) == 0) {
    size_t semi = password.find(';');
    if (semi != std::string_view::npos) {
      out.endpoint = std::string(password.substr(9, semi - 9));
      out.password = std::string(password.substr(semi + 1));
      return out;
    }
  }
  out.password = std::string(password);
  return out;
}

}  // namespace arbor::proxy
