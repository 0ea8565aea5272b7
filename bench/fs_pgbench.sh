#!/usr/bin/env bash
# PostgreSQL on arborfs against PostgreSQL on the host file system: the same binaries and
# settings, runs alternating between the two, ratios printed at the end. A third side, FUSE
# alone (bench/fuse_passthrough: a passthrough to a host directory with arborfs's mount
# options, no store), splits the gap into what FUSE itself costs and what the store adds.
#
# Usage: bench/fs_pgbench.sh PATH/TO/arbor
# Environment (defaults are the figures the issue asks for):
#   DURATION=60      seconds of each pgbench run
#   SCALE=10         scale of the TPC-B-like and select-only runs
#   INIT_SCALE=50    scale of the timed `pgbench -i`
#   CLIENTS=4        pgbench clients
#   BLOCK_CACHE_MB=256  the store's block cache
#   ROUNDS=1         alternating rounds of each pgbench run
#   ARBOR_MOUNT_FLAGS="--writeback-cache"  `arbor debug mount` flags; the default is the
#                    daemon's mount options (set it to "" to measure without the writeback cache)
#   TESTS="init tpcb select"  which parts to run (the scale-SCALE load always runs)
#   FUSE_FLOOR=1     also run the FUSE-alone side (0: native and arborfs only)
#   PG_OPTS=""       more postgres settings for every side; Arbor's computes run with
#                    wal_compression=lz4, so PG_OPTS="-c wal_compression=lz4" against the
#                    default (off) measures what that setting changes
set -euo pipefail

arbor=${1:?usage: $0 PATH/TO/arbor}
arbor=$(readlink -f "$arbor")
DURATION=${DURATION:-60}
SCALE=${SCALE:-10}
INIT_SCALE=${INIT_SCALE:-50}
CLIENTS=${CLIENTS:-4}
BLOCK_CACHE_MB=${BLOCK_CACHE_MB:-256}
ROUNDS=${ROUNDS:-1}
ARBOR_MOUNT_FLAGS=${ARBOR_MOUNT_FLAGS---writeback-cache}
TESTS=${TESTS:-init tpcb select}
FUSE_FLOOR=${FUSE_FLOOR:-1}
PG_OPTS=${PG_OPTS:-}
passthrough=$(dirname "$arbor")/bench/fuse_passthrough
sides=(native arbor)
if [[ $FUSE_FLOOR == 1 ]]; then
  [[ -x $passthrough ]] || { echo "no $passthrough (build it, or FUSE_FLOOR=0)" >&2; exit 1; }
  sides+=(fuse)
fi
PGBIN=/usr/lib/postgresql/15/bin

if [[ $(id -u) -eq 0 ]]; then
  pguser=postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  pguser=$(id -un)
  as_pg() { "$@"; }
fi
uid=$(id -u "$pguser")
gid=$(id -g "$pguser")

