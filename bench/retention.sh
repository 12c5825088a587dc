#!/usr/bin/env bash
# Disk against data volume under retention (the storage lifecycle): a fresh
# single-shard broker, 1 KiB records produced as fast as it takes them for
# SECS, `du` of the WAL segments and of the cold files sampled every 2 s,
# then the bytes the broker wrote to disk (/proc/PID/io write_bytes) per
# byte produced (write amplification) and its CPU seconds per GiB.
#
#   uniform: one topic, 8 partitions, retention.bytes 32 MiB each
#            (256 MiB retained)
#   mixed:   the same topic with retention.ms 5 s instead, beside a topic
#            kept forever written at 20 records/s (its batches pin
#            segments until they move to a cold file)
#
#   bench/retention.sh [seconds] [segment-bytes]   (default 30, 64MiB)
# Brokers are started and stopped here; data goes under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
SEGMENT=${2:-64MiB}
BIN=${BIN:-target/release/corestream}
BENCH=${BENCH:-target/release/corestream-bench}
WORK=$(mktemp -d "$PWD/target/retention.XXXXXX")
broker=""
pids=()
trap '[ -n "$broker" ] && kill "$broker" 2>/dev/null; for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port=$((30000 + RANDOM % 20000))
admin=$((port + 1))

source bench/lib.sh

topic() { "$BIN" topic --bootstrap "127.0.0.1:$port" create "$@" >/dev/null; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$broker/io"; }
sizes() {
    python3 - "$WORK/data" <<'PY'
import pathlib, sys
d = pathlib.Path(sys.argv[1])
seg = sum(f.stat().st_size for f in d.glob("shard-*/wal/*.log"))
cold = sum(f.stat().st_size for f in d.glob("shard-*/wal/cold-*.dat"))
print(f"{seg / 2**20:.0f} {cold / 2**20:.1f}")
PY
}

run() {
    local name=$1
    echo
    echo "== $name: $SECS s of 1 KiB records, segments of $SEGMENT"
    local w0 c0 w1 c1
    w0=$(written)
    c0=$(cpu_s "$broker")
    "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic fast --message-bytes 1024 --acks 1 \
        --duration "${SECS}s" --cores 1 --json "$WORK/$name.json" >/dev/null &
    local bench=$!
    pids+=("$bench")
    echo "| s | WAL segments (MiB) | cold files (MiB) |"
    echo "|---|---|---|"
    local t=0
    while kill -0 "$bench" 2>/dev/null; do
        sleep 2
        t=$((t + 2))
        echo "| $t | $(sizes | sed 's/ / | /') |"
    done
    wait "$bench"
    sleep 3 # the last trims and reclaims
    echo "| $((t + 3)) (idle) | $(sizes | sed 's/ / | /') |"
    w1=$(written)
    c1=$(cpu_s "$broker")
    python3 - "$WORK/$name.json" "$w0" "$w1" "$c0" "$c1" <<'PY'
import json, sys
p = {s["mode"]: s for s in json.load(open(sys.argv[1]))}["produce"]
w0, w1, c0, c1 = map(float, sys.argv[2:])
gib = p["bytes"] / 2**30
print(f"\nproduced {gib:.2f} GiB at {p['mib_per_sec']:.0f} MiB/s; the broker wrote {(w1 - w0) / 2**30:.2f} GiB "
      f"to disk (x{(w1 - w0) / p['bytes']:.2f} of what was produced), {(c1 - c0) / gib:.2f} CPU s/GiB")
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"

start_broker "$BIN" --shards 1 --wal-segment-bytes "$SEGMENT" --retention-check-interval-ms 1000
topic fast -p 8 -c retention.bytes=33554432
run uniform
kill "$broker"; wait "$broker" || true; broker=""

start_broker "$BIN" --shards 1 --wal-segment-bytes "$SEGMENT" --retention-check-interval-ms 1000
topic fast -p 8 -c retention.ms=5000
topic audit -p 1 -c retention.ms=-1
"$BENCH" produce --bootstrap "127.0.0.1:$port" --topic audit --message-bytes 1024 --acks 1 --rate 20 \
    --duration "$((SECS + 5))s" --cores 1 >/dev/null &
pids+=("$!")
run mixed
echo "retained by the kept-forever topic: $(curl -s "127.0.0.1:$admin/metrics" | awk '/^corestream_bytes_moved_total/ {s+=$2} END {printf "%.1f MiB moved to cold files", s/2^20}')"
