#!/usr/bin/env bash
# Compute sizes protect production from its branches. Each compute runs in its own control
# group, its CPU limited to its current size in CU (1 CU = 1 vCPU + 2 GiB) and autoscaled
# between autoscaling_limit_min_cu and autoscaling_limit_max_cu (branches 0.25-1 CU by
# default). Production runs pgbench TPC-B (scale 10, CLIENTS clients, unthrottled, so that
# TPS is what production gets), in windows that alternate: QUIET_S seconds quietly, then
# CHURN_S seconds while a loop churns branches: create a branch (API), write about 50 MB on
# it (its compute starts and runs a CREATE TABLE AS of ROWS rows of 1000 bytes), delete it
# with ?purge=true (its space is freed at once), again and again; ROUNDS such pairs. The
# quiet and the churn windows alternate so that a drift of the host or of production itself
# (a shared VM's neighbours, production's tables and store growing through the run) weighs
# on both alike: with one quiet window first and the churn after it, windows that churned
# less but ran later measured lower TPS than the full churn before them.
#
# Both in this one invocation, one daemon after the other:
#   A  limits on: production fixed at 2 CU (min = max = 2), the branches at their default;
#   B  the baseline without limits: a daemon started with ARBOR_COMPUTE_LIMITS=off, the
#      same sizes on paper (PostgreSQL is configured alike) but no control groups.
# Before its first window each daemon makes and deletes one branch of production, once its
# pgbench -i has loaded it: that create's CHECKPOINT writes the whole load, which belongs to
# no window (its time is printed). Prints for each: TPS quiet, during the churn and their
# ratio (the mean of the windows' TPS); transaction latency p99 (pgbench's per-transaction
# logs of all the windows of a kind) likewise; the churn rounds and the slowest API call of
# the churn loops; the CPU limits read from the computes' control groups (production's at the
# start, each branch's after its write); the share of production's active backends that wait
# for the WAL's fsync, quiet and during the churn (pg_stat_activity every 0.1 s; where it is
# most of their time, production's TPS is the rate of those fsyncs, which the churn's writes
# into the store's one WAL slow down). Targets, for A: TPS churn/quiet >= 0.80 and p99
# churn/quiet <= 2.0.
#
# On A's daemon (limits on), in the same alternation (each with quiet windows of its own),
# a control and two bound variants of the churn loop that isolate the two costs outside any
# compute's control group:
#   A0 no churn at all: its "churn" windows are production alone; their ratios to its quiet
#      windows are the noise floor of the figures (windows of different lengths at different
#      moments of a shared host), against which A's ratios and the targets are read;
#   A1 create+delete only: create a branch from production's head (a CHECKPOINT on
#      production) and delete it with ?purge=true; no compute start, no write; paced to one
#      round every PACE_S seconds, about A's round, so that it makes as many creates as A;
#   A2 write without the parent's checkpoint: create each branch from production's state
#      2 seconds ago (spec.source_branch_time, so no checkpoint of production), write ~50 MB
#      on it and delete it as in A; the cost of the writes through the shared daemon (FUSE and
#      the storage engine in the daemon process).
# The variants are printed like A and B, then a line comparing them with A.
#
# Usage: bench/compute_sizes_bench.sh [path/to/arbor]
#   CLIENTS=4     production's pgbench clients
#   QUIET_S=12    length of each quiet window
#   CHURN_S=25    length of each window during a churn (A, A0, A1, A2, B)
#   ROUNDS=2      quiet + churn pairs of each of A, A0, A1, A2 and B
#   SETTLE_S=3    pause after each churn, before the next window
#   PACE_S=15     A1's seconds per round (A's round at --write-mb-per-cu 32; at the default
#                 16, A's round is about 27 s, so A1 makes about twice A's creates)
#   ROWS=50000    rows of 1000 bytes written on each branch (~50 MB)
#   ARBOR_UP_ARGS=""  more flags for both daemons' `arbor up` (e.g. "--write-mb-per-cu 32")
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
CLIENTS=${CLIENTS:-4}
QUIET_S=${QUIET_S:-12}
CHURN_S=${CHURN_S:-25}
ROUNDS=${ROUNDS:-2}
if ((ROUNDS < 1)); then echo "ROUNDS must be 1 or more" >&2; exit 2; fi
ROWS=${ROWS:-50000}
SETTLE_S=${SETTLE_S:-3}
PACE_S=${PACE_S:-15}
PGBIN=/usr/lib/postgresql/15/bin
TPS_TARGET=0.80
P99_TARGET=2.0

