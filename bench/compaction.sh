#!/usr/bin/env bash
# Compaction throughput: a single node (1 shard, 64 MiB WAL segments) takes
# MIB MiB of 1 KiB lz4-compressed records over KEYS keys into a compacted
# topic whose min.compaction.lag.ms holds compaction back; then the lag is
# lifted (IncrementalAlterConfigs) and the cleaner compacts everything
# sealed. Reported: bytes the cleaner read and wrote, the time from the
# lift until its passes stop, and the broker's CPU seconds per GiB read
# over that time (from /proc).
#
#   bench/compaction.sh [MIB] [KEYS]     (default 512, 10000)
#   BIN=/path/to/corestream bench/compaction.sh ...   (another build)
# Starts and stops its own broker (ports 29692, 29744), data in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-512}"
keys="${2:-10000}"
if [ -z "${BIN:-}" ]; then
    cargo build --release -p corestream --quiet
fi
BIN=${BIN:-target/release/corestream}
dir=$(mktemp -d)
"$BIN" start --shards 1 --listen 127.0.0.1:29692 --admin-listen 127.0.0.1:29744 \
    --wal-segment-bytes 64MiB --data-dir "$dir/data" > "$dir/broker.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
python3 - "$pid" "$mib" "$keys" <<'EOF'
import os, random, sys, time, urllib.request
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

pid, mib, keys = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
boot = "127.0.0.1:29692"

def metric(name):
    text = urllib.request.urlopen("http://127.0.0.1:29744/metrics", timeout=5).read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.split("{")[0].split(" ")[0] == name)

def cpu():
    parts = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

for _ in range(100):
    try:
        metric("corestream_compaction_runs_total")
        break
    except Exception:
        time.sleep(0.1)
admin = AdminClient({"bootstrap.servers": boot})
topic = NewTopic("table", 1, 1, config={"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"})
for f in admin.create_topics([topic]).values():
    f.result(10)
p = Producer({"bootstrap.servers": boot, "linger.ms": 20, "compression.type": "lz4", "batch.size": 262144})
blob = random.randbytes(1 << 20)
n = mib * 1024
for i in range(n):
    at = random.randrange(0, len(blob) - 1024)
    while True:
        try:
            p.produce("table", key=b"key-%06d" % random.randrange(keys), value=blob[at:at + 1024])
            break
        except BufferError:
            p.poll(0.05)
    p.poll(0)
assert p.flush(120) == 0
res = ConfigResource("topic", "table", incremental_configs=[
    ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)])
c0, t0 = cpu(), time.time()
for f in admin.incremental_alter_configs([res]).values():
    f.result(10)
last, still = -1.0, time.time()
while time.time() - still < 5:
    r = metric("corestream_compaction_read_bytes_total")
    if r != last:
        last, still = r, time.time()
    time.sleep(0.2)
secs, cpus = still - t0, cpu() - c0
read, written = metric("corestream_compaction_read_bytes_total"), metric("corestream_compaction_written_bytes_total")
runs = metric("corestream_compaction_runs_total")
gib = read / (1 << 30)
print(f"produced {mib} MiB of 1 KiB records over {keys} keys (lz4); compaction: {runs:.0f} passes read "
      f"{read / (1 << 20):.0f} MiB and wrote {written / (1 << 20):.1f} MiB in {secs:.2f} s "
      f"({read / (1 << 20) / max(secs, 1e-9):.0f} MiB/s read), {cpus:.2f} CPU s ({cpus / max(gib, 1e-9):.2f} CPU s/GiB read)")
EOF
