#!/usr/bin/env bash
# Makes a small real PostgreSQL data directory for `storage_bench --pgdata`: initdb, pgbench
# at scale 16 (about 260 MB), 20 s of pgbench traffic so pages carry updates, a checkpoint,
# and a clean stop. Prints the data directory's path.
# Usage: bench/storage_pgdata.sh DIR   (DIR is created; it must not exist)
set -euo pipefail
dir=${1:?usage: $0 DIR}
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
if [[ -e $dir ]]; then
  echo "$dir exists; give a new directory" >&2
  exit 2
fi
mkdir -p "$dir/sock"
# Postgres refuses to run as root: run it as the postgres user then.
as_pg=()
if [[ $(id -u) == 0 ]]; then
  chown -R postgres:postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
pg() { "${as_pg[@]}" "$@"; }
pg "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
opts="-k $dir/sock -c listen_addresses='' -p 5499"
pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -o "$opts" -w start >/dev/null
trap 'pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true' EXIT
pg "$bin/pgbench" -h "$dir/sock" -p 5499 -q -i -s 16 postgres >/dev/null 2>&1
pg "$bin/pgbench" -h "$dir/sock" -p 5499 -T 20 -c 2 postgres >/dev/null 2>&1
pg "$bin/psql" -h "$dir/sock" -p 5499 -qc checkpoint postgres
echo "$dir/data"