. "$(dirname "$0")/daemon.sh"
bench_cleanup_extra() {
  [[ -n "${waits_pid:-}" ]] && kill "$waits_pid" 2>/dev/null || true
  waits_pid=
  [[ -n "${work:-}" ]] && rm -f "$work/churning"
  [[ -n "${loop_pid:-}" ]] && kill "$loop_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  loop_pid=
}

now_ms() { date +%s%3N; }
pct() {  # P < numbers: the P-th percentile (nearest rank)
  sort -n | awk -v p="$1" '{a[NR]=$1} END {if (NR == 0) {print 0; exit}
    i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print a[i]}'
}
# daemon.sh's api, timed: while $calls is set, each call appends "<ms> <METHOD> <path>" to it
# (bench_conn's calls too).
eval "api_untimed() $(declare -f api | tail -n +2)"
api() {
  local t0 rc=0
  t0=$(now_ms)
  api_untimed "$@" || rc=$?
  if [[ -n "${calls:-}" ]]; then echo "$(($(now_ms) - t0)) $1 ${2%%\?*}" >>"$calls"; fi
  return "$rc"
}
# The CPU limit of the compute whose endpoint has UID, in CPUs, from its control group:
# "none" without a group, "unlimited" for a group without a quota.
cpu_limit() {  # UID
  local f q p
  for f in /sys/fs/cgroup/cpu/arbor-*/"$1"/cpu.cfs_quota_us /sys/fs/cgroup/arbor-*/"$1"/cpu.max; do
    [[ -e "$f" ]] || continue
    if [[ "$f" == */cpu.max ]]; then
      read -r q p <"$f"
    else
      q=$(cat "$f")
      p=$(cat "${f%/*}/cpu.cfs_period_us")
    fi
    if [[ "$q" == max || "$q" == -1 ]]; then echo unlimited; else
      awk -v q="$q" -v p="$p" 'BEGIN {printf "%.2f\n", q / p}'
    fi
    return
  done
  echo none
}

# Production's pgbench for SECONDS; $work/LABEL.out, per-transaction logs $work/LABEL.tx.*.
pgbench_run() {  # LABEL SECONDS
  "$PGBIN/pgbench" -c "$CLIENTS" -j "$((CLIENTS < 2 ? CLIENTS : 2))" -T "$2" -l \
    --log-prefix="$work/$1.tx" "$PROD" >"$work/$1.out" 2>&1 ||
    { cat "$work/$1.out" >&2; return 1; }
}
# The mean TPS of the windows PREFIX-<round>, and the p99 of their transactions (ms).
tps() {  # PREFIX
  cat "$work/$1"-[0-9]*.out | awk '/^tps = / {s += $3; n++} END {printf "%.0f\n", n ? s / n : 0}'
}
p99() { cat "$work/$1"-[0-9]*.tx.* | awk '{print $3 / 1000}' | pct 99; }  # PREFIX

