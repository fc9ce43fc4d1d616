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
. loadtest/lib.sh
SECS="${1:-8}" RATE="${2:-2000}" SOCKETS=300
scripts/services.sh >&2
cargo build --release --locked --workspace --bins >&2
BIN=target/release/locallife GEN=target/release/loadgen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-wait.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for f in "$WORK"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_wait WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

P=$(free_port) R=$(free_port)
for spec in "primary $P" "replica $R --replicaof 127.0.0.1 $P"; do
    set -- $spec
    name=$1 port=$2; shift 2
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --pidfile "$WORK/$name.pid" --logfile "$WORK/$name.log" --dir "$WORK" "$@"
done
for _ in $(seq 1 200); do
    redis-cli -p "$R" info replication 2>/dev/null | grep -q master_link_status:up && break
    sleep 0.05
done

ADMIN_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife
psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_wait WITH (FORCE)" -c "CREATE DATABASE locallife_wait" >&2
export DATABASE_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife_wait
export JWT_SECRET=wait-cost-secret-0123456789abcdef-0123 LOG_FORMAT=json RUST_LOG=warn
# Capacity, not the abuse limits, is measured: request rate limits out of the way.
export HTTP_RATE_USER=1000000 HTTP_RATE_ADDRESS=1000000 MAX_CONNECTIONS_PER_ADDRESS=1000000 HTTP_RATE_LOGIN=1000000 HTTP_RATE_BACK_OFFICE=1000000
export REDIS_URL=redis://127.0.0.1:$P REDIS_KEY_PREFIX=wait-$$
"$BIN" migrate >&2
"$GEN" seed --riders $((SOCKETS * 2)) --out "$WORK/users.json" >&2

printf '%-24s %10s %10s %10s %14s\n' "REDIS_MIN_REPLICAS_ACK" "acked/s" "p50 ms" "p99 ms" "CPU us/notif"
for n in 0 1; do
    port=$(free_port)
    REDIS_MIN_REPLICAS_ACK=$n LISTEN_ADDR=127.0.0.1:$port METRICS_ADDR=127.0.0.1:0 \
        "$BIN" serve 2>>"$WORK/serve-$n.log" &
    pid=$!; PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/readyz"
    redis_pids=("$(cat "$WORK/primary.pid")" "$(cat "$WORK/replica.pid")")
    c0=$(( $(cpu_ticks "$pid") + $(cpu_ticks "${redis_pids[0]}") + $(cpu_ticks "${redis_pids[1]}") ))
    "$GEN" personal --proto locallife --server "127.0.0.1:$port" --publish "http://127.0.0.1:$port" \
        --users "$WORK/users.json" --count "$SOCKETS" --src 127.0.0.2 --duration-secs "$SECS" \
        --batch 100 --publishers 8 >"$WORK/max-$n.json" 2>>"$WORK/gen.log"
    c1=$(( $(cpu_ticks "$pid") + $(cpu_ticks "${redis_pids[0]}") + $(cpu_ticks "${redis_pids[1]}") ))
    "$GEN" personal --proto locallife --server "127.0.0.1:$port" --publish "http://127.0.0.1:$port" \
        --users "$WORK/users.json" --from "$SOCKETS" --count "$SOCKETS" --src 127.0.0.3 \
        --duration-secs "$SECS" --rate "$RATE" --batch 10 --publishers 64 \
        >"$WORK/rate-$n.json" 2>>"$WORK/gen.log"
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$n" "$WORK/max-$n.json" "$WORK/rate-$n.json" "$c0" "$c1" "$(getconf CLK_TCK)" "$RATE" <<'PY'
import json, sys
n, maxf, ratef, c0, c1, tck, rate = sys.argv[1:8]
m = json.loads(open(maxf).read().strip().splitlines()[-1])
r = json.loads(open(ratef).read().strip().splitlines()[-1])
us = (int(c1) - int(c0)) / int(tck) * 1e6 / max(m["delivered_unique"], 1)
print(f"{n:<24} {m['acked_per_s']:10.0f} {'-':>10} {'-':>10} {us:14.1f}   full speed, batches of 100")
print(f"{n:<24} {r['acked_per_s']:10.0f} {r['latency_p50_ms']:10.2f} {r['latency_p99_ms']:10.2f} {'':>14}   at {rate}/s, batches of 10")
if m["lost"] or r["lost"]:
    print(f"  lost: {m['lost']} + {r['lost']}")
PY
done
