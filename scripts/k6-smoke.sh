#!/usr/bin/env bash
# CI's k6 smoke run: one replica (with Redis), seeded riders, loadtest/k6/rider_soak.js
# for 12 s; k6's thresholds decide pass or fail. First, loadtest/k6/selftest_throw.js
# must fail: proof that a virtual user that throws fails a run.
# Builds the workspace's binaries (locallife, loadgen). k6 comes from the project's venv
# (scripts/venv.sh), never the system Python.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh

scripts/services.sh >&2
K6="$(scripts/venv.sh)/bin/k6"
rig_build
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-k6.XXXXXX")
on_exit 'rm -rf "$WORK"'
scratch_db locallife_k6
export JWT_SECRET=k6-smoke-secret-0123456789abcdef-0123
key_prefix k6
export RUST_LOG=warn
"$BIN" migrate
"$GEN" seed --riders 50 --merchants 5 --out "$WORK/tokens.json" >&2

PIDS=()
on_exit 'kill "${PIDS[@]}" 2>/dev/null'
start_server REPLICA -- "$BIN" serve
PORT=$REPLICA_PORT

if TOKENS_FILE=$WORK/tokens.json "$K6" run --quiet loadtest/k6/selftest_throw.js >"$WORK/selftest.log" 2>&1; then
    cat "$WORK/selftest.log" >&2
    echo "k6-smoke: error: a virtual user threw and k6 still passed: thresholds are broken" >&2
    exit 1
fi
echo "k6-smoke: ok: a throwing virtual user fails the run ($(grep -o 'TypeError[^"]*' "$WORK/selftest.log" | head -1))" >&2

BASE_URL=http://127.0.0.1:$PORT TOKENS_FILE=$WORK/tokens.json RIDERS=50 RATE=50 DURATION=12s \
    "$K6" run --quiet loadtest/k6/rider_soak.js
