#!/usr/bin/env bash
# Branch creation while the parent is busy, and the first query on the new branch.
# Production runs pgbench TPC-B (scale 10, CLIENTS clients, unthrottled) all along; every
# EVERY_S seconds a branch of production's head is made through the API (POST branches),
# then a first query runs on it through the proxy (its compute starts, replaying the WAL the
# fork holds beyond the parent's last checkpoint), then it is deleted with ?purge=true.
#
# Up to four daemons in this one invocation, one after the other, the same load and schedule:
#   always      Arbor's default: the parent's compute is checkpointed before every fork, so
#               the call waits for its dirty buffers and the child has little to replay;
#   full        the same, set explicitly (ARBOR_BRANCH_CHECKPOINT_WAIT_MS=-1), so that a run
#               names it beside the wait-N sides whatever the default;
#   wait-N      ARBOR_BRANCH_CHECKPOINT_WAIT_MS=N: the call waits at most N ms for the
#               checkpoint; one that takes longer goes on, and the child forks the head at
#               once, replaying from the parent's last completed checkpoint;
#   threshold   ARBOR_BRANCH_CHECKPOINT_MIN_MB=64: the parent checkpoints only when its WAL
#               is 64 MiB past its last checkpoint, so a child replays at most that much;
#   head        ARBOR_BRANCH_CHECKPOINT=0: the fork takes the parent's state as the store
#               holds it (every acknowledged commit) at once, and the child's first start
#               replays the WAL since the parent's last checkpoint, as after a crash (in
#               standby mode, promoted at the end of the WAL: docs/point-in-time.md);
#   promote     as always, but ARBOR_BRANCH_RECOVERY=promote: the child's first start
#               promotes (copying its last WAL segment into a new PostgreSQL timeline) even
#               when its replay stays in one segment, where the default recovers as after a
#               crash.
# Prints, for each: create through the API (p50, p99: the call as curl times it; and the
# client's wall time around it, p50, which adds curl's and date's process starts),
# create + first query (p50, p99), each branch's postgres start (p50 and max, from its
# compute's log: "starting PostgreSQL" to "ready to accept connections") and how many of
# those starts recovered in place (an end-of-recovery checkpoint) instead of promoting,
# production's TPS during the samples against a quiet run of the same daemon, and the ratios
# to `always`. Targets: create p50 <= 10 ms; create + first query p99 the lowest.
#
# Usage: bench/branch_load_bench.sh [path/to/arbor] [--quick]
#   SAMPLES=24 EVERY_S=12  branches per daemon, one every EVERY_S seconds: together a little
#                          longer than the parents' checkpoint_timeout (5 min), so the head's
#                          replay covers a whole checkpoint cycle
#   CLIENTS=4 QUIET_S=20   production's pgbench clients; the quiet run's length
#   SIDES="always threshold head"  which daemons to run (also: full, wait-N, promote)
#   --quick                6 samples, 5 s apart
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
SAMPLES=${SAMPLES:-24}
EVERY_S=${EVERY_S:-12}
CLIENTS=${CLIENTS:-4}
QUIET_S=${QUIET_S:-20}
SIDES=${SIDES:-always threshold head}
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
# From the computes' own logs, one line per branch: its postgres's start to ready (ms), and 1
# if it recovered in place (an end-of-recovery checkpoint) rather than promoting, else 0.
starts() {
  local f
  for f in "$ARBOR_HOME"/logs/default.b[0-9]*.primary.log; do
    [[ -e "$f" ]] || continue
    awk 'function ms(t, a) {split(t, a, ":"); return (a[1] * 3600 + a[2] * 60 + a[3]) * 1000}
      /starting PostgreSQL/ && !s {s = ms($2)}
      /ready to accept connections/ && !r {r = ms($2)}
      /end-of-recovery/ {inplace = 1}
      END {if (s && r) {d = r - s; if (d < 0) d += 86400000; printf "%d %d\n", d, inplace}}' "$f"
  done
}
# One daemon: production loaded, a quiet pgbench, then the samples under load. $work/ID.samples
# gets "<create call ms> <create + first query ms> <create wall ms>" per branch.
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
    # The call as curl times it, from its connect to the last byte of the answer: the wall
    # time around it adds a process start or two, tens of ms on two busy cores.
    out=$(curl -sS -w '\n%{time_total}' -X POST -H "Authorization: Bearer $ADMIN" \
      -H 'Content-Type: application/json' --data '{"spec": {"ttl": "3600s"}}' \
      "$API/projects/default/branches?branch_id=$name")
    t1=$(now_ms)
    call_ms=$(tail -n 1 <<<"$out" | awk '{printf "%.1f", $1 * 1000}')
    out=$(sed '$d' <<<"$out")
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
    echo "$call_ms $((t2 - t0)) $((t1 - t0))" >>"$work/$id.samples"
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
  R[$id.w50]=$(awk '{print $3}' "$work/$id.samples" | pct 50)
  starts >"$work/$id.starts"
  R[$id.s50]=$(awk '{print $1}' "$work/$id.starts" | pct 50)
  R[$id.s_max]=$(awk '{print $1}' "$work/$id.starts" | pct 100)
  R[$id.inplace]=$(awk '{n += $2} END {print n + 0}' "$work/$id.starts")
  bench_cleanup
}

