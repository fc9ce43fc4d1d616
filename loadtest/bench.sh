#!/usr/bin/env bash
# Side-by-side benchmark: locallife and a Socket.IO peer doing the same job, driven by
# the same generator (loadgen, the workspace member loadtest/loadgen), and the floor
# (loadtest/floor: the smallest correct tokio + tungstenite fan-out) for the broadcast.
# Writes loadtest/results/latest.json (--quick: quick.json) and prints a table.
#
#   loadtest/bench.sh           full size (19,000 idle sockets on one replica), then the
#                               scale curve to 100,000 sockets (loadtest/scale.sh)
#   loadtest/bench.sh --quick   the same scenarios, smaller (a few minutes), no curve
#
# Servers are stopped with SIGTERM (the storm's victim excepted: it is SIGKILLed on
# purpose) and the run's work directory is removed when it succeeds.
#   loadtest/bench.sh --cluster [SECONDS] [RATE]
#                               standalone Redis against a local 3-primary Cluster:
#                               personal throughput, latency, server CPU per
#                               notification (loadtest/cluster-cost.sh)
#
# Needs what scripts/services.sh sets up (PostgreSQL, Redis), node + npm (the peer),
# and builds the release binaries first (locallife and loadgen: the whole workspace).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh

if [ "${1:-}" = "--cluster" ]; then
    shift
    exec loadtest/cluster-cost.sh "$@"
fi
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
if [ "$QUICK" -eq 1 ]; then
    IDLE=2000 GEN_MAX=2000 PERSONAL_SOCKETS=500 PERSONAL_SECS=5 BCAST=2000 ROUNDS=5 STORM=1000 IDLE_CPU_SECS=15
else
    IDLE=19000 GEN_MAX=9500 PERSONAL_SOCKETS=2000 PERSONAL_SECS=15 BCAST=9000 ROUNDS=10 STORM=19000 IDLE_CPU_SECS=60
fi
# Idle CPU is measured over IDLE_CPU_SECS, from SETTLE_SECS after the last socket is up:
# a full run's minute covers one round of keep-alive pings (54 s here, 25 s Socket.IO).
# SETTLE_SECS also lets memory settle before each RSS reading (the replica trims freed
# memory at most every 10 s).
SETTLE_SECS=12
# The first wave of idle sockets holds through the second's connect and settle too.
HOLD=$((2 * SETTLE_SECS + IDLE_CPU_SECS + 60))
# Personal notifications go out in batches of PUBLISH_BATCH per HTTP request, through
# PUBLISHERS concurrent requests (both systems have a batch endpoint). The latency run,
# at half the rate found, uses batches of LATENCY_BATCH: a notification's latency then
# includes less waiting behind the rest of its batch.
PUBLISH_BATCH=100 PUBLISHERS=8 LATENCY_BATCH=10
# Latency at equal load: both systems at the same offered rates (batches of
# LATENCY_BATCH, 64 publishers), 8,000/s in a quick run, a sweep in a full one.
if [ "$QUICK" -eq 1 ]; then EQ_RATES=(8000); else EQ_RATES=(1000 4000 8000 12000); fi
# The Socket.IO peer's redis-streams adapter trims its stream to about SIO_MAX_LEN
# entries; its default (10,000) throws away what it was asked to deliver under this
# load, so it is set far above what a run publishes.
export SIO_MAX_LEN=2000000
SEED=$((IDLE > BCAST ? IDLE : BCAST))
SRC_IPS=(127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6 127.0.0.7 127.0.0.8 127.0.0.9)

log() { printf '==> %s\n' "$*" >&2; }

rig_setup bench
on_exit "redis-cli del 'sio-bench-$$' >/dev/null 2>&1"
log "building release binaries"
rig_build --release
command -v node >/dev/null || { echo "bench.sh: node is required for the Socket.IO peer" >&2; exit 1; }
log "installing the Socket.IO peer (npm ci)"
(cd loadtest/peers/socketio && npm ci --silent --no-audit --no-fund >&2)

scratch_db locallife_bench
"$BIN" migrate >&2
"$GEN" seed --riders "$SEED" --out "$WORK/users.json" >&2

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# start SYSTEM NAME: starts one server, sets ${NAME}_PID and ${NAME}_PORT. Its port is
# below the ephemeral range (32768+), which the generators' thousands of client sockets
# use (loadgen rig start picks it so).
start() {
    local system=$1 name=$2
    if [ "$system" = locallife ]; then
        start_server "$name" -- "$BIN" serve
    else
        SIO_STREAM=sio-bench-$$ start_server "$name" --ready /healthz -- node loadtest/peers/socketio/server.js
    fi
}

