#!/usr/bin/env bash
# What REDIS_MIN_REPLICAS_ACK costs: one locallife replica on a Redis primary with one
# replica (both local, nothing on disk), personal notifications at full speed (batches
# of 100) and at a fixed rate (batches of 10), with REDIS_MIN_REPLICAS_ACK=0 and =1.
# Prints acked/s, latency p50/p99 and the server CPU per notification (the replica and
# both Redis servers, during the full-speed run) for each.
#
#   loadtest/wait-cost.sh [SECONDS] [RATE]     (defaults 8 s, 2000/s)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
SECS="${1:-8}" RATE="${2:-2000}" SOCKETS=300
rig_setup wait
rig_build --release

DIR=$WORK
on_exit stop_all
free_port P
free_port R
redis_start primary "$P" "$WORK"
redis_start replica "$R" "$WORK" --replicaof 127.0.0.1 "$P"
wait_for "replication link up" sh -c "redis-cli -p $R info replication | grep -q master_link_status:up"

scratch_db locallife_wait
export REDIS_URL=redis://127.0.0.1:$P
"$BIN" migrate >&2
"$GEN" seed --riders $((SOCKETS * 2)) --out "$WORK/users.json" >&2

printf '%-24s %10s %10s %10s %14s\n' "REDIS_MIN_REPLICAS_ACK" "acked/s" "p50 ms" "p99 ms" "CPU us/notif"
for n in 0 1; do
    REDIS_MIN_REPLICAS_ACK=$n start_server S -- "$BIN" serve
    pid=$S_PID port=$S_PORT
    servers=("$pid" "$(cat "$WORK/primary.pid")" "$(cat "$WORK/replica.pid")")
    c0=$(cpu_sum "${servers[@]}")
    "$GEN" personal --proto locallife --server "127.0.0.1:$port" --publish "http://127.0.0.1:$port" \
        --users "$WORK/users.json" --count "$SOCKETS" --src 127.0.0.2 --duration-secs "$SECS" \
        --batch 100 --publishers 8 >"$WORK/max-$n.json" 2>>"$WORK/gen.log"
    c1=$(cpu_sum "${servers[@]}")
    "$GEN" personal --proto locallife --server "127.0.0.1:$port" --publish "http://127.0.0.1:$port" \
        --users "$WORK/users.json" --from "$SOCKETS" --count "$SOCKETS" --src 127.0.0.3 \
        --duration-secs "$SECS" --rate "$RATE" --batch 10 --publishers 64 \
        >"$WORK/rate-$n.json" 2>>"$WORK/gen.log"
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$n" "$WORK/max-$n.json" "$WORK/rate-$n.json" "$c0" "$c1" "$RATE" <<'PY'
import json, sys
n, maxf, ratef, c0, c1, rate = sys.argv[1:7]
m = json.loads(open(maxf).read().strip().splitlines()[-1])
r = json.loads(open(ratef).read().strip().splitlines()[-1])
us = (float(c1) - float(c0)) * 1e6 / max(m["delivered_unique"], 1)
print(f"{n:<24} {m['acked_per_s']:10.0f} {'-':>10} {'-':>10} {us:14.1f}   full speed, batches of 100")
print(f"{n:<24} {r['acked_per_s']:10.0f} {r['latency_p50_ms']:10.2f} {r['latency_p99_ms']:10.2f} {'':>14}   at {rate}/s, batches of 10")
if m["lost"] or r["lost"]:
    print(f"  lost: {m['lost']} + {r['lost']}")
PY
done
