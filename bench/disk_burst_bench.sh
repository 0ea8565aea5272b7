#!/usr/bin/env bash
# What a burst of bulk writes does to a commit's fsync on the disk that holds the store, with
# no Arbor in the way: the floor under production's latency while a branch's create
# checkpoints it (docs/compute-sizes.md, "The create's checkpoint").
#
# One thread plays a committer: it overwrites 8 KiB and fdatasyncs, again and again (as a
# PostgreSQL commit through arborfs ends in one fdatasync of the store's log). Meanwhile, one
# after the other, BURST_MB of bulk data are written to another file of the same directory:
#   unpaced  as fast as the page cache takes them, then one fdatasync (a checkpoint's pages
#            reaching the store in a burst);
#   paced N  at N MB/s, with an fdatasync every 4 MiB (the same bytes, metered);
# each burst between quiet spells. Prints, for the quiet spells and for each burst, the
# committer's fdatasync latency p50, p99 and max and the p99 as a ratio of quiet's.
#
# Usage: bench/disk_burst_bench.sh [DIR]   (DIR: where the store lives; default /var/tmp)
#   BURST_MB=100   bytes of each burst
#   RATES="400 100 40"  the paced rates, MB/s
set -euo pipefail
DIR=${1:-/var/tmp}
BURST_MB=${BURST_MB:-100}
RATES=${RATES:-400 100 40}
work=$(mktemp -d "$DIR/arbor-disk-burst-XXXXXX")
trap 'rm -rf "$work"' EXIT

python3 - "$work" "$BURST_MB" $RATES <<'EOF'
import os, sys, threading, time

work, burst_mb, rates = sys.argv[1], int(sys.argv[2]), [int(r) for r in sys.argv[3:]]
commit = os.open(f"{work}/commit", os.O_WRONLY | os.O_CREAT, 0o600)
os.pwrite(commit, b"\0" * (64 * 8192), 0)
os.fsync(commit)
samples = []  # (start, seconds)
stop = threading.Event()

def committer():
    i = 0
    page = b"x" * 8192
    while not stop.is_set():
        t = time.monotonic()
        os.pwrite(commit, page, (i % 64) * 8192)
        os.fdatasync(commit)
        samples.append((t, time.monotonic() - t))
        i += 1

def burst(rate):
    fd = os.open(f"{work}/bulk", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    mb = b"y" * (1 << 20)
    t0 = time.monotonic()
    for k in range(burst_mb):
        os.pwrite(fd, mb, k << 20)
        if rate:
            if k % 4 == 3:
                os.fdatasync(fd)
            time.sleep(max(0.0, t0 + (k + 1) / rate - time.monotonic()))
    os.fdatasync(fd)
    os.close(fd)
    os.unlink(f"{work}/bulk")

def stats(lo, hi):
    v = sorted(s for t, s in samples if lo <= t < hi)
    if not v:
        return None
    return len(v), v[len(v) // 2] * 1e3, v[min(len(v) - 1, int(len(v) * 0.99))] * 1e3, v[-1] * 1e3

th = threading.Thread(target=committer)
th.start()
quiet, phases = [], []
try:
    for rate in [0] + rates:
        t = time.monotonic()
        time.sleep(2)
        quiet.append((t, time.monotonic()))
        t = time.monotonic()
        burst(rate)
        phases.append((rate, t, time.monotonic()))
    t = time.monotonic()
    time.sleep(2)
    quiet.append((t, time.monotonic()))
finally:
    stop.set()
    th.join()

q = sorted(s for t, s in samples if any(a <= t < b for a, b in quiet))
q99 = q[min(len(q) - 1, int(len(q) * 0.99))] * 1e3
print(f"== a committer's fdatasync (8 KiB) while {burst_mb} MB of bulk data are written to the same disk ==")
print(f"{'':24} {'burst s':>8} {'commits':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99 / quiet':>12}")
print(f"{'quiet':24} {'':>8} {len(q):8d} {q[len(q) // 2] * 1e3:8.2f} {q99:8.2f} {q[-1] * 1e3:8.1f} {1.0:12.2f}")
for rate, a, b in phases:
    s = stats(a, b)
    name = "unpaced" if rate == 0 else f"paced {rate} MB/s"
    if s is None:
        print(f"{name:24} {b - a:8.2f} {0:8d}   (no commit finished during the burst)")
        continue
    n, p50, p99, mx = s
    print(f"{name:24} {b - a:8.2f} {n:8d} {p50:8.2f} {p99:8.2f} {mx:8.1f} {p99 / q99:12.2f}")
EOF
