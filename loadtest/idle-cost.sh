#!/usr/bin/env bash
# Idle memory per socket of two builds, alternated round by round: one replica each;
# a first wave of SOCKETS/4 idle protocol-2 sockets, then the other 3/4 from a second
# generator, each settled for 12 s (the replica trims freed memory at most every 10 s); the growth of RSS between the two, divided by the
# second wave's sockets (so start-up garbage and its later trim do not count).
#
#   loadtest/idle-cost.sh BIN_A BIN_B [ROUNDS]      (SOCKETS=8000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [ROUNDS]" >&2; exit 2; }
BINS=("$(realpath "$1")" "$(realpath "$2")") ROUNDS="${3:-3}" SOCKETS="${SOCKETS:-8000}"
rig_setup idle
rig_build --release -p loadgen
scratch_db locallife_idle
"${BINS[0]}" migrate >&2
"$GEN" seed --riders "$SOCKETS" --out "$WORK/users.json" >&2
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1; do
        export REDIS_KEY_PREFIX=idle-$$-$i-$r
        start_server S -- "${BINS[$i]}" serve
        server=$S_PID port=$S_PORT
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
