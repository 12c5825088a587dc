#!/usr/bin/env bash
# What authorization costs end to end: the same SASL_PLAINTEXT load (user
# `bench`, PLAIN) against a broker without an authorizer and against ones
# that check every request against N ACLs, for each N in ACLS (default
# 10,100000; per principal a prefixed ALLOW, then literal ALLOWs and DENYs
# on other topics; `bench` may write and read its topics through one
# prefixed ACL), ROUNDS times each: 1 KiB produce with acks=all for SECS on
# 8 partitions, then consuming it all. Throughput and the broker's CPU
# seconds per GiB, the medians as a ratio to no authorizer. A fresh broker
# per run. The cost of one decision alone: corestream-bench authz.
#
#   bench/acl.sh [seconds] [rounds] [acls,acls...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
ACLS=${3:-10,100000}
BENCH=${BENCH:-target/release/corestream-bench}
BIN=${BIN:-target/release/corestream}
WORK=$(mktemp -d "${ACL_WORK:-$PWD/target}/acl.XXXXXX")
broker=""
trap '[ -n "$broker" ] && kill "$broker" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port=$((30000 + RANDOM % 20000))
admin=$((port + 1)); sasl=$((port + 2))

source bench/lib.sh

# start AUTHORIZER(true|false) [N]: a fresh broker with N ACLs; the
# PLAINTEXT listener's anonymous operator is a super user, `bench` logs in
# over SASL.
start() {
    cat >"$WORK/broker.toml" <<TOML
listeners = ["PLAINTEXT://127.0.0.1:$port", "SASL_PLAINTEXT://127.0.0.1:$sasl"]
[authorizer]
enabled = $1
super_users = ["User:ANONYMOUS"]
TOML
    start_with_config "$WORK/broker.toml"
    if [ "$1" = true ]; then
        python3 - "127.0.0.1:$port" "$2" <<'PY'
import sys
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
n = int(sys.argv[2])

def acl(name, pattern, principal, op, permission=AclPermissionType.ALLOW):
    return AclBinding(ResourceType.TOPIC, name, pattern, principal, "*", op, permission)

acls = [acl("t-", ResourcePatternType.PREFIXED, "User:bench", AclOperation.ALL)]
for i in range(n - 1):
    p = i % max(1, (n - 1) // 10)
    if i < n // 10:
        acls.append(acl(f"team{p}." + "x" * (i % 8), ResourcePatternType.PREFIXED, f"User:app{p}",
                        AclOperation.WRITE))
    else:
        acls.append(acl(f"shared-{i}", ResourcePatternType.LITERAL, f"User:app{p}", AclOperation.READ,
                        AclPermissionType.DENY if i % 7 == 0 else AclPermissionType.ALLOW))
for at in range(0, len(acls), 5000):
    for f in admin.create_acls(acls[at:at + 5000], request_timeout=60).values():
        f.result(120)
PY
    fi
}
sasl_args=(--sasl-mechanism PLAIN --sasl-username bench --sasl-password bench-pw)
: >"$WORK/rows"
IFS=, read -ra counts <<<"$ACLS"
labels=(none)
for n in "${counts[@]}"; do labels+=("${n}_acls"); done
for r in $(seq "$ROUNDS"); do
    start false
    row none "$sasl" "${sasl_args[@]}" >>"$WORK/rows"
    kill "$broker"; wait "$broker" || true; broker=""
    for n in "${counts[@]}"; do
        start true "$n"
        row "${n}_acls" "$sasl" "${sasl_args[@]}" >>"$WORK/rows"
        kill "$broker"; wait "$broker" || true; broker=""
    done
done
cat "$WORK/rows"
medians "$WORK/rows" "SASL_PLAINTEXT (PLAIN), 1 KiB acks=all, 8 partitions, $SECS s per run, median of $ROUNDS rounds (a fresh broker each)" \
    authorizer "${labels[@]}"
