#include "api/names.h"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <vector>

#include "common/clock.h"

namespace arbor::api {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Quote(std::string_view text) { return "'" + std::string(text) + "'"; }

// Splits "a/b/c" on '/'. Empty parts are kept so that "projects//x" is refused.
std::vector<std::string_view> Split(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

// Reads exactly `n` decimal digits at `pos`.
bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!IsDigit(s[i])) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

bool HexWord(std::string_view s, uint32_t* out) {
  if (s.empty() || s.size() > 8) return false;
  uint32_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc() || ptr != s.data() + s.size()) return false;
  *out = v;
  return true;
}

Status BadName(std::string_view name, std::string_view form) {
  return Status::InvalidArgument(Quote(name) + " is not a resource name of the form " +
                                 std::string(form));
}

}  // namespace

Status ValidateId(std::string_view id, std::string_view what) {
  std::string w(what);
  if (id.empty()) return Status::InvalidArgument(w + " must not be empty");
  if (id.size() > kMaxIdLength) {
    return Status::InvalidArgument(w + " " + Quote(id) + " is " + std::to_string(id.size()) +
                                   " characters long; the limit is 63");
  }
  if (id[0] < 'a' || id[0] > 'z') {
    return Status::InvalidArgument(w + " " + Quote(id) + " must start with a lowercase letter");
  }
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || IsDigit(c) || c == '-')) {
      return Status::InvalidArgument(w + " " + Quote(id) +
                                     " may hold only lowercase letters, digits and hyphens");
    }
  }
  return Status::Ok();
}

std::string ProjectName::ToString() const { return "projects/" + project; }
std::string BranchName::ToString() const { return "projects/" + project + "/branches/" + branch; }
std::string EndpointName::ToString() const {
  return "projects/" + project + "/branches/" + branch + "/endpoints/" + endpoint;
}

Result<ProjectName> ParseProjectName(std::string_view name) {
  auto p = Split(name);
  if (p.size() != 2 || p[0] != "projects") return BadName(name, "projects/{project}");
  ARBOR_RETURN_IF_ERROR(ValidateId(p[1], "project id"));
  return ProjectName{std::string(p[1])};
}

Result<BranchName> ParseBranchName(std::string_view name) {
  auto p = Split(name);
  if (p.size() != 4 || p[0] != "projects" || p[2] != "branches") {
    return BadName(name, "projects/{project}/branches/{branch}");
  }
  ARBOR_RETURN_IF_ERROR(ValidateId(p[1], "project id"));
  ARBOR_RETURN_IF_ERROR(ValidateId(p[3], "branch id"));
  return BranchName{std::string(p[1]), std::string(p[3])};
}

Result<EndpointName> ParseEndpointName(std::string_view name) {
  auto p = Split(name);
  if (p.size() != 6 || p[0] != "projects" || p[2] != "branches" || p[4] != "endpoints") {
    return BadName(name, "projects/{project}/branches/{branch}/endpoints/{endpoint}");
  }
  ARBOR_RETURN_IF_ERROR(ValidateId(p[1], "project id"));
  ARBOR_RETURN_IF_ERROR(ValidateId(p[3], "branch id"));
  ARBOR_RETURN_IF_ERROR(ValidateId(p[5], "endpoint id"));
  return EndpointName{std::string(p[1]), std::string(p[3]), std::string(p[5])};
}

// Reads "<n><unit>..." (units s, m, h, d, w) into seconds. False on anything else.
bool UnitSeconds(std::string_view text, int64_t* out) {
  if (text.empty()) return false;
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (++digits > 10) return false;
      n = n * 10 + (text[i++] - '0');
    }
    if (digits == 0 || i == text.size()) return false;
    int64_t unit;
    switch (text[i++]) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86'400;
        break;
      case 'w':
        unit = 7 * 86'400;
        break;
      default:
        return false;
    }
    total += n * unit;
  }
  *out = total;
  return true;
}

std::string PinnedEndpointId(std::optional<int64_t> time_us, std::optional<Lsn> lsn) {
  char buf[64];
  if (lsn) {
    std::snprintf(buf, sizeof buf, "lsn-%x-%x", static_cast<unsigned>(lsn->value() >> 32),
                  static_cast<unsigned>(lsn->value() & 0xffffffffu));
  } else {
    std::snprintf(buf, sizeof buf, "at-%lld", static_cast<long long>(time_us.value_or(0)));
  }
  return buf;
}