# Rounds while $work/churning exists: create a branch, write ROWS rows on it through its
# endpoint (started by bench_conn), read its compute's CPU limit, delete it with its data.
# One line per round in $work/rounds.ID: "<round ms> <write ms> <CPU limit> <current_cu>
# <start ms>" (the start: its endpoint's start and a token, until it accepts logins);
# the API calls in $work/calls.ID. MODE: full (the above), bare (create and delete only: no
# compute, no write) or past (as full, but each branch from production's state 2 seconds
# ago: no checkpoint of production) or none (nothing: the control).
churn() {  # MODE PREFIX ID
  local mode=$1 calls="$work/calls.$3" i=0 name out conn t0 t1 write_ms ep limit spec start_ms
  while [[ -e "$work/churning" ]]; do
    if [[ $mode == none ]]; then
      sleep 0.2
      continue
    fi
    i=$((i + 1))
    name=$2-$i
    t0=$(now_ms)
    spec='{"spec": {"ttl": "3600s"}}'
    if [[ $mode == past ]]; then
      spec="{\"spec\": {\"ttl\": \"3600s\", \"source_branch_time\":
        \"$(date -u -d '-2 sec' +%Y-%m-%dT%H:%M:%S.%6NZ)\"}}"
    fi
    out=$(api POST "projects/default/branches?branch_id=$name" "$spec")
    if grep -q error_code <<<"$out"; then
      echo "  (create $name: $out)" >&2
      sleep 1
      continue
    fi
    if [[ $mode == bare ]]; then
      out=$(api DELETE "projects/default/branches/$name?purge=true")
      if grep -q error_code <<<"$out"; then echo "  (delete $name: $out)" >&2; fi
      echo "$(($(now_ms) - t0)) 0 - - 0" >>"$work/rounds.$3"
      sleep "$PACE_S"
      continue
    fi
    t1=$(now_ms)
    conn=$(bench_conn "$name") || true
    start_ms=$(($(now_ms) - t1))
    t1=$(now_ms)
    "$PGBIN/psql" -X -q "$conn" -c "create table t as
      select g, repeat('x', 1000) as pad from generate_series(1, $ROWS) g" \
      >/dev/null 2>"$work/write.err" || echo "  (write on $name: $(cat "$work/write.err"))" >&2
    write_ms=$(($(now_ms) - t1))
    ep=$(api GET "projects/default/branches/$name/endpoints/primary")
    limit="$(cpu_limit "$(jq -r .uid <<<"$ep")") $(jq -r '.status.current_cu // "-"' <<<"$ep")"
    out=$(api DELETE "projects/default/branches/$name?purge=true")
    if grep -q error_code <<<"$out"; then echo "  (delete $name: $out)" >&2; fi
    echo "$(($(now_ms) - t0)) $write_ms $limit $start_ms" >>"$work/rounds.$3"
  done
}

declare -A R  # the figures, by "<phase>.<name>"

# Round R of ID: pgbench quietly for QUIET_S seconds (window quiet-ID-R), then for CHURN_S
# seconds while churn MODE runs (window churn-ID-R); then the churn's round under way ends,
# and SETTLE_S seconds pass.
window_pair() {  # ID MODE R
  local id=$1 t0
  t0=$(date +%s)
  pgbench_run "quiet-$id-$3" "$QUIET_S"
  echo "quiet-$id $t0 $(date +%s)" >>"$work/windows"
  t0=$(date +%s)
  touch "$work/churning"
  churn "$2" "churn-${id,,}-$3" "$id" &  # branch ids: lowercase letters, digits and hyphens
  loop_pid=$!
  pgbench_run "churn-$id-$3" "$CHURN_S"
  echo "churn-$id $t0 $(date +%s)" >>"$work/windows"
  rm -f "$work/churning"
  wait "$loop_pid" || echo "  (the churn loop of $id failed)" >&2
  loop_pid=
  sleep "$SETTLE_S"
}

# ID's figures into R, from its windows, rounds and calls.
figures() {  # ID
  local id=$1
  R[$id.q_tps]=$(tps "quiet-$id")
  R[$id.q_p99]=$(p99 "quiet-$id")
  R[$id.c_tps]=$(tps "churn-$id")
  R[$id.c_p99]=$(p99 "churn-$id")
  R[$id.q_wal]=$(wal_share "quiet-$id")
  R[$id.c_wal]=$(wal_share "churn-$id")
  [[ $id == A0 ]] && return 0  # the control makes no rounds
  R[$id.rounds]=$(cat "$work/rounds.$id" 2>/dev/null | wc -l)
  if [[ ${R[$id.rounds]} == 0 ]]; then
    echo "$id: no churn round completed (see the errors above)" >&2
    return 1
  fi
  R[$id.round_s]=$(awk '{print $1 / 1000}' "$work/rounds.$id" | pct 50)
  R[$id.write_s]=$(awk '{print $2 / 1000}' "$work/rounds.$id" | pct 50)
  R[$id.start_s]=$(awk '{print $5 / 1000}' "$work/rounds.$id" | pct 50)
  R[$id.br_cpu]=$(awk '{print $3}' "$work/rounds.$id" | sort -u | paste -sd/ -)
  R[$id.br_cu]=$(awk '{print $4}' "$work/rounds.$id" | sort -u | paste -sd/ -)
  R[$id.slowest]=$(sort -n "$work/calls.$id" | tail -1)
}

