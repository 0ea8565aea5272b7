#!/usr/bin/env bash
# The proxy against a direct connection to the same compute, in one run, alternating:
#   - pgbench select-only and TPC-B-like (scale 10, 4 clients): TPS ratio proxy / direct;
#   - connection setup: pgbench -C (a new connection per transaction), average connection time;
#   - wake: a suspended endpoint to the first query answered (psql -c 'select 1'), p50 and max.
# "Direct" is the compute's private unix socket (computes have no TCP port); "proxy" is the
# endpoint's dedicated port on 127.0.0.1 with a token as the password, once in plaintext
# (sslmode=disable: the reply direction is relayed in the kernel, docs/proxy.md) and once
# over TLS (sslmode=require: relayed in user space, encrypted).
#
# Usage: bench/proxy_bench.sh [path/to/arbor] [--quick]   (--quick: 5 s runs, 5 wakes)
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
SECONDS_PER_RUN=20
WAKES=15
if [[ "${2:-}" == "--quick" ]]; then
  SECONDS_PER_RUN=5
  WAKES=5
fi
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
PSQL=/usr/lib/postgresql/15/bin/psql

. "$(dirname "$0")/daemon.sh"
bench_daemon proxy $((28000 + RANDOM % 2000)) 20  # below the ephemeral range (32768+)

# The branch under test never suspends during the runs.
api POST "projects/default/branches?branch_id=bench" '{"spec":{"no_expiry":true}}' >/dev/null
api DELETE projects/default/branches/bench/endpoints/primary >/dev/null
ep=$(api POST "projects/default/branches/bench/endpoints?endpoint_id=primary" \
  '{"spec":{"no_suspension":true}}')
port=$(jq -r .status.port <<<"$ep")
uid=$(jq -r .uid <<<"$ep")
# The direct side logs in as owner too, with a role password, on the compute's own socket.
password=$(api POST projects/default/branches/bench/roles/owner:reset_password | jq -r .password)
token=$(api POST credentials \
  "{\"endpoint\":\"projects/default/branches/bench/endpoints/primary\",\"ttl\":\"3600s\"}" |
  jq -r .token)
api POST projects/default/branches/bench/endpoints/primary:start >/dev/null
socket_dir="$(cat "$ARBOR_HOME/runtime-dir")/run/$uid"
[[ -S "$socket_dir/.s.PGSQL.$port" ]] || {
  echo "cannot find the compute's socket" >&2
  exit 1
}

direct=(env PGHOST="$socket_dir" PGPORT="$port" PGUSER=owner PGPASSWORD="$password"
  PGDATABASE=postgres)
proxy=(env PGHOST=127.0.0.1 PGPORT="$port" PGUSER=owner PGPASSWORD="$token"
  PGDATABASE=postgres PGSSLMODE=disable)
proxy_tls=(env PGHOST=127.0.0.1 PGPORT="$port" PGUSER=owner PGPASSWORD="$token"
  PGDATABASE=postgres PGSSLMODE=require)
"${proxy[@]}" "$PGBENCH" -i -s 10 -q >/dev/null 2>&1

