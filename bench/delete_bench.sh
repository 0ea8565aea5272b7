#!/usr/bin/env bash
# What deleting a large branch costs everyone else. Production runs pgbench TPC-B (scale 10,
# 2 clients, RATE transactions per second) and a login probe (a new psql connection through
# the proxy every 0.5 s), first quietly (the baseline), then while a loop, ROUNDS times,
# creates a branch, writes SIZE MB into it (pgbench -i), waits SETTLE seconds, deletes it
# and waits SETTLE seconds more. Both runs are in this one invocation.
#
# Prints, for the quiet run, the whole loaded run, and the delete windows alone (from each
# DELETE call to SETTLE seconds after it returned, when the freed space is being compacted):
# TPS, transaction latency p99 and max, login p99 and max; the ratios of the delete windows
# to the quiet run; and the slowest DELETE call.
#
# pgbench runs at a fixed rate and counts a transaction's latency from when it was
# scheduled: a stall of the store or the engine delays every transaction due in it, so the
# p99 shows stalls in proportion to their length (an unthrottled run would see one slow
# transaction per client per stall). The fill itself competes for the disk; the settle time
# lets production catch up before each delete, so the delete windows measure the delete.
#
# Usage: bench/delete_bench.sh [path/to/arbor]
#   SIZE=1024     MB written into each branch (pgbench -i, scale SIZE/16)
#   ROUNDS=3      branches created, filled and deleted
#   RATE=40       production's transactions per second
#   QUIET_S=30    length of the quiet run
#   SETTLE=5      seconds before and after each delete
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-40}
QUIET_S=${QUIET_S:-30}
SETTLE=${SETTLE:-5}
PGBIN=/usr/lib/postgresql/15/bin
SCALE=$((SIZE / 16 > 0 ? SIZE / 16 : 1))

. "$(dirname "$0")/daemon.sh"
bench_cleanup_extra() {
  [[ -n "${loop_pid:-}" ]] && kill "$loop_pid" 2>/dev/null || true
  [[ -n "${probe_pid:-}" ]] && kill "$probe_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
bench_daemon delete $((30000 + RANDOM % 2000)) 20  # below the ephemeral range (32768+)

now_ms() { date +%s%3N; }
conn() { "$ARBOR" connection-string "$1"; }  # a URL with a fresh token (an hour)
pct() {  # P < numbers: the P-th percentile (nearest rank)
  sort -n | awk -v p="$1" '{a[NR]=$1} END {if (NR == 0) {print 0; exit}
    i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print a[i]}'
}

PROD=$(conn production)
"$PGBIN/pgbench" -i -s 10 -q "$PROD" >/dev/null 2>&1

# A login every 0.5 s while the flag file exists: "<start ms> <ms>" per login.
probe() {  # FILE FLAG
  while [[ -e "$2" ]]; do
    local t0
    t0=$(now_ms)
    if "$PGBIN/psql" -X -q "$PROD" -c 'select 1' >/dev/null 2>&1; then
      echo "$t0 $(($(now_ms) - t0))" >>"$1"
    else
      echo "$t0 failed" >>"$1"
    fi
    sleep 0.5
  done
}

# ROUNDS times: create, fill, settle, delete, settle. One line per delete in $work/deletes:
# "<window start ms> <window end ms> <ms of the DELETE call>".
churn() {
  for i in $(seq 1 "$ROUNDS"); do
    local name="churn-$i" t0 t1
    api POST "projects/default/branches?branch_id=$name" '{"spec":{"no_expiry":true}}' >/dev/null
    "$PGBIN/pgbench" -i -s "$SCALE" -q "$(conn "$name")" >/dev/null 2>&1 ||
      echo "  (pgbench -i on $name failed)" >&2
    sleep "$SETTLE"
    t0=$(now_ms)
    # A plain DELETE keeps the data for an undelete; the purge is what frees (compacts) it.
    api DELETE "projects/default/branches/$name?purge=true" >"$work/delete.out"
    t1=$(now_ms)
    if grep -q error_code "$work/delete.out"; then
      echo "  (DELETE $name: $(cat "$work/delete.out"))" >&2
    fi
    sleep "$SETTLE"
    echo "$t0 $((t1 + SETTLE * 1000)) $((t1 - t0))" >>"$work/deletes"
  done
}

