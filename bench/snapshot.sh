#!/usr/bin/env bash
# How fast a node that lost its disk rebuilds through a Raft snapshot: a
# 3-node cluster (1 shard each, 64 MiB segments) takes a topic kept forever
# at a fixed rate beside a topic with a small retention.bytes written as
# fast as it goes, so its WAL is reclaimed (the kept batches move to cold
# files). Then a follower is killed, its data directory removed, and it is
# started again: the time from its start until it holds every batch of the
# snapshot it installed, per GiB pulled, and its CPU seconds per GiB.
#
#   bench/snapshot.sh [SECONDS] [KEPT_MSGS_PER_S]     (default 10, 100000)
# Starts and stops its own brokers (ports 29492-29900), data in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs="${1:-10}"
kept_rate="${2:-100000}"
cargo build --release --workspace --quiet
bin=target/release/corestream
bench=target/release/corestream-bench
dir=$(mktemp -d)
pids=(0 0 0)
stop() { for p in "${pids[@]}"; do [ "$p" != 0 ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT

kafka() { echo $((29492 + 100 * $1)); }
admin() { echo $((29544 + 100 * $1)); }
metric() { # node name: the metric summed over its shards
  python3 - "$(admin "$1")" "$2" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(sum(float(l.split()[-1]) for l in text.splitlines() if l.split("{")[0].split(" ")[0] == sys.argv[2]))
EOF
}
start() { # node
  "$bin" start --config "$dir/n$1.toml" >> "$dir/n$1.log" 2>&1 &
  pids[$1]=$!
}

nodes=""
for i in 0 1 2; do nodes+="{ id = $i, kafka = \"127.0.0.1:$(kafka $i)\", raft = \"127.0.0.1:$(( $(kafka $i) + 1 ))\" },"; done
for i in 0 1 2; do
  printf 'node_id = %s\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\ndata_dir = "%s/n%s"\nshards = 1\n[wal]\nsegment_bytes = "64MiB"\n[cluster]\nnodes = [%s]\n' \
    "$i" "$(kafka $i)" "$(admin $i)" "$dir" "$i" "$nodes" > "$dir/n$i.toml"
  start "$i"
done
sleep 4
bs=127.0.0.1:$(kafka 0),127.0.0.1:$(kafka 1),127.0.0.1:$(kafka 2)
"$bin" topic create kept --partitions 8 --config retention.ms=-1 --bootstrap "127.0.0.1:$(kafka 0)" >/dev/null
"$bin" topic create stream --partitions 8 --config retention.bytes=16777216 --bootstrap "127.0.0.1:$(kafka 0)" >/dev/null
sleep 1
"$bench" produce --bootstrap "$bs" --topic kept --duration "${secs}s" --cores 1 --acks all \
  --message-bytes 1024 --rate "$kept_rate" > "$dir/kept.out" &
kept=$!
"$bench" produce --bootstrap "$bs" --topic stream --duration "${secs}s" --cores 1 --acks all \
  --message-bytes 1024 | grep -E "^produce:" | sed 's/^/stream: /'
wait "$kept"
grep -E "^produce:" "$dir/kept.out" | sed 's/^/kept:   /'
# The kept batches move once their segments are mostly dead and their log
# start has not moved for 10 s; then every node reclaims.
for _ in $(seq 60); do
  done_=1
  for i in 0 1 2; do
    [ "$(metric "$i" corestream_wal_segments_reclaimed_total)" != 0.0 ] || done_=0
  done
  [ "$done_" = 1 ] && break
  sleep 1
done
leader=$(python3 - "$(admin 0)" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(int(float(next(l.split()[-1] for l in text.splitlines() if l.startswith("corestream_raft_leader_broker")))))
EOF
)
wiped=$(( (leader + 1) % 3 ))
echo "retained on the leader (node $leader): $(python3 -c "print(round($(metric "$leader" corestream_retained_bytes) / 2**30, 3))") GiB; WAL segments reclaimed: $(metric "$leader" corestream_wal_segments_reclaimed_total)"
kill -9 "${pids[$wiped]}"; wait "${pids[$wiped]}" 2>/dev/null || true
rm -rf "$dir/n$wiped"
t0=$(date +%s.%N)
start "$wiped"
until grep -q "holds every batch of the snapshot" "$dir/n$wiped.log" 2>/dev/null; do
  sleep 0.05
  if [ "$(python3 -c "print(int($(date +%s.%N) - $t0))")" -gt 300 ]; then echo "no rebuild within 300 s"; tail -20 "$dir/n$wiped.log"; exit 1; fi
done
t1=$(date +%s.%N)
pulled=$(metric "$wiped" corestream_snapshot_bytes_pulled_total)
cpu=$(cpu_s "${pids[$wiped]}")
python3 - "$t0" "$t1" "$pulled" "$cpu" <<'EOF'
import sys
t0, t1, pulled, cpu = map(float, sys.argv[1:])
gib = pulled / 2**30
print(f"wiped node rebuilt through a snapshot: {gib:.3f} GiB pulled in {t1 - t0:.2f} s from its start "
      f"({(t1 - t0) / gib:.2f} s/GiB, {gib / (t1 - t0) * 1024:.0f} MiB/s), {cpu:.2f} CPU s ({cpu / gib:.2f} CPU s/GiB)")
EOF
