#!/usr/bin/env bash
# Redis commands per written and per acked notification, as Redis counts them
# (`CONFIG RESETSTAT`, a phase, `INFO commandstats`), for one build of locallife:
#
#   loadtest/commands-per-notification.sh BIN [N]        (default N=1000)
#   BATCH=100 loadtest/commands-per-notification.sh BIN  (sent 100 a request)
#
# A Redis server of its own (a free port, no persistence, so nobody else's commands are
# counted), a scratch database, one replica, one user (a staff member: no approval
# needed to connect). Phase "write": N notifications to the user through
# POST /v1/platform/notifications, one a request (or BATCH a request through
# /v1/platform/notifications/batch: one script round each), while the user has no
# socket: every command the inbox writes cost. Phase "ack": the user connects
# (`locallife listen`), gets the N from the inbox and acks each: the read on connect
# (one per socket, but reading each entry) and the acks. Commands
# called inside scripts are counted by Redis under their own names; the EVALSHA calls
# that carry them are shown apart. The replica's background work (a canary PUBLISH a
# second, lease renewals, census) falls into the phases too: a few commands per phase
# in all, under 0.01 per notification at the default N.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
[ $# -ge 1 ] || { echo "usage: $0 BIN [N]" >&2; exit 2; }
BIN=$(realpath "$1")
N=${2:-1000}
BATCH=${BATCH:-1}
scripts/services.sh >&2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-commands.XXXXXX")
DIR=$WORK
on_exit 'rm -rf "$WORK"'
PIDS=()
# shellcheck disable=SC2016 # evaluated at exit
on_exit 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; stop_all'

free_port RPORT
redis_start redis "$RPORT" "$WORK"
R=(redis-cli -p "$RPORT")
scratch_db "locallife_commands_$$"
export REDIS_URL=redis://127.0.0.1:$RPORT
export JWT_SECRET=commands-secret-0123456789abcdef-012345 LOG_FORMAT=json RUST_LOG=warn
export HTTP_RATE_USER=1000000 HTTP_RATE_ADDRESS=1000000 HTTP_RATE_BACK_OFFICE=1000000
"$BIN" migrate >&2
user=$("$BIN" user create --openid "commands-user-$$" --role platform)
staff=$("$BIN" user create --openid "commands-staff-$$" --role platform)
user_token=$("$BIN" token --user-id "$user")
staff_token=$("$BIN" token --user-id "$staff")

free_port PORT
"$BIN" serve --listen-addr "127.0.0.1:$PORT" --metrics-addr 127.0.0.1:0 2>>"$WORK/serve.log" &
PIDS+=($!)
WAIT_TRIES=1200 wait_for "the replica ready" curl -sf "http://127.0.0.1:$PORT/readyz"

# calls per command since the last RESETSTAT: "name calls" lines.
stats() {
    "${R[@]}" INFO commandstats | tr -d '\r' |
        sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p' | sort
}

"${R[@]}" CONFIG RESETSTAT >/dev/null
sent=0
while [ "$sent" -lt "$N" ]; do
    if [ "$BATCH" -le 1 ]; then
        curl -sf -X POST "http://127.0.0.1:$PORT/v1/platform/notifications" \
            -H "authorization: Bearer $staff_token" -H 'content-type: application/json' \
            -d "{\"user_id\": $user, \"title\": \"n$sent\", \"content\": \"\"}" >/dev/null
        sent=$((sent + 1))
        continue
    fi
    size=$((N - sent < BATCH ? N - sent : BATCH))
    body=$(python3 -c 'import json, sys; u, n, s = map(int, sys.argv[1:]); print(json.dumps({"notifications": [{"user_id": u, "title": f"n{s + i}", "content": ""} for i in range(n)]}))' "$user" "$size" "$sent")
    curl -sf -X POST "http://127.0.0.1:$PORT/v1/platform/notifications/batch" \
        -H "authorization: Bearer $staff_token" -H 'content-type: application/json' \
        -d "$body" >/dev/null
    sent=$((sent + size))
done
stats >"$WORK/write"

"${R[@]}" CONFIG RESETSTAT >/dev/null
"$BIN" listen --url "ws://127.0.0.1:$PORT/v1/ws" --token "$user_token" --count "$N" >/dev/null
# The socket's last acks are written before its close is answered; a moment for the
# close to reach the server.
sleep 0.5
stats >"$WORK/ack"

python3 - "$N" "$WORK/write" "$WORK/ack" <<'EOF'
import sys
n = int(sys.argv[1])
phases = {}
for name, path in (("write", sys.argv[2]), ("ack", sys.argv[3])):
    phases[name] = dict((l.split()[0], int(l.split()[1])) for l in open(path) if l.strip())
carriers = {"evalsha", "eval", "script|load", "script"}
names = sorted(set(phases["write"]) | set(phases["ack"]))
print(f"{'command':<22}{'per written':>12}{'per acked':>12}")
for c in names:
    w, a = phases["write"].get(c, 0) / n, phases["ack"].get(c, 0) / n
    print(f"{c:<22}{w:>12.2f}{a:>12.2f}")
for label, keep in (("commands (no EVALSHA)", lambda c: c not in carriers), ("all calls", lambda c: True)):
    w = sum(v for c, v in phases["write"].items() if keep(c)) / n
    a = sum(v for c, v in phases["ack"].items() if keep(c)) / n
    print(f"{label:<22}{w:>12.2f}{a:>12.2f}")
EOF
