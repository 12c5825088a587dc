#!/usr/bin/env bash
# What TLS costs: one broker with PLAINTEXT, SSL and SASL_SSL listeners
# (a certificate made here by openssl, RSA 2048), and the same load through
# each in turn, ROUNDS times: 1 KiB produce with acks=all for SECS on 8
# partitions, then consuming it all from the beginning. Throughput and the
# broker's CPU seconds per GiB (from /proc) per listener, the medians as a
# ratio to PLAINTEXT. A fresh broker per round, started and stopped here.
#
#   bench/tls.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
BENCH=${BENCH:-target/release/corestream-bench}
BIN=${BIN:-target/release/corestream}
WORK=$(mktemp -d "${TLS_WORK:-$PWD/target}/tls.XXXXXX")
broker=""
trap '[ -n "$broker" ] && kill "$broker" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port=$((30000 + RANDOM % 20000))
admin=$((port + 1)); ssl=$((port + 2)); sasl_ssl=$((port + 3))

source bench/lib.sh

(cd "$WORK"
 openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
 openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
 echo "subjectAltName=IP:127.0.0.1" >san.ext
 openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
     -extfile san.ext 2>/dev/null)
cat >"$WORK/broker.toml" <<EOF
listeners = ["PLAINTEXT://127.0.0.1:$port", "SSL://127.0.0.1:$ssl", "SASL_SSL://127.0.0.1:$sasl_ssl"]
[ssl]
certificate_chain_file = "$WORK/server.pem"
private_key_file = "$WORK/server.key"
EOF

# run LABEL PORT [bench security args...]: produce then consume; prints
# "label produce_mib_s produce_cpu_s_per_gib consume_mib_s consume_cpu_s_per_gib p99_ms".
run() {
    local label=$1 p=$2; shift 2
    local c0 c1 c2 topic="t-$label-$RANDOM"
    c0=$(cpu_s "$broker")
    "$BENCH" "$@" produce --bootstrap "127.0.0.1:$p" --topic "$topic" --partitions 8 --message-bytes 1024 \
        --duration "${SECS}s" --acks all --json "$WORK/p.json" >/dev/null
    c1=$(cpu_s "$broker")
    "$BENCH" "$@" consume --bootstrap "127.0.0.1:$p" --topic "$topic" --until-end --json "$WORK/c.json" >/dev/null
    c2=$(cpu_s "$broker")
    python3 - "$WORK" "$label" "$c0" "$c1" "$c2" <<'PY'
import json, sys
work, label, c0, c1, c2 = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
p = {s["mode"]: s for s in json.load(open(f"{work}/p.json"))}["produce"]
c = {s["mode"]: s for s in json.load(open(f"{work}/c.json"))}["consume"]
gib = lambda s: s["bytes"] / 2**30
print(label, round(p["mib_per_sec"], 1), round((c1 - c0) / gib(p), 2), round(c["mib_per_sec"], 1),
      round((c2 - c1) / gib(c), 2), round(p["latency_us"]["p99"] / 1000, 2))
PY
}

# A fresh broker per round: a round writes ~30 GB at this machine's speed.
start() {
    rm -rf "$WORK/data"
    "$BIN" start --config "$WORK/broker.toml" --admin-listen "127.0.0.1:$admin" --data-dir "$WORK/data" \
        >"$WORK/broker.log" 2>&1 &
    broker=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
        sleep 0.1
    done
    "$BIN" user create bench --password bench-pw -b "127.0.0.1:$port" >/dev/null
}
: >"$WORK/rows"
for r in $(seq "$ROUNDS"); do
    start
    run plaintext "$port" >>"$WORK/rows"
    run ssl "$ssl" --tls-ca "$WORK/ca.pem" >>"$WORK/rows"
    run sasl_ssl "$sasl_ssl" --tls-ca "$WORK/ca.pem" --sasl-mechanism SCRAM-SHA-512 \
        --sasl-username bench --sasl-password bench-pw >>"$WORK/rows"
    kill "$broker"; wait "$broker" || true; broker=""
done
python3 - "$WORK/rows" "$SECS" "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for label, *vals in rows:
    by.setdefault(label, []).append([float(v) for v in vals])
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in by.items()}
print(f"1 KiB acks=all, 8 partitions, {sys.argv[2]} s per run, median of {sys.argv[3]} rounds (a fresh broker each)")
print(f"{'listener':<10} {'produce MiB/s':>14} {'CPU s/GiB':>10} {'p99 ms':>8} {'consume MiB/s':>14} {'CPU s/GiB':>10}")
base = med["plaintext"]
for k in ["plaintext", "ssl", "sasl_ssl"]:
    m = med[k]
    print(f"{k:<10} {m[0]:>14} {m[1]:>10} {m[4]:>8} {m[2]:>14} {m[3]:>10}"
          + ("" if k == "plaintext" else f"   (x{m[0]/base[0]:.2f} produce, x{m[2]/base[2]:.2f} consume)"))
PY
