#!/usr/bin/env bash
# Control-plane latency: create-branch and list-branches when the project holds 10 and 1000
# branches, through the real API (curl's own timing, so the HTTP round trip is included).
# The baseline in the same run is GET status, the API's cheapest call.
#
# Usage: bench/api_bench.sh [path/to/arbor] [--quick]   (--quick: 100 instead of 1000)
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
MANY=1000
[[ "${2:-}" == "--quick" ]] && MANY=100

. "$(dirname "$0")/daemon.sh"
bench_daemon api $((26000 + RANDOM % 2000)) $((MANY + 51))  # below the ephemeral range
call() {  # METHOD PATH [BODY] -> seconds
  local body=()
  [[ "$1" == POST ]] && body=(--data "${3:-}")
  curl -s -o /dev/null -w '%{time_total}\n' -X "$1" -H "Authorization: Bearer $ADMIN" \
    "${body[@]}" "$API/$2"
}
median_ms() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", 1000 * ((NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

created=0
grow_to() {
  while ((created < $1)); do
    call POST "projects/default/branches?branch_id=fill-$created" '{"spec":{"no_expiry":true}}' >/dev/null
    created=$((created + 1))
  done
}
measure() {  # N
  local n=$1
  grow_to "$n"
  local base create list
  base=$(for i in $(seq 1 20); do call GET status; done | median_ms)
  create=$(for i in $(seq 1 20); do
    call POST "projects/default/branches?branch_id=m$n-$i" '{"spec":{"no_expiry":true}}'
  done | median_ms)
  for i in $(seq 1 20); do call DELETE "projects/default/branches/m$n-$i" >/dev/null; done
  list=$(for i in $(seq 1 10); do call GET projects/default/branches; done | median_ms)
  printf '%5d branches  GET status %6s ms  create-branch %6s ms  list-branches %7s ms\n' \
    "$n" "$base" "$create" "$list"
}
echo "== API latency (medians; targets: create <= 10 ms, list at 1000 <= 50 ms) =="
measure 10
measure "$MANY"
