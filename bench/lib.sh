# Helpers shared by the bench scripts (sourced, not run).

# field FILE EXPR: EXPR evaluated over a corestream-bench --json summary,
# with d the summaries by mode (d['produce'], d['consume']).
field() { python3 -c "import json,sys; d={s['mode']: s for s in json.load(open(sys.argv[1]))}; print(eval(sys.argv[2]))" "$@"; }

# cpu_s PID: the process's CPU seconds so far (user + system, /proc).
cpu_s() { python3 -c "
import os,sys
s=open(f'/proc/{sys.argv[1]}/stat').read(); p=s[s.rindex(')')+2:].split()
print((int(p[11])+int(p[12]))/os.sysconf('SC_CLK_TCK'))" "$1"; }
