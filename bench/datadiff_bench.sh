#!/usr/bin/env bash
# arbor diff --data against a full comparison, in one run: a table of ~1 GB on production, a
# branch that changed N of its rows, and the time each takes to find the changed rows.
# The full comparison is what a user without Arbor does: pg_dump --data-only of the table on
# both sides, sorted, and diffed. Also: how arbor's time grows with N (10, 1,000, 100,000)
# and that it stays flat in table size (~100 MB against ~1 GB at 1,000 changed rows).
#
# Usage: bench/datadiff_bench.sh [path/to/arbor] [--quick]
#   --quick: ~100 MB and ~10 MB tables (a smoke run).
set -euo pipefail
ARBOR=${1:-build/arbor}
QUICK=${2:-}
ARBOR=$(realpath "$ARBOR")
BIG_MB=1024
SMALL_MB=100
[[ "$QUICK" == "--quick" ]] && BIG_MB=100 && SMALL_MB=10

. "$(dirname "$0")/daemon.sh"
now_us() { date +%s%6N; }

port_base=$((27500 + RANDOM % 1500))
bench_daemon datadiff "$port_base" 61
PROD=$(bench_conn production)

fill() {  # TABLE MB: ~MB megabytes of ~1 KB rows with a primary key
  local rows=$(($2 * 1024 * 1024 / 1100))
  psql -X -q "$PROD" -c "create table $1 as select g as id, repeat(md5(g::text), 31) as pad
                          from generate_series(1, $rows) g" -c "alter table $1 add primary key (id)"
  echo "$rows"
}
echo "== loading: big (~$BIG_MB MB) and small (~$SMALL_MB MB) on production =="
big_rows=$(fill big "$BIG_MB")
small_rows=$(fill small "$SMALL_MB")
psql -X -tA "$PROD" -c "select 'big: ' || pg_size_pretty(pg_relation_size('big')) ||
                               ', small: ' || pg_size_pretty(pg_relation_size('small'))"

branch_with() {  # NAME TABLE ROWS N: a branch of production with N rows of TABLE changed
  api POST "projects/default/branches?branch_id=$1" '{"spec": {"ttl": "3600s"}}' >/dev/null
  psql -X -q "$(bench_conn "$1")" -c "update $2 set pad = md5(pad) where id in
      (select (g * ($3 / $4))::int + 1 from generate_series(0, $4 - 1) g)"
}
timed_diff() {  # BRANCH TABLE -> ms of arbor diff --data production BRANCH --table TABLE
  local t0 t1 rc=0
  t0=$(now_us)
  "$ARBOR" -o json diff --data production "$1" --table "public.$2" >"$work/diff.json" || rc=$?
  t1=$(now_us)
  [[ $rc -eq 1 ]] || { echo "arbor diff --data exited $rc" >&2; exit 1; }
  echo $(( (t1 - t0) / 1000 ))
}
echo "== arbor diff --data as changed rows grow (big table) =="
declare -A ms
for n in 10 1000 100000; do
  branch_with "big-$n" big "$big_rows" "$n"
  ms[$n]=$(timed_diff "big-$n" big)
  echo "changed rows $n: ${ms[$n]} ms"
done
branch_with "small-1000" small "$small_rows" 1000
small_ms=$(timed_diff small-1000 small)
echo "small table, 1000 changed rows: $small_ms ms"

echo "== baseline: full comparison of big (pg_dump --data-only of both sides, sort, diff) =="
t0=$(now_us)
pg_dump --data-only -t public.big "$PROD" | sort >"$work/a.sql"
pg_dump --data-only -t public.big "$(bench_conn big-1000)" | sort >"$work/b.sql"
full_changed=$(diff "$work/a.sql" "$work/b.sql" | grep -c '^>' || true)
t1=$(now_us)
full_ms=$(( (t1 - t0) / 1000 ))
echo "full comparison: $full_ms ms ($full_changed rows differ)"

echo "== result =="
printf 'big table, 1000 changed rows: arbor %d ms, full comparison %d ms: %.1fx faster\n' \
  "${ms[1000]}" "$full_ms" "$(echo "$full_ms / ${ms[1000]}" | bc -l)"
printf 'growth with changed rows: 10 -> %d ms, 1000 -> %d ms, 100000 -> %d ms\n' \
  "${ms[10]}" "${ms[1000]}" "${ms[100000]}"
printf 'table size at 1000 changed rows: ~%d MB -> %d ms, ~%d MB -> %d ms (ratio %.2f)\n' \
  "$SMALL_MB" "$small_ms" "$BIG_MB" "${ms[1000]}" "$(echo "${ms[1000]} / $small_ms" | bc -l)"
printf 'targets: >= 20x faster (%s), < 2000 ms (%s)\n' \
  "$([[ $((full_ms)) -ge $((20 * ms[1000])) ]] && echo met || echo missed)" \
  "$([[ ${ms[1000]} -lt 2000 ]] && echo met || echo missed)"
