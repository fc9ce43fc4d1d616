#!/usr/bin/env bash
# Idle memory per socket of two builds, alternated round by round: one replica each;
# a first wave of SOCKETS/4 idle protocol-2 sockets, then the other 3/4 from a second
# generator, each settled for 12 s (the replica trims freed memory at most every 10 s); the growth of RSS between the two, divided by the
# second wave's sockets (so start-up garbage and its later trim do not count).
#
#   loadtest/idle-cost.sh BIN_A BIN_B [ROUNDS]      (SOCKETS=8000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [ROUNDS]" >&2; exit 2; }
BINS=("$(realpath "$1")" "$(realpath "$2")") ROUNDS="${3:-3}" SOCKETS="${SOCKETS:-8000}"
scripts/services.sh >&2
cargo build --release --locked -p loadgen >&2
GEN=target/release/loadgen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-idle.XXXXXX")
ADMIN_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_idle WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "idle-$$-*" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export JWT_SECRET=idle-secret-0123456789abcdef-0123456789 REDIS_URL=redis://127.0.0.1:6379
export LOG_FORMAT=json RUST_LOG=warn HTTP_RATE_USER=1000000 HTTP_RATE_ADDRESS=1000000 MAX_CONNECTIONS_PER_ADDRESS=1000000 HTTP_RATE_LOGIN=1000000
export DATABASE_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife_idle
psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_idle WITH (FORCE)" -c "CREATE DATABASE locallife_idle" >/dev/null
"${BINS[0]}" migrate >&2
"$GEN" seed --riders "$SOCKETS" --out "$WORK/users.json" >&2
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1; do
        export REDIS_KEY_PREFIX=idle-$$-$i-$r
        port=$(free_port)
        LISTEN_ADDR=127.0.0.1:$port METRICS_ADDR=127.0.0.1:0 "${BINS[$i]}" serve 2>>"$WORK/serve.log" &
        server=$!
        PIDS+=("$server")
        wait_http "http://127.0.0.1:$port/readyz"
        first=$((SOCKETS / 4)) second=$((SOCKETS - SOCKETS / 4))
        "$GEN" connect --proto locallife --server "127.0.0.1:$port" --users "$WORK/users.json" \
            --from 0 --count "$first" --src 127.0.0.2 --hold-secs 60 >"$WORK/gen-0.json" 2>>"$WORK/gen.log" &
        g0=$!
        for _ in $(seq 1 1200); do grep -q '"connected"' "$WORK/gen-0.json" 2>/dev/null && break; sleep 0.1; done
        sleep 12
        rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
        "$GEN" connect --proto locallife --server "127.0.0.1:$port" --users "$WORK/users.json" \
            --from "$first" --count "$second" --src 127.0.0.3 --hold-secs 20 >"$WORK/gen-1.json" 2>>"$WORK/gen.log" &
        g1=$!
        for _ in $(seq 1 1200); do grep -q '"connected"' "$WORK/gen-1.json" 2>/dev/null && break; sleep 0.1; done
        sleep 12
        rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
        kill -9 "$g0" "$g1" 2>/dev/null || true
        wait "$g0" "$g1" 2>/dev/null || true
        kill -9 "$server"; wait "$server" 2>/dev/null || true
        echo "$([ "$i" = 0 ] && echo A || echo B) round $r: $(( (rss1 - rss0) * 1024 / second )) B per socket ($second sockets on top of $first)"
    done
done
