#include "common/clock.h"

#include <chrono>
#include <cstdio>

namespace arbor {

std::string FormatRfc3339(int64_t micros) {
  namespace chr = std::chrono;
  chr::sys_time<chr::microseconds> t{chr::microseconds{micros}};
  auto day = chr::floor<chr::days>(t);
  chr::year_month_day ymd{day};
  int64_t in_day = (t - day).count();  // µs since midnight, never negative
  int64_t secs = in_day / 1'000'000;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<long long>(secs / 3600),
                static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60),
                static_cast<long long>(in_day % 1'000'000));
  return buf;
}

}  // namespace arbor
