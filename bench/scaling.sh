#!/usr/bin/env bash
# How corestream scales with shards on one machine: for each shard count N,
# a fresh broker pinned to cores 0..N-1 (`--cores`), the generator pinned to
# the cores left over (taskset; all cores once fewer than MIN_GEN_CORES are
# left, and the table says so), 32 partitions so every shard owns some:
#   1 KiB acks=1 produce for SECS, then consume it all from the beginning;
#   100 B acks=1 produce for SECS.
# Besides throughput it records the broker's CPU seconds (user + system,
# from /proc) per GiB moved, which is steadier than throughput on a shared
# machine, and the WAL appends (group commits, from /metrics) per GiB of
# 100 B messages. Prints a markdown table; with OUT set, also writes the raw JSON
# summaries under $OUT. Brokers are started and stopped here.
#
#   bench/scaling.sh [seconds-per-run] [shard counts...]
#   bench/scaling.sh 3 1 2 4 8 12 16          (release build first)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-3}
shift || true
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1 2 4 8 12 16)
BIN=${BIN:-target/release/corestream}
BENCH=${BENCH:-target/release/corestream-bench}
CORES=$(nproc)
MIN_GEN_CORES=4
WORK=$(mktemp -d "${SCALING_WORK:-$PWD/target}/scaling.XXXXXX")
broker=""
trap '[ -n "$broker" ] && kill "$broker" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port=$((30000 + RANDOM % 20000))
admin=$((port + 1))

source bench/lib.sh
# The sum over shards of one counter on the broker's /metrics.
metric() { python3 -c "
import sys, urllib.request
text = urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/metrics', timeout=10).read().decode()
print(sum(float(l.rsplit(' ', 1)[1]) for l in text.splitlines() if l.startswith(sys.argv[2] + '{') or l.startswith(sys.argv[2] + ' ')))" "$admin" "$1"; }
count_per_gib() { python3 -c "import sys; c=float(sys.argv[2])-float(sys.argv[1]); g=float(sys.argv[3])/1024; print(f'{c/g:,.0f}' if g else '-')" "$@"; }
per_gib() { python3 -c "import sys; c=float(sys.argv[2])-float(sys.argv[1]); g=float(sys.argv[3])/1024; print(f'{c/g:.2f}' if g else '-')" "$@"; }

echo "machine: $CORES cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
rows=()
for n in "${COUNTS[@]}"; do
    [ "$n" -le "$CORES" ] || { echo "skipping $n shards: $CORES cores"; continue; }
    if [ $((CORES - n)) -ge $MIN_GEN_CORES ]; then gen="$n-$((CORES - 1))"; shared=""; else gen="0-$((CORES - 1))"; shared=" (shared)"; fi
    start_broker "$BIN" --cores "$(seq -s, 0 $((n - 1)))"
    c0=$(cpu_s "$broker")
    taskset -c "$gen" "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic k1 --partitions 32 --message-bytes 1024 \
        --duration "${SECS}s" --acks 1 --json "$WORK/p1k-$n.json" >/dev/null
    c1=$(cpu_s "$broker")
    taskset -c "$gen" "$BENCH" consume --bootstrap "127.0.0.1:$port" --topic k1 --until-end --json "$WORK/c1k-$n.json" >/dev/null
    c2=$(cpu_s "$broker")
    a2=$(metric corestream_wal_appends_total)
    taskset -c "$gen" "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic b100 --partitions 32 --message-bytes 100 \
        --duration "${SECS}s" --acks 1 --json "$WORK/p100-$n.json" >/dev/null
    c3=$(cpu_s "$broker")
    a3=$(metric corestream_wal_appends_total)
    kill "$broker"; wait "$broker" || true; broker=""
    p1k=$(field "$WORK/p1k-$n.json" "f\"{d['produce']['mib_per_sec']:,.0f} MiB/s ({d['produce']['msgs_per_sec']/1e6:.2f} M msg/s), p99 {d['produce']['latency_us'].get('p99', 0)/1000:.1f} ms\"")
    p1k_mib=$(field "$WORK/p1k-$n.json" "d['produce']['bytes'] / 2**20")
    c1k=$(field "$WORK/c1k-$n.json" "f\"{d['consume']['mib_per_sec']:,.0f} MiB/s\"")
    c1k_mib=$(field "$WORK/c1k-$n.json" "d['consume']['bytes'] / 2**20")
    p100=$(field "$WORK/p100-$n.json" "f\"{d['produce']['msgs_per_sec']/1e6:.2f} M msg/s ({d['produce']['mib_per_sec']:,.0f} MiB/s)\"")
    p100_mib=$(field "$WORK/p100-$n.json" "d['produce']['bytes'] / 2**20")
    row="| $n | $gen$shared | $p1k | $(per_gib "$c0" "$c1" "$p1k_mib") | $c1k | $(per_gib "$c1" "$c2" "$c1k_mib") | $p100 | $(per_gib "$c2" "$c3" "$p100_mib") | $(count_per_gib "$a2" "$a3" "$p100_mib") |"
    echo "$row"
    rows+=("$row")
    [ -z "${OUT:-}" ] || cp "$WORK"/*-"$n".json "$OUT"/ 2>/dev/null || true
    rm -rf "$WORK/data"
done

echo
echo "| shards | generator cores | 1 KiB produce, acks=1 | broker CPU s/GiB | 1 KiB consume | broker CPU s/GiB | 100 B produce, acks=1 | broker CPU s/GiB | 100 B: WAL appends/GiB |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
