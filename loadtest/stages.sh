#!/usr/bin/env bash
# Where a notification's time goes: the personal scenario of `bench.sh --quick` (sockets
# on replica A, notifications published through replica B, 500 sockets that ack) at a
# fixed rate, then each stage of `locallife_notification_stage_seconds` read from both
# replicas' /metrics: p50, p90 and p99 from the decision to stored, received, written
# and confirmed, and the time each step adds.
#
#   loadtest/stages.sh [RATE] [SECONDS]     (default 8000/s for 10 s, batches of 10)
#   PERF=1 loadtest/stages.sh ...           also a flat perf profile of replica A (the
#                                           delivering one; needs perf), written to
#                                           PERF_OUT (default loadtest/results/profile-A.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
RATE=${1:-8000} SECS=${2:-10} SOCKETS=${SOCKETS:-500}
rig_setup stages
rig_build --release
scratch_db locallife_stages
"$BIN" migrate >&2
"$GEN" seed --riders "$SOCKETS" --out "$WORK/users.json" >&2
start_server A --metrics -- "$BIN" serve
start_server B --metrics -- "$BIN" serve
ports=("$A_PORT" "$B_PORT") metrics=("$A_METRICS" "$B_METRICS")
if [ "${PERF:-0}" = 1 ]; then
    perf record -F 499 -p "$A_PID" -o "$WORK/perf.data" -- sleep "$((SECS + 3))" >/dev/null 2>&1 &
    PERF_PID=$!
fi
"$GEN" personal --proto locallife --server "127.0.0.1:${ports[0]}" --publish "http://127.0.0.1:${ports[1]}" \
    --users "$WORK/users.json" --count "$SOCKETS" --src 127.0.0.2,127.0.0.3 --duration-secs "$SECS" \
    --rate "$RATE" --batch 10 --publishers 64 >"$WORK/run.json" 2>>"$WORK/gen.log"
for i in 0 1; do curl -sf "http://127.0.0.1:${metrics[$i]}/metrics" >"$WORK/metrics-$i.txt"; done
if [ "${PERF:-0}" = 1 ]; then
    wait "$PERF_PID" || true
    out=${PERF_OUT:-loadtest/results/profile-A.txt}
    {
        echo "# perf record -F 499 of replica A (sockets) during loadtest/stages.sh $RATE $SECS, $(date -u +%F)"
        perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --percent-limit 0.5 --stdio 2>/dev/null | grep -E '^ +[0-9]'
    } >"$out"
    echo "profile: $out" >&2
fi
python3 - "$WORK" "$RATE" <<'PY'
import json, re, sys
work, rate = sys.argv[1], sys.argv[2]
run = json.loads(open(f"{work}/run.json").read().strip().splitlines()[-1])
buckets = {}
for i in (0, 1):
    for line in open(f"{work}/metrics-{i}.txt"):
        # Written to the socket is the delivery latency (the same measurement).
        m = re.match(r'locallife_notification_stage_seconds_bucket\{stage="(\w+)",le="([^"]+)"\} (\S+)', line)
        w = re.match(r'locallife_delivery_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m or w:
            stage, le, n = (m.group(1), m.group(2), m.group(3)) if m else ("written", w.group(1), w.group(2))
            le, n = float(le), float(n)
            buckets.setdefault(stage, {}).setdefault(le, 0.0)
            buckets[stage][le] += n
def quantile(b, q):
    les = sorted(b)
    total = b[les[-1]]
    prev_le, prev_n = 0.0, 0.0
    for le in les:
        if b[le] >= q * total:
            if le == float("inf"):
                return prev_le * 1000
            frac = (q * total - prev_n) / max(b[le] - prev_n, 1e-9)
            return (prev_le + (le - prev_le) * frac) * 1000
        prev_le, prev_n = le, b[le]
    return float("nan")
print(f"\n{rate}/s for the run: {run['acked_per_s']:.0f} acked/s, client-measured p50 {run['latency_p50_ms']} ms, p99 {run['latency_p99_ms']} ms, lost {run['lost']}")
print(f"{'stage (from decision)':24} {'count':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
for stage in ("stored", "received", "written", "confirmed"):
    if stage in buckets:
        b = buckets[stage]
        print(f"{stage:24} {b[float('inf')]:8.0f} {quantile(b, .5):8.2f} {quantile(b, .9):8.2f} {quantile(b, .99):8.2f}")
print("(histogram buckets interpolated; the decision clock is the message id's, in ms)")
PY