# What production's backends wait for: every 0.1 s, the wait events of its active client
# backends, one line per event "<epoch s> <type:event or CPU> <backends>", in $work/waits.
wait_sampler() {
  echo "select floor(extract(epoch from clock_timestamp()))::bigint,
      coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*)
    from pg_stat_activity
    where backend_type = 'client backend' and pid <> pg_backend_pid() and state = 'active'
    group by 1, 2 \\watch 0.1" |
    "$PGBIN/psql" -X -q -At -F' ' "$PROD" >"$work/waits" 2>/dev/null &
  waits_pid=$!
}
# The share of those samples in the windows LABEL that wait for the WAL's fsync: IO:WALSync
# (the backend syncs) and LWLock:WALWrite (it waits for another backend's write and sync).
wal_share() {  # LABEL
  awk -v label="$1" 'NR == FNR {if ($1 == label) {s[++n] = $2; e[n] = $3}; next}
    {for (i = 1; i <= n; i++) if ($1 >= s[i] && $1 < e[i]) {
       all += $3; if ($2 == "IO:WALSync" || $2 == "LWLock:WALWrite") wal += $3; break}}
    END {if (all) printf "%.2f", wal / all; else printf "-"}' "$work/windows" "$work/waits" \
    2>/dev/null || echo "-"
}

# One daemon (ARBOR_COMPUTE_LIMITS as set), production at 2 CU, loaded, one branch made and
# deleted to settle the load; then ROUNDS rounds, each a quiet and a churn window of ID and of
# each VARIANT ("ID:MODE") in turn; the figures into R; the daemon stopped and removed.
phase() {  # ID PORT [VARIANT...]
  local id=$1 ep v r t0 out ids=("$1:full" "${@:3}")
  bench_daemon "sizes-$id" "$2" 20 ${ARBOR_UP_ARGS:-}
  R[$id.limits]=$(api GET status | jq -r .compute_limits)
  ep=$(api PATCH projects/default/branches/production/endpoints/primary \
    '{"spec": {"autoscaling_limit_min_cu": 2, "autoscaling_limit_max_cu": 2}}')
  if ! jq -e '.spec.autoscaling_limit_min_cu == 2 and .spec.autoscaling_limit_max_cu == 2' \
    <<<"$ep" >/dev/null; then
    echo "sizing production to 2 CU: $ep" >&2
    return 1
  fi
  PROD=$(bench_conn production)
  "$PGBIN/pgbench" -i -s 10 -q "$PROD" >/dev/null 2>&1
  R[$id.prod_cpu]=$(cpu_limit "$(jq -r .uid <<<"$ep")")
  wait_sampler
  t0=$(now_ms)
  out=$(api POST "projects/default/branches?branch_id=settle" '{"spec": {"ttl": "3600s"}}')
  R[$id.settle_ms]=$(($(now_ms) - t0))
  if grep -q error_code <<<"$out"; then echo "creating the settling branch: $out" >&2; return 1; fi
  api DELETE "projects/default/branches/settle?purge=true" >/dev/null

  for ((r = 1; r <= ROUNDS; r++)); do
    for v in "${ids[@]}"; do window_pair "${v%%:*}" "${v#*:}" "$r"; done
  done
  for v in "${ids[@]}"; do
    R[${v%%:*}.limits]=${R[$id.limits]}
    R[${v%%:*}.prod_cpu]=${R[$id.prod_cpu]}
    R[${v%%:*}.settle_ms]=${R[$id.settle_ms]}
    figures "${v%%:*}"
  done
  kill "$waits_pid" 2>/dev/null || true
  waits_pid=
  bench_cleanup
}

start_s=$SECONDS
phase A $((30000 + RANDOM % 1000)) A0:none A1:bare A2:past  # below the ephemeral range (32768+)
if [[ "${R[A.limits]}" == none* ]]; then
  echo "A should limit its computes, but: compute_limits: ${R[A.limits]}" >&2
  exit 1
fi
export ARBOR_COMPUTE_LIMITS=off
phase B $((31000 + RANDOM % 1000))
if [[ "${R[B.limits]}" != none* ]]; then
  echo "B should run without limits (ARBOR_COMPUTE_LIMITS=off), but:" \
    "compute_limits: ${R[B.limits]}" >&2
  exit 1
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
verdict() {  # VALUE OP TARGET
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {ok = (op == ">=") ? v >= t : v <= t
    print ok ? "met" : "MISSED"}'
}
echo "== production (pgbench TPC-B scale 10, $CLIENTS clients, unthrottled; $ROUNDS rounds of" \
  "${QUIET_S} s quiet then ${CHURN_S} s during the churn) while branches churn (create, write" \
  "$ROWS rows of 1000 B, delete with purge) =="
