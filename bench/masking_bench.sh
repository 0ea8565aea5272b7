#!/usr/bin/env bash
# Masked branches against the same UPDATE run natively, in one run: a table `people` of
# ~MB megabytes on production, and the time to make a masked branch of it with three masked
# columns (email, name, hash), from the request to the answer (the branch's postgres starts,
# one UPDATE of the three columns in one transaction, CHECKPOINT), against the same UPDATE
# and CHECKPOINT on a native PostgreSQL 15 cluster (initdb in a temporary directory, same
# binaries, same data, same shared_buffers) on the host file system.
#
# Usage: bench/masking_bench.sh [path/to/arbor] [MB]   (MB: the table's size, default 1024)
set -euo pipefail
ARBOR=${1:-build/arbor}
MB=${2:-1024}
ARBOR=$(realpath "$ARBOR")
PGBIN=/usr/lib/postgresql/15/bin

. "$(dirname "$0")/daemon.sh"
bench_cleanup_extra() {  # the native postgres of the baseline
  if [[ -f "$work/native/postmaster.pid" ]]; then
    as_pg "$PGBIN/pg_ctl" -D "$work/native" -m immediate stop >/dev/null 2>&1 || true
  fi
}
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
now_us() { date +%s%6N; }

port_base=$((25500 + RANDOM % 1500))
bench_daemon masking "$port_base" 21
PROD=$(bench_conn production)

mkdir -p "$work/native" "$work/sock"
touch "$work/native.log"
chown postgres: "$work/native" "$work/sock" "$work/native.log" 2>/dev/null || true
as_pg "$PGBIN/initdb" -D "$work/native" -A trust -U postgres >/dev/null
native_port=$((port_base + 100))
as_pg "$PGBIN/pg_ctl" -D "$work/native" -w -l "$work/native.log" \
  -o "-p $native_port -k $work/sock -c listen_addresses='' -c shared_buffers=128MB" \
  start >/dev/null
NATIVE="host=$work/sock port=$native_port user=postgres dbname=postgres"

# ~MB megabytes of ~200-byte rows: id, email, name, ssn and some padding.
rows=$((MB * 1024 * 1024 / 200))
load="create table people (id int primary key, email text not null, name text, ssn text,
        pad text);
      insert into people select g, 'person' || g || '@corp.example', 'Real Name ' || g,
        lpad((g % 1000)::text, 3, '0') || '-12-' || lpad((g % 10000)::text, 4, '0'),
        repeat(md5(g::text), 3) from generate_series(1, $rows) g;"
echo "== loading people (~$MB MB, $rows rows) on production and on the native cluster =="
psql -X -q "$PROD" -c "$load"
psql -X -q "$NATIVE" -c "$load" -c checkpoint  # owner may not CHECKPOINT; the fork does
psql -X -tA "$PROD" -c "select 'production: ' || pg_size_pretty(pg_total_relation_size('people'))"
psql -X -tA "$NATIVE" -c "select 'native:     ' || pg_size_pretty(pg_total_relation_size('people'))"

echo "== arbor: a masked branch (email, name, hash) =="
t0=$(now_us)
answer=$(api POST "projects/default/branches?branch_id=masked" '{"spec": {"ttl": "3600s",
  "masking": [{"column": "public.people.email", "with": "email"},
              {"column": "public.people.name", "with": "name"},
              {"column": "public.people.ssn", "with": "hash"}]}}')
t1=$(now_us)
jq -e .status.masked_time <<<"$answer" >/dev/null || { echo "no masked branch: $answer" >&2; exit 1; }
arbor_ms=$(((t1 - t0) / 1000))
raw=$(psql -X -tA "$(bench_conn masked)" -c "select count(*) from people where email like '%corp.example'")
[[ "$raw" == 0 ]] || { echo "the masked branch shows $raw raw emails" >&2; exit 1; }
echo "arbor: $arbor_ms ms (request to answer, start and CHECKPOINT included)"

echo "== native: the same UPDATE and CHECKPOINT =="
# The expressions the daemon runs (src/control/masking.cc), with a key of the same length.
key=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
digest="sha256(convert_to('$key'::text || name::text, 'UTF8'))"
first="'Ada','Alan','Alice','Ana','Ben','Carla','Chen','Dana','Eli','Emma','Farah','Grace','Hugo','Ines','Ivan','Jon','Kai','Lena','Liam','Maya','Nina','Omar','Paula','Quinn','Rosa','Sam','Tara','Umar','Vera','Wen','Yara','Zoe'"
last="'Adams','Berg','Costa','Diaz','Evans','Fischer','Garcia','Hansen','Ito','Jensen','Kim','Lopez','Moreau','Novak','Okafor','Park','Quinn','Rossi','Silva','Tanaka','Ueda','Varga','Wagner','Xu','Young','Zhang','Morgan','Nilsson','Patel','Reyes','Schmidt','Walsh'"
update="begin;
  update people set
    email = 'u' || left(encode(sha256(convert_to('$key'::text || email::text, 'UTF8')), 'hex'), 20) || '@example.com',
    name = (array[$first])[1 + get_byte($digest, 0) % 32] || ' ' || (array[$last])[1 + get_byte($digest, 1) % 32] || '-' || substr(encode($digest, 'hex'), 5, 6),
    ssn = encode(sha256(convert_to('$key'::text || ssn::text, 'UTF8')), 'hex');
  commit;
  checkpoint;"
t0=$(now_us)
psql -X -q "$NATIVE" -c "$update"
t1=$(now_us)
native_ms=$(((t1 - t0) / 1000))
echo "native: $native_ms ms (UPDATE and CHECKPOINT)"

echo "== result =="
printf 'table ~%d MB (%d rows), 3 masked columns: arbor %d ms, native UPDATE %d ms: ratio %.2f\n' \
  "$MB" "$rows" "$arbor_ms" "$native_ms" "$(echo "$arbor_ms / $native_ms" | bc -l)"
