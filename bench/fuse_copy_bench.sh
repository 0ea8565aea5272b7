#!/usr/bin/env bash
# Writing into FUSE's page cache, side by side: the host file system (a directory of it, e.g.
# ext4), FUSE alone with the passthrough's defaults (arborfs's mount options), and FUSE alone
# with other settings (by default the FUSE mount's dirty-page limits lifted). Sides alternate
# within each round (the first side rotates), medians are printed at the end as ratios.
#
# Each figure is the time of the writes plus, on FUSE, the time to hand what the kernel still
# holds dirty to the daemon (`sync -f` of the mount): at that point both sides have the data in
# the host's page cache, so the comparison is fair whatever the FUSE side defers. Also printed:
# the daemon's CPU and the bytes and WRITE requests that reached it. With the defaults it takes
# 5–10 minutes on a 2-core VM. On Linux 6.18 no setting tried made the load reliably faster:
# docs/fs-caching.md, "Why the load is slower on FUSE".
#
# Usage: bench/fuse_copy_bench.sh [BUILD_DIR]   (needs BUILD_DIR/bench/fuse_passthrough; root
#        for the /sys/class/bdi settings and for PostgreSQL, which then runs as `postgres`)
# Environment:
#   VARIANTS="default strict_limit=0,max_ratio=100"  the FUSE sides: each a comma list of
#            key=value, "default" for none. Keys: strict_limit, max_ratio, min_ratio, max_bytes
#            (written to the mount's /sys/class/bdi/<dev>/KEY; the bdi goes away with the mount)
#            and max_write (BYTES: the passthrough's --max-write, which also sets max_pages)
#   TESTS="dd overwrite cp init"  dd: a new MB file in 8 KiB writes; overwrite: the same file
#            again in place; cp: cp of an MB file; init: `pgbench -i -s INIT_SCALE`
#   MB=500  ROUNDS=3  INIT_SCALE=50
set -euo pipefail
cd "$(dirname "$0")/.."

build=$(readlink -f "${1:-build}")
passthrough=$build/bench/fuse_passthrough
[[ -x $passthrough ]] || { echo "no $passthrough (build the fuse_passthrough target)" >&2; exit 1; }
VARIANTS=${VARIANTS:-default strict_limit=0,max_ratio=100}
TESTS=${TESTS:-dd overwrite cp init}
MB=${MB:-500}
ROUNDS=${ROUNDS:-3}
INIT_SCALE=${INIT_SCALE:-50}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
wants() { [[ " $TESTS " == *" $1 "* ]]; }
if wants init && [[ ! -x $PGBIN/pgbench ]]; then
  echo "no $PGBIN/pgbench: leaving out init" >&2
  TESTS=${TESTS//init/}
fi

if [[ $(id -u) -eq 0 ]]; then
  pguser=postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  pguser=$(id -un)
  as_pg() { "$@"; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/arbor-fusecopy-XXXXXX")
chmod 755 "$work"
sides=(host)
declare -A dir pid dev flags
dir[host]=$work/host
mkdir -p "$work/host"
cleanup() {
  set +e
  for s in "${sides[@]}"; do
    [[ -f ${dir[$s]}/pg/postmaster.pid ]] &&
      as_pg "$PGBIN/pg_ctl" -D "${dir[$s]}/pg" -m immediate stop >/dev/null 2>&1
  done
  for s in "${sides[@]}"; do
    [[ -n ${pid[$s]:-} ]] && kill -TERM "${pid[$s]}" 2>/dev/null && wait "${pid[$s]}" 2>/dev/null
  done
  # A mount its server could not remove (still busy) must not take rm -rf into it.
  for s in "${sides[@]}"; do
    mountpoint -q "${dir[$s]}" 2>/dev/null && umount -l "${dir[$s]}" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

# ---- the FUSE sides: one passthrough mount per variant ----
i=0
for v in $VARIANTS; do
  i=$((i + 1))
  s="fuse[$v]"
  sides+=("$s")
  m=$work/fuse$i
  dir[$s]=$m/mnt
  mkdir -p "$m/src" "$m/mnt"
  args=(--write-stats)
  bdi=()
  if [[ $v != default ]]; then
    IFS=, read -ra kvs <<<"$v"
    for kv in "${kvs[@]}"; do
      case ${kv%%=*} in
        max_write) args+=(--max-write "${kv#*=}") ;;
        strict_limit | max_ratio | min_ratio | max_bytes) bdi+=("$kv") ;;
        *) echo "unknown setting ${kv%%=*} in VARIANTS" >&2; exit 2 ;;
      esac
    done
  fi
  "$passthrough" "${args[@]}" "$m/src" "$m/mnt" >"$m/out" 2>"$m/log" &
  pid[$s]=$!
  for _ in $(seq 100); do grep -q '^mounted' "$m/out" && break; sleep 0.1; done
  grep -q '^mounted' "$m/out" || { cat "$m/log"; exit 1; }
  dev[$s]=$(mountpoint -d "$m/mnt")
  for kv in "${bdi[@]}"; do
    echo "${kv#*=}" >"/sys/class/bdi/${dev[$s]}/${kv%%=*}"
  done
  b=/sys/class/bdi/${dev[$s]}
  flags[$s]="bdi ${dev[$s]}: strict_limit $(cat "$b/strict_limit") max_ratio $(cat "$b/max_ratio") max_bytes $(cat "$b/max_bytes" 2>/dev/null || echo ?)"
done