# The idle scenario: IDLE sockets on one server, from several generator processes, in
# two waves. Memory per socket is the growth of RSS from the settled server holding the
# first wave to the settled server holding both, divided by the second wave's size: the
# baseline already holds what the first sockets made the server allocate once (its
# buffers and tables at their working size), so the figure is what one more idle
# socket costs. (A baseline with no socket at all once gave a negative figure: the
# allocator's start-up pages were trimmed in between.) Idle CPU is read with all of
# them connected.
idle() { # system -> JSON
    local system=$1 a rss0 rss1 cpu0 cpu1 n from=0 i=0 files=() wave1=$((IDLE / 2)) first_wave
    start "$system" IDLE
    a=$IDLE_PID
    # connect_wave UNTIL: generators for the users from $from up to UNTIL, waited for.
    connect_wave() {
        local until=$1 first=${#files[@]} f
        while [ "$from" -lt "$until" ]; do
            n=$(( until - from < GEN_MAX ? until - from : GEN_MAX ))
            "$GEN" connect --proto "$system" --server "127.0.0.1:$IDLE_PORT" --users "$WORK/users.json" \
                --from "$from" --count "$n" --src "${SRC_IPS[$((i % 8))]},${SRC_IPS[$(((i + 4) % 8))]}" \
                --hold-secs "$HOLD" >"$WORK/idle-$system-$i.json" 2>>"$WORK/gen.log" &
            PIDS+=($!); files+=("$WORK/idle-$system-$i.json")
            from=$((from + n)); i=$((i + 1))
        done
        for f in "${files[@]:$first}"; do
            for _ in $(seq 1 1200); do grep -q '"connected"' "$f" 2>/dev/null && break; sleep 0.1; done
        done
        sleep "$SETTLE_SECS"
    }
    connect_wave "$wave1"
    rss0=$(rss_kb "$a") first_wave=${#files[@]}
    connect_wave "$IDLE"
    rss1=$(rss_kb "$a"); cpu0=$("$GEN" rig cpu "$a")
    sleep "$IDLE_CPU_SECS"
    cpu1=$("$GEN" rig cpu "$a")
    wait_files "${files[@]}"
    stop_server "$a"
    python3 - "$rss0" "$rss1" "$cpu0" "$cpu1" "$IDLE" "$((IDLE - wave1))" "$IDLE_CPU_SECS" "$first_wave" "${files[@]}" <<'PY'
import json, sys
rss0, rss1, cpu0, cpu1, n, wave2, secs = map(float, sys.argv[1:8])
first = int(sys.argv[8])
runs = [json.loads(open(f).read().strip().splitlines()[-1]) for f in sys.argv[9:]]
print(json.dumps({
    "idle_sockets": int(n),
    "idle_rss_bytes_per_conn": round((rss1 - rss0) * 1024 / wave2),
    "idle_cpu_cores_per_10k": round((cpu1 - cpu0) / secs * 10000 / n, 4),
    # Each wave's generators start together: its time is its slowest one's.
    "connect_rate_per_s": round(n / (max(r["connect_s"] for r in runs[:first])
                                     + max(r["connect_s"] for r in runs[first:]))),
}))
PY
}

wait_files() { # wait until each generator wrote its final line
    for f in "$@"; do
        for _ in $(seq 1 1200); do [ "$(wc -l <"$f")" -ge 2 ] && break; sleep 0.1; done
    done
}

# The storm: STORM sockets on C from several generator processes (GEN_MAX each), each
# holding an unacked notification; once all are ready C is SIGKILLed, the kill's time
# goes into a file the generators wait for, and they reconnect to A. Prints one JSON
# line: the slowest generator's times, the sums of sockets and losses.
storm() { # system -> JSON
    local system=$1 from=0 i=0 n files=() go="$WORK/storm-go-$1"
    start "$system" C
    while [ "$from" -lt "$STORM" ]; do
        n=$(( STORM - from < GEN_MAX ? STORM - from : GEN_MAX ))
        "$GEN" storm --proto "$system" --server "127.0.0.1:$C_PORT" --publish "http://127.0.0.1:$B_PORT" \
            --users "$WORK/users.json" --from "$from" --count "$n" \
            --src "${SRC_IPS[$(((i * 2 + 6) % 8))]},${SRC_IPS[$(((i * 2 + 7) % 8))]}" \
            --go-file "$go" --fallback "127.0.0.1:$A_PORT" >"$WORK/storm-$system-$i.json" 2>>"$WORK/gen.log" &
        PIDS+=($!); files+=("$WORK/storm-$system-$i.json")
        from=$((from + n)); i=$((i + 1))
    done
    for f in "${files[@]}"; do
        for _ in $(seq 1 1800); do grep -q '"ready"' "$f" 2>/dev/null && break; sleep 0.1; done
    done
    kill -9 "$C_PID" 2>/dev/null || true
    python3 -c 'import time; print(int(time.time() * 1e6))' >"$go.tmp" && mv "$go.tmp" "$go"
    wait_files "${files[@]}"
    python3 - "${files[@]}" <<'PY'
import json, sys
runs = [json.loads(open(f).read().strip().splitlines()[-1]) for f in sys.argv[1:]]
print(json.dumps({
    "sockets": sum(r["sockets"] for r in runs),
    "generators": len(runs),
    "reconnect_s": max(r["reconnect_s"] for r in runs),
    "reconnect_storm_s": max(r["reconnect_storm_s"] for r in runs),
    "lost": sum(r["lost"] for r in runs),
}))
PY
}

# The throughput scenarios: sockets on A, publishing through B.
traffic() { # system -> JSON
    local system=$1 max half
    start "$system" A
    start "$system" B
    measured "$WORK/personal-$system.json" personal --proto "$system" --server "127.0.0.1:$A_PORT" \
        --publish "http://127.0.0.1:$B_PORT" \
        --users "$WORK/users.json" --count "$PERSONAL_SOCKETS" --src 127.0.0.2,127.0.0.3 \
        --duration-secs "$PERSONAL_SECS" --batch "$PUBLISH_BATCH" --publishers "$PUBLISHERS"
    max=$("$GEN" rig field "$WORK/personal-$system.json" acked_per_s)
    max=${max%.*}
    half=$(( max / 2 > 1 ? max / 2 : 1 ))
    "$GEN" personal --proto "$system" --server "127.0.0.1:$A_PORT" --publish "http://127.0.0.1:$B_PORT" \
        --users "$WORK/users.json" --from "$PERSONAL_SOCKETS" --count "$PERSONAL_SOCKETS" --src 127.0.0.4 \
        --duration-secs "$PERSONAL_SECS" --rate "$half" --batch "$LATENCY_BATCH" --publishers 64 \
        >"$WORK/half-$system.json" 2>>"$WORK/gen.log"
    local i=0 rate
    for rate in "${EQ_RATES[@]}"; do
        "$GEN" personal --proto "$system" --server "127.0.0.1:$A_PORT" --publish "http://127.0.0.1:$B_PORT" \
            --users "$WORK/users.json" --from $(( PERSONAL_SOCKETS * (2 + i) )) --count "$PERSONAL_SOCKETS" \
            --src 127.0.0.4 --duration-secs "$PERSONAL_SECS" --rate "$rate" --batch "$LATENCY_BATCH" \
            --publishers 64 >"$WORK/eq-$system-$rate.json" 2>>"$WORK/gen.log"
        i=$((i + 1))
    done
    measured "$WORK/broadcast-$system.json" broadcast --proto "$system" --server "127.0.0.1:$A_PORT" \
        --publish "http://127.0.0.1:$B_PORT" \
        --users "$WORK/users.json" --count "$BCAST" --src 127.0.0.5,127.0.0.6 --rounds "$ROUNDS"
    storm "$system" >"$WORK/storm-$system.json"
    stop_server "$A_PID" "$B_PID"
    python3 - "$WORK" "$system" "${EQ_RATES[@]}" <<'PY'
import json, sys
work, system, rates = sys.argv[1], sys.argv[2], [int(r) for r in sys.argv[3:]]
load = lambda name: json.loads(open(f"{work}/{name}-{system}.json").read().strip().splitlines()[-1])
parts = lambda name, kind="cpu": [float(x) for x in open(f"{work}/{name}-{system}.json.{kind}").read().split()]
cpu = lambda name, kind="cpu": sum(parts(name, kind))
p, h, b, s = load("personal"), load("half"), load("broadcast"), load("storm")
sweep = []
for rate in rates:
    e = json.loads(open(f"{work}/eq-{system}-{rate}.json").read().strip().splitlines()[-1])
    sweep.append({"rate": rate, "p50_ms": e["latency_p50_ms"], "p99_ms": e["latency_p99_ms"],
                  "acked_per_s": round(e["acked_per_s"]), "lost": e["lost"],
                  # Publishes answered with an error (ours: 503 `overloaded` from the
                  # latency target): not sent, so neither in the latency nor lost.
                  "refused": e.get("publish_failed", 0)})
equal = next((x for x in sweep if x["rate"] == 8000), sweep[0])
print(json.dumps({
    "server_cpu_us_per_notification": round(cpu("personal") * 1e6 / max(p["delivered_unique"], 1), 1),
    "server_cpu_us_per_notification_split": dict(zip(
        ("delivering_replica", "publishing_replica", "redis"),
        (round(x * 1e6 / max(p["delivered_unique"], 1), 1) for x in parts("personal")))),
    "server_cpu_us_per_delivery": round(cpu("broadcast") * 1e6 / max(b["deliveries"], 1), 2),
    # User space only: the kernel's share (its sends) is the rest.
    "server_user_cpu_us_per_delivery": round(cpu("broadcast", "ucpu") * 1e6 / max(b["deliveries"], 1), 2),
    "latency_equal_load": {"rate": equal["rate"], "p50_ms": equal["p50_ms"], "p99_ms": equal["p99_ms"]},
    "latency_sweep": sweep,
    "personal_acked_per_s": round(p["acked_per_s"]),
    "latency_p50_ms": h["latency_p50_ms"],
    "latency_p99_ms": h["latency_p99_ms"],
    "broadcast_deliveries_per_s": round(b["broadcast_deliveries_per_s"]),
    "reconnect_storm_sockets": s["sockets"],
    "reconnect_storm_s": round(s["reconnect_storm_s"], 2),
    "reconnect_only_s": round(s["reconnect_s"], 2),
    "lost": p["lost"] + h["lost"] + s["lost"] + sum(x["lost"] for x in sweep),
}))
PY
}

# The floor (loadtest/floor): the broadcast alone, on the smallest correct fan-out (one
# process holding the sockets and taking the publish; no Redis, no auth, no acks).
floor_broadcast() { # -> JSON
    start_server FLOOR -- "$FLOOR"
    MEASURE_PIDS="$FLOOR_PID" MEASURE_REDIS="" measured "$WORK/broadcast-floor.json" broadcast \
        --proto locallife --server "127.0.0.1:$FLOOR_PORT" --publish "http://127.0.0.1:$FLOOR_PORT" \
        --users "$WORK/users.json" --count "$BCAST" --src 127.0.0.5,127.0.0.6 --rounds "$ROUNDS"
    stop_server "$FLOOR_PID"
    python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
b = json.loads(open(f"{work}/broadcast-floor.json").read().strip().splitlines()[-1])
cpu = float(open(f"{work}/broadcast-floor.json.cpu").read().split()[0])
user = float(open(f"{work}/broadcast-floor.json.ucpu").read().split()[0])
n = max(b["deliveries"], 1)
print(json.dumps({
    "broadcast_sockets": b["sockets"],
    "broadcast_deliveries_per_s": round(b["broadcast_deliveries_per_s"]),
    "server_cpu_us_per_delivery": round(cpu * 1e6 / n, 2),
    "server_user_cpu_us_per_delivery": round(user * 1e6 / n, 2),
}))
PY
}

log "floor: broadcast"
floor_broadcast >"$WORK/floor.result"

results=()
for system in locallife socketio; do
    log "$system: idle sockets"
    idle "$system" >"$WORK/idle-$system.result"
    log "$system: personal, broadcast, storm"
    traffic "$system" >"$WORK/traffic-$system.result"
    results+=("$system")
done

if [ "$QUICK" -eq 0 ] && [ "${BENCH_SCALE:-1}" = 1 ]; then
    log "scale curve (loadtest/scale.sh)"
    export SCALE_RESULT="$WORK/scale.json"
    # A curve the machine stopped is still reported (with where it stopped).
    SCALE_OUT="$SCALE_RESULT" loadtest/scale.sh >&2 || log "the scale curve stopped early (see above)"
fi

mkdir -p loadtest/results
python3 - "$WORK" "$QUICK" <<'PY'
import json, os, platform, subprocess, sys, datetime
work, quick = sys.argv[1], sys.argv[2] == "1"
def merged(system):
    out = {}
    for part in ("idle", "traffic"):
        out.update(json.loads(open(f"{work}/{part}-{system}.result").read().strip().splitlines()[-1]))
    return out
ours, theirs = merged("locallife"), merged("socketio")
floor = json.loads(open(f"{work}/floor.result").read().strip().splitlines()[-1])
for system in (ours, theirs):
    system["server_kernel_cpu_us_per_delivery"] = round(
        system["server_cpu_us_per_delivery"] - system["server_user_cpu_us_per_delivery"], 2)
floor["server_kernel_cpu_us_per_delivery"] = round(
    floor["server_cpu_us_per_delivery"] - floor["server_user_cpu_us_per_delivery"], 2)
scale_file = os.environ.get("SCALE_RESULT", "")
scale = json.loads(open(scale_file).read()) if scale_file and os.path.exists(scale_file) else None
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
report = {
    "mode": "quick" if quick else "full",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 2**20, 1), "kernel": platform.release()},
    "locallife": ours,
    "socketio": theirs,
    "floor": floor,
}
if scale is not None:
    report["locallife"]["scale"] = scale
