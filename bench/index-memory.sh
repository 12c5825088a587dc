#!/usr/bin/env bash
# Memory against retained batches: what the offset index costs. For each
# broker build given (LABEL=BINARY, default the current one), a fresh
# single-shard broker with a 64 MiB memory budget (so the read cache
# cannot hide the index), 64 partitions kept forever, 100 B records in
# batches of BATCH records produced for SECS; then the broker's RSS
# (VmRSS) against its RSS before, per million batches retained.
#
#   bench/index-memory.sh [seconds] [records per batch] [LABEL=BINARY ...]
#
# Builds are run one after the other, ROUNDS times (default 2),
# alternating. Brokers are started and stopped here; data goes under
# target/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
BATCH=${2:-4}
shift $(( $# < 2 ? $# : 2 ))
BUILDS=("$@")
[ ${#BUILDS[@]} -eq 0 ] && BUILDS=("current=target/release/corestream")
ROUNDS=${ROUNDS:-2}
BENCH=${BENCH:-target/release/corestream-bench}
WORK=$(mktemp -d "$PWD/target/index-memory.XXXXXX")
broker=""
trap '[ -n "$broker" ] && kill "$broker" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port=$((30000 + RANDOM % 20000))
admin=$((port + 1))

source bench/lib.sh

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$broker/status"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "$SECS s of 100 B records in batches of $BATCH, 64 partitions, 1 shard, 64 MiB budget"
echo
echo "| build | batches retained | RSS before (MiB) | RSS after (MiB) | bytes of RSS per batch |"
echo "|---|---|---|---|---|"
for _ in $(seq "$ROUNDS"); do
    for build in "${BUILDS[@]}"; do
        label=${build%%=*}
        bin=${build#*=}
        start_broker "$bin" --shards 1 --memory-per-shard 64MiB
        "$bin" topic --bootstrap "127.0.0.1:$port" create keep -p 64 >/dev/null
        sleep 1
        before=$(rss_kib)
        "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic keep --message-bytes 100 --batch-messages "$BATCH" \
            --duration "${SECS}s" --acks 1 --cores 1 --connections 8 --in-flight 32 --json "$WORK/p.json" >/dev/null
        sleep 2
        after=$(rss_kib)
        python3 - "$WORK/p.json" "$label" "$BATCH" "$before" "$after" <<'PY'
import json, sys
p = {s["mode"]: s for s in json.load(open(sys.argv[1]))}["produce"]
label, batch, before, after = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
batches = p["messages"] / batch
print(f"| {label} | {batches / 1e6:.2f} M | {before / 1024:.0f} | {after / 1024:.0f} | "
      f"{(after - before) * 1024 / batches:.1f} |")
PY
        kill "$broker"
        wait "$broker" 2>/dev/null || true
        broker=""
    done
done
