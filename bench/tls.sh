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

: >"$WORK/rows"
for r in $(seq "$ROUNDS"); do
    # A fresh broker per round: a round writes ~30 GB at this machine's speed.
    start_with_config "$WORK/broker.toml"
    row plaintext "$port" >>"$WORK/rows"
    row ssl "$ssl" --tls-ca "$WORK/ca.pem" >>"$WORK/rows"
    row sasl_ssl "$sasl_ssl" --tls-ca "$WORK/ca.pem" --sasl-mechanism SCRAM-SHA-512 \
        --sasl-username bench --sasl-password bench-pw >>"$WORK/rows"
    kill "$broker"; wait "$broker" || true; broker=""
done
medians "$WORK/rows" "1 KiB acks=all, 8 partitions, $SECS s per run, median of $ROUNDS rounds (a fresh broker each)" \
    listener plaintext ssl sasl_ssl
