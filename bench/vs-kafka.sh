#!/usr/bin/env bash
# corestream and Apache Kafka 4.1.1 side by side on this machine, in one run:
# each broker in turn gets a fresh data dir and the same workloads, and the
# report gives each figure as a ratio corestream / Kafka.
#
# Workloads (the same topic configs on both: Kafka's defaults, replication 1):
#   corestream-bench produce: 1 KiB and 100 B, acks=1 and acks=all, on 1 and
#     8 partitions (all eight), SECS each; then consume the 1 KiB acks=all
#     topic back;
#   Kafka's own kafka-producer-perf-test (ProducerPerformance, acks=all,
#     1 KiB, 8 partitions, RECORDS records) and kafka-consumer-perf-test
#     (ConsumerPerformance) reading them back;
#   1000 topics x 3 partitions, one message each, consumed back
#     (bench/scenarios/many-topics.toml);
#   10,000 partitions in one topic, 100 B, acks=1, 10 s
#     (bench/scenarios/ten-thousand-partitions.toml; the topic is created
#     with 5,000 partitions and grown to 10,000, as Kafka's controller takes
#     at most 10,000 records per operation).
# Per workload: throughput, p99 ack latency, the broker's CPU seconds per GiB
# moved (from /proc: steadier than throughput on a shared machine) and its
# RSS after the workload. Kafka runs from the Maven jars (scripts/kafka-ref,
# Kafka's default 1 GiB heap, and its quickstart's
# group.initial.rebalance.delay.ms=0); corestream with its defaults (one
# shard per core) and the same rebalance delay. Brokers are started and stopped here, nothing else is touched.
#
#   bench/vs-kafka.sh [SECS] [RECORDS]     default 10 s, 500000 records
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
RECORDS=${2:-500000}
BENCH=${BENCH:-target/release/corestream-bench}
BIN=${BIN:-target/release/corestream}
CP="tests/java/target/classes:tests/java/target/dependency/*"
WORK=$(mktemp -d "${VS_WORK:-$PWD/target}/vs-kafka.XXXXXX")
broker=""
kdir=""
cleanup() {
    [ -n "$broker" ] && [ -z "$kdir" ] && kill "$broker" 2>/dev/null
    [ -n "$kdir" ] && scripts/kafka-ref stop "$kdir"
    wait 2>/dev/null || true
    rm -rf "$WORK/data" "$WORK/kafka"
}
trap cleanup EXIT
port=$((30000 + RANDOM % 20000))
admin=$((port + 2))
B="127.0.0.1:$port"

source bench/lib.sh

