#!/usr/bin/env bash
# Read replicas: replay lag under write load, and what a replica adds to read throughput.
# Same run, side by side: a native PostgreSQL 15 primary with a native streaming standby
# (pg_basebackup -R, the same host, unix sockets) against an Arbor branch with one read
# replica (ENDPOINT_TYPE_READ_ONLY). Both sides run the same pgbench TPC-B on the primary
# while PostgreSQL's own replay_lag (pg_stat_replication on the primary; the API's
# status.replay_lag for Arbor) is sampled every 200 ms; then pgbench select-only on the
# primary alone, and on the primary and the replica at once.
#
# Usage: bench/replica_bench.sh [path/to/arbor] [--quick]
set -euo pipefail
ARBOR=${1:-build/arbor}
QUICK=${2:-}
ARBOR=$(realpath "$ARBOR")
SCALE=10
SECS=20
[[ "$QUICK" == "--quick" ]] && SECS=5
PGBIN=/usr/lib/postgresql/15/bin
USER_PG=postgres
[[ $(id -u) -ne 0 ]] && USER_PG=$(id -un)
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

. "$(dirname "$0")/daemon.sh"
port_base=$((27500 + RANDOM % 1500))
native_port=$((port_base + 40))
bench_cleanup_extra() {
  as_pg "$PGBIN/pg_ctl" -D "$work/native/standby" -m immediate stop >/dev/null 2>&1 || true
  as_pg "$PGBIN/pg_ctl" -D "$work/native/primary" -m immediate stop >/dev/null 2>&1 || true
}
bench_daemon replica "$port_base" 8

p99() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) {print "nan"; exit} i = int(NR * 0.99); if (i < 1) i = 1; print a[i]}'; }
mean() { awk '{s+=$1} END {if (NR == 0) print "nan"; else printf "%.4f\n", s/NR}'; }
tps() { grep -E '^tps' "$1" | head -1 | awk '{print $3}'; }

# ---- native: primary + streaming standby ----
mkdir -p "$work/native"
chown "$USER_PG" "$work/native" 2>/dev/null || true
as_pg "$PGBIN/initdb" -D "$work/native/primary" -A trust -U postgres >/dev/null
cat >>"$work/native/primary/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$work/native'
port = $native_port
wal_compression = lz4
CONF
as_pg "$PGBIN/pg_ctl" -D "$work/native/primary" -l "$work/native/primary.log" -w start >/dev/null
NATIVE="host=$work/native port=$native_port user=postgres dbname=postgres"
as_pg "$PGBIN/pg_basebackup" -h "$work/native" -p "$native_port" -U postgres -D "$work/native/standby" -R -X stream >/dev/null
cat >>"$work/native/standby/postgresql.conf" <<CONF
port = $((native_port + 1))
hot_standby = on
CONF
as_pg "$PGBIN/pg_ctl" -D "$work/native/standby" -l "$work/native/standby.log" -w start >/dev/null
NATIVE_STANDBY="host=$work/native port=$((native_port + 1)) user=postgres dbname=postgres"

# ---- Arbor: production and one read replica ----
PROD=$(bench_conn production)
api POST "projects/default/branches/production/endpoints?endpoint_id=reader" \
  '{"spec": {"endpoint_type": "ENDPOINT_TYPE_READ_ONLY", "no_suspension": true}}' >/dev/null
reader=$(api POST "projects/default/branches/production/endpoints/reader:start")
rtoken=$(api POST credentials "{\"endpoint\": $(jq .name <<<"$reader"), \"ttl\": \"3600s\"}" | jq -r .token)
READER=$(jq -r .status.connection_string <<<"$reader" | sed "s|://owner@|://owner:$rtoken@|")

echo "== loading pgbench scale $SCALE on both primaries =="
as_pg pgbench -q -i -s "$SCALE" "$NATIVE" >"$work/native-init.log" 2>&1
pgbench -q -i -s "$SCALE" "$PROD" >"$work/arbor-init.log" 2>&1
# Both replicas catch up with the load before the measured runs.
for i in $(seq 1 600); do
  n=$(psql -X -tA "$READER" -c "select count(*) from pgbench_branches" 2>/dev/null || echo 0)
  m=$(as_pg psql -X -tA "$NATIVE_STANDBY" -c "select count(*) from pgbench_branches" 2>/dev/null || echo 0)
  [[ "$n" == "$SCALE" && "$m" == "$SCALE" ]] && break
  sleep 0.2
