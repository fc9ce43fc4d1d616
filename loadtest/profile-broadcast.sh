#!/usr/bin/env bash
# Where a broadcast delivery's CPU goes: the broadcast scenario of `bench.sh` (role
# announcements published through replica B to every socket of replica A), with replica
# A's CPU split into user and kernel time per delivery and a flat perf profile of it.
#
#   loadtest/profile-broadcast.sh [SOCKETS] [ROUNDS]     (default 4000 sockets, 20 rounds)
#
# Writes the profile to PERF_OUT (default loadtest/results/profile-broadcast.txt); needs perf.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
SOCKETS=${1:-4000} ROUNDS=${2:-20}
rig_setup bcast
rig_build --release
scratch_db locallife_bcast
"$BIN" migrate >&2
"$GEN" seed --riders "$SOCKETS" --out "$WORK/users.json" >&2
start_server A -- "$BIN" serve
start_server B -- "$BIN" serve
ports=("$A_PORT" "$B_PORT")
# A's user and kernel ticks.
ticks() { awk '{print $14, $15}' "/proc/$A_PID/stat"; }
"$GEN" broadcast --proto locallife --server "127.0.0.1:${ports[0]}" --publish "http://127.0.0.1:${ports[1]}" \
    --users "$WORK/users.json" --count "$SOCKETS" --src 127.0.0.5,127.0.0.6 --rounds "$ROUNDS" \
    >"$WORK/run.json" 2>>"$WORK/gen.log" &
gen=$!
for _ in $(seq 1 2400); do grep -q '"connected"' "$WORK/run.json" 2>/dev/null && break; sleep 0.05; done
t0=$(ticks)
perf record -F 499 -g -p "$A_PID" -o "$WORK/perf.data" >/dev/null 2>&1 &
perf_pid=$!
wait "$gen"
t1=$(ticks)
kill -INT "$perf_pid" 2>/dev/null || true
wait "$perf_pid" || true
result=$(tail -1 "$WORK/run.json")
python3 - "$result" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
u0, s0 = map(int, sys.argv[2].split()); u1, s1 = map(int, sys.argv[3].split()); hz = int(sys.argv[4])
n = max(r["deliveries"], 1)
user, kernel = (u1 - u0) / hz * 1e6 / n, (s1 - s0) / hz * 1e6 / n
print(f"deliveries {r['deliveries']}, {r['broadcast_deliveries_per_s']:.0f}/s; replica A per delivery: "
      f"{user + kernel:.2f} us ({user:.2f} user, {kernel:.2f} kernel)")
PY
out=${PERF_OUT:-loadtest/results/profile-broadcast.txt}
{
    echo "# perf record -F 499 -g of replica A (sockets) during loadtest/profile-broadcast.sh $SOCKETS $ROUNDS, $(date -u +%F)"
    perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --percent-limit 0.7 --stdio -g none 2>/dev/null | grep -E '^ +[0-9]'
    echo "# the same, with callers (children included), top entries"
    perf report -i "$WORK/perf.data" --children --sort symbol --percent-limit 4 --stdio -g none 2>/dev/null | grep -E '^ +[0-9]'
} >"$out"
echo "profile: $out" >&2
