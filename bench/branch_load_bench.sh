#!/usr/bin/env bash
# Branch creation while the parent is busy, and the first query on the new branch.
# Production runs pgbench TPC-B (scale 10, CLIENTS clients, unthrottled) all along; every
# EVERY_S seconds a branch of production's head is made through the API (POST branches),
# then a first query runs on it through the proxy (its compute starts, replaying the WAL the
# fork holds beyond the parent's last checkpoint), then it is deleted with ?purge=true.
#
# Both in this one invocation, one daemon after the other, the same load and schedule:
#   checkpoint  Arbor's default: the parent's compute is checkpointed before the fork, so the
#               call waits for its dirty buffers and the child has little to replay;
#   head        ARBOR_BRANCH_CHECKPOINT=0: the fork takes the parent's state as the store
#               holds it (every acknowledged commit) at once, and the child's first start
#               replays the WAL since the parent's last checkpoint, as after a crash (in
#               standby mode, promoted at the end of the WAL: docs/point-in-time.md).
# Prints, for each: create through the API (p50, p99), create + first query (p50, p99),
# production's TPS during the samples against a quiet run of the same daemon, and the ratios
# head / checkpoint. Targets: create p50 <= 10 ms (head); create + first query p99 the lower.
#
# Usage: bench/branch_load_bench.sh [path/to/arbor] [--quick]
#   SAMPLES=24 EVERY_S=12  branches per daemon, one every EVERY_S seconds: together a little
#                          longer than the parents' checkpoint_timeout (5 min), so the head's
#                          replay covers a whole checkpoint cycle
#   CLIENTS=4 QUIET_S=20   production's pgbench clients; the quiet run's length
#   --quick                6 samples, 5 s apart
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
SAMPLES=${SAMPLES:-24}
EVERY_S=${EVERY_S:-12}
CLIENTS=${CLIENTS:-4}
QUIET_S=${QUIET_S:-20}
if [[ "${2:-}" == "--quick" ]]; then
  SAMPLES=6
  EVERY_S=5
  QUIET_S=10
fi
PGBIN=/usr/lib/postgresql/15/bin

. "$(dirname "$0")/daemon.sh"
bench_cleanup_extra() {
  [[ -n "${load_pid:-}" ]] && kill "$load_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  load_pid=
}

now_ms() { date +%s%3N; }
pct() {  # P < numbers: the P-th percentile (nearest rank)
  sort -n | awk -v p="$1" '{a[NR]=$1} END {if (NR == 0) {print 0; exit}
    i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print a[i]}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
tps() { awk '/^tps = / {printf "%.0f\n", $3; exit}' "$1"; }

declare -A R
# One daemon: production loaded, a quiet pgbench, then the samples under load. $work/ID.samples
# gets "<create ms> <create + first query ms>" per branch.
phase() {  # ID PORT
  local id=$1 i name out t0 t1 t2 conn load_s
  bench_daemon "brload-$id" "$2" 20
  PROD=$(bench_conn production)
  "$PGBIN/pgbench" -i -s 10 -q "$PROD" >/dev/null 2>&1
  "$PGBIN/pgbench" -c "$CLIENTS" -j 2 -T "$QUIET_S" "$PROD" >"$work/quiet.out" 2>&1
  R[$id.q_tps]=$(tps "$work/quiet.out")

  load_s=$((SAMPLES * EVERY_S + 30))
  "$PGBIN/pgbench" -c "$CLIENTS" -j 2 -T "$load_s" "$PROD" >"$work/load.out" 2>&1 &
  load_pid=$!
  sleep 5  # the parent has dirty buffers and WAL beyond its checkpoint
  : >"$work/$id.samples"
  for ((i = 1; i <= SAMPLES; i++)); do
    name=b$i
    t0=$(now_ms)
    out=$(api POST "projects/default/branches?branch_id=$name" '{"spec": {"ttl": "3600s"}}')
    t1=$(now_ms)
    if grep -q error_code <<<"$out"; then
      echo "  ($id: create $name: $out)" >&2
      continue
    fi
    conn=$(bench_conn "$name")
    if ! "$PGBIN/psql" -X -q -At "$conn" -c "select count(*) from pgbench_branches" \
      >/dev/null 2>"$work/q.err"; then
      echo "  ($id: first query on $name: $(cat "$work/q.err"))" >&2
      continue
    fi
    t2=$(now_ms)
    echo "$((t1 - t0)) $((t2 - t0))" >>"$work/$id.samples"
    api DELETE "projects/default/branches/$name?purge=true" >/dev/null
    sleep "$(awk -v e="$EVERY_S" -v d="$(($(now_ms) - t0))" \
      'BEGIN {s = e - d / 1000; print (s > 0) ? s : 0}')"
  done
  wait "$load_pid" || true
  load_pid=
  R[$id.l_tps]=$(tps "$work/load.out")
  R[$id.n]=$(wc -l <"$work/$id.samples")
  R[$id.c50]=$(awk '{print $1}' "$work/$id.samples" | pct 50)
  R[$id.c99]=$(awk '{print $1}' "$work/$id.samples" | pct 99)
  R[$id.f50]=$(awk '{print $2}' "$work/$id.samples" | pct 50)
  R[$id.f99]=$(awk '{print $2}' "$work/$id.samples" | pct 99)
  bench_cleanup
}

unset ARBOR_BRANCH_CHECKPOINT
phase checkpoint $((29000 + RANDOM % 500))  # below the ephemeral range (32768+)
export ARBOR_BRANCH_CHECKPOINT=0
phase head $((29500 + RANDOM % 500))

echo "== branch of a busy parent (production: pgbench TPC-B scale 10, $CLIENTS clients;" \
  "a branch every $EVERY_S s, $SAMPLES per daemon) =="
printf '%-34s %12s %12s %8s\n' "" checkpoint head ratio
row() {  # LABEL KEY
  printf '%-34s %12s %12s %8s\n' "$1" "${R[checkpoint.$2]}" "${R[head.$2]}" \
    "$(ratio "${R[head.$2]}" "${R[checkpoint.$2]}")"
}
row "create through the API p50 ms" c50
row "create through the API p99 ms" c99
row "create + first query p50 ms" f50
row "create + first query p99 ms" f99
row "production TPS, quiet" q_tps
row "production TPS, during the samples" l_tps
echo "samples: checkpoint ${R[checkpoint.n]}, head ${R[head.n]}"
echo "production TPS during / quiet: checkpoint $(ratio "${R[checkpoint.l_tps]}" \
  "${R[checkpoint.q_tps]}"), head $(ratio "${R[head.l_tps]}" "${R[head.q_tps]}")"
awk -v v="${R[head.c50]}" 'BEGIN {print "target create p50 <= 10 ms (head): " \
  ((v <= 10) ? "met" : "MISSED")}'
awk -v h="${R[head.f99]}" -v c="${R[checkpoint.f99]}" 'BEGIN {print "create + first query" \
  " p99: " ((h <= c) ? "head is faster" : "the checkpoint is faster")}'
