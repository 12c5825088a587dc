#!/usr/bin/env bash
# The results table of bench/README.md, in one run: the machine's limits
# (bench/baseline.sh), then corestream at 1 and 2 shards, each on a fresh
# data dir: 100 B and 1 KiB messages with acks=1 at the maximum rate (then
# consumed from the beginning), and acks=all end-to-end latency at half the
# 100 B maximum rate. Brokers are started and stopped here.
#
#   bench/run-all.sh [seconds-per-run]      (release build first: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-3}
BIN=target/release/corestream
BENCH=target/release/corestream-bench
WORK=$(mktemp -d "${TMPDIR:-/tmp}/corestream-bench.XXXXXX")
trap 'kill "$broker" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
port=$((30000 + RANDOM % 20000))

echo "## machine"
bench/baseline.sh "$WORK/fio"

field() { python3 -c "import json,sys; d={s['mode']: s for s in json.load(open(sys.argv[1]))}; print(eval(sys.argv[2]))" "$@"; }

for shards in 1 2; do
    echo "## corestream, $shards shard(s)"
    for run in 100 1024; do
        rm -rf "$WORK/data"
        "$BIN" start --listen "127.0.0.1:$port" --data-dir "$WORK/data" --shards "$shards" >"$WORK/broker.log" 2>&1 &
        broker=$!
        sleep 1
        "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic "m$run" --partitions 8 --message-bytes "$run" \
            --duration "${SECS}s" --acks 1 --json "$WORK/p.json" >/dev/null
        "$BENCH" consume --bootstrap "127.0.0.1:$port" --topic "m$run" --until-end --json "$WORK/c.json" >/dev/null
        p=$(field "$WORK/p.json" "f\"{d['produce']['msgs_per_sec']:,.0f} msg/s, {d['produce']['mib_per_sec']:,.0f} MiB/s, ack p99 {d['produce']['latency_us'].get('p99', 0)/1000:.2f} ms\"")
        c=$(field "$WORK/c.json" "f\"{d['consume']['msgs_per_sec']:,.0f} msg/s, {d['consume']['mib_per_sec']:,.0f} MiB/s\"")
        echo "$run B, acks=1: produce $p; consume $c"
        if [ "$run" = 100 ]; then
            half=$(field "$WORK/p.json" "int(d['produce']['msgs_per_sec'] / 2)")
            "$BENCH" e2e --bootstrap "127.0.0.1:$port" --topic e2e --partitions 8 --message-bytes 100 \
                --duration "${SECS}s" --rate "$half" --acks all --json "$WORK/e.json" >/dev/null
            e=$(field "$WORK/e.json" "f\"ack p50 {d['produce']['latency_us']['p50']/1000:.2f} ms, ack p99 {d['produce']['latency_us']['p99']/1000:.2f} ms, end-to-end p99 {d['consume']['latency_us']['p99']/1000:.2f} ms\"")
            echo "100 B, acks=all at $half msg/s: $e"
        fi
        kill "$broker"; wait "$broker" || true
    done
done
