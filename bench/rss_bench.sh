#!/usr/bin/env bash
# The daemon's memory with many branches and running endpoints: target, its RSS with 100
# branches and 20 running endpoints stays within its block cache plus 200 MB. Baseline in the
# same run: the same daemon's RSS just after its start, with only production. Production gets
# pgbench's tables (scale 5), 100 branches are made of it, the endpoints of 20 of them are
# started (never suspending) and each answers a query that reads its pgbench_accounts, and a
# short pgbench TPC-B runs on a few of them. Only the daemon process is measured (all its
# threads; VmRSS and VmHWM of /proc/PID/status): the computes are postgres processes of their
# own. The peak is the kernel's high-water mark, reset after production's load.
#
# Usage: bench/rss_bench.sh [path/to/arbor] [--quick]   (--quick: 20 branches, 5 running)
# Environment: CACHE_MB (the daemon's --block-cache-mb, default 256), BRANCHES, RUNNING, SCALE;
# MALLOC_ARENA_MAX and the like reach the daemon, which inherits the environment.
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
CACHE_MB=${CACHE_MB:-256}
BRANCHES=${BRANCHES:-100}
RUNNING=${RUNNING:-20}
SCALE=${SCALE:-5}
WARM=3      # branches that run pgbench TPC-B
WARM_SECS=10
if [[ "${2:-}" == "--quick" ]]; then BRANCHES=20 RUNNING=5; fi
BUDGET_MB=$((CACHE_MB + 200))

