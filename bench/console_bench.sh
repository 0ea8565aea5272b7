#!/usr/bin/env bash
# The console's first paint with 1,000 branches in Debian's Chromium, against the time the
# same page takes to fetch the data it draws (bench/console_paint.mjs). Issue target: the
# first paint within 1 s on this machine.
#
# Usage: bench/console_bench.sh [path/to/arbor] [BRANCHES]   (default 1000; the console's
# files must be built beside the binary: make console)
set -euo pipefail
ARBOR=$(realpath "${1:-build/arbor}")
MANY=${2:-1000}
here=$(cd "$(dirname "$0")" && pwd)
[[ -f "$(dirname "$ARBOR")/console/index.html" ]] || {
  echo "console_bench: no console beside $ARBOR (run make console)" >&2
  exit 1
}

. "$here/daemon.sh"
bench_daemon console $((24000 + RANDOM % 1000)) $((MANY + 20))
for ((i = 0; i < MANY; i++)); do
  api POST "projects/default/branches?branch_id=b$i" '{"spec":{"no_expiry":true}}' >/dev/null
done
ARBOR_CONSOLE_URL=$(cat "$ARBOR_HOME/api") ARBOR_ADMIN_TOKEN=$ADMIN node "$here/console_paint.mjs"
