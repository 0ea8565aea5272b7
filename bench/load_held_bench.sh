#!/usr/bin/env bash
# Load held while the control plane works (issue "Performance", its "load held" targets).
# Production runs pgbench TPC-B (scale 10, CLIENTS clients, unthrottled) in windows that
# alternate, ROUNDS times: QUIET_S seconds quietly, then CHURN_S seconds while two loops run
# side by side:
#   - the control plane: create a branch (API), write about 50 MB on it (its compute starts
#     and runs a CREATE TABLE AS of ROWS rows of 1000 bytes), reset it to production, delete
#     it with ?purge=true; until the churn window ends (the round under way then finishes),
#     BRANCHES rounds at most over all the windows;
#   - logins: every LOGIN_GAP_S seconds, a psql login (with a fresh token) to each of three
#     other branches, whose computes run, timed from connect to the answer of `select 1`.
# The logins also run during the quiet windows, as their baseline. Every API call of the churn
# loop is timed (curl's total). The windows alternate so that a drift of the host or of
# production itself (a shared VM's neighbours, production's tables and store growing through
# the run) weighs on both alike. Before the first window one branch of production is made and
# deleted once pgbench -i has loaded it: that create's CHECKPOINT writes the whole load, which
# belongs to no window (its time is printed, and is not one of the churn's API calls).
# Prints: TPS quiet / churn (the mean of the windows') and the ratio (target >= 0.90),
# transaction p99 quiet / churn (all the windows' transactions) and the ratio (target <= 2.0),
# the slowest API call (target <= 1 s) beside the slowest CHECKPOINT of production that a
# create or reset waited for (its bound; from production's own log), and the logins' p50 and
# maximum in both windows (target: no login waits on a start or delete elsewhere).
# Then where the host's CPU went in each window (daemon.sh's cpu_sample): production's
# compute, the other computes (the churn's branches and the three login branches), the daemon
# and the rest (pgbench, psql, curl), and the bound the other computes put on the TPS ratio
# if production's whole footprint (its compute, its share of the daemon, its pgbench) grew or
# shrank with its TPS and could use every busy CPU-second the other computes left:
#   TPS churn / quiet <= (busy - other computes, during the churn)
#                          / (busy - other computes, quietly)
# A bound on what the branches' CPU costs production, not a proof that production is
# CPU-bound: the busy shares show how close to the host's CPUs each window ran.
#
# Usage: bench/load_held_bench.sh [path/to/arbor]
#   CLIENTS=4 QUIET_S=10 CHURN_S=30 ROUNDS=2 SETTLE_S=3 BRANCHES=20 ROWS=50000 LOGIN_GAP_S=0.5
#   (SETTLE_S: the pause after each churn window, its round under way ended, before the next)
#   ARBOR_UP_ARGS=""   more flags for the daemon's `arbor up` (e.g. "--write-mb-per-cu 0")
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
CLIENTS=${CLIENTS:-4}
QUIET_S=${QUIET_S:-10}
CHURN_S=${CHURN_S:-30}
ROUNDS=${ROUNDS:-2}
SETTLE_S=${SETTLE_S:-3}
if ((ROUNDS < 1)); then echo "ROUNDS must be 1 or more" >&2; exit 2; fi
BRANCHES=${BRANCHES:-20}
ROWS=${ROWS:-50000}
LOGIN_GAP_S=${LOGIN_GAP_S:-0.5}
PGBIN=/usr/lib/postgresql/15/bin

