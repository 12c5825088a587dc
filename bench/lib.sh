# Helpers shared by the bench scripts (sourced, not run).

# field FILE EXPR: EXPR evaluated over a corestream-bench --json summary,
# with d the summaries by mode (d['produce'], d['consume']).
field() { python3 -c "import json,sys; d={s['mode']: s for s in json.load(open(sys.argv[1]))}; print(eval(sys.argv[2]))" "$@"; }

# cpu_s PID: the process's CPU seconds so far (user + system, /proc).
cpu_s() { python3 -c "
import os,sys
s=open(f'/proc/{sys.argv[1]}/stat').read(); p=s[s.rindex(')')+2:].split()
print((int(p[11])+int(p[12]))/os.sysconf('SC_CLK_TCK'))" "$1"; }

# start_broker BIN [ARG...]: a fresh broker (empty $WORK/data) on $port and
# $admin, with extra `start` arguments; sets $broker to its pid and returns
# once it accepts connections.
start_broker() {
    local bin=$1
    shift
    rm -rf "$WORK/data"
    "$bin" start --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --data-dir "$WORK/data" "$@" \
        >"$WORK/broker.log" 2>&1 &
    broker=$!
    for _ in $(seq 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then return; fi
        sleep 0.1
    done
    echo "broker $bin $* did not start:"; tail -20 "$WORK/broker.log"; exit 1
}

# start_with_config FILE: a fresh broker ($BIN, empty $WORK/data) whose
# listeners FILE configures, the first on $port; sets $broker and makes the
# SASL user `bench` (password bench-pw) through $port.
start_with_config() {
    rm -rf "$WORK/data"
    "$BIN" start --config "$1" --admin-listen "127.0.0.1:$admin" --data-dir "$WORK/data" >"$WORK/broker.log" 2>&1 &
    broker=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
        sleep 0.1
    done
    "$BIN" user create bench --password bench-pw -b "127.0.0.1:$port" >/dev/null
}

# row LABEL PORT [bench security args...]: produce SECS then consume it all from
# the broker $broker on 127.0.0.1:PORT (BENCH, WORK, SECS set by the caller); prints
# "label produce_mib_s produce_cpu_s_per_gib consume_mib_s consume_cpu_s_per_gib p99_ms".
row() {
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

# medians ROWS TITLE COLUMN BASE OTHER...: the median of each label's `row`
# lines in ROWS, one line per label (BASE first), the others as ratios to BASE.
medians() {
    python3 - "$@" <<'PY'
import statistics, sys
rows_file, title, column, *labels = sys.argv[1:]
by = {}
for label, *vals in (l.split() for l in open(rows_file)):
    by.setdefault(label, []).append([float(v) for v in vals])
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in by.items()}
print(title)
print(f"{column:<12} {'produce MiB/s':>14} {'CPU s/GiB':>10} {'p99 ms':>8} {'consume MiB/s':>14} {'CPU s/GiB':>10}")
base = med[labels[0]]
for k in labels:
    m = med[k]
    print(f"{k:<12} {m[0]:>14} {m[1]:>10} {m[4]:>8} {m[2]:>14} {m[3]:>10}"
          + ("" if k == labels[0] else f"   (x{m[0]/base[0]:.2f} produce, x{m[2]/base[2]:.2f} consume)"))
PY
}
