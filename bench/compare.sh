#!/usr/bin/env bash
# Two builds of corestream side by side on this machine, in one run (for a
# regression check against a previous release): for each of ROUNDS rounds,
# each build in turn gets a fresh broker and data dir and the same load:
# 1 KiB produce with acks=all for SECS on 8 partitions, consuming it all
# from the beginning, then 100 B produce with acks=1. Throughput, p99 and
# the broker's CPU seconds per GiB (from /proc: steadier than throughput on
# a shared machine) per build and round, then the median of each as a
# ratio NEW / OLD. Brokers are started and stopped here.
#
#   bench/compare.sh OLD_BINARY NEW_BINARY [seconds] [rounds]   (an even
#   number of rounds: each build runs first as often as second)
#   e.g. git worktree add /tmp/old v0.1; (cd /tmp/old && cargo build --release)
#        bench/compare.sh /tmp/old/target/release/corestream target/release/corestream 10 3
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1
NEW=$2
SECS=${3:-10}
ROUNDS=${4:-4}
BENCH=${BENCH:-target/release/corestream-bench}
WORK=$(mktemp -d "${COMPARE_WORK:-$PWD/target}/compare.XXXXXX")
broker=""
trap '[ -n "$broker" ] && kill "$broker" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port=$((30000 + RANDOM % 20000))
admin=$((port + 1))

source bench/lib.sh

# One round of one build: prints "p1k_mib_s p1k_p99_ms p1k_cpu c1k_mib_s c1k_cpu p100_msg_s p100_cpu".
round() {
    local bin=$1 tag=$2
    start_broker "$bin"
    local c0 c1 c2 c3
    c0=$(cpu_s "$broker")
    "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic k1 --partitions 8 --message-bytes 1024 \
        --duration "${SECS}s" --acks all --json "$WORK/p1k-$tag.json" >/dev/null
    c1=$(cpu_s "$broker")
    "$BENCH" consume --bootstrap "127.0.0.1:$port" --topic k1 --until-end --json "$WORK/c1k-$tag.json" >/dev/null
    c2=$(cpu_s "$broker")
    "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic b100 --partitions 8 --message-bytes 100 \
        --duration "${SECS}s" --acks 1 --json "$WORK/p100-$tag.json" >/dev/null
    c3=$(cpu_s "$broker")
    kill "$broker"; wait "$broker" || true; broker=""
    python3 - "$WORK" "$tag" "$c0" "$c1" "$c2" "$c3" <<'PY'
import json, sys
work, tag, c0, c1, c2, c3 = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
def load(name):
    return {s["mode"]: s for s in json.load(open(f"{work}/{name}-{tag}.json"))}
p1k, c1k, p100 = load("p1k")["produce"], load("c1k")["consume"], load("p100")["produce"]
gib = lambda s: s["bytes"] / 2**30
print(p1k["mib_per_sec"], p1k["latency_us"].get("p99", 0) / 1000, (c1 - c0) / gib(p1k),
      c1k["mib_per_sec"], (c2 - c1) / gib(c1k), p100["msgs_per_sec"], (c3 - c2) / gib(p100))
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "old: $OLD"
echo "new: $NEW"
: >"$WORK/old.txt"
: >"$WORK/new.txt"
# The order alternates (old first in odd rounds, new first in even ones):
# the same binary on both sides, always in the same order, measured up to
# 1.35x apart on this VM (the second run of a round faster), which a fixed
# order would have credited to the build.
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
        round "$OLD" "old$r" >>"$WORK/old.txt"
        round "$NEW" "new$r" >>"$WORK/new.txt"
    else
        round "$NEW" "new$r" >>"$WORK/new.txt"
        round "$OLD" "old$r" >>"$WORK/old.txt"
    fi
done
python3 - "$WORK/old.txt" "$WORK/new.txt" "$SECS" "$ROUNDS" <<'PY'
import statistics, sys
old = [list(map(float, l.split())) for l in open(sys.argv[1])]
new = [list(map(float, l.split())) for l in open(sys.argv[2])]
names = ["1 KiB produce acks=all (MiB/s)", "1 KiB produce acks=all p99 (ms)", "broker CPU s/GiB",
         "1 KiB consume (MiB/s)", "broker CPU s/GiB", "100 B produce acks=1 (msg/s)", "broker CPU s/GiB"]
print(f"\n{sys.argv[4]} rounds of {sys.argv[3]} s each, medians:\n")
print("| measure | old | new | new / old |")
print("|---|---|---|---|")
for i, n in enumerate(names):
    o = statistics.median(r[i] for r in old)
    w = statistics.median(r[i] for r in new)
    print(f"| {n} | {o:,.2f} | {w:,.2f} | {w / o if o else float('nan'):.3f} |")
PY
