#!/usr/bin/env bash
# Two builds of locallife on the personal scenario of `loadtest/bench.sh --quick`,
# alternated round by round so that the machine's drift hits both alike: two replicas
# (sockets on A, notifications published through B), 500 protocol-2 sockets that ack,
# batches of 100 from 8 publishers for 5 s. Each build gets its own database (migrated
# by that build) and key prefix. Prints one line per run (with the server CPU, both
# replicas and Redis, per acked notification, as bench.sh takes it) and the means.
#
#   loadtest/compare.sh BIN_A BIN_B [ROUNDS]           (default 5 rounds)
#   RATE=5500 BATCH=10 PUBLISHERS=64 loadtest/compare.sh ...   latency at a fixed rate
#
# An older build's binary, for example:
#   git worktree add /tmp/old 83cb72c && (cd /tmp/old && cargo build --release --bin locallife)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [ROUNDS]" >&2; exit 2; }
BINS=("$(realpath "$1")" "$(realpath "$2")") ROUNDS="${3:-5}"
SECS="${SECS:-5}" SOCKETS="${SOCKETS:-500}"
rig_setup compare
rig_build --release -p loadgen
DBS=()
for i in 0 1; do
    scratch_db "locallife_compare_$i"
    DBS+=("$DATABASE_URL")
    "${BINS[$i]}" migrate >&2
    "$GEN" seed --riders $((SOCKETS * 2)) --out "$WORK/users-$i.json" >&2
done
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1; do
        export DATABASE_URL=${DBS[$i]}
        export REDIS_KEY_PREFIX=compare-$$-$i-$r
        start_server A -- "${BINS[$i]}" serve
        start_server B -- "${BINS[$i]}" serve
        a=$A_PORT b=$B_PORT
        measured "$WORK/run-$i-$r.json" personal --proto locallife --server "127.0.0.1:$a" \
            --publish "http://127.0.0.1:$b" \
            --users "$WORK/users-$i.json" --count "$SOCKETS" --src 127.0.0.2,127.0.0.3 \
            --duration-secs "$SECS" ${RATE:+--rate "$RATE"} --batch "${BATCH:-100}" \
            --publishers "${PUBLISHERS:-8}"
        kill -9 "$A_PID" "$B_PID"; wait "$A_PID" "$B_PID" 2>/dev/null || true
        python3 - "$WORK/run-$i-$r.json" "$([ "$i" = 0 ] && echo A || echo B)" "$r" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
a, b, redis = (float(x) for x in open(sys.argv[1] + ".cpu").read().split())
acked = max(j['delivered_unique'], 1)
us = (a + b + redis) / acked * 1e6
print(f"{sys.argv[2]} round {sys.argv[3]}: {j['acked_per_s']:8.0f} acked/s  p50 {j['latency_p50_ms']:8.2f} ms  p99 {j['latency_p99_ms']:8.2f} ms  lost {j['lost']}  "
      f"{us:5.1f} µs/notification (A {a / acked * 1e6:.1f}, B {b / acked * 1e6:.1f}, Redis {redis / acked * 1e6:.1f})")
PY
    done
done
python3 - "$WORK" "$ROUNDS" "${BINS[@]}" <<'PY'
import json, statistics, sys
work, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def cpu_us(i, r):
    j = json.loads(open(f"{work}/run-{i}-{r}.json").read().strip().splitlines()[-1])
    return sum(float(x) for x in open(f"{work}/run-{i}-{r}.json.cpu").read().split()) / max(j['delivered_unique'], 1) * 1e6
for i, name in enumerate("AB"):
    runs = [json.loads(open(f"{work}/run-{i}-{r}.json").read().strip().splitlines()[-1]) for r in range(1, rounds + 1)]
    print(f"{name} ({bins[i]}): mean {statistics.mean(r['acked_per_s'] for r in runs):.0f} acked/s, "
          f"median p50 {statistics.median(r['latency_p50_ms'] for r in runs):.2f} ms, "
          f"median p99 {statistics.median(r['latency_p99_ms'] for r in runs):.2f} ms, "
          f"median {statistics.median(cpu_us(i, r) for r in range(1, rounds + 1)):.1f} µs of server CPU per notification")
PY
