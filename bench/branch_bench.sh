#!/usr/bin/env bash
# Branch creation, time to first query, PITR end to end, and storage of 20 branches,
# each next to the baseline a team without Arbor uses, measured in the same run.
#
# Usage: bench/branch_bench.sh [path/to/arbor] [--quick]
#   --quick uses 100 MB instead of 1 GB (a smoke run).
set -euo pipefail
ARBOR=${1:-build/arbor}
QUICK=${2:-}
ARBOR=$(realpath "$ARBOR")
PGBIN=/usr/lib/postgresql/15/bin
BIG_MB=1024
[[ "$QUICK" == "--quick" ]] && BIG_MB=100
REPS=10

. "$(dirname "$0")/daemon.sh"
bench_cleanup_extra() {  # the native postgres of the baselines
  [[ -n "${native_pid:-}" ]] && kill "$native_pid" 2>/dev/null || true
  if [[ -f "$work/native/postmaster.pid" ]]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/native" -m immediate stop >/dev/null 2>&1 || true
  fi
}

as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
now_us() { date +%s%6N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
rfc3339() { date -u -d "@$(($1 / 1000000))" +%Y-%m-%dT%H:%M:%S.$(printf %06d $(($1 % 1000000)))Z; }

port_base=$((24000 + RANDOM % 1500))  # below the ephemeral range (32768+)
bench_daemon branch "$port_base" 61
conn() { bench_conn "$1"; }
PROD=$(conn production)

# A native postgres on the host file system, same binaries, for the baselines.
mkdir -p "$work/native" "$work/sock" "$work/copies"
touch "$work/native.log"
chown postgres: "$work/native" "$work/sock" "$work/copies" "$work/native.log" 2>/dev/null || true
as_pg "$PGBIN/initdb" -D "$work/native" -A trust -U postgres >/dev/null
native_port=$((port_base + 100))
as_pg "$PGBIN/pg_ctl" -D "$work/native" -w -l "$work/native.log" \
  -o "-p $native_port -k $work/sock -c listen_addresses=''" start >/dev/null
NATIVE="host=$work/sock port=$native_port user=postgres"

fill() {  # CONNINFO DB MB: a table of ~MB megabytes in database DB
  local rows=$(($3 * 1024 * 1024 / 1100))
  psql -X -q "$1" -c "create database $2" >/dev/null 2>&1 || true
  local c="$1"
  [[ "$c" == postgresql://* ]] && c="${c%/postgres}/$2" || c="$c dbname=$2"
  psql -X -q "$c" -c "create table filler as select g as id, repeat(md5(g::text), 31) as pad
                       from generate_series(1, $rows) g" >/dev/null
  psql -X -q "$c" -c "alter table filler add primary key (id)" >/dev/null
  psql -X -q "$c" -c "checkpoint" >/dev/null
}

echo "== branch creation (median of $REPS; Arbor: POST branches at the head) =="
declare -A arbor_ms tmpl_ms base_ms
for mb in 10 "$BIG_MB"; do
  fill "$PROD" "d$mb" "$mb"
  fill "$NATIVE" "d$mb" "$mb"
  times=()
  for i in $(seq 1 $REPS); do
    t0=$(now_us)
    api POST "projects/default/branches?branch_id=b$mb-$i" '{"spec":{"no_expiry":true}}' >/dev/null
    times+=($(( $(now_us) - t0 )))
  done
  arbor_ms[$mb]=$(printf '%s\n' "${times[@]}" | median | awk '{printf "%.1f", $1/1000}')
  times=()
  for i in 1 2 3; do
    t0=$(now_us)
    psql -X -q "$NATIVE" -c "create database c${mb}_$i template d$mb" >/dev/null
    times+=($(( $(now_us) - t0 )))
  done
  tmpl_ms[$mb]=$(printf '%s\n' "${times[@]}" | median | awk '{printf "%.1f", $1/1000}')
  t0=$(now_us)
  as_pg "$PGBIN/pg_basebackup" -h "$work/sock" -p "$native_port" -U postgres -D "$work/copies/bb$mb" -X fetch -c fast >/dev/null
  base_ms[$mb]=$(( ($(now_us) - t0) / 1000 ))
  rm -rf "$work/copies/bb$mb"
  for i in $(seq 1 $REPS); do api DELETE "projects/default/branches/b$mb-$i" >/dev/null; done
  printf '%-8s arbor %8s ms   CREATE DATABASE TEMPLATE %9s ms   pg_basebackup %8s ms\n' \
    "${mb}MB" "${arbor_ms[$mb]}" "${tmpl_ms[$mb]}" "${base_ms[$mb]}"
done
awk -v a="${arbor_ms[10]}" -v b="${arbor_ms[$BIG_MB]}" -v t="${tmpl_ms[$BIG_MB]}" -v p="${base_ms[$BIG_MB]}" -v mb="$BIG_MB" 'BEGIN {
  printf "branch_create  flat-in-size ratio (%dMB/10MB) %.2f (target ~1, <= 10 ms)\n", mb, b / a;
  printf "branch_create  %dMB: %.0fx faster than CREATE DATABASE TEMPLATE, %.0fx faster than pg_basebackup\n", mb, t / b, p / b }'

echo "== time from create to first query (median of 5) =="
for mb in 10 "$BIG_MB"; do
  times=()
  for i in 1 2 3 4 5; do
    t0=$(now_us)
    api POST "projects/default/branches?branch_id=q$mb-$i" '{"spec":{"no_expiry":true}}' >/dev/null
    c=$(conn "q$mb-$i")
    psql -X -q "${c%/postgres}/d$mb" -Atc "select pad from filler where id = 4242" >/dev/null
    times+=($(( $(now_us) - t0 )))
    api DELETE "projects/default/branches/q$mb-$i" >/dev/null
  done
  printf 'first_query    %-6s p50 %6s ms (target <= 1000 ms at 1 GB)\n' "${mb}MB" \
    "$(printf '%s\n' "${times[@]}" | median | awk '{printf "%.0f", $1/1000}')"
done

echo "== PITR end to end: branch at T + first query (median of 5) =="
psql -X -q "$PROD" -c "create table pitr(n int)" >/dev/null
times=()
for i in 1 2 3 4 5; do
  psql -X -q "$PROD" -c "insert into pitr values ($i)" >/dev/null
  t=$(now_us)
  psql -X -q "$PROD" -c "delete from pitr" >/dev/null
  t0=$(now_us)
  api POST "projects/default/branches?branch_id=pitr-$i" \
    "{\"spec\":{\"no_expiry\":true,\"source_branch_time\":\"$(rfc3339 "$t")\"}}" >/dev/null
  c=$(conn "pitr-$i")
  got=$(psql -X -q "$c" -Atc "select count(*) from pitr")
  times+=($(( $(now_us) - t0 )))
  [[ "$got" == 1 ]] || echo "  (pitr-$i saw $got rows, expected 1)"
  api DELETE "projects/default/branches/pitr-$i" >/dev/null
done
printf 'pitr_e2e       p50 %6s ms (target <= 1000 ms; Lakebase 3780 ms, snapped back 12 s)\n' \
  "$(printf '%s\n' "${times[@]}" | median | awk '{printf "%.0f", $1/1000}')"

echo "== storage: 20 branches each updating 1% of ${BIG_MB} MB =="
store_mb() { du -sm "$ARBOR_HOME/store" | cut -f1; }
psql -X -q "${PROD%/postgres}/d$BIG_MB" -c "checkpoint" >/dev/null
before=$(store_mb)
rows=$(psql -X -Atq "${PROD%/postgres}/d$BIG_MB" -c "select count(*) from filler")
for i in $(seq 0 19); do
  api POST "projects/default/branches?branch_id=s$i" '{"spec":{"no_expiry":true}}' >/dev/null
  c=$(conn "s$i")
  lo=$((rows * i / 100)); hi=$((rows * (i + 1) / 100))  # 1% of the rows, by primary key
  psql -X -q "${c%/postgres}/d$BIG_MB" -c "update filler set pad = md5(pad) where id > $lo and id <= $hi" >/dev/null
  psql -X -q "${c%/postgres}/d$BIG_MB" -c "checkpoint" >/dev/null
  api POST "projects/default/branches/s$i/endpoints/primary:stop" >/dev/null
done
after=$(store_mb)
awk -v b="$before" -v a="$after" -v mb="$BIG_MB" 'BEGIN {
  printf "storage        20 branches grew the store by %d MB; 20 full copies: %d MB (ratio %.3f; target <= 1.5 GB at 1 GB)\n", a - b, 20 * mb, (a - b) / (20 * mb) }'