# The quick run has its own file: it never overwrites the full run's figures.
out = "loadtest/results/quick.json" if quick else "loadtest/results/latest.json"
json.dump(report, open(out, "w"), indent=2)
rows = [
    ("idle_rss_bytes_per_conn", "lower"), ("idle_cpu_cores_per_10k", "lower"),
    ("connect_rate_per_s", "higher"), ("personal_acked_per_s", "higher"),
    ("broadcast_deliveries_per_s", "higher"), ("latency_p50_ms", "lower"),
    ("latency_p99_ms", "lower"), ("reconnect_storm_s", "lower"), ("reconnect_only_s", "lower"),
    ("lost", "lower"), ("server_cpu_us_per_notification", "lower"),
    ("server_cpu_us_per_delivery", "lower"), ("server_user_cpu_us_per_delivery", "lower"),
    ("server_kernel_cpu_us_per_delivery", "lower"),
]
for system in (ours, theirs):
    for x in system["latency_sweep"]:
        system[f"p50_ms_at_{x['rate']}"] = x["p50_ms"]
        system[f"p99_ms_at_{x['rate']}"] = x["p99_ms"]
for system in (ours, theirs):
    for x in system["latency_sweep"]:
        system[f"refused_at_{x['rate']}"] = x.get("refused", 0)
