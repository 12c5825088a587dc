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
