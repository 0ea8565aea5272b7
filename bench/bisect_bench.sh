#!/usr/bin/env bash
# arbor bisect on a window of ~10,000 commits over a ~1 GB database, next to what a user of a
# point-in-time-branch platform does by hand: one guess is a branch at a time, a query, and
# a delete (the seed's manual recovery took 3.78 s per guess on Lakebase). Same run, same
# daemon: the ratio is bisect's whole search against one manual guess.
#
# Usage: bench/bisect_bench.sh [path/to/arbor] [--quick]
#   --quick: ~100 MB and ~2,000 commits (a smoke run).
set -euo pipefail
ARBOR=${1:-build/arbor}
QUICK=${2:-}
ARBOR=$(realpath "$ARBOR")
SCALE=68      # pgbench scale: ~1 GB
COMMITS=10000 # in the window, half before the wipe and half after
[[ "$QUICK" == "--quick" ]] && SCALE=7 && COMMITS=2000

. "$(dirname "$0")/daemon.sh"
now_us() { date +%s%6N; }
rfc3339() { date -u -d "@$(($1 / 1000000))" +%Y-%m-%dT%H:%M:%S.$(printf %06d $(($1 % 1000000)))Z; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

port_base=$((26000 + RANDOM % 1500))
bench_daemon bisect "$port_base" 61
PROD=$(bench_conn production)

echo "== loading: pgbench scale $SCALE, then final_entities (32 rows) =="
pgbench -q -i -s "$SCALE" "$PROD" >"$work/init.log" 2>&1
psql -X -q "$PROD" -c "create table final_entities as select g as id from generate_series(1, 32) g" \
  >/dev/null
# A checkpoint after the load, as production's checkpointer makes every 5 minutes: a branch
# at the head makes the daemon CHECKPOINT its parent (owner may not). Without it every state
# in the window would replay the whole load's WAL when it starts.
api POST "projects/default/branches?branch_id=checkpoint" '{"spec": {"ttl": "3600s"}}' >/dev/null
api DELETE "projects/default/branches/checkpoint" >/dev/null
size=$(psql -X -tA "$PROD" -c "select pg_size_pretty(pg_database_size('postgres'))")
echo "database size: $size"

half=$((COMMITS / 2))
lsn_start=$(psql -X -tA "$PROD" -c "select pg_current_wal_lsn()")
start=$(now_us)
pgbench -n -c 4 -j 2 -t $((half / 4)) "$PROD" >"$work/run1.log" 2>&1
psql -X -q "$PROD" -c "delete from final_entities"
wiped=$(now_us)
pgbench -n -c 4 -j 2 -t $((half / 4)) "$PROD" >"$work/run2.log" 2>&1
end=$(now_us)
wal_mb=$(psql -X -tA "$PROD" -c \
  "select round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn_start') / 1048576)")
echo "window: $(( (end - start) / 1000 )) ms of pgbench TPC-B, $COMMITS commits, $wal_mb MB of WAL, the wipe at +$(( (wiped - start) / 1000 )) ms"

echo "== arbor bisect =="
t0=$(now_us)
out=$("$ARBOR" -o json bisect production --since "$(rfc3339 "$start")" --until "$(rfc3339 "$end")" \
  --check "select count(*) = 32 from final_entities")
t1=$(now_us)
bisect_ms=$(( (t1 - t0) / 1000 ))
probes=$(jq .probes <<<"$out")
standbys=$(jq .standbys <<<"$out")
points=$(jq .points <<<"$out")
good=$(jq -r .last_good_time <<<"$out")
bad=$(jq -r .first_bad_time <<<"$out")
echo "states in the window: $points; probes: $probes on $standbys standbys; time: $bisect_ms ms"
echo "last good: $good  first bad: $bad"

# Exact: a branch at the last good state has the 32 rows, one at the first bad state none.
check_at() {  # NAME TIME -> the row count there
  api POST "projects/default/branches?branch_id=$1" \
    "{\"spec\": {\"source_branch_time\": \"$2\", \"ttl\": \"3600s\"}}" >/dev/null
  psql -X -tA "$(bench_conn "$1")" -c "select count(*) from final_entities"
  api DELETE "projects/default/branches/$1" >/dev/null
}
n_good=$(check_at exact-good "$good")
n_bad=$(check_at exact-bad "$bad")
echo "rows at last good: $n_good (want 32); at first bad: $n_bad (want 0)"

# What one probe costs: postgres replays the WAL from the last checkpoint up to the probed
# state, so a state at the window's end costs more than one just after the checkpoint.
probe_ms() {  # TIME -> ms for psql on BRANCH@TIME (pinned endpoint made, started, queried)
  local p0 p1
  p0=$(now_us)
  "$ARBOR" psql "production@$1" -- -tAc "select 1" >/dev/null
  p1=$(now_us)
  echo $(( (p1 - p0) / 1000 ))
}
first_ms=$(probe_ms "$(rfc3339 $((start + 1000)))")
last_ms=$(probe_ms "$(rfc3339 "$end")")
echo "one probe: $first_ms ms at the window's start (little WAL to replay), $last_ms ms at its end"

echo "== baseline: one manual guess (branch at a time, first query, delete), median of 3 =="
guesses=()
for i in 1 2 3; do
  at=$(rfc3339 $((start + (end - start) * i / 4)))
  g0=$(now_us)
  check_at "guess-$i" "$at" >/dev/null
  g1=$(now_us)
  guesses+=($(( (g1 - g0) / 1000 )))
done
guess_ms=$(printf '%s\n' "${guesses[@]}" | median)
echo "one guess: $guess_ms ms (runs: ${guesses[*]})"

echo "== result =="
printf 'bisect to the exact commit: %d ms, %d probes (%d standbys) over %d states\n' "$bisect_ms" \
  "$probes" "$standbys" "$points"
printf 'one manual guess: %s ms; bisect / one guess = %.2f\n' "$guess_ms" \
  "$(echo "$bisect_ms / $guess_ms" | bc -l)"
printf 'targets: <= 10000 ms (%s), <= 20 probes (%s), exact (%s)\n' \
  "$([[ $bisect_ms -le 10000 ]] && echo met || echo missed)" \
  "$([[ $probes -le 20 ]] && echo met || echo missed)" \
  "$([[ "$n_good" == 32 && "$n_bad" == 0 ]] && echo yes || echo NO)"
