# Sourced by the benchmarks that need a daemon: a throwaway Arbor in a temporary ARBOR_HOME,
# stopped and removed when the script exits (also on failure), and `api` to call it.
#
#   ARBOR=path/to/arbor; . bench/daemon.sh
#   bench_daemon NAME PORT ENDPOINTS [ARG...]  # proxy on PORT, endpoints on the ENDPOINTS ports
#                                               # after it; ARGs go to `arbor up`
#
# Sets work (the temporary directory), ARBOR_HOME, API (.../api/2.0/postgres) and ADMIN (the
# admin token). A script with more to clean up defines bench_cleanup_extra, run first.
# BENCH_KEEP_LOG=FILE keeps, after the rest is removed, a copy of each daemon's log (it says
# where a slow create or reset spent its time) as FILE.NAME, and its computes' PostgreSQL logs
# (each CHECKPOINT's write and sync times) in the directory FILE.NAME.computes.

bench_daemon() {
  local name=$1 port=$2 endpoints=$3
  shift 3
  bench_name=$name
  work=$(mktemp -d "/var/tmp/arbor-$name-bench-XXXXXX")
  chmod 711 "$work"  # the compute user reaches the mounts under the data directory
  export ARBOR_HOME="$work/home"
  trap bench_cleanup EXIT
  "$ARBOR" up --data-dir "$ARBOR_HOME" --api-listen 127.0.0.1:0 \
    --proxy-listen "127.0.0.1:$port" --endpoint-ports "$((port + 1))-$((port + endpoints))" "$@" \
    >"$work/up.out"
  API=$(cat "$ARBOR_HOME/api")/api/2.0/postgres
  ADMIN=$(cat "$ARBOR_HOME/admin-token")
}

bench_cleanup() {
  if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra; fi
  local runtime
  runtime=$(cat "$ARBOR_HOME/runtime-dir" 2>/dev/null || true)
  "$ARBOR" down --data-dir "$ARBOR_HOME" >/dev/null 2>&1 || true
  # (Not again from the exit trap, once the daemon is gone.)
  if [[ -n ${BENCH_KEEP_LOG:-} && -e "$ARBOR_HOME/arbor.log" ]]; then
    cp "$ARBOR_HOME/arbor.log" "$BENCH_KEEP_LOG.$bench_name" 2>/dev/null || true
    rm -rf "$BENCH_KEEP_LOG.$bench_name.computes"
    cp -r "$ARBOR_HOME/logs" "$BENCH_KEEP_LOG.$bench_name.computes" 2>/dev/null || true
  fi
  for dir in "$work" ${runtime:+"$runtime"}; do
    grep " $dir" /proc/mounts | awk '{print $2}' | xargs -r -n1 umount -l 2>/dev/null || true
  done
  rm -rf "$work"
}

# The URL of BRANCH's primary endpoint (started first) with a fresh token for owner.
bench_conn() {
  local ep token
  ep=$(api POST "projects/default/branches/$1/endpoints/primary:start")
  token=$(api POST credentials "{\"endpoint\": $(jq .name <<<"$ep"), \"ttl\": \"3600s\"}" |
    jq -r .token)
  jq -r .status.connection_string <<<"$ep" | sed "s|://owner@|://owner:$token@|"
}

api() {  # METHOD PATH [BODY] -> the answer's body
  local body=()
  [[ "$1" == POST || "$1" == PATCH ]] && body=(--data "${3:-}")
  curl -sS -X "$1" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    "${body[@]}" "$API/$2"
}

# Where the host's CPU goes, for the benchmarks that split a window's CPU between production
# and the churn around it. One sample: "<ms> <host busy s> <daemon s> <computes s> <UID's s>",
# the CPU seconds used since boot by the whole host (all online CPUs; idle, iowait and the
# steal of a shared VM excluded), by the daemon's own process (not its computes), by all the
# daemon's computes (their parent control group) and by the compute of endpoint UID (its
# group). "-" where there is no control group (limits off).
cpu_sample() {  # UID
  local hz pid busy daemon computes=- own=- c rel d
  hz=$(getconf CLK_TCK)
  pid=$(api GET status | jq -r .pid)
  busy=$(awk -v hz="$hz" '$1 == "cpu" {printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat)
  # utime and stime, after the parenthesized name (which may hold spaces).
  daemon=$(sed 's/.*) //' "/proc/$pid/stat" | awk -v hz="$hz" '{printf "%.2f", ($12 + $13) / hz}')
  # The computes' groups are under the daemon's own (/proc/PID/cgroup): cgroup v1's cpuacct
  # hierarchy, or v2's unified one.
  while IFS=: read -r _ c rel; do
    [[ $rel == / ]] && rel=
    if [[ ",$c," == *,cpuacct,* ]]; then
      for d in /sys/fs/cgroup/cpuacct"$rel"/arbor-*/"$1" /sys/fs/cgroup/cpu,cpuacct"$rel"/arbor-*/"$1"; do
        [[ -e "$d/cpuacct.usage" ]] || continue
        computes=$(awk '{printf "%.2f", $1 / 1e9}' "$(dirname "$d")/cpuacct.usage")
        own=$(awk '{printf "%.2f", $1 / 1e9}' "$d/cpuacct.usage")
      done
    elif [[ -z $c ]]; then
      for d in /sys/fs/cgroup"$rel"/arbor-*/"$1" /sys/fs/cgroup/unified"$rel"/arbor-*/"$1"; do
        [[ -e "$d/cpu.stat" ]] || continue
        computes=$(awk '$1 == "usage_usec" {printf "%.2f", $2 / 1e6}' "$(dirname "$d")/cpu.stat")
        own=$(awk '$1 == "usage_usec" {printf "%.2f", $2 / 1e6}' "$d/cpu.stat")
      done
    fi
  done <"/proc/$pid/cgroup"
  echo "$(date +%s%3N) $busy $daemon $computes $own"
}

# The online CPUs /proc/stat counts (nproc may see fewer, under an affinity mask).
host_cpus() { grep -c '^cpu[0-9]' /proc/stat; }

# The shares of the host's CPU between two samples (cpu_sample's lines), as
# "<busy> <daemon> <computes> <UID's>" fractions of all CPUs over the window ("-" unknown).
cpu_shares() {  # BEFORE AFTER
  awk -v n="$(host_cpus)" -v a="$1" -v b="$2" 'BEGIN {
    split(a, x, " "); split(b, y, " "); s = (y[1] - x[1]) / 1000 * n
    for (i = 2; i <= 5; i++) {
      v = (x[i] == "-" || y[i] == "-") ? "-" : sprintf("%.3f", (y[i] - x[i]) / s)
      printf "%s%s", v, (i < 5 ? " " : "\n")
    }
  }'
}