work=$(mktemp -d "${TMPDIR:-/tmp}/arbor-fsbench-XXXXXX")
chmod 755 "$work"
arbor_pid=""
fuse_pid=""
cleanup() {
  set +e
  for side in "${sides[@]}"; do
    [[ -f $work/$side/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" -D "$work/$side" -m immediate stop >/dev/null 2>&1
  done
  for pid in $arbor_pid $fuse_pid; do
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # A mount its server could not remove (still busy) must not take rm -rf into it.
  for m in "$work/arbor" "$work/fuse"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- the arborfs side: a store and a mount served by `arbor debug mount` ----
"$arbor" debug mount --store "$work/store" --create-root --mountpoint "$work/arbor" \
  --uid "$uid" --gid "$gid" --block-cache-mb "$BLOCK_CACHE_MB" $ARBOR_MOUNT_FLAGS \
  >"$work/arbor.log" 2>&1 &
arbor_pid=$!
for _ in $(seq 100); do grep -q '^mounted' "$work/arbor.log" && break; sleep 0.1; done
grep -q '^mounted' "$work/arbor.log" || { cat "$work/arbor.log"; exit 1; }

# ---- the FUSE-alone side: the passthrough over a host directory ----
if [[ $FUSE_FLOOR == 1 ]]; then
  mkdir -p "$work/fuse-src" "$work/fuse"
  "$passthrough" "$work/fuse-src" "$work/fuse" >"$work/fuse.log" 2>&1 &
  fuse_pid=$!
  for _ in $(seq 100); do grep -q '^mounted' "$work/fuse.log" && break; sleep 0.1; done
  grep -q '^mounted' "$work/fuse.log" || { cat "$work/fuse.log"; exit 1; }
  chown "$uid:$gid" "$work/fuse"
fi

mkdir -p "$work/native" "$work/logs"
for side in "${sides[@]}"; do mkdir -p "$work/sock-$side"; chown "$uid:$gid" "$work/sock-$side" "$work/$side"; done
chown "$uid:$gid" "$work/logs"
chmod 700 "$work/native" "$work/arbor"
[[ $FUSE_FLOOR == 1 ]] && chmod 700 "$work/fuse"

declare -A port
for side in "${sides[@]}"; do
  as_pg "$PGBIN/initdb" -D "$work/$side" -U postgres --auth-local=trust -E UTF8 \
    --locale=C.UTF-8 --no-instructions >"$work/initdb-$side.log" 2>&1
  port[$side]=$(free_port)
  as_pg "$PGBIN/pg_ctl" -D "$work/$side" -l "$work/logs/pg-$side.log" -w -t 120 \
    -o "-p ${port[$side]} -k $work/sock-$side -c listen_addresses='' -c shared_buffers=128MB -c max_connections=50 $PG_OPTS" \
    start >/dev/null
done

pgb() {  # side, pgbench args...
  local side=$1
  shift
  as_pg "$PGBIN/pgbench" -h "$work/sock-$side" -p "${port[$side]}" -U postgres "$@" postgres
}

now() { date +%s.%N; }

wants() { [[ " $TESTS " == *" $1 "* ]]; }
# The arbor process's peak RSS since the last reset (the kernel's high-water mark, VmHWM).
peak_rss_mb() { echo $(($(awk '/^VmHWM/ {print $2}' "/proc/$arbor_pid/status") / 1024)); }
reset_peak_rss() { echo 5 >"/proc/$arbor_pid/clear_refs"; }

# ---- pgbench -i -s INIT_SCALE wall time ----
declare -A init_s
init_rss_mb=0
if wants init; then
  for side in "${sides[@]}"; do
    [[ $side == arbor ]] && reset_peak_rss
    t0=$(now)
    pgb "$side" -i -s "$INIT_SCALE" -q >"$work/init-$side.log" 2>&1
    init_s[$side]=$(echo "$(now) - $t0" | bc -l)
    echo "pgbench -i -s $INIT_SCALE  $side: ${init_s[$side]} s"
  done
  init_rss_mb=$(peak_rss_mb)
fi

for side in "${sides[@]}"; do
  pgb "$side" -i -s "$SCALE" -q >/dev/null 2>&1
  as_pg "$PGBIN/psql" -h "$work/sock-$side" -p "${port[$side]}" -U postgres -qAtc "CHECKPOINT" postgres
done

tps_of() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1" | tail -1; }

# CPU time in clock ticks: of a process (user + system), and of the whole machine (busy).
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
declare -A server_pid=([arbor]=$arbor_pid [fuse]=$fuse_pid)
declare -A tpcb sel server_us machine_us txns
tpcb_rss_mb=0
for round in $(seq "$ROUNDS"); do
  for side in "${sides[@]}"; do
    wants tpcb || break
    [[ $side == arbor ]] && reset_peak_rss
    pid=${server_pid[$side]:-}
    s0=$([[ -n $pid ]] && proc_ticks "$pid" || echo 0)
    m0=$(machine_ticks)
    pgb "$side" -c "$CLIENTS" -j 2 -T "$DURATION" >"$work/tpcb-$side.log" 2>&1
    s1=$([[ -n $pid ]] && proc_ticks "$pid" || echo 0)
    m1=$(machine_ticks)
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/tpcb-$side.log")
    txns[$side]=$(( ${txns[$side]:-0} + ${n:-0} ))
    server_us[$side]=$(( ${server_us[$side]:-0} + (s1 - s0) * tick_us ))
    machine_us[$side]=$(( ${machine_us[$side]:-0} + (m1 - m0) * tick_us ))
    [[ $side == arbor ]] && tpcb_rss_mb=$(( $(peak_rss_mb) > tpcb_rss_mb ? $(peak_rss_mb) : tpcb_rss_mb ))
    t=$(tps_of "$work/tpcb-$side.log")
    tpcb[$side]=$(echo "${tpcb[$side]:-0} + $t / $ROUNDS" | bc -l)
    echo "TPC-B-like round $round  $side: $t tps"
  done
  for side in "${sides[@]}"; do
    wants select || break
    pgb "$side" -S -c "$CLIENTS" -j 2 -T "$DURATION" >"$work/sel-$side.log" 2>&1
    t=$(tps_of "$work/sel-$side.log")
    sel[$side]=$(echo "${sel[$side]:-0} + $t / $ROUNDS" | bc -l)
    echo "select-only round $round  $side: $t tps"
  done
done

ratio() { echo "scale=3; $1 / $2" | bc -l; }
# Peak RSS: the kernel's high-water mark, reset before each measured part.
rss_mb=$(peak_rss_mb)
echo
echo "== arborfs vs native (same postgres, same settings; mount flags: '${ARBOR_MOUNT_FLAGS}') =="
wants tpcb && printf "TPC-B-like s=%s c=%s %ss: native %.0f tps, arborfs %.0f tps, ratio %s (target >= 0.90)\n" \
  "$SCALE" "$CLIENTS" "$DURATION" "${tpcb[native]}" "${tpcb[arbor]}" "$(ratio "${tpcb[arbor]}" "${tpcb[native]}")"
wants select && printf "select-only s=%s c=%s %ss: native %.0f tps, arborfs %.0f tps, ratio %s (target >= 0.95)\n" \
  "$SCALE" "$CLIENTS" "$DURATION" "${sel[native]}" "${sel[arbor]}" "$(ratio "${sel[arbor]}" "${sel[native]}")"
wants init && printf "pgbench -i -s %s: native %.1f s, arborfs %.1f s, ratio %s (target <= 1.5)\n" \
  "$INIT_SCALE" "${init_s[native]}" "${init_s[arbor]}" "$(ratio "${init_s[arbor]}" "${init_s[native]}")"
if [[ $FUSE_FLOOR == 1 ]]; then
  echo "-- FUSE alone (passthrough to the host file system, arborfs's mount options) vs native: the floor under arborfs --"
  wants tpcb && printf "TPC-B-like: FUSE alone %.0f tps, ratio %s; arborfs / FUSE alone %s\n" \
    "${tpcb[fuse]}" "$(ratio "${tpcb[fuse]}" "${tpcb[native]}")" "$(ratio "${tpcb[arbor]}" "${tpcb[fuse]}")"
  # Where the difference goes: the FUSE server's own CPU, and the whole machine's, per
  # transaction (on two busy cores, CPU per transaction is what decides the TPS).
  if wants tpcb; then
    per_txn() { awk -v us="$1" -v n="$2" 'BEGIN {printf "%.0f", (n > 0) ? us / n : 0}'; }
    for side in "${sides[@]}"; do
      printf "TPC-B-like CPU per transaction, %-6s: %s us in the FUSE server, %s us on the whole machine\n" \
        "$side" "$(per_txn "${server_us[$side]:-0}" "${txns[$side]}")" \
        "$(per_txn "${machine_us[$side]}" "${txns[$side]}")"
    done
  fi
  wants select && printf "select-only: FUSE alone %.0f tps, ratio %s; arborfs / FUSE alone %s\n" \
    "${sel[fuse]}" "$(ratio "${sel[fuse]}" "${sel[native]}")" "$(ratio "${sel[arbor]}" "${sel[fuse]}")"
  wants init && printf "pgbench -i -s %s: FUSE alone %.1f s, ratio %s; arborfs / FUSE alone %s\n" \
    "$INIT_SCALE" "${init_s[fuse]}" "$(ratio "${init_s[fuse]}" "${init_s[native]}")" \
    "$(ratio "${init_s[arbor]}" "${init_s[fuse]}")"
fi
target_mb=$((BLOCK_CACHE_MB + 100))
wants tpcb && echo "arbor peak RSS during TPC-B: ${tpcb_rss_mb} MB (block cache ${BLOCK_CACHE_MB} MB; target <= ${target_mb} MB)"
wants init && echo "arbor peak RSS during pgbench -i -s $INIT_SCALE: ${init_rss_mb} MB"
echo "arbor peak RSS since the last reset (VmHWM): ${rss_mb} MB"
true