. "$(dirname "$0")/daemon.sh"
bench_cleanup_extra() {
  local job
  for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
# Endpoint ports for production and every branch, with a margin; below the ephemeral range.
bench_daemon rss $((28000 + RANDOM % 3000)) $((BRANCHES + 10)) --block-cache-mb "$CACHE_MB"
pid=$(cat "$ARBOR_HOME/arbor.lock")  # the daemon writes its pid into its lock file
[[ "$(cat "/proc/$pid/comm")" == arbor ]] || { echo "no arbor daemon at pid $pid" >&2; exit 1; }

kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
mb() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
running() { "$ARBOR" status -o json | jq '[.. | objects | select(.current_state? == "ACTIVE")] | length'; }

# Where the daemon's resident memory is: file-backed (its binary and libraries), and the
# anonymous part split into glibc's main heap, its other arenas (64 MB-aligned heaps of
# 64 MB), thread stacks (anonymous rw mappings of the stack rlimit's size above a guard page) and
# the rest (malloc's large mmaps, RocksDB's own). From /proc/PID/smaps; approximate, since
# the kernel merges neighbouring mappings with the same protection.
breakdown() {
  local stack_kb heap=0 arenas=0 arena_kb=0 stacks=0 stack_rss=0 other=0 i j total rss
  stack_kb=$(awk '/^Max stack size/ {print ($4 == "unlimited") ? 0 : int($4 / 1024)}' "/proc/$pid/limits")
  local -a s e p nm r
  # start end perms name rss_kb, one line per mapping ("-" for an anonymous one)
  while read -r a b c d f; do s+=("$a") e+=("$b") p+=("$c") nm+=("$d") r+=("$f"); done < <(
    awk '/^[0-9a-f]+-[0-9a-f]+ / {if (m != "") print m; split($1, x, "-")
                                   m = x[1] " " x[2] " " $2 " " ($6 == "" ? "-" : $6); next}
         /^Rss:/ {m = m " " $2}
         END {if (m != "") print m}' "/proc/$pid/smaps")
  i=0
  while ((i < ${#s[@]})); do
    if [[ "${nm[i]}" == "[heap]" ]]; then
      heap=$((heap + r[i]))
    elif [[ "${nm[i]}" == - ]]; then
      if (((16#${s[i]}) % (64 << 20) == 0)); then  # a non-main arena's heap?
        j=$i total=0 rss=0
        while ((j < ${#s[@]})) && [[ "${nm[j]}" == - ]] && ((total < (64 << 20))); do
          ((j == i)) || [[ "${s[j]}" == "${e[j - 1]}" ]] || break
          total=$((total + 16#${e[j]} - 16#${s[j]})) rss=$((rss + r[j])) j=$((j + 1))
        done
        if ((total == (64 << 20))); then
          arenas=$((arenas + 1)) arena_kb=$((arena_kb + rss)) i=$j
          continue
        fi
      fi
      if [[ "${p[i]}" == rw-p ]] && ((i > 0 && stack_kb > 0 &&
            (16#${e[i]} - 16#${s[i]}) == stack_kb * 1024)) &&
         [[ "${p[i - 1]}" == ---p && "${e[i - 1]}" == "${s[i]}" ]]; then
        stacks=$((stacks + 1)) stack_rss=$((stack_rss + r[i]))
      else
        other=$((other + r[i]))
      fi
    elif [[ "${nm[i]}" == "[stack]" ]]; then
      stacks=$((stacks + 1)) stack_rss=$((stack_rss + r[i]))
    fi
    i=$((i + 1))
  done
  printf '  file-backed %s MB, anonymous %s MB, %s threads\n' \
    "$(mb "$(kb RssFile)")" "$(mb "$(kb RssAnon)")" "$(kb Threads)"
  printf '  anonymous: main heap %s MB; %d other malloc arena heaps of 64 MB, %s MB resident;\n' \
    "$(mb $heap)" "$arenas" "$(mb $arena_kb)"
  printf '             %d thread stacks, %s MB resident; the rest %s MB\n' \
    "$stacks" "$(mb $stack_rss)" "$(mb $other)"
}
report() {  # TITLE
  echo "$1: RSS $(mb "$(kb VmRSS)") MB (peak $(mb "$(kb VmHWM)") MB), $(running) computes running"
  breakdown
}

echo "== arbor daemon RSS (pid $pid), block cache $CACHE_MB MB${MALLOC_ARENA_MAX:+, MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX} =="
sleep 2
idle_kb=$(kb VmRSS)
report "idle, production only (baseline)"

echo "== loading pgbench scale $SCALE on production =="
PROD=$(bench_conn production)
pgbench -q -i -s "$SCALE" "$PROD" >"$work/init.log" 2>&1
load_peak_kb=$(kb VmHWM)
echo "after the load: RSS $(mb "$(kb VmRSS)") MB, peak during it $(mb "$load_peak_kb") MB"
echo 5 >"/proc/$pid/clear_refs"  # resets VmHWM to the current RSS

echo "== $BRANCHES branches, $RUNNING of them running =="
start=$(date +%s.%N)
for i in $(seq 1 "$BRANCHES"); do
  api POST "projects/default/branches?branch_id=b$i" '{"spec": {"no_expiry": true}}' |
    jq -e .name >/dev/null
done
echo "made $BRANCHES branches in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s"
# Each running branch's endpoint is replaced by one that never suspends, so all of them are
# still up when the RSS is read.
start=$(date +%s.%N)
declare -a CONN
for i in $(seq 1 "$RUNNING"); do
  api DELETE "projects/default/branches/b$i/endpoints/primary" >/dev/null
  api POST "projects/default/branches/b$i/endpoints?endpoint_id=primary" \
    '{"spec": {"no_suspension": true}}' | jq -e .name >/dev/null
  CONN[i]=$(bench_conn "b$i")
  n=$(psql -X -tA "${CONN[i]}" -c "select count(*) from pgbench_accounts")
  [[ "$n" == $((SCALE * 100000)) ]] || { echo "b$i answered '$n'" >&2; exit 1; }
done
echo "started $RUNNING endpoints and ran a query on each in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s"
report "$BRANCHES branches, $RUNNING endpoints running"
rss_kb=$(kb VmRSS)

echo "== pgbench TPC-B on $WARM of them at once (2 clients each, ${WARM_SECS}s) =="
for i in $(seq 1 "$WARM"); do
  pgbench -n -c 2 -j 1 -T "$WARM_SECS" "${CONN[i]}" >"$work/warm-$i.log" 2>&1 &
done
wait
for i in $(seq 1 "$WARM"); do
  echo "b$i: $(grep -E '^tps' "$work/warm-$i.log" | head -1 | awk '{printf "%.0f tps", $3}')"
done
report "after pgbench"
after_kb=$(kb VmRSS)
peak_kb=$(kb VmHWM)

echo "== summary =="
echo "block cache: $CACHE_MB MB"
echo "RSS idle, production only: $(mb "$idle_kb") MB"
echo "RSS with $BRANCHES branches and $RUNNING endpoints running: $(mb "$rss_kb") MB (after pgbench: $(mb "$after_kb") MB)"
echo "peak since production's load: $(mb "$peak_kb") MB (during the load: $(mb "$load_peak_kb") MB)"
echo "budget (block cache + 200 MB): $BUDGET_MB MB"
awk -v r="$rss_kb" -v p="$peak_kb" -v b="$BUDGET_MB" -v i="$idle_kb" 'BEGIN {
  printf "RSS / budget: %.2f, peak / budget: %.2f, RSS / idle RSS: %.2f\n", r / 1024 / b, p / 1024 / b, r / i
  printf "target (peak <= block cache + 200 MB): %s\n", (p / 1024 <= b) ? "met" : "NOT met" }'