done

sample_native() {
  while [[ -e "$work/sampling" ]]; do
    as_pg psql -X -tA "$NATIVE" -c \
      "select coalesce(extract(epoch from replay_lag), 0) from pg_stat_replication" 2>/dev/null || true
    sleep 0.2
  done
}
sample_arbor() {
  while [[ -e "$work/sampling" ]]; do
    api GET "projects/default/branches/production/endpoints/reader" | jq -r '.status.replay_lag // empty' | tr -d s
    sleep 0.2
  done
}

echo "== replay lag under pgbench TPC-B (4 clients, ${SECS}s) =="
touch "$work/sampling"
sample_native >"$work/native-lag" &
sampler=$!
as_pg pgbench -n -c 4 -j 2 -T "$SECS" "$NATIVE" >"$work/native-tpcb.log" 2>&1
rm -f "$work/sampling"; wait $sampler
touch "$work/sampling"
sample_arbor >"$work/arbor-lag" &
sampler=$!
pgbench -n -c 4 -j 2 -T "$SECS" "$PROD" >"$work/arbor-tpcb.log" 2>&1
rm -f "$work/sampling"; wait $sampler
n_p99=$(p99 <"$work/native-lag"); a_p99=$(p99 <"$work/arbor-lag")
n_mean=$(mean <"$work/native-lag"); a_mean=$(mean <"$work/arbor-lag")
echo "native standby: TPC-B $(tps "$work/native-tpcb.log") tps, replay lag mean ${n_mean}s p99 ${n_p99}s ($(wc -l <"$work/native-lag") samples)"
echo "arbor replica:  TPC-B $(tps "$work/arbor-tpcb.log") tps, replay lag mean ${a_mean}s p99 ${a_p99}s ($(wc -l <"$work/arbor-lag") samples)"

echo "== select-only (${SECS}s): the primary alone, then the primary and its replica at once =="
as_pg pgbench -n -S -c 4 -j 2 -T "$SECS" "$NATIVE" >"$work/n-alone.log" 2>&1
as_pg pgbench -n -S -c 2 -j 1 -T "$SECS" "$NATIVE" >"$work/n-p.log" 2>&1 &
as_pg pgbench -n -S -c 2 -j 1 -T "$SECS" "$NATIVE_STANDBY" >"$work/n-r.log" 2>&1
wait
pgbench -n -S -c 4 -j 2 -T "$SECS" "$PROD" >"$work/a-alone.log" 2>&1
pgbench -n -S -c 2 -j 1 -T "$SECS" "$PROD" >"$work/a-p.log" 2>&1 &
pgbench -n -S -c 2 -j 1 -T "$SECS" "$READER" >"$work/a-r.log" 2>&1
wait
n_alone=$(tps "$work/n-alone.log"); n_both=$(awk "BEGIN {print $(tps "$work/n-p.log") + $(tps "$work/n-r.log")}")
a_alone=$(tps "$work/a-alone.log"); a_both=$(awk "BEGIN {print $(tps "$work/a-p.log") + $(tps "$work/a-r.log")}")
echo "native: alone $n_alone tps, primary + standby $n_both tps"
echo "arbor:  alone $a_alone tps, primary + replica $a_both tps"

echo "== summary =="
awk -v a="$a_p99" -v n="$n_p99" 'BEGIN {printf "replay lag p99: arbor %.3fs, native standby %.3fs (target: arbor <= 1 s)\n", a, n}'
awk -v a="$a_both" -v b="$a_alone" 'BEGIN {printf "arbor select-only, primary + replica / primary alone: %.2f\n", a / b}'
awk -v a="$n_both" -v b="$n_alone" 'BEGIN {printf "native select-only, primary + standby / primary alone: %.2f\n", a / b}'
awk -v a="$a_both" -v n="$n_both" 'BEGIN {printf "primary + replica, arbor / native: %.2f\n", a / n}'