for x in ours["latency_sweep"]:
    rows += [(f"p50_ms_at_{x['rate']}", "lower"), (f"p99_ms_at_{x['rate']}", "lower"),
             (f"refused_at_{x['rate']}", "lower")]
print(f"\n{'figure':30} {'locallife':>14} {'socketio':>14} {'ratio':>10}")
for key, better in rows:
    a, b = ours.get(key), theirs.get(key)
    ratio = "" if not a or not b else (f"{b / a:.1f}x" if better == "lower" else f"{a / b:.1f}x")
    print(f"{key:30} {a!s:>14} {b!s:>14} {ratio:>10}")
for name, system in (("locallife", ours), ("socketio", theirs)):
    print(f"{name}: server CPU per notification by process (us): {system['server_cpu_us_per_notification_split']}")
print(f"floor (tokio + tungstenite fan-out, {floor['broadcast_sockets']} sockets): "
      f"{floor['server_cpu_us_per_delivery']} us per delivery ({floor['server_user_cpu_us_per_delivery']} user, "
      f"{floor['server_kernel_cpu_us_per_delivery']} kernel); locallife at "
      f"{ours['server_cpu_us_per_delivery'] / max(floor['server_cpu_us_per_delivery'], 1e-9):.2f}x the floor, "
      f"socketio at {theirs['server_cpu_us_per_delivery'] / max(floor['server_cpu_us_per_delivery'], 1e-9):.2f}x")
if scale is not None:
    print(f"scale: {json.dumps(scale)}")
print(f"\n(ratio: how many times better locallife is; {report['mode']} run, "
      f"{ours['idle_sockets']} idle sockets, storm of {ours['reconnect_storm_sockets']}; "
      "reconnect_storm_s waits for every unacked notification to be redelivered, at most 30 s: "
      "Socket.IO has no redelivery, so its figure is the wait and its storm notifications are lost)")
print(f"written: {out}")
PY
