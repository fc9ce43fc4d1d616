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
. loadtest/lib.sh
SOCKETS=${1:-4000} ROUNDS=${2:-20}
scripts/services.sh >&2
cargo build --release --locked --workspace --bins >&2
BIN=target/release/locallife GEN=target/release/loadgen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-bcast.XXXXXX")
ADMIN_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_bcast WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "bcast-$$*" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_bcast WITH (FORCE)" -c "CREATE DATABASE locallife_bcast" >/dev/null
export DATABASE_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife_bcast
export JWT_SECRET=bcast-secret-0123456789abcdef-0123456789 REDIS_URL=redis://127.0.0.1:6379
export REDIS_KEY_PREFIX=bcast-$$ LOG_FORMAT=json RUST_LOG=warn
export HTTP_RATE_USER=1000000 HTTP_RATE_ADDRESS=1000000 MAX_CONNECTIONS_PER_ADDRESS=1000000 HTTP_RATE_LOGIN=1000000 HTTP_RATE_BACK_OFFICE=1000000
"$BIN" migrate >&2
"$GEN" seed --riders "$SOCKETS" --out "$WORK/users.json" >&2
ports=()
for _ in A B; do
    port=$(free_port)
    LISTEN_ADDR=127.0.0.1:$port METRICS_ADDR=127.0.0.1:0 "$BIN" serve 2>>"$WORK/serve.log" &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$port/readyz"
    ports+=("$port")
done
A_PID=${PIDS[0]}
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