. "$(dirname "$0")/daemon.sh"
bench_cleanup_extra() {
  [[ -n "${work:-}" ]] && rm -f "$work/churning" "$work/logging"
  for p in ${loop_pids:-}; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
now_ms() { date +%s%3N; }
pct() {  # P < numbers: the P-th percentile (nearest rank)
  sort -n | awk -v p="$1" '{a[NR]=$1} END {if (NR == 0) {print 0; exit}
    i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print a[i]}'
}
timed() {  # METHOD PATH [BODY]: api, its milliseconds appended to $work/calls
  # The call as curl times it, from its connect to the answer's last byte (a wall clock
  # around it would add curl's own start, tens of ms on two busy cores).
  local out body=()
  [[ "$1" == POST || "$1" == PATCH ]] && body=(--data "${3:-}")
  out=$(curl -sS -w '\n%{time_total}' -X "$1" -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' "${body[@]}" "$API/$2")
  echo "$(tail -n 1 <<<"$out" | awk '{printf "%d", $1 * 1000}') $1 ${2%%\?*}" >>"$work/calls"
  out=$(sed '$d' <<<"$out")
  if grep -q error_code <<<"$out"; then echo "  ($1 $2: $out)" >&2; fi
  printf '%s' "$out"
}

# shellcheck disable=SC2086  # the flags split into words
bench_daemon load-held $((27000 + RANDOM % 1000)) 40 ${ARBOR_UP_ARGS:-}
PROD=$(bench_conn production)
PROD_UID=$(api GET projects/default/branches/production/endpoints/primary | jq -r .uid)
"$PGBIN/pgbench" -i -s 10 -q "$PROD" >/dev/null 2>&1
# The load's CHECKPOINT, in no window: one branch made and deleted.
t0=$(now_ms)
out=$(api POST "projects/default/branches?branch_id=settle" '{"spec": {"ttl": "3600s"}}')
settle_ms=$(($(now_ms) - t0))
if grep -q error_code <<<"$out"; then echo "creating the settling branch: $out" >&2; exit 1; fi
api DELETE "projects/default/branches/settle?purge=true" >/dev/null

logins=()
for b in login-1 login-2 login-3; do
  api POST "projects/default/branches?branch_id=$b" '{"spec": {"no_expiry": true}}' >/dev/null
  logins+=("$(bench_conn "$b")")  # started; tokens valid for an hour
done

pgbench_run() {  # LABEL SECONDS
  "$PGBIN/pgbench" -c "$CLIENTS" -j 2 -T "$2" -l --log-prefix="$work/$1.tx" "$PROD" \
    >"$work/$1.out" 2>&1 || { cat "$work/$1.out" >&2; return 1; }
}
# The mean TPS of the windows PREFIX-<round>, and the p99 of their transactions (ms).
tps() {  # PREFIX
  cat "$work/$1"-[0-9]*.out | awk '/^tps = / {s += $3; n++} END {printf "%.0f\n", n ? s / n : 0}'
}
p99() { cat "$work/$1"-[0-9]*.tx.* | awk '{print $3 / 1000}' | pct 99; }  # PREFIX

login_loop() {  # FILE: one line per login, its milliseconds
  while [[ -e "$work/logging" ]]; do
    for url in "${logins[@]}"; do
      local t0
      t0=$(now_ms)
      "$PGBIN/psql" -X -At "$url" -c 'select 1' >/dev/null 2>>"$work/login.err" || true
      echo "$(($(now_ms) - t0))" >>"$1"
    done
    sleep "$LOGIN_GAP_S"
  done
}
churn_loop() {  # PREFIX
  local i name conn
  for ((i = 1; ; i++)); do
    [[ -e "$work/churning" ]] || break
    (($(wc -l <"$work/rounds") < BRANCHES)) || break
    name=$1-$i
    timed POST "projects/default/branches?branch_id=$name" '{"spec": {"ttl": "3600s"}}' >/dev/null
    conn=$(bench_conn "$name") || true
    "$PGBIN/psql" -X -q "$conn" -c "create table t as
      select g, repeat('x', 1000) as pad from generate_series(1, $ROWS) g" >/dev/null 2>&1 || true
    timed POST "projects/default/branches/$name:reset" '{}' >/dev/null
    timed DELETE "projects/default/branches/$name?purge=true" >/dev/null
    echo "$name" >>"$work/rounds"
  done
}

: >"$work/calls"
: >"$work/rounds"
# Production's PostgreSQL log, from here on: its CHECKPOINTs (log_checkpoints is on).
PROD_LOG="$ARBOR_HOME/logs/default.production.primary.log"
prod_log_from=$(($(wc -l <"$PROD_LOG") + 1))
: >"$work/cpu.quiet"
: >"$work/cpu.churn"
for ((r = 1; r <= ROUNDS; r++)); do
  touch "$work/logging"
  login_loop "$work/logins.quiet" &
  loop_pids=$!
  c0=$(cpu_sample "$PROD_UID")
  pgbench_run "quiet-$r" "$QUIET_S"
  cpu_shares "$c0" "$(cpu_sample "$PROD_UID")" >>"$work/cpu.quiet"
  rm -f "$work/logging"
  wait
  touch "$work/logging" "$work/churning"
  login_loop "$work/logins.churn" &
  loop_pids="$!"
  churn_loop "churn-$r" &
  loop_pids="$loop_pids $!"
  c0=$(cpu_sample "$PROD_UID")
  pgbench_run "churn-$r" "$CHURN_S"
  cpu_shares "$c0" "$(cpu_sample "$PROD_UID")" >>"$work/cpu.churn"
  rm -f "$work/churning" "$work/logging"
  wait
  loop_pids=
  sleep "$SETTLE_S"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
verdict() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {print ((op == ">=") ? v >= t : v <= t) ? "met" : "MISSED"}'; }
qt=$(tps quiet) ct=$(tps churn) qp=$(p99 quiet) cp=$(p99 churn)
tr=$(ratio "$ct" "$qt") pr=$(ratio "$cp" "$qp")
read -r s_ms s_method s_path <<<"$(sort -n "$work/calls" | tail -1)"
echo "== production (pgbench TPC-B scale 10, $CLIENTS clients; $ROUNDS rounds of ${QUIET_S} s quiet" \
  "then ${CHURN_S} s while branches churn: create, write $ROWS rows of 1000 B, reset, delete" \
  "with purge) =="
echo "   compute_limits: $(api GET status | jq -r .compute_limits)"
echo "   settling create after the load (in no window): $settle_ms ms"
printf '   %-16s %9s %9s %8s\n' "" quiet churn ratio
printf '   %-16s %9s %9s %8s   target >= 0.90: %s\n' tps "$qt" "$ct" "$tr" "$(verdict "$tr" '>=' 0.90)"
printf '   %-16s %9.1f %9.1f %8s   target <= 2.0: %s\n' "tx p99 ms" "$qp" "$cp" "$pr" \
  "$(verdict "$pr" '<=' 2.0)"
printf '   %-16s %9s %9s\n' "login p50 ms" "$(pct 50 <"$work/logins.quiet")" "$(pct 50 <"$work/logins.churn")"
printf '   %-16s %9s %9s   (logins: %s quiet, %s during the churn)\n' "login max ms" \
  "$(pct 100 <"$work/logins.quiet")" "$(pct 100 <"$work/logins.churn")" \
  "$(wc -l <"$work/logins.quiet")" "$(wc -l <"$work/logins.churn")"
if (($(wc -l <"$work/rounds") >= BRANCHES)); then
  echo "   (the churn stopped at BRANCHES=$BRANCHES rounds before the last window ended)"
fi
echo "   churn: $(wc -l <"$work/rounds") rounds; slowest API call ${s_ms} ms ($s_method $s_path);" \
  "target <= 1000 ms: $(verdict "$s_ms" '<=' 1000)"
for m in POST DELETE; do
  awk -v m="$m" '$2 == m {print $1}' "$work/calls" | pct 50 | xargs printf "   median %s: %s ms\n" "$m"
done
# The bound of a create or reset from production's head: the CHECKPOINT it waits for, as
# production's own log times it ("checkpoint complete: ... write=, sync=, total=").
tail -n "+$prod_log_from" "$PROD_LOG" | awk '
  /checkpoint starting: immediate/ {want = 1; next}
  want && /checkpoint complete:/ {
    want = 0
    for (i = 1; i <= NF; i++) {
      if ($i ~ /^wrote$/) bufs = $(i + 1)
      if ($i ~ /^write=/) {w = substr($i, 7) + 0}
      if ($i ~ /^sync=/) {sy = substr($i, 6) + 0}
      if ($i ~ /^total=/) {t = substr($i, 7) + 0}
    }
    n++
    if (t > max) {max = t; mw = w; ms = sy; mb = bufs}
  }
  END {
    if (n == 0) {print "   production'"'"'s CHECKPOINTs before the forks: none logged"; exit}
    printf "   production'"'"'s slowest CHECKPOINT before a fork (of %d, its own log): %.0f ms" \
      " (%d buffers; write %.0f ms, sync %.0f ms): the bound of a create or reset\n",
      n, max * 1000, mb, mw * 1000, ms * 1000
  }'

# Where the host's CPU went (fractions of all its CPUs over each window).
cpu_line() {  # LABEL SHARES
  local busy daemon computes prod
  read -r busy daemon computes prod <<<"$2"
  if [[ $computes == - ]]; then
    printf '   %-8s busy %s, daemon %s (no control groups: computes not split)\n' "$1" "$busy" "$daemon"
    return
  fi
  awk -v l="$1" -v b="$busy" -v d="$daemon" -v c="$computes" -v p="$prod" 'BEGIN {
    printf "   %-8s busy %.2f = production %.2f + other computes %.2f + daemon %.2f + rest %.2f\n",
      l, b, p, c - p, d, b - c - d }'
}
# The windows of a kind are as long as each other: their mean shares ("-" stays unknown).
mean_shares() {  # FILE
  awk '{for (i = 1; i <= 4; i++) {if ($i == "-") u[i] = 1; s[i] += $i}; n++}
    END {for (i = 1; i <= 4; i++) printf "%s%s", (u[i] ? "-" : sprintf("%.3f", s[i] / n)),
      (i < 4 ? " " : "\n")}' "$1"
}
sq=$(mean_shares "$work/cpu.quiet")
sc=$(mean_shares "$work/cpu.churn")
echo "   the host's CPU ($(host_cpus) CPUs; idle, iowait and steal excluded), as fractions of all of it:"
cpu_line quiet "$sq"
cpu_line churn "$sc"
read -r qb _ qc qprod <<<"$sq"
read -r cb _ cc cprod <<<"$sc"
if [[ $cc != - ]]; then
  awk -v qb="$qb" -v qo="$(awk -v a="$qc" -v b="$qprod" 'BEGIN {print a - b}')" -v cb="$cb" \
    -v co="$(awk -v a="$cc" -v b="$cprod" 'BEGIN {print a - b}')" -v tr="$tr" 'BEGIN {
    bound = (cb - co) / (qb - qo)
    printf "   bound: tps churn/quiet <= (%.2f - %.2f) / (%.2f - %.2f) = %.2f (measured %s);" \
      " target 0.90 %s\n", cb, co, qb, qo, bound, tr,
      (bound < 0.90 ? "out of reach while the other computes use what they did" : "within reach")
  }'
fi
