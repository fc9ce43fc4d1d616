#!/usr/bin/env bash
# The scale curve (issue 33 item 5): how cost grows from 20,000 to 100,000 idle sockets
# on this machine, spread over as many replica processes as the open-file limit needs
# (SCALE_PER_REPLICA sockets each at most, default 17,000 of a 20,000-file limit), one
# Redis, one database; then the storm at the largest count: every socket holds an
# unacked notification, every replica is killed (SIGKILL) and started again on its
# port, and the time until every socket is back and has its notification again.
#
#   loadtest/scale.sh [COUNT...]        default: 20000 50000 100000
#   SCALE_CURVE=0 loadtest/scale.sh N   the storm of N sockets only
#   RIG_KEEP=1 ...                      keep the work directory (replica logs)
#
# For each count: the replicas start; half the sockets connect (generators of at most
# 9,500 sockets each, from 8 source addresses), settle; the replicas' RSS is read; the
# other half connect, settle; RSS again: memory per socket is the growth over the
# second half (the baseline holds what the first sockets made the replicas allocate
# once, as in bench.sh). Idle CPU over SCALE_IDLE_SECS (default 30) with all connected;
# connect rate = sockets / the two waves' connect times (each wave's slowest generator,
# from the first socket it opened to the last one live). The replicas are stopped with
# SIGTERM before the next count.
#
# Prints one JSON line per count and writes them, with the storm, to
# loadtest/results/scale.json (`{"curve": [...], "storm": {...}}`, and the largest
# count's figures at the top level: what bench.sh's full run puts in latest.json as
# locallife.scale). Stops at the first count the machine refuses (files, ports,
# memory) and says which and where.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh

COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(20000 50000 100000)
for c in "${COUNTS[@]}"; do
    [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "usage: loadtest/scale.sh [COUNT...]" >&2; exit 2; }
done
PER_REPLICA=${SCALE_PER_REPLICA:-17000}
GEN_MAX=9500
SETTLE_SECS=12
IDLE_SECS=${SCALE_IDLE_SECS:-30}
SRC_IPS=(127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6 127.0.0.7 127.0.0.8 127.0.0.9)
OUT=${SCALE_OUT:-loadtest/results/scale.json}

log() { printf '==> %s\n' "$*" >&2; }

rig_setup scale
# Six replicas' pools must fit PostgreSQL's max_connections (100 by default): 14 a
# replica plus the relay's LISTEN is 90. With the default 16, the sixth replica got
# "too many clients" and refused its sockets 503. (A pool of 8 made admission queue
# for connections during a wave: the connect rate fell to a third.)
export DATABASE_POOL_SIZE=${SCALE_POOL_SIZE:-14}
log "building release binaries"
rig_build --release
scratch_db locallife_scale
"$BIN" migrate >&2
MAX=0
for c in "${COUNTS[@]}"; do [ "$c" -gt "$MAX" ] && MAX=$c; done
log "seeding $MAX users"
"$GEN" seed --riders "$MAX" --out "$WORK/users.json" >&2

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
rss_sum() { local s=0 p; for p in "$@"; do s=$((s + $(rss_kb "$p"))); done; echo "$s"; }

# replicas R [PORT...]: starts R replicas (on PORT... when given), in parallel; sets
# RPIDS and RPORTS.
replicas() {
    local r=$1 i out=() jobs=() ports=("${@:2}") f pid port
    for ((i = 0; i < r; i++)); do
        out+=("$WORK/start-$i.out")
        "$GEN" rig start --log "$WORK/replica-$i.log" ${ports[$i]:+--port "${ports[$i]}"} \
            -- "$BIN" serve >"$WORK/start-$i.out" 2>>"$WORK/start.log" &
        jobs+=($!)
    done
    # Each `rig start` returns once its replica is ready (or failed).
    wait "${jobs[@]}" || true
    RPIDS=() RPORTS=()
    for f in "${out[@]}"; do
        [ -s "$f" ] || { echo "scale.sh: a replica did not start; logs in $WORK" >&2; exit 1; }
        read -r pid port _ <"$f"
        RPIDS+=("$pid") RPORTS+=("$port") PIDS+=("$pid")
    done
}