Result<int64_t> ParseTimeOrAgo(std::string_view text, int64_t now_us) {
  int64_t ago_s;
  if (!text.empty() && text[0] == '-' && UnitSeconds(text.substr(1), &ago_s)) {
    return now_us - ago_s * 1'000'000;
  }
  auto t = ParseTime(text);
  if (t.ok()) return t;
  return Status::InvalidArgument(Quote(text) +
                                 " is not a time: use RFC 3339 (2026-11-24T16:00:00Z), how "
                                 "long ago (-10m, -2h) or lsn:X/Y");
}

Result<int64_t> ParseDuration(std::string_view text) {
  auto bad = [&] {
    return Status::InvalidArgument(Quote(text) +
                                   " is not a duration in whole seconds (e.g. \"3600s\")");
  };
  if (text.size() < 2 || text.size() > 13 || text.back() != 's') return bad();
  int64_t v = 0;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (!IsDigit(text[i])) return bad();
    v = v * 10 + (text[i] - '0');
  }
  return v;
}

std::string FormatDuration(int64_t seconds) { return std::to_string(seconds) + "s"; }

Result<int64_t> ParseTime(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(Quote(text) + " is not an RFC 3339 time (" + why +
                                   "; e.g. 2026-11-24T16:00:00Z)");
  };
  int y, mo, d, h, mi, s;
  if (!Digits(text, 0, 4, &y) || text.size() < 19 || text[4] != '-' || !Digits(text, 5, 2, &mo) ||
      text[7] != '-' || !Digits(text, 8, 2, &d) || (text[10] != 'T' && text[10] != 't') ||
      !Digits(text, 11, 2, &h) || text[13] != ':' || !Digits(text, 14, 2, &mi) || text[16] != ':' ||
      !Digits(text, 17, 2, &s)) {
    return bad("expected YYYY-MM-DDThh:mm:ss");
  }
  namespace chr = std::chrono;
  chr::year_month_day ymd{chr::year{y}, chr::month{static_cast<unsigned>(mo)},
                          chr::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return bad("no such date");
  if (h > 23 || mi > 59 || s > 60) return bad("no such time of day");
  size_t i = 19;
  int64_t frac_us = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t digits = 0;
    int64_t scale = 100'000;
    while (i < text.size() && IsDigit(text[i])) {
      if (digits < 6) frac_us += (text[i] - '0') * scale;
      scale /= 10;
      ++digits;
      ++i;
    }
    if (digits == 0 || digits > 9) return bad("the fraction of a second has 1 to 9 digits");
  }
  std::string_view zone = text.substr(i);
  int64_t offset_s = 0;
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int oh, om;
    if (!Digits(zone, 1, 2, &oh) || !Digits(zone, 4, 2, &om) || oh > 23 || om > 59) {
      return bad("bad offset");
    }
    offset_s = (oh * 3600 + om * 60) * (zone[0] == '-' ? -1 : 1);
  } else if (zone.empty()) {
    return bad("a time zone is required: Z or +hh:mm");
  } else {
    return bad("unexpected " + Quote(zone));
  }
  int64_t days = chr::sys_days(ymd).time_since_epoch().count();
  int64_t secs = days * 86'400 + h * 3600 + mi * 60 + s - offset_s;
  return secs * 1'000'000 + frac_us;
}

std::string FormatTime(int64_t micros) { return FormatRfc3339(micros); }

Result<Lsn> ParseLsn(std::string_view text) {
  size_t slash = text.find('/');
  uint32_t hi, lo;
  if (slash == std::string_view::npos || !HexWord(text.substr(0, slash), &hi) ||
      !HexWord(text.substr(slash + 1), &lo)) {
    return Status::InvalidArgument(Quote(text) + " is not an LSN (e.g. \"0/16B3740\")");
  }
  return Lsn((static_cast<uint64_t>(hi) << 32) | lo);
}

std::string FormatLsn(Lsn lsn) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn.value() >> 32),
                static_cast<unsigned>(lsn.value() & 0xffffffffu));
  return buf;
}

}  // namespace arbor::api
