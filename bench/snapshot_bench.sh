#!/usr/bin/env bash
# What a snapshot costs, next to the full copy a team without Arbor makes, in the same run:
#   1. the time to take one (POST .../snapshots, with the CHECKPOINT of the running compute)
#      against pg_dump -Fc of the same database through the same proxy;
#   2. its space after pgbench writes on the source: status.exclusive_size_bytes (what it alone
#      keeps now) and the source's bytes written since the snapshot, which bound what it will
#      keep once the history window has passed over those writes (each page it keeps is an
#      older version of a page written since), both against the database's size (what a copy
#      costs).
#
# Usage: bash bench/snapshot_bench.sh [path/to/arbor] [SCALE] [SECONDS]
#   SCALE: pgbench scale of the database (default 10, ~160 MB); SECONDS of pgbench writes
#   (default 20). Runs in about a minute and a half at the defaults.
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
SCALE=${2:-10}
WRITE_S=${3:-20}
REPS=5

. "$(dirname "$0")/daemon.sh"
now_us() { date +%s%6N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

port_base=$((26000 + RANDOM % 1500))  # below the ephemeral range (32768+)
bench_daemon snapshot "$port_base" 10
PROD=$(bench_conn production)

pgbench -i -q -s "$SCALE" "$PROD" >/dev/null 2>&1
db_bytes=$(psql -X -At "$PROD" -c "select pg_database_size('postgres')")

echo "== taking a snapshot vs a full copy (median of $REPS) =="
times=()
for i in $(seq 1 $REPS); do
  t0=$(now_us)
  api POST "projects/default/branches/production/snapshots?snapshot_id=t$i" \
    '{"spec":{"no_expiry":true}}' >/dev/null
  times+=($(($(now_us) - t0)))
done
snap_ms=$(printf '%s\n' "${times[@]}" | median | awk '{printf "%.1f", $1/1000}')
for i in $(seq 1 $REPS); do api DELETE "projects/default/branches/production/snapshots/t$i" >/dev/null; done
times=()
for i in 1 2 3; do
  t0=$(now_us)
  pg_dump -Fc -f "$work/dump.$i" "$PROD"
  times+=($(($(now_us) - t0)))
done
dump_ms=$(printf '%s\n' "${times[@]}" | median | awk '{printf "%.1f", $1/1000}')
dump_bytes=$(stat -c %s "$work/dump.1")
rm -f "$work"/dump.*
printf 'database %d MB (pgbench scale %d)\n' $((db_bytes / 1000000)) "$SCALE"
printf 'snapshot %10s ms   pg_dump -Fc %10s ms   ratio pg_dump/snapshot %s\n' \
  "$snap_ms" "$dump_ms" "$(awk -v a="$dump_ms" -v b="$snap_ms" 'BEGIN {printf "%.0fx", a/b}')"

echo "== a snapshot's space after $WRITE_S s of pgbench writes on the source =="
api POST "projects/default/branches/production/snapshots?snapshot_id=held" \
  '{"spec":{"no_expiry":true}}' >/dev/null
written0=$(api GET projects/default/branches/production | jq .status.written_bytes)
pgbench -n -c 2 -T "$WRITE_S" "$PROD" >"$work/pgbench.out" 2>&1
written1=$(api GET projects/default/branches/production | jq .status.written_bytes)
snap=$(api GET projects/default/branches/production/snapshots/held)
excl=$(jq .status.exclusive_size_bytes <<<"$snap")
since=$((written1 - written0))
tps=$(awk '/^tps/ {printf "%d", $3; exit}' "$work/pgbench.out")
printf 'pgbench: %s tps; the source wrote %d MB since the snapshot\n' "$tps" $((since / 1000000))
printf 'exclusive now (inside the history window)  %12d bytes  = %.4f of the database\n' \
  "$excl" "$(awk -v a="$excl" -v b="$db_bytes" 'BEGIN {print a/b}')"
printf 'bound once the window passes these writes   %12d bytes  = %.3f of the database\n' \
  "$since" "$(awk -v a="$since" -v b="$db_bytes" 'BEGIN {print a/b}')"
printf 'a full copy (pg_dump -Fc)                   %12d bytes  = %.3f of the database\n' \
  "$dump_bytes" "$(awk -v a="$dump_bytes" -v b="$db_bytes" 'BEGIN {print a/b}')"
api DELETE projects/default/branches/production/snapshots/held >/dev/null