# pgbench in 10 s pieces while COND succeeds, with the login probe; $work/LABEL.ms gets the
# wall time.
measure() {  # LABEL COND...
  local label=$1 t0 n=0
  shift
  touch "$work/$label.probing"
  probe "$work/$label.logins" "$work/$label.probing" &
  probe_pid=$!
  t0=$(now_ms)
  while "$@"; do
    n=$((n + 1))
    "$PGBIN/pgbench" -c 2 -j 2 -T 10 -R "$RATE" -l --log-prefix="$work/$label.$n.tx" "$PROD" \
      >>"$work/$label.out" 2>&1
  done
  echo $(($(now_ms) - t0)) >"$work/$label.ms"
  rm -f "$work/$label.probing"
  wait "$probe_pid"
  probe_pid=
}

# Transactions as "<end ms> <latency ms>", from pgbench's per-transaction logs.
txs() { cat "$work/$1".*.tx.* | awk '{printf "%.0f %.3f\n", $5 * 1000 + $6 / 1000, $3 / 1000}'; }
# Keeps the lines whose first field lies in a delete window.
in_windows() {
  awk 'NR == FNR {s[NR] = $1; e[NR] = $2; n = NR; next}
       {for (i = 1; i <= n; i++) if ($1 >= s[i] && $1 <= e[i]) {print; next}}' "$work/deletes" -
}
summary() {  # LABEL [windows] -> "tps p99 max login_p99 login_max login_failures"
  local label=$1 filter=cat ms count
  [[ "${2:-}" == windows ]] && filter=in_windows
  if [[ "${2:-}" == windows ]]; then
    ms=$(awk '{s += $2 - $1} END {print s}' "$work/deletes")
  else
    ms=$(cat "$work/$label.ms")
  fi
  count=$(txs "$label" | $filter | wc -l)
  echo "$(awk -v c="$count" -v ms="$ms" 'BEGIN {printf "%.0f", (ms > 0) ? c * 1000 / ms : 0}')" \
    "$(txs "$label" | $filter | awk '{print $2}' | pct 99)" \
    "$(txs "$label" | $filter | awk '{print $2}' | pct 100)" \
    "$($filter <"$work/$label.logins" | grep -v failed | awk '{print $2}' | pct 99)" \
    "$($filter <"$work/$label.logins" | grep -v failed | awk '{print $2}' | pct 100)" \
    "$($filter <"$work/$label.logins" | grep -c failed || true)"
}

echo "== production while branches are deleted (pgbench TPC-B scale 10, 2 clients at $RATE tps;" \
  "$ROUNDS branches of $SIZE MB, pgbench -i -s $SCALE) =="
quiet_until=$(($(now_ms) + QUIET_S * 1000))
quiet_left() { [[ $(now_ms) -lt $quiet_until ]]; }
measure quiet quiet_left
: >"$work/deletes"
churn &
loop_pid=$!
churning() { kill -0 "$loop_pid" 2>/dev/null; }
measure during churning
wait "$loop_pid" || true
loop_pid=

line='%-16s tps %4s   tx p99 %9.1f ms  max %9.1f ms   login p99 %5s ms  max %5s ms  failed %s\n'
read -r q_tps q_p99 q_max q_lp99 q_lmax q_fail <<<"$(summary quiet)"
read -r a_tps a_p99 a_max a_lp99 a_lmax a_fail <<<"$(summary during)"
read -r w_tps w_p99 w_max w_lp99 w_lmax w_fail <<<"$(summary during windows)"
# shellcheck disable=SC2059
printf "$line" quiet "$q_tps" "$q_p99" "$q_max" "$q_lp99" "$q_lmax" "$q_fail"
# shellcheck disable=SC2059
printf "$line" "whole loaded run" "$a_tps" "$a_p99" "$a_max" "$a_lp99" "$a_lmax" "$a_fail"
# shellcheck disable=SC2059
printf "$line" "delete windows" "$w_tps" "$w_p99" "$w_max" "$w_lp99" "$w_lmax" "$w_fail"
awk -v qp="$q_p99" -v wp="$w_p99" -v ql="$q_lp99" -v wl="$w_lp99" -v qt="$q_tps" -v wt="$w_tps" \
  'BEGIN { printf "ratio            tps %.2f   tx p99 %.2f   login p99 %.2f   (delete windows / quiet)\n",
    (qt > 0) ? wt / qt : 0, (qp > 0) ? wp / qp : 0, (ql > 0) ? wl / ql : 0 }'
printf 'deletes          %s of %s MB branches; slowest DELETE call %s ms\n' \
  "$(wc -l <"$work/deletes")" "$SIZE" "$(awk '{print $3}' "$work/deletes" | pct 100)"
