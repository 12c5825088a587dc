#!/usr/bin/env bash
# Replication cost on one machine: the same produce runs against a single
# node and against a 3-node cluster (all on loopback, 1 shard per node),
# in one go so the ratios compare like with like. Every byte of the
# cluster run is written to disk three times and sent over loopback twice,
# by three brokers sharing the machine's cores with the generator.
#
#   bench/cluster-vs-single.sh [SECONDS]     (default 8)
# Starts and stops its own brokers (ports 29092-29400), data in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-8}"
cargo build --release --workspace --quiet
bin=target/release/corestream
bench=target/release/corestream-bench
dir=$(mktemp -d)
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT

run() { # label bootstrap topic extra-args...
  local label=$1 bs=$2 topic=$3; shift 3
  echo "== $label"
  "$bench" produce --bootstrap "$bs" --topic "$topic" --partitions 8 --duration "${secs}s" --cores 1 "$@" \
    | grep -E "^produce:|^latency"
}

"$bin" start --listen 127.0.0.1:29092 --admin-listen 127.0.0.1:29644 --data-dir "$dir/single" --shards 1 \
  --wal-segment-bytes 64MiB > "$dir/single.log" 2>&1 &
pids+=($!)
sleep 2
run "single node, 1 KiB, acks=all, as fast as it goes" 127.0.0.1:29092 s-max --acks all --message-bytes 1024
run "single node, 100 B, acks=all, 5k msg/s, one message per request" 127.0.0.1:29092 s-rate \
  --acks all --message-bytes 100 --rate 5000 --batch-messages 1
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

nodes=""
for i in 0 1 2; do nodes+="{ id = $i, kafka = \"127.0.0.1:$((29192 + 100 * i))\", raft = \"127.0.0.1:$((29193 + 100 * i))\" },"; done
for i in 0 1 2; do
  printf 'node_id = %s\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\ndata_dir = "%s/n%s"\nshards = 1\n[wal]\nsegment_bytes = "64MiB"\n[cluster]\nnodes = [%s]\n' \
    "$i" $((29192 + 100 * i)) $((29744 + 100 * i)) "$dir" "$i" "$nodes" > "$dir/n$i.toml"
  "$bin" start --config "$dir/n$i.toml" > "$dir/n$i.log" 2>&1 &
  pids+=($!)
done
sleep 4
bs=127.0.0.1:29192,127.0.0.1:29292,127.0.0.1:29392
run "3-node cluster, 1 KiB, acks=all, as fast as it goes" "$bs" c-max --acks all --message-bytes 1024
run "3-node cluster, 100 B, acks=all, 5k msg/s, one message per request" "$bs" c-rate \
  --acks all --message-bytes 100 --rate 5000 --batch-messages 1