for id in A B A0 A1 A2; do
  case $id in
    A) echo "A  limits on: production 2 CU fixed, branches at their default (0.25-1 CU)" ;;
    B) echo "B  baseline, limits off (ARBOR_COMPUTE_LIMITS=off), the same sizes on paper" ;;
    A0) echo "A0 control, limits on (A's daemon, quiet windows of its own): no churn at all, production" \
      "alone in both kinds of window: the noise floor of the ratios" ;;
    A1) echo "A1 bound, limits on (A's daemon, quiet windows of its own): create from production's head +" \
      "delete only, no compute, no write: the cost of production's CHECKPOINT at each create" ;;
    A2) echo "A2 bound, limits on (A's daemon, quiet windows of its own): create from production 2 s ago" \
      "(no checkpoint) + write + delete: the cost of the writes through the shared daemon" ;;
  esac
  echo "   compute_limits: ${R[$id.limits]}"
  [[ $id == A || $id == B ]] &&
    echo "   settling create after the load (not in any window): ${R[$id.settle_ms]} ms"
  if [[ $id == A1 || $id == A0 ]]; then
    echo "   CPU limit by control group: production ${R[$id.prod_cpu]}; branches: no compute"
  else
    echo "   CPU limit by control group: production ${R[$id.prod_cpu]}; each branch after its" \
      "write ${R[$id.br_cpu]} (current_cu ${R[$id.br_cu]})"
  fi
  tr=$(ratio "${R[$id.c_tps]}" "${R[$id.q_tps]}")
  pr=$(ratio "${R[$id.c_p99]}" "${R[$id.q_p99]}")
  t_note="" p_note=""
  if [[ $id == A ]]; then
    t_note="target >= $TPS_TARGET: $(verdict "$tr" '>=' "$TPS_TARGET")"
    p_note="target <= $P99_TARGET: $(verdict "$pr" '<=' "$P99_TARGET")"
  fi
  printf '   %-12s %9s %9s %8s\n' "" quiet churn ratio
  printf '   %-12s %9s %9s %8s   %s\n' tps "${R[$id.q_tps]}" "${R[$id.c_tps]}" "$tr" "$t_note"
  printf '   %-12s %9.1f %9.1f %8s   %s\n' "tx p99 ms" "${R[$id.q_p99]}" "${R[$id.c_p99]}" "$pr" \
    "$p_note"
  echo "   production's active backends waiting for the WAL's fsync (IO:WALSync," \
    "LWLock:WALWrite; pg_stat_activity every 0.1 s): ${R[$id.q_wal]} quiet, ${R[$id.c_wal]} churn"
  [[ $id == A0 ]] && continue  # no rounds, no API calls
  read -r s_ms s_method s_path <<<"${R[$id.slowest]}"
  if [[ $id == A1 ]]; then
    parts=""  # no compute, no write
  else
    parts=" (its start ${R[$id.start_s]} s, its write ${R[$id.write_s]} s)"
  fi
  echo "   churn: ${R[$id.rounds]} rounds, median round ${R[$id.round_s]} s$parts; slowest API" \
    "call ${s_ms} ms: $s_method $s_path"
done
echo "A vs B during the churn: tps $(ratio "${R[A.c_tps]}" "${R[B.c_tps]}")," \
  "tx p99 $(ratio "${R[A.c_p99]}" "${R[B.c_p99]}") (limits on / off)"
a0=$(ratio "${R[A0.c_tps]}" "${R[A0.q_tps]}")
a0p=$(ratio "${R[A0.c_p99]}" "${R[A0.q_p99]}")
a1=$(ratio "${R[A1.c_tps]}" "${R[A1.q_tps]}")
a2=$(ratio "${R[A2.c_tps]}" "${R[A2.q_tps]}")
echo "control, churn/quiet with no churn: tps $a0, tx p99 $a0p (the noise floor)"
echo "bounds, tps churn/quiet at about A's pace: A1 creates and deletes alone $a1 (${R[A1.rounds]}" \
  "rounds), A2 writes without the parent's checkpoint $a2 (${R[A2.rounds]} rounds); A full" \
  "churn $(ratio "${R[A.c_tps]}" "${R[A.q_tps]}") (${R[A.rounds]} rounds); whole run" \
  "$((SECONDS - start_s)) s"
