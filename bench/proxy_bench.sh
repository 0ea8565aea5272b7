#!/usr/bin/env bash
# The proxy against a direct connection to the same compute and against PgBouncer in front of
# that same compute, in one run, alternating:
#   - pgbench select-only and TPC-B-like (scale 10, 4 clients): TPS of each side and the
#     ratios proxy / direct, pgbouncer / direct and proxy / pgbouncer;
#   - connection setup: pgbench -C (a new connection per transaction), average connection time;
#   - wake: a suspended endpoint to the first query answered (psql -c 'select 1'), p50 and max.
# "Direct" is the compute's private unix socket (computes have no TCP port); "proxy" is the
# endpoint's dedicated port on 127.0.0.1 with a token as the password, once in plaintext
# (sslmode=disable: after the login the compute takes the client's socket, docs/proxy.md
# "Socket handoff") and once over TLS (sslmode=require: relayed in user space, encrypted). "local" is the proxy's unix
# socket for the same endpoint ($ARBOR_HOME/proxy, docs/proxy.md "Clients on this host"), with
# the same token: the front door for clients on the daemon's host (target local / direct >= 0.80
# on TPC-B).
# "pgbouncer" is Debian's PgBouncer (package pgbouncer, scripts/install-deps) in session pooling
# mode on 127.0.0.1, in front of the same private unix socket as "direct" (unencrypted there).
# Two instances, run as the computes' user (postgres) when this script runs as root, with their
# config, log and pid file in the bench's temporary directory: one plaintext
# (client_tls_sslmode=disable), one TLS-only (client_tls_sslmode=require, a self-signed EC
# P-256 certificate made by openssl). Clients authenticate to PgBouncer with SCRAM-SHA-256
# against a userlist (mode 0600) holding the owner role's password, which PgBouncer also uses
# for its own SCRAM login to the compute; so every side proves a password once per connection.
# PgBouncer is single-threaded, as is the proxy on a 2-core machine (half the cores).
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
PGBIN=$(dirname "$PGBENCH")
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[[ -x "$PGBOUNCER" ]] || {
  echo "pgbouncer is missing: scripts/install-deps (or apt-get install pgbouncer)" >&2
  exit 1
}
# PostgreSQL and PgBouncer refuse to run as root: as root, run them as the computes' user.
if [[ $(id -u) -eq 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi

. "$(dirname "$0")/daemon.sh"
# Run by bench_cleanup (daemon.sh) on every exit, failures included, before $work is removed.
bench_cleanup_extra() {
  local pidfile pid
  for pidfile in "$work"/pgbouncer-*/pgbouncer.pid; do
    [[ -s "$pidfile" ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ -d "$work/scratch-pg/data" ]]; then
    as_pg "$PGBIN/pg_ctl" -D "$work/scratch-pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
}
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
local_dir=$(api GET status | jq -r .proxy_socket_dir)
[[ -S "$local_dir/.s.PGSQL.$port" ]] || {
  echo "cannot find the proxy's unix socket for port $port in '$local_dir'" >&2
  exit 1
}
proxy_local=(env PGHOST="$local_dir" PGPORT="$port" PGUSER=owner PGPASSWORD="$token"
  PGDATABASE=postgres)

# PgBouncer: session pooling, in front of the socket "direct" uses; ports just past the scratch
# postgres's below (port + 21), still below the ephemeral range.
bouncer_port=$((port + 22))
bouncer_tls_port=$((port + 23))
start_pgbouncer() {  # name, port, client_tls_sslmode
  local dir="$work/pgbouncer-$1"
  mkdir -p "$dir"
  local tls_files=""
  if [[ "$3" != disable ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
      -subj /CN=localhost -keyout "$dir/server.key" -out "$dir/server.crt" 2>/dev/null
    tls_files="client_tls_key_file = $dir/server.key
client_tls_cert_file = $dir/server.crt"
  fi
  (
    umask 077
    printf '"owner" "%s"\n' "$password" >"$dir/userlist.txt"
  )
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
postgres = host=$socket_dir port=$port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir = $dir
pool_mode = session
max_client_conn = 100
default_pool_size = 20
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
client_tls_sslmode = $3
$tls_files
INI
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres "$dir"; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
    echo "port $2 (for PgBouncer) is taken" >&2
    exit 1
  fi
  as_pg "$PGBOUNCER" -d -q "$dir/pgbouncer.ini" || {
    cat "$dir/pgbouncer.log" >&2
    exit 1
  }
}
start_pgbouncer plain "$bouncer_port" disable
start_pgbouncer tls "$bouncer_tls_port" require
bouncer=(env PGHOST=127.0.0.1 PGPORT="$bouncer_port" PGUSER=owner PGPASSWORD="$password"
  PGDATABASE=postgres PGSSLMODE=disable)
bouncer_tls=(env PGHOST=127.0.0.1 PGPORT="$bouncer_tls_port" PGUSER=owner PGPASSWORD="$password"
  PGDATABASE=postgres PGSSLMODE=require)
for side in bouncer bouncer_tls; do
  declare -n cmd=$side
  for _ in $(seq 1 50); do
    "${cmd[@]}" "$PSQL" -X -q -c 'select 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
  "${cmd[@]}" "$PSQL" -X -q -c 'select 1' >/dev/null || {
    echo "cannot reach the compute through PgBouncer ($side)" >&2
    exit 1
  }
  unset -n cmd
done

"${proxy[@]}" "$PGBENCH" -i -s 10 -q >/dev/null 2>&1

tps() {  # pgbench args... -> TPS
  "$@" 2>/dev/null | awk '/^tps = / {printf "%.0f", $3}'
}
conn_ms() {
  "$@" 2>/dev/null | awk '/average connection time/ {printf "%.3f", $5}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
sum() { awk '{s += $1} END {printf "%.3f", s}'; }
mean() { awk '{s += $1} END {printf "%.0f", s / NR}'; }
row_header() {  # unit
  printf '%-28s %9s %9s %9s   %12s %16s %15s\n' "($1)" direct proxy pgbouncer proxy/direct \
    pgbouncer/direct proxy/pgbouncer
}
row() {  # label, direct, proxy, pgbouncer
  printf '%-28s %9s %9s %9s   %12s %16s %15s\n' "$1" "$2" "$3" "$4" "$(ratio "$3" "$2")" \
    "$(ratio "$4" "$2")" "$(ratio "$3" "$4")"
}

run_sides() {  # label, pgbench args...
  local label=$1
  shift
  local d=() p=() b=() t=() bt=() l=()
  for round in 1 2; do
    d+=("$(tps "${direct[@]}" "$PGBENCH" "$@")")
    l+=("$(tps "${proxy_local[@]}" "$PGBENCH" "$@")")
    p+=("$(tps "${proxy[@]}" "$PGBENCH" "$@")")
    b+=("$(tps "${bouncer[@]}" "$PGBENCH" "$@")")
    t+=("$(tps "${proxy_tls[@]}" "$PGBENCH" "$@")")
    bt+=("$(tps "${bouncer_tls[@]}" "$PGBENCH" "$@")")
  done
  local ds ps bs ts bts ls  # the means of the two rounds
  ds=$(printf '%s\n' "${d[@]}" | mean)
  ls=$(printf '%s\n' "${l[@]}" | mean)
  ps=$(printf '%s\n' "${p[@]}" | mean)
  bs=$(printf '%s\n' "${b[@]}" | mean)
  ts=$(printf '%s\n' "${t[@]}" | mean)
  bts=$(printf '%s\n' "${bt[@]}" | mean)
  row "$label, plaintext" "$ds" "$ps" "$bs"
  row "$label, TLS" "$ds" "$ts" "$bts"
  local_rows+=("$(printf '%-28s %9s %9s   %12s' "$label, local socket" "$ds" "$ls" \
    "$(ratio "$ls" "$ds")")")
}
local_rows=()

echo "== proxy and PgBouncer vs direct (pgbench scale 10, 4 clients, 2 x ${SECONDS_PER_RUN} s" \
  "runs each, alternating) =="
echo "   direct: the compute's unix socket, no TLS, in both rows; target proxy/pgbouncer >= 1.2"
row_header "tps"
run_sides "select-only" -S -c 4 -j 2 -T "$SECONDS_PER_RUN"
run_sides "TPC-B-like" -c 4 -j 2 -T "$SECONDS_PER_RUN"
echo "   the proxy's unix socket (clients on this host), same rounds; target local/direct >= 0.80" \
  "on TPC-B"
printf '%-28s %9s %9s   %12s\n' "(tps)" direct local local/direct
printf '%s\n' "${local_rows[@]}"

# Connection setup, one run each. PgBouncer keeps its connection to the compute pooled
# between client connections, so its figure is a login to PgBouncer alone; the proxy and
# direct log in to the compute every time.
cd_direct=$(conn_ms "${direct[@]}" "$PGBENCH" -C -S -c 1 -T 5)
cd_local=$(conn_ms "${proxy_local[@]}" "$PGBENCH" -C -S -c 1 -T 5)
cd_proxy=$(conn_ms "${proxy[@]}" "$PGBENCH" -C -S -c 1 -T 5)
cd_bouncer=$(conn_ms "${bouncer[@]}" "$PGBENCH" -C -S -c 1 -T 5)
cd_tls=$(conn_ms "${proxy_tls[@]}" "$PGBENCH" -C -S -c 1 -T 5)
cd_bouncer_tls=$(conn_ms "${bouncer_tls[@]}" "$PGBENCH" -C -S -c 1 -T 5)
row_header "ms, pgbench -C"
row "connection setup, plaintext" "$cd_direct" "$cd_proxy" "$cd_bouncer"
row "connection setup, TLS" "$cd_direct" "$cd_tls" "$cd_bouncer_tls"
printf '%-28s %9s %9s   %12s\n' "connection setup, local" "$cd_direct" "$cd_local" \
  "$(ratio "$cd_local" "$cd_direct")"

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
scratch="$work/scratch-pg"
mkdir -p "$scratch"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$scratch"; fi
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
