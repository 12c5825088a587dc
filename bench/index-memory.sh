#!/usr/bin/env bash
# Memory against retained batches: what the offset index costs. For each
# broker build given (LABEL=BINARY, default the current one), a fresh
# single-shard broker with a 64 MiB memory budget, 64 partitions kept
# forever, 100 B records in batches of BATCH records produced for SECS,
# twice. The first phase fills what the budget bounds (read cache, the
# Raft entries kept for followers); the second phase's growth per batch
# is what a retained batch costs: of RSS, and of anonymous memory alone
# (RssAnon: the heap; the rest of RSS is mapped files, the offset index
# files among them, which the kernel can drop and read again).
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

rss_kib() { awk '/^(VmRSS|RssAnon)/ {printf "%s ", $2}' "/proc/$broker/status"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "$SECS s of 100 B records in batches of $BATCH, 64 partitions, 1 shard, 64 MiB budget"
echo
echo "| build | batches retained | RSS after (MiB) | RssAnon after (MiB) | RSS per batch, 2nd phase (B) | RssAnon per batch, 2nd phase (B) |"
echo "|---|---|---|---|---|---|"
for _ in $(seq "$ROUNDS"); do
    for build in "${BUILDS[@]}"; do
        label=${build%%=*}
        bin=${build#*=}
        start_broker "$bin" --shards 1 --memory-per-shard 64MiB
        "$bin" topic --bootstrap "127.0.0.1:$port" create keep -p 64 >/dev/null
        sleep 1
        for phase in 1 2; do
            "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic keep --message-bytes 100 --batch-messages "$BATCH" \
                --duration "${SECS}s" --acks 1 --cores 1 --connections 8 --in-flight 32 --json "$WORK/p$phase.json" >/dev/null
            sleep 2
            rss[$phase]=$(rss_kib)
        done
        python3 - "$WORK/p1.json" "$WORK/p2.json" "$label" "$BATCH" ${rss[1]} ${rss[2]} <<'PY'
import json, sys
def batches(path):
    return {s["mode"]: s for s in json.load(open(path))}["produce"]["messages"] / int(sys.argv[4])
b1, b2 = batches(sys.argv[1]), batches(sys.argv[2])
label = sys.argv[3]
rss1, anon1, rss2, anon2 = map(int, sys.argv[5:9])
print(f"| {label} | {(b1 + b2) / 1e6:.2f} M | {rss2 / 1024:.0f} | {anon2 / 1024:.0f} | "
      f"{(rss2 - rss1) * 1024 / b2:.1f} | {(anon2 - anon1) * 1024 / b2:.1f} |")
PY
        kill "$broker"
        wait "$broker" 2>/dev/null || true
        broker=""
    done
done
