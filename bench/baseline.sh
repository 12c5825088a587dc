#!/usr/bin/env bash
# The machine's physical limits, measured the same way every time:
# loopback TCP bandwidth (iperf3), sequential O_DIRECT write bandwidth,
# fdatasync latency after 16 KiB writes, and the latency of a whole durable
# 16 KiB write as a WAL does it (O_DIRECT + O_DSYNC: the write and the flush)
# (fio) on the filesystem of DIR.
#
#   bench/baseline.sh [DIR]        (needs iperf3 and fio: apt-get install iperf3 fio)
set -euo pipefail
DIR=${1:-.}
mkdir -p "$DIR"
port=$((20000 + RANDOM % 20000))
iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
server=$!
sleep 0.5
gbps=$(iperf3 -c 127.0.0.1 -p "$port" -t 5 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
wait "$server" || true
printf 'loopback TCP (iperf3, 1 stream, 5 s): %.1f Gbit/s = %.0f MiB/s\n' "$gbps" "$(python3 -c "print($gbps*1e9/8/2**20)")"

f="$DIR/.fio-baseline"
seq=$(fio --name=seq --filename="$f" --rw=write --bs=1M --size=2G --direct=1 --ioengine=io_uring --iodepth=8 \
      --output-format=json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024)')
printf 'sequential O_DIRECT write (fio, 1 MiB, iodepth 8): %.0f MiB/s\n' "$seq"
sync_json=$(fio --name=sync --filename="$f" --rw=write --bs=16k --size=256M --runtime=10 --time_based \
      --fdatasync=1 --ioengine=sync --output-format=json 2>/dev/null)
python3 - "$sync_json" <<'PY'
import json, sys
j = json.loads(sys.argv[1])["jobs"][0]
s = j["sync"]["lat_ns"]
p = s.get("percentile", {})
print(f"fdatasync after 16 KiB writes (fio): p50 {p.get('50.000000', 0)/1e3:.0f} us, "
      f"p99 {p.get('99.000000', 0)/1e3:.0f} us, mean {s['mean']/1e3:.0f} us")
PY
durable_json=$(fio --name=durable --filename="$f" --rw=write --bs=16k --size=256M --runtime=10 --time_based \
      --direct=1 --sync=dsync --ioengine=sync --output-format=json 2>/dev/null)
python3 - "$durable_json" <<'PY'
import json, sys
w = json.loads(sys.argv[1])["jobs"][0]["write"]["clat_ns"]
p = w.get("percentile", {})
print(f"durable 16 KiB write (fio, O_DIRECT + O_DSYNC): p50 {p.get('50.000000', 0)/1e3:.0f} us, "
      f"p99 {p.get('99.000000', 0)/1e3:.0f} us, mean {w['mean']/1e3:.0f} us")
PY
rm -f "$f"
