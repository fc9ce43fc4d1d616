#!/usr/bin/env bash
# What a Redis Cluster costs and gives on this machine: two locallife replicas (sockets
# on A, notifications published through B, so every delivery crosses pub/sub) on one
# standalone redis-server, then on a local 3-primary/3-replica Cluster
# (scripts/redis-cluster.sh). Personal notifications at full speed (batches of 100) and
# at a fixed rate (batches of 10). Prints acked/s, latency p50/p99 and the server CPU
# per notification: both replicas and every Redis server, during the full-speed run.
#
#   loadtest/cluster-cost.sh [SECONDS] [RATE]     (defaults 8 s, 2000/s)
#   loadtest/bench.sh --cluster [SECONDS] [RATE]  the same
#
# Every process shares the same two cores: a Cluster here shows its cost per
# notification, not the throughput of three machines (the README projects that).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
SECS="${1:-8}" RATE="${2:-2000}" SOCKETS=300
rig_setup cc
rig_build --release

DIR=$WORK
on_exit stop_all
free_port S
redis_start single "$S" "$WORK"
on_exit 'scripts/redis-cluster.sh down "$WORK/cluster" >/dev/null 2>&1'
scripts/redis-cluster.sh up "$WORK/cluster" >/dev/null
CLUSTER_URL=$(. "$WORK/cluster/env" && echo "$REDIS_URL")

scratch_db locallife_cluster
"$BIN" migrate >&2
"$GEN" seed --riders $((SOCKETS * 2)) --out "$WORK/users.json" >&2

printf '%-12s %10s %10s %10s %14s\n' "Redis" "acked/s" "p50 ms" "p99 ms" "CPU us/notif"
for mode in standalone cluster; do
    if [ "$mode" = standalone ]; then
        url=redis://127.0.0.1:$S redis_pids=("$(cat "$WORK/single.pid")")
    else
        url=$CLUSTER_URL redis_pids=()
        for f in "$WORK"/cluster/node-*.pid; do redis_pids+=("$(cat "$f")"); done
    fi
    REDIS_URL=$url start_server A -- "$BIN" serve
    REDIS_URL=$url start_server B -- "$BIN" serve
    a=$A_PORT b=$B_PORT
    servers=("$A_PID" "$B_PID" "${redis_pids[@]}")
    c0=$(cpu_sum "${servers[@]}")
    "$GEN" personal --proto locallife --server "127.0.0.1:$a" --publish "http://127.0.0.1:$b" \
        --users "$WORK/users.json" --count "$SOCKETS" --src 127.0.0.2 --duration-secs "$SECS" \
        --batch 100 --publishers 8 >"$WORK/max-$mode.json" 2>>"$WORK/gen.log"
    c1=$(cpu_sum "${servers[@]}")
    "$GEN" personal --proto locallife --server "127.0.0.1:$a" --publish "http://127.0.0.1:$b" \
        --users "$WORK/users.json" --from "$SOCKETS" --count "$SOCKETS" --src 127.0.0.3 \
        --duration-secs "$SECS" --rate "$RATE" --batch 10 --publishers 64 \
        >"$WORK/rate-$mode.json" 2>>"$WORK/gen.log"
    kill -9 "$A_PID" "$B_PID"; wait "$A_PID" "$B_PID" 2>/dev/null || true
    python3 - "$mode" "$WORK/max-$mode.json" "$WORK/rate-$mode.json" "$c0" "$c1" "$RATE" <<'PY'
import json, sys
mode, maxf, ratef, c0, c1, rate = sys.argv[1:7]
m = json.loads(open(maxf).read().strip().splitlines()[-1])
r = json.loads(open(ratef).read().strip().splitlines()[-1])
us = (float(c1) - float(c0)) * 1e6 / max(m["delivered_unique"], 1)
print(f"{mode:<12} {m['acked_per_s']:10.0f} {'-':>10} {'-':>10} {us:14.1f}   full speed, batches of 100")
print(f"{mode:<12} {r['acked_per_s']:10.0f} {r['latency_p50_ms']:10.2f} {r['latency_p99_ms']:10.2f} {'':>14}   at {rate}/s, batches of 10")
if m["lost"] or r["lost"]:
    print(f"  lost: {m['lost']} + {r['lost']}")
PY
done
