#!/usr/bin/env bash
# Produce latency while batches move to cold files. For each broker build
# (LABEL=BINARY, default the current one): a fresh 1-shard broker with
# 32 MiB WAL segments; a topic kept forever (`keep`) and one that keeps
# 8 MiB a partition (`fast`, 4 partitions) are written together as fast
# as they go for FILL s, so `keep`'s batches are spread through the
# segments; then `keep` stops and `fast` goes on at a fixed rate (1 KiB
# records, acks=all, 5 ms linger) for SECS. Once the segments `keep` pins
# are more than half dead (nothing trims it: it moves at once), its
# batches move to cold files, up to 64 MiB at a time: what the
# `fast` producer's latency shows is whether its writes waited for them.
#
#   bench/moves.sh [seconds] [fill seconds] [LABEL=BINARY ...]   (default 30 8)
#
# KEEP_CONFIG (default retention.ms=-1) is `keep`'s config: with
# retention.bytes=8388608 nothing moves, the same load otherwise (a
# control for what the moves add).
#
# Builds alternate, ROUNDS times (default 2). Brokers are started and
# stopped here; data goes under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
FILL=${2:-8}
shift $(( $# < 2 ? $# : 2 ))
BUILDS=("$@")
[ ${#BUILDS[@]} -eq 0 ] && BUILDS=("current=target/release/corestream")
ROUNDS=${ROUNDS:-2}
RATE=${RATE:-20000}
KEEP_CONFIG=${KEEP_CONFIG:-retention.ms=-1}
BENCH=${BENCH:-target/release/corestream-bench}
WORK=$(mktemp -d "$PWD/target/moves.XXXXXX")
broker=""
trap '[ -n "$broker" ] && kill "$broker" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port=$((30000 + RANDOM % 20000))
admin=$((port + 1))

source bench/lib.sh

moved_mib() {
    curl -s "127.0.0.1:$admin/metrics" | awk '/^corestream_bytes_moved_total/ {s+=$2} END {printf "%.0f", s/2^20}'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "fill $FILL s (keep + fast), then fast alone at $RATE msg/s of 1 KiB, acks=all, for $SECS s"
echo
echo "| build | MiB moved | fast: p50 ms | p99 ms | p99.9 ms | max ms |"
echo "|---|---|---|---|---|---|"
for _ in $(seq "$ROUNDS"); do
    for build in "${BUILDS[@]}"; do
        label=${build%%=*}
        bin=${build#*=}
        start_broker "$bin" --shards 1 --wal-segment-bytes 32MiB --retention-check-interval-ms 1000
        "$bin" topic --bootstrap "127.0.0.1:$port" create keep -p 1 -c "$KEEP_CONFIG" >/dev/null
        "$bin" topic --bootstrap "127.0.0.1:$port" create fast -p 4 -c retention.bytes=8388608 >/dev/null
        fill=()
        for t in keep fast; do
            "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic "$t" --message-bytes 1024 --acks 1 \
                --duration "${FILL}s" --cores 1 >/dev/null &
            fill+=("$!")
        done
        wait "${fill[@]}"
        "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic fast --message-bytes 1024 --acks all \
            --rate "$RATE" --linger 5ms --duration "${SECS}s" --cores 1 --json "$WORK/p.json" >/dev/null
        moved=$(moved_mib)
        python3 - "$WORK/p.json" "$label" "$moved" <<'PY'
import json, sys
p = {s["mode"]: s for s in json.load(open(sys.argv[1]))}["produce"]
l = {k: v / 1000 for k, v in p["latency_us"].items()}
print(f"| {sys.argv[2]} | {sys.argv[3]} | {l['p50']:.2f} | {l['p99']:.2f} | {l['p99.9']:.2f} | {l['max']:.2f} |")
PY
        kill "$broker"
        wait "$broker" 2>/dev/null || true
        broker=""
    done
done
