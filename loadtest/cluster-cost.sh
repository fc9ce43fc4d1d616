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
. loadtest/lib.sh
SECS="${1:-8}" RATE="${2:-2000}" SOCKETS=300
scripts/services.sh >&2
cargo build --release --locked --workspace --bins >&2
BIN=target/release/locallife GEN=target/release/loadgen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-cluster.XXXXXX")
ADMIN_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    scripts/redis-cluster.sh down "$WORK/cluster" >/dev/null 2>&1 || true
    [ -e "$WORK/single.pid" ] && kill -9 "$(cat "$WORK/single.pid")" 2>/dev/null
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_cluster WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cpu_sum() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }

S=$(free_port)
redis-server --port "$S" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$WORK/single.pid" --logfile "$WORK/single.log" --dir "$WORK"
for _ in $(seq 1 200); do redis-cli -p "$S" ping >/dev/null 2>&1 && break; sleep 0.05; done
scripts/redis-cluster.sh up "$WORK/cluster" >/dev/null
CLUSTER_URL=$(. "$WORK/cluster/env" && echo "$REDIS_URL")

psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_cluster WITH (FORCE)" -c "CREATE DATABASE locallife_cluster" >&2
export DATABASE_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife_cluster
export JWT_SECRET=cluster-cost-secret-0123456789abcdef-01 LOG_FORMAT=json RUST_LOG=warn
# Capacity, not the abuse limits, is measured: request rate limits out of the way.
export HTTP_RATE_USER=1000000 HTTP_RATE_ADDRESS=1000000 MAX_CONNECTIONS_PER_ADDRESS=1000000 HTTP_RATE_LOGIN=1000000 HTTP_RATE_BACK_OFFICE=1000000
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
    a=$(free_port) b=$(free_port)
    for port in "$a" "$b"; do
        REDIS_URL=$url REDIS_KEY_PREFIX=cc-$$ LISTEN_ADDR=127.0.0.1:$port METRICS_ADDR=127.0.0.1:0 \
            "$BIN" serve 2>>"$WORK/serve-$mode.log" &
        PIDS+=($!)
        wait_http "http://127.0.0.1:$port/readyz"
    done
    servers=("${PIDS[@]: -2}" "${redis_pids[@]}")
    c0=$(cpu_sum "${servers[@]}")
    "$GEN" personal --proto locallife --server "127.0.0.1:$a" --publish "http://127.0.0.1:$b" \
        --users "$WORK/users.json" --count "$SOCKETS" --src 127.0.0.2 --duration-secs "$SECS" \
        --batch 100 --publishers 8 >"$WORK/max-$mode.json" 2>>"$WORK/gen.log"
    c1=$(cpu_sum "${servers[@]}")
    "$GEN" personal --proto locallife --server "127.0.0.1:$a" --publish "http://127.0.0.1:$b" \
        --users "$WORK/users.json" --from "$SOCKETS" --count "$SOCKETS" --src 127.0.0.3 \
        --duration-secs "$SECS" --rate "$RATE" --batch 10 --publishers 64 \
        >"$WORK/rate-$mode.json" 2>>"$WORK/gen.log"
    kill -9 "${PIDS[@]: -2}"; wait "${PIDS[@]: -2}" 2>/dev/null || true
    python3 - "$mode" "$WORK/max-$mode.json" "$WORK/rate-$mode.json" "$c0" "$c1" "$(getconf CLK_TCK)" "$RATE" <<'PY'
import json, sys
mode, maxf, ratef, c0, c1, tck, rate = sys.argv[1:8]
m = json.loads(open(maxf).read().strip().splitlines()[-1])
r = json.loads(open(ratef).read().strip().splitlines()[-1])
us = (int(c1) - int(c0)) / int(tck) * 1e6 / max(m["delivered_unique"], 1)
print(f"{mode:<12} {m['acked_per_s']:10.0f} {'-':>10} {'-':>10} {us:14.1f}   full speed, batches of 100")
print(f"{mode:<12} {r['acked_per_s']:10.0f} {r['latency_p50_ms']:10.2f} {r['latency_p99_ms']:10.2f} {'':>14}   at {rate}/s, batches of 10")
if m["lost"] or r["lost"]:
    print(f"  lost: {m['lost']} + {r['lost']}")
PY
done