echo "host: $(stat -f -c %T "$work") under $work; kernel $(uname -r); vm.dirty_ratio $(cat /proc/sys/vm/dirty_ratio), dirty_background_ratio $(cat /proc/sys/vm/dirty_background_ratio)"
for s in "${sides[@]:1}"; do echo "$s: ${flags[$s]}"; done

# The daemon's CPU seconds so far (all its threads), and the WRITE requests and bytes it got.
daemon_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/${pid[$1]}/stat"
}
daemon_writes() {  # prints "requests bytes"
  local log n
  log=$(dirname "${dir[$1]}")/log
  n=$(grep -c 'WRITE requests' "$log" || true)
  kill -USR1 "${pid[$1]}"
  for _ in $(seq 50); do
    (($(grep -c 'WRITE requests' "$log" || true) > n)) && break
    sleep 0.02
  done
  grep 'WRITE requests' "$log" | tail -1 | awk '{ print $2, $5 }'
}

# ---- PostgreSQL on every side ----
if wants init; then
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  declare -A port
  for s in "${sides[@]}"; do
    d=${dir[$s]}
    mkdir -p "$d/pg" "$d/sock"
    chown "$pguser" "$d" "$d/pg" "$d/sock"
    chmod 700 "$d/pg"
    as_pg "$PGBIN/initdb" -D "$d/pg" -U postgres --auth-local=trust -E UTF8 --locale=C.UTF-8 \
      --no-instructions >"$work/initdb.log" 2>&1
    port[$s]=$(free_port)
    as_pg "$PGBIN/pg_ctl" -D "$d/pg" -l "$d/pg.log" -w -t 120 \
      -o "-p ${port[$s]} -k $d/sock -c listen_addresses='' -c shared_buffers=128MB -c max_connections=20" \
      start >/dev/null
  done
fi
if wants cp; then
  dd if=/dev/urandom of="$work/source" bs=1M count="$MB" status=none
fi

now() { date +%s.%N; }
declare -A results  # "test side" -> space-separated seconds, one per round

# Runs one measured test on side $2: the command, then (FUSE) sync -f of the mount.
measure() {
  local test=$1 s=$2 d=${dir[$2]}
  sync
  sleep 0.5
  local c0=0 w0="0 0" c1=0 w1="0 0" t0 t1 t2
  if [[ $s != host ]]; then c0=$(daemon_cpu "$s"); w0=$(daemon_writes "$s"); fi
  t0=$(now)
  case $test in
    dd) dd if=/dev/zero of="$d/f" bs=8k count=$((MB * 128)) status=none ;;
    overwrite) dd if=/dev/zero of="$d/f" bs=8k count=$((MB * 128)) conv=notrunc status=none ;;
    cp) cp "$work/source" "$d/g" ;;
    init) as_pg "$PGBIN/pgbench" -h "$d/sock" -p "${port[$s]}" -U postgres -i -s "$INIT_SCALE" -q \
      postgres >"$work/init.log" 2>&1 ;;
  esac
  t1=$(now)
  if [[ $s != host ]]; then sync -f "$d/"; fi
  t2=$(now)
  if [[ $s != host ]]; then c1=$(daemon_cpu "$s"); w1=$(daemon_writes "$s"); fi
  local total
  total=$(echo "$t2 - $t0" | bc -l)
  results["$test $s"]+="$total "
  read -r n0 b0 <<<"$w0"
  read -r n1 b1 <<<"$w1"
  if [[ $s == host ]]; then
    printf "%-9s %-38s %6.2f s\n" "$test" "$s" "$total"
  else
    printf "%-9s %-38s %6.2f s + flush %5.2f s = %6.2f s; daemon: %5.2f s CPU, %5d MiB in %6d WRITEs\n" \
      "$test" "$s" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$t2 - $t1" | bc -l)" "$total" \
      "$(echo "$c1 - $c0" | bc -l)" $(((b1 - b0) >> 20)) $((n1 - n0))
  fi
}

for round in $(seq "$ROUNDS"); do
  echo "-- round $round"
  n=${#sides[@]}
  order=()
  for k in $(seq 0 $((n - 1))); do order+=("${sides[$(((k + round - 1) % n))]}"); done
  for test in dd overwrite cp init; do
    wants "$test" || continue
    for s in "${order[@]}"; do
      d=${dir[$s]}
      [[ $test == overwrite && ! -f $d/f ]] && dd if=/dev/zero of="$d/f" bs=8k count=$((MB * 128)) status=none
      measure "$test" "$s"
      case $test in
        dd) wants overwrite || rm -f "$d/f" ;;
        overwrite) rm -f "$d/f" ;;
        cp) rm -f "$d/g" ;;
      esac
    done
  done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "== medians of $ROUNDS rounds (writes + flush to the daemon), ratio to the host file system; lower is better =="
for test in dd overwrite cp init; do
  wants "$test" || continue
  base=$(median "${results["$test host"]}")
  fdef=""
  line=$(printf "%-9s host %.2f s" "$test" "$base")
  for s in "${sides[@]:1}"; do
    m=$(median "${results["$test $s"]}")
    line+=$(printf "; %s %.2f s (%.2fx)" "$s" "$m" "$(echo "$m / $base" | bc -l)")
    if [[ -z $fdef ]]; then
      fdef=$m
    else
      line+=$(printf " = %.2f of %s" "$(echo "$m / $fdef" | bc -l)" "${sides[1]}")
    fi
  done
  echo "$line"
done