[ -x "$BENCH" ] && [ -x "$BIN" ] || { echo "build first: cargo build --release --workspace"; exit 1; }
compgen -G "tests/java/target/dependency/kafka_2.13-*.jar" >/dev/null \
    || mvn -q -B -f tests/java/pom.xml package

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
java_tool() { java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$CP" "$@"; }

# measure WHO NAME CMD...: runs CMD (its output to $WORK/WHO-NAME.out) and
# appends "WHO NAME cpu_s rss_kib" to $WORK/usage.tsv.
measure() {
    local who=$1 name=$2
    shift 2
    local c0 c1
    c0=$(cpu_s "$broker")
    "$@" >"$WORK/$who-$name.out" 2>&1 || { echo "$who $name failed:"; tail -20 "$WORK/$who-$name.out"; exit 1; }
    c1=$(cpu_s "$broker")
    echo "$who $name $(python3 -c "print($c1 - $c0)") $(rss_kib "$broker")" >>"$WORK/usage.tsv"
    echo "  $who $name: done"
}

run_all() {
    local who=$1 j="$WORK/$1"
    for spec in "p1k-all-8 1024 all 8" "p1k-1-8 1024 1 8" "p1k-all-1 1024 all 1" "p1k-1-1 1024 1 1" \
        "p100-all-8 100 all 8" "p100-1-8 100 1 8" "p100-all-1 100 all 1" "p100-1-1 100 1 1"; do
        set -- $spec
        measure "$who" "$1" "$BENCH" produce --bootstrap "$B" --topic "$1" --partitions "$4" \
            --message-bytes "$2" --acks "$3" --duration "${SECS}s" --json "$j-$1.json"
    done
    measure "$who" c1k "$BENCH" consume --bootstrap "$B" --topic p1k-all-8 --until-end --json "$j-c1k.json"
    java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$B" --create --topic perf \
        --partitions 8 --replication-factor 1 >/dev/null
    measure "$who" kpp java_tool org.apache.kafka.tools.ProducerPerformance --topic perf \
        --num-records "$RECORDS" --record-size 1024 --throughput -1 \
        --producer-props "bootstrap.servers=$B" acks=all
    measure "$who" kcp java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$B" \
        --topic perf --messages "$RECORDS" --timeout 60000
    measure "$who" topics1000 "$BENCH" scenario bench/scenarios/many-topics.toml --bootstrap "$B" \
        --json "$j-topics1000.json"
    # Kafka's controller refuses an operation of more than 10,000 records
    # (POLICY_VIOLATION), so the topic is made in two steps on both brokers.
    java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$B" --create --topic bench-10000 \
        --partitions 5000 --replication-factor 1 >/dev/null
    java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$B" --alter --topic bench-10000 \
        --partitions 10000 >/dev/null
    measure "$who" parts10k "$BENCH" scenario bench/scenarios/ten-thousand-partitions.toml --bootstrap "$B" \
        --json "$j-parts10k.json"
    awk '/^VmHWM:/ {print $2}' "/proc/$broker/status" >"$WORK/$who.hwm"
}

echo "== corestream ($BIN)"
start_broker "$BIN" --group-initial-rebalance-delay-ms 0
run_all corestream
kill "$broker"; wait "$broker" || true; broker=""

echo "== Apache Kafka 4.1.1 (scripts/kafka-ref)"
kdir="$WORK/kafka"
broker=$(scripts/kafka-ref start "$port" "$kdir")
run_all kafka
scripts/kafka-ref stop "$kdir"; kdir=""; broker=""

python3 - "$WORK" "$SECS" "$RECORDS" <<'PY'
import json, re, sys
work, secs, records = sys.argv[1], sys.argv[2], int(sys.argv[3])
usage = {}
for line in open(f"{work}/usage.tsv"):
    who, name, cpu, rss = line.split()
    usage[(who, name)] = (float(cpu), int(rss) / 1024)

def bench(who, name):
    s = json.load(open(f"{work}/{who}-{name}.json"))
    s = s[0] if isinstance(s, list) else s
    return s["mib_per_sec"], s["bytes"] / 2**30, s.get("latency_us", {}).get("p99")

def perf_producer(who):
    out = open(f"{work}/{who}-kpp.out").read()
    m = re.findall(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\).*?(\d+) ms 99th", out)
    sent, _, mb, p99 = m[-1]
    return float(mb), int(sent) * 1024 / 2**30, int(p99) * 1000

def perf_consumer(who):
    lines = [l for l in open(f"{work}/{who}-kcp.out") if re.match(r"^\d{4}-", l)]
    f = [x.strip() for x in lines[-1].split(",")]
    return float(f[3]), float(f[2]) / 1024, None

def scenario(who, name):
    steps = json.load(open(f"{work}/{who}-{name}.json"))
    if name == "topics1000":
        s = steps[0]
        took = s["create_seconds"] + s["produce_seconds"] + s["consume_seconds"]
        return f"{s['delivered']}/{s['expected']} in {took:.1f} s", took
    p = steps[0]
    return f"{p['mib_per_sec']:.1f} MiB/s", p["mib_per_sec"]

rows = []
for name, label, get in [
    ("p1k-all-8", "produce 1 KiB acks=all, 8 partitions", bench),
    ("p1k-1-8", "produce 1 KiB acks=1, 8 partitions", bench),
    ("p1k-all-1", "produce 1 KiB acks=all, 1 partition", bench),
    ("p1k-1-1", "produce 1 KiB acks=1, 1 partition", bench),
    ("p100-all-8", "produce 100 B acks=all, 8 partitions", bench),
    ("p100-1-8", "produce 100 B acks=1, 8 partitions", bench),
    ("p100-all-1", "produce 100 B acks=all, 1 partition", bench),
    ("p100-1-1", "produce 100 B acks=1, 1 partition", bench),
    ("c1k", "consume the 1 KiB topic", bench),
    ("kpp", "kafka-producer-perf-test 1 KiB acks=all, 8 partitions", lambda who, _: perf_producer(who)),
    ("kcp", "kafka-consumer-perf-test, the same records", lambda who, _: perf_consumer(who)),
]:
    (cm, cg, cp), (km, kg, kp) = get("corestream", name), get("kafka", name)
    (cc, cr), (kc, kr) = usage[("corestream", name)], usage[("kafka", name)]
    p99 = f"{cp/1000:.1f} / {kp/1000:.1f} ms = {cp/kp:.2f}" if cp and kp else "-"
    rows.append(f"| {label} | {cm:.1f} / {km:.1f} MiB/s = **{cm/km:.2f}** | {p99} | "
                f"{cc/cg:.2f} / {kc/kg:.2f} s = **{(cc/cg)/(kc/kg):.2f}** | {cr:.0f} / {kr:.0f} MiB |")
for name, label in [("topics1000", "1000 topics x 3 partitions, a message each, read back"),
                    ("parts10k", "10,000 partitions, 100 B acks=1")]:
    (ct, cv), (kt, kv) = scenario("corestream", name), scenario("kafka", name)
    (cc, cr), (kc, kr) = usage[("corestream", name)], usage[("kafka", name)]
    ratio = f"{kv/cv:.2f}x faster" if name == "topics1000" else f"**{cv/kv:.2f}**"
    rows.append(f"| {label} | {ct} / {kt} ({ratio}) | - | {cc:.1f} / {kc:.1f} CPU s | {cr:.0f} / {kr:.0f} MiB |")
hwm = {w: int(open(f"{work}/{w}.hwm").read()) / 1024 for w in ("corestream", "kafka")}
print(f"\nbench/vs-kafka.sh {secs} {records}: corestream / Apache Kafka 4.1.1, same machine, one run\n")
print("| workload | throughput | p99 ack latency | broker CPU s per GiB | broker RSS after |")
print("|---|---|---|---|---|")
print("\n".join(rows))
print(f"\nPeak RSS over the whole run: corestream {hwm['corestream']:.0f} MiB, Kafka {hwm['kafka']:.0f} MiB "
      f"(= {hwm['corestream']/hwm['kafka']:.2f}).")
PY