# wave FROM UNTIL SCENARIO [ARGS...]: generators for users FROM..UNTIL spread over the
# replicas (each generator on one; their pids added to GPIDS); waits for each to print
# that its sockets are up.
wave() {
    local from=$1 until=$2 scenario=$3 n r i pids=() files=()
    shift 3
    while [ "$from" -lt "$until" ]; do
        n=$(( until - from < GEN_MAX ? until - from : GEN_MAX ))
        r=$(( GI % ${#RPORTS[@]} ))
        "$GEN" "$scenario" --proto locallife --server "127.0.0.1:${RPORTS[$r]}" \
            --users "$WORK/users.json" --from "$from" --count "$n" \
            --src "${SRC_IPS[$((GI % 8))]},${SRC_IPS[$(((GI + 4) % 8))]}" "$@" \
            >"$WORK/gen-$GI.json" 2>>"$WORK/gen.log" &
        pids+=($!) files+=("$WORK/gen-$GI.json")
        from=$((from + n)); GI=$((GI + 1))
    done
    PIDS+=("${pids[@]}") GPIDS+=("${pids[@]}")
    for i in "${!files[@]}"; do
        # Up until it says so; a generator that exits first (the machine refused a
        # socket: files, ports, memory) ends the curve.
        for _ in $(seq 1 3000); do
            grep -q '"connected"' "${files[$i]}" 2>/dev/null && break
            kill -0 "${pids[$i]}" 2>/dev/null || break
            sleep 0.1
        done
        grep -q '"connected"' "${files[$i]}" || {
            echo "scale.sh: a generator stopped before its sockets were up: $(tail -c 400 "$WORK/gen.log")" >&2
            return 1
        }
    done
}

GI=0
LINES=()
for N in "${COUNTS[@]}"; do
    [ "${SCALE_CURVE:-1}" = 1 ] || break
    R=$(( (N + PER_REPLICA - 1) / PER_REPLICA ))
    log "$N idle sockets on $R replicas"
    replicas "$R"
    GPIDS=()
    sleep "$SETTLE_SECS"
    half=$((N / 2))
    first=$GI
    if ! wave 0 "$half" connect --hold-secs 100000; then STOPPED="at $N sockets (first half)"; break; fi
    second=$GI
    sleep "$SETTLE_SECS"
    rss0=$(rss_sum "${RPIDS[@]}")
    if ! wave "$half" "$N" connect --hold-secs 100000; then STOPPED="at $N sockets (second half)"; break; fi
    sleep "$SETTLE_SECS"
    rss1=$(rss_sum "${RPIDS[@]}")
    cpu0=$(cpu_sum "${RPIDS[@]}")
    sleep "$IDLE_SECS"
    cpu1=$(cpu_sum "${RPIDS[@]}")
    line=$(python3 -c '
import json, sys
n, r, rss0, rss1, cpu0, cpu1, secs, first, second, end = map(float, sys.argv[1:11])
work = sys.argv[11]
# Each wave'"'"'s generators start together: its connect time is its slowest one'"'"'s
# (from their own clocks: the first socket opened to the last one live).
took = lambda a, b: max(json.loads(open(f"{work}/gen-{i}.json").readline())["connect_s"]
                        for i in range(int(a), int(b)))
print(json.dumps({
    "sockets": int(n), "replicas": int(r),
    "rss_bytes_per_conn": round((rss1 - rss0) * 1024 / (n - n // 2)),
    "rss_bytes_total": int(rss1 * 1024),
    "idle_cpu_cores_per_10k": round((cpu1 - cpu0) / secs * 10000 / n, 4),
    "connect_rate_per_s": round(n / (took(first, second) + took(second, end))),
}))' "$N" "$R" "$rss0" "$rss1" "$cpu0" "$cpu1" "$IDLE_SECS" "$first" "$second" "$GI" "$WORK")
    echo "$line"
    LINES+=("$line")
    stop_server "${GPIDS[@]}"
    stop_server "${RPIDS[@]}"
done

# The storm, at the largest count reached: each generator publishes one notification to
# each of its users (through its replica), holds it unacked, and once all are ready
# every replica is SIGKILLed and started again on its port; the generators reconnect
# (retrying while the port is closed) and wait for every notification again.
STORM='null'
if [ -z "${STOPPED:-}" ]; then
    N=$MAX R=$(( (MAX + PER_REPLICA - 1) / PER_REPLICA ))
    log "storm: $N sockets on $R replicas, every replica killed and restarted"
    replicas "$R"
    FILES=() GPIDS=()
    go="$WORK/storm-go"
    GI=0
    from=0
    while [ "$from" -lt "$N" ]; do
        n=$(( N - from < GEN_MAX ? N - from : GEN_MAX ))
        r=$(( GI % R ))
        "$GEN" storm --proto locallife --server "127.0.0.1:${RPORTS[$r]}" \
            --publish "http://127.0.0.1:${RPORTS[$r]}" --users "$WORK/users.json" \
            --from "$from" --count "$n" --src "${SRC_IPS[$((GI % 8))]},${SRC_IPS[$(((GI + 4) % 8))]}" \
            --go-file "$go" --fallback "127.0.0.1:${RPORTS[$r]}" --retry-secs 60 \
            >"$WORK/storm-$GI.json" 2>>"$WORK/gen.log" &
        PIDS+=($!) GPIDS+=($!) FILES+=("$WORK/storm-$GI.json")
        from=$((from + n)); GI=$((GI + 1))
    done
    for f in "${FILES[@]}"; do
        for _ in $(seq 1 3000); do grep -q '"ready"' "$f" 2>/dev/null && break; sleep 0.1; done
        grep -q '"ready"' "$f" || { echo "scale.sh: the storm's sockets never got ready; logs in $WORK" >&2; exit 1; }
    done
    ports=("${RPORTS[@]}")
    kill -9 "${RPIDS[@]}"
    python3 -c 'import time; print(int(time.time() * 1e6))' >"$go.tmp" && mv "$go.tmp" "$go"
    gone "${RPIDS[@]}"
    replicas "$R" "${ports[@]}"
    for f in "${FILES[@]}"; do
        for _ in $(seq 1 1800); do [ "$(wc -l <"$f")" -ge 2 ] && break; sleep 0.1; done
    done
    STORM=$(python3 - "$N" "$R" "${FILES[@]}" <<'PY'
import json, sys
n, r = int(sys.argv[1]), int(sys.argv[2])
runs = [json.loads(open(f).read().strip().splitlines()[-1]) for f in sys.argv[3:]]
print(json.dumps({
    "sockets": sum(x["sockets"] for x in runs), "replicas": r,
    "reconnected": sum(x["reconnected"] for x in runs),
    "storm_s": round(max(x["reconnect_storm_s"] for x in runs), 2),
    "reconnect_s": round(max(x["reconnect_s"] for x in runs), 2),
    "lost": sum(x["lost"] for x in runs),
    "missing_users": sorted(u for x in runs for u in x.get("missing_users", []))[:50],
}))
PY
)
    echo "$STORM"
    stop_server "${GPIDS[@]}"
fi

mkdir -p "$(dirname "$OUT")"
python3 - "$OUT" "$STORM" "${STOPPED:-}" "${LINES[@]}" <<'PY'
import json, sys, datetime
out, storm, stopped, lines = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4:]
curve = [json.loads(l) for l in lines]
top = curve[-1] if curve else {}
report = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "sockets": top.get("sockets"), "replicas": top.get("replicas"),
    "rss_bytes_per_conn": top.get("rss_bytes_per_conn"),
    "idle_cpu_cores_per_10k": top.get("idle_cpu_cores_per_10k"),
    "connect_rate_per_s": top.get("connect_rate_per_s"),
    "storm_s": storm["storm_s"] if storm else None,
    "lost": storm["lost"] if storm else None,
    "curve": curve, "storm": storm,
}
if stopped:
    report["stopped"] = stopped
json.dump(report, open(out, "w"), indent=2)
print(f"written: {out}")
PY
if [ -n "${STOPPED:-}" ]; then
    echo "scale.sh: the machine stopped the curve $STOPPED; see $WORK/gen.log" >&2
    exit 1
fi