tps() {  # pgbench args... -> TPS
  "$@" 2>/dev/null | awk '/^tps = / {printf "%.0f", $3}'
}
conn_ms() {
  "$@" 2>/dev/null | awk '/average connection time/ {printf "%.3f", $5}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
sum() { awk '{s += $1} END {printf "%.3f", s}'; }

run_pair() {  # label, pgbench args...
  local label=$1
  shift
  local d=() p=() t=()
  for round in 1 2; do
    d+=("$(tps "${direct[@]}" "$PGBENCH" "$@")")
    p+=("$(tps "${proxy[@]}" "$PGBENCH" "$@")")
    t+=("$(tps "${proxy_tls[@]}" "$PGBENCH" "$@")")
  done
  local ds ps ts
  ds=$(printf '%s\n' "${d[@]}" | sum)
  ps=$(printf '%s\n' "${p[@]}" | sum)
  ts=$(printf '%s\n' "${t[@]}" | sum)
  printf '%-22s direct %7.0f tps   proxy %7.0f tps   ratio %s   proxy+TLS %7.0f tps   ratio %s\n' \
    "$label" "$(awk -v s="$ds" 'BEGIN {print s / 2}')" "$(awk -v s="$ps" 'BEGIN {print s / 2}')" \
    "$(ratio "$ps" "$ds")" "$(awk -v s="$ts" 'BEGIN {print s / 2}')" "$(ratio "$ts" "$ds")"
}

echo "== proxy vs direct (pgbench scale 10, 4 clients, ${SECONDS_PER_RUN}s runs, alternating) =="
run_pair "select-only" -S -c 4 -j 2 -T "$SECONDS_PER_RUN"
run_pair "TPC-B-like" -c 4 -j 2 -T "$SECONDS_PER_RUN"

cd_direct=$(conn_ms "${direct[@]}" "$PGBENCH" -C -S -c 1 -T 5)
cd_proxy=$(conn_ms "${proxy[@]}" "$PGBENCH" -C -S -c 1 -T 5)
cd_tls=$(conn_ms "${proxy_tls[@]}" "$PGBENCH" -C -S -c 1 -T 5)
printf '%-22s direct %7s ms      proxy %7s ms      ratio %s   proxy+TLS %7s ms    ratio %s\n' \
  "connection setup" "$cd_direct" "$cd_proxy" "$(ratio "$cd_proxy" "$cd_direct")" "$cd_tls" \
  "$(ratio "$cd_tls" "$cd_direct")"

# Wake: a branch that suspends after 1 s idle; each round waits until it is suspended.
api POST "projects/default/branches?branch_id=sleepy" '{"spec":{"no_expiry":true}}' >/dev/null
api DELETE projects/default/branches/sleepy/endpoints/primary >/dev/null
sport=$(api POST "projects/default/branches/sleepy/endpoints?endpoint_id=primary" \
  '{"spec":{"suspend_timeout_duration":"1s"}}' | jq -r .status.port)
stoken=$(api POST credentials \
  "{\"endpoint\":\"projects/default/branches/sleepy/endpoints/primary\",\"ttl\":\"3600s\"}" |
  jq -r .token)
# The baseline: the same psql against the running compute (the client's own cost).
warm=()
wakes=()
for i in $(seq 1 "$WAKES"); do
  for _ in $(seq 1 200); do
    [[ $(api GET projects/default/branches/sleepy/endpoints/primary |
      jq -r .status.current_state) == IDLE ]] && break
    sleep 0.1
  done
  t0=$(date +%s%N)
  PGPASSWORD=$stoken "$PSQL" -X -q -h 127.0.0.1 -p "$sport" -U owner -d postgres \
    -c 'select 1' >/dev/null
  t1=$(date +%s%N)
  PGPASSWORD=$stoken "$PSQL" -X -q -h 127.0.0.1 -p "$sport" -U owner -d postgres \
    -c 'select 1' >/dev/null
  t2=$(date +%s%N)
  wakes+=($(((t1 - t0) / 1000000)))
  warm+=($(((t2 - t1) / 1000000)))
done
p50() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
pmax() { printf '%s\n' "$@" | sort -n | tail -1; }
printf '%-22s running %5s ms     suspended %5s ms  (p50 of %d; max %s ms; target p50 <= 1000 ms)\n' \
  "wake to first query" "$(p50 "${warm[@]}")" "$(p50 "${wakes[@]}")" "$WAKES" \
  "$(pmax "${wakes[@]}")"

# The transport's own share, with no proxy: a scratch postgres (the same binaries) reached over
# its unix socket and over TCP loopback. Every proxied client uses TCP, so this bounds the
# ratio any TCP front door can show against the unix-socket baseline above.
PGBIN=$(dirname "$PGBENCH")
if [[ $(id -u) -eq 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
scratch="$work/scratch-pg"
mkdir -p "$scratch"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$scratch"; fi
bench_cleanup_extra() { as_pg "$PGBIN/pg_ctl" -D "$scratch/data" -m immediate stop >/dev/null 2>&1 || true; }
sport2=$((port + 21))  # just past the daemon's endpoint ports
as_pg "$PGBIN/initdb" -D "$scratch/data" -U postgres --auth=trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$scratch/data" -l "$scratch/log" -w \
  -o "-p $sport2 -k $scratch -c listen_addresses=127.0.0.1 -c shared_buffers=128MB" start >/dev/null
"$PGBENCH" -h "$scratch" -p "$sport2" -U postgres -i -s 10 -q postgres >/dev/null 2>&1
scratch_pair() {  # label, pgbench args...
  local label=$1
  shift
  local u=() t=()
  for round in 1 2; do
    u+=("$(tps "$PGBENCH" -h "$scratch" -p "$sport2" -U postgres "$@" postgres)")
    t+=("$(tps "$PGBENCH" -h 127.0.0.1 -p "$sport2" -U postgres "$@" postgres)")
  done
  local us ts
  us=$(printf '%s\n' "${u[@]}" | sum)
  ts=$(printf '%s\n' "${t[@]}" | sum)
  printf '%-22s unix    %7.0f tps   TCP   %7.0f tps   ratio %s   (no proxy: the transport alone)\n' \
    "$label" "$(awk -v s="$us" 'BEGIN {print s / 2}')" "$(awk -v s="$ts" 'BEGIN {print s / 2}')" \
    "$(ratio "$ts" "$us")"
}
scratch_pair "select-only, scratch" -S -c 4 -j 2 -T "$SECONDS_PER_RUN"
scratch_pair "TPC-B-like, scratch" -c 4 -j 2 -T "$SECONDS_PER_RUN"
