#!/usr/bin/env bash
# Overload (SPEC §11): two replicas, sockets on A, personal notifications published on
# B in batches of 10 (loadgen overload): B's capacity measured (or given), then half of
# it (the unloaded latency), twice it for OVER_SECS, half again for UNDER_SECS. Merges
# the figures into loadtest/results/latest.json as locallife.overload and prints them
# with the targets: accepted p99 at most 10 times the unloaded p99, memory bounded,
# back within twice the unloaded p99 at most 10 s after the load falls.
#
#   loadtest/overload.sh [CAPACITY] [OVER_SECS] [UNDER_SECS]
#       CAPACITY    notifications/s B carries; 0 (default) measures it
#       OVER_SECS   default 60;  UNDER_SECS  default 30
#   SOCKETS (default 1000), MEASURE_SECS (default 10), BATCH (default 10) and
#   PUBLISH_MAX_IN_FLIGHT (the replicas' own default unless set) from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
CAPACITY="${1:-0}" OVER_SECS="${2:-60}" UNDER_SECS="${3:-30}"
SOCKETS="${SOCKETS:-1000}" MEASURE_SECS="${MEASURE_SECS:-10}" BATCH="${BATCH:-10}"
COMMAND="loadtest/overload.sh${*:+ $*}"

rig_setup overload
rig_build --release
scratch_db locallife_overload
"$BIN" migrate >&2
"$GEN" seed --riders "$SOCKETS" --out "$WORK/users.json" >&2
start_server A -- "$BIN" serve
start_server B -- "$BIN" serve

"$GEN" overload --proto locallife --server "127.0.0.1:$A_PORT" --publish "http://127.0.0.1:$B_PORT" \
    --users "$WORK/users.json" --count "$SOCKETS" --src 127.0.0.2,127.0.0.3 --batch "$BATCH" \
    --capacity "$CAPACITY" --measure-secs "$MEASURE_SECS" --over-secs "$OVER_SECS" \
    --under-secs "$UNDER_SECS" --rss-pid "$A_PID,$B_PID" >"$WORK/overload.json" 2>>"$WORK/gen.log"

python3 - "$WORK/overload.json" loadtest/results/latest.json "$COMMAND" "${RIG_PROFILE:-release}" \
    "${PUBLISH_MAX_IN_FLIGHT:-}" <<'PY'
import datetime, json, sys
result_file, latest_file, command, profile, bound = sys.argv[1:6]
r = json.loads(open(result_file).read().strip().splitlines()[-1])
keys = ["offered_per_s", "unloaded_p99_ms", "accepted_p99_ms", "accepted_per_s", "refused",
        "rss_peak_bytes", "recovered_s"]
overload = {k: r[k] for k in keys}
overload.update({
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "command": command,
    # PUBLISH_MAX_IN_FLIGHT of both replicas (null: the default, 1000).
    "publish_max_in_flight": int(bound) if bound else None,
    "capacity_per_s": r["capacity_per_s"],
    "rss_before_bytes": r["rss_before_bytes"],
    "lost": r["lost"],
    "errors": r["errors"],
    "phases": r["phases"],
})
if profile != "release":
    overload["profile"] = profile  # a debug build: the figures mean nothing
try:
    latest = json.load(open(latest_file))
except FileNotFoundError:
    latest = {}
latest.setdefault("locallife", {})["overload"] = overload
with open(latest_file, "w") as f:
    json.dump(latest, f, indent=2, ensure_ascii=False)
    f.write("\n")
ok = lambda c: "ok" if c else "MISSED"
unloaded, accepted, rec = r["unloaded_p99_ms"], r["accepted_p99_ms"], r["recovered_s"]
print(f"capacity              {r['capacity_per_s']}/s (batches of {r['batch']})")
print(f"offered               {r['offered_per_s']:.0f}/s for the over phase")
print(f"accepted              {r['accepted_per_s']:.0f}/s, refused {r['refused']}, errors {r['errors']}, lost {r['lost']}")
print(f"p99 unloaded/accepted {unloaded:.1f} ms / {accepted:.1f} ms   {ok(accepted <= 10 * unloaded)} (target <= 10x)")
print(f"rss                   {r['rss_before_bytes'] / 2**20:.0f} MiB before, {r['rss_peak_bytes'] / 2**20:.0f} MiB peak (both replicas)")
print(f"recovered             {rec if rec is not None else 'not'} s after the load fell   {ok(rec is not None and rec <= 10)} (target <= 10 s)")
print(f"per second after:     {', '.join(f'{p:.0f}' for p in r['under_p99_per_s_ms'])} ms p99")
PY