port=$((29000 + RANDOM % 500))  # below the ephemeral range (32768+)
for side in $SIDES; do
  unset ARBOR_BRANCH_CHECKPOINT ARBOR_BRANCH_CHECKPOINT_MIN_MB ARBOR_BRANCH_CHECKPOINT_WAIT_MS \
    ARBOR_BRANCH_RECOVERY
  case $side in
    always) ;;  # the default
    full) export ARBOR_BRANCH_CHECKPOINT_WAIT_MS=-1 ;;
    wait-[0-9]*) export ARBOR_BRANCH_CHECKPOINT_WAIT_MS=${side#wait-} ;;
    threshold) export ARBOR_BRANCH_CHECKPOINT_MIN_MB=64 ;;
    head) export ARBOR_BRANCH_CHECKPOINT=0 ;;
    promote) export ARBOR_BRANCH_RECOVERY=promote ;;
    *) echo "unknown side $side" >&2; exit 2 ;;
  esac
  phase "$side" "$port"
  port=$((port + 100))
done
unset ARBOR_BRANCH_CHECKPOINT ARBOR_BRANCH_CHECKPOINT_MIN_MB ARBOR_BRANCH_CHECKPOINT_WAIT_MS \
  ARBOR_BRANCH_RECOVERY

echo "== branch of a busy parent (production: pgbench TPC-B scale 10, $CLIENTS clients;" \
  "a branch every $EVERY_S s, $SAMPLES per daemon) =="
read -r -a sides <<<"$SIDES"
base=${sides[0]}
printf '%-36s' ""
for side in "${sides[@]}"; do printf ' %10s' "$side"; done
for side in "${sides[@]:1}"; do printf ' %10s' "$side/$base"; done
echo
row() {  # LABEL KEY
  printf '%-36s' "$1"
  for side in "${sides[@]}"; do printf ' %10s' "${R[$side.$2]}"; done
  for side in "${sides[@]:1}"; do printf ' %10s' "$(ratio "${R[$side.$2]}" "${R[$base.$2]}")"; done
  echo
}
row "create through the API p50 ms" c50
row "create through the API p99 ms" c99
row "create, the client's wall time p50" w50
row "create + first query p50 ms" f50
row "create + first query p99 ms" f99
row "a branch's postgres start p50 ms" s50
row "a branch's postgres start max ms" s_max
row "starts that recovered in place" inplace
row "production TPS, quiet" q_tps
row "production TPS, during the samples" l_tps
for side in "${sides[@]}"; do
  echo "$side: ${R[$side.n]} samples, production TPS during / quiet" \
    "$(ratio "${R[$side.l_tps]}" "${R[$side.q_tps]}")," \
    "create p50 <= 10 ms: $(awk -v v="${R[$side.c50]}" 'BEGIN {print (v <= 10) ? "met" : "MISSED"}')"
done
best=$(for side in "${sides[@]}"; do echo "${R[$side.f99]} $side"; done | sort -n | head -1)
echo "create + first query p99: lowest with ${best#* } (${best%% *} ms)"
