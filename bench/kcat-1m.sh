#!/usr/bin/env bash
# Produce then consume N (default 1,000,000) 100-byte messages with kcat
# against a broker at $BOOTSTRAP, and print the throughput of each phase.
# kcat (librdkafka) is an independent client, so these figures measure the
# broker, not our own generator.
#
#   BOOTSTRAP=127.0.0.1:9092 bench/kcat-1m.sh [N] [partitions]
set -euo pipefail
N=${1:-1000000}
PARTS=${2:-1}
BOOTSTRAP=${BOOTSTRAP:-127.0.0.1:9092}
TOPIC=kcat-bench-$$
file=$(mktemp)
trap 'rm -f "$file"' EXIT
python3 - "$N" > "$file" <<'PY'
import sys
n = int(sys.argv[1])
line = "x" * 92
out = sys.stdout
for i in range(n):
    out.write(f"{i:07d} {line}\n")  # 100 bytes + newline delimiter
PY
python3 - "$BOOTSTRAP" "$TOPIC" "$PARTS" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in a.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)]).values():
    f.result(10)
PY
t0=$(date +%s.%N)
kcat -b "$BOOTSTRAP" -P -t "$TOPIC" -l "$file" -X linger.ms=5 -X batch.num.messages=10000 \
     -X queue.buffering.max.messages=1000000 -X acks=1
t1=$(date +%s.%N)
count=$(kcat -b "$BOOTSTRAP" -C -t "$TOPIC" -e -q -o beginning -X fetch.max.bytes=52428800 -f '\n' | wc -l)
t2=$(date +%s.%N)
python3 - "$N" "$count" "$t0" "$t1" "$t2" <<'PY'
import sys
n, got = int(sys.argv[1]), int(sys.argv[2])
t0, t1, t2 = map(float, sys.argv[3:])
print(f"produce: {n} x 100 B in {t1 - t0:.2f} s = {n / (t1 - t0):,.0f} msg/s ({n * 100 / (t1 - t0) / 2**20:.1f} MiB/s)")
print(f"consume: {got} x 100 B in {t2 - t1:.2f} s = {got / (t2 - t1):,.0f} msg/s ({got * 100 / (t2 - t1) / 2**20:.1f} MiB/s)")
if got != n:
    sys.exit(f"consumed {got} of {n}")
PY
