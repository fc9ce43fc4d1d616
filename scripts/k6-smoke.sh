#!/usr/bin/env bash
# CI's k6 smoke run: one replica (with Redis), seeded riders, loadtest/k6/rider_soak.js
# for 12 s; k6's thresholds decide pass or fail. First, loadtest/k6/selftest_throw.js
# must fail: proof that a virtual user that throws fails a run.
# Builds the workspace's binaries (locallife, loadgen). k6 comes from the project's venv
# (scripts/venv.sh), never the system Python.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh >&2
K6="$(scripts/venv.sh)/bin/k6"
cargo build --locked --workspace --bins >&2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-k6.XXXXXX")
ADMIN_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife
psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS locallife_k6 WITH (FORCE)" -c "CREATE DATABASE locallife_k6"
export DATABASE_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife_k6
export JWT_SECRET=k6-smoke-secret-0123456789abcdef-0123
export REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=k6-$$
export RUST_LOG=warn
target/debug/locallife migrate
target/debug/loadgen seed --riders 50 --merchants 5 --out "$WORK/tokens.json" >&2

PORT=$((20000 + RANDOM % 10000))
LISTEN_ADDR=127.0.0.1:$PORT METRICS_ADDR=127.0.0.1:0 target/debug/locallife serve 2>"$WORK/replica.log" &
REPLICA=$!
trap 'kill "$REPLICA" 2>/dev/null || true; rm -rf "$WORK"; redis-cli --scan --pattern "k6-$$*" | xargs -r redis-cli del >/dev/null' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

if TOKENS_FILE=$WORK/tokens.json "$K6" run --quiet loadtest/k6/selftest_throw.js >"$WORK/selftest.log" 2>&1; then
    cat "$WORK/selftest.log" >&2
    echo "k6-smoke: error: a virtual user threw and k6 still passed: thresholds are broken" >&2
    exit 1
fi
echo "k6-smoke: ok: a throwing virtual user fails the run ($(grep -o 'TypeError[^"]*' "$WORK/selftest.log" | head -1))" >&2

BASE_URL=http://127.0.0.1:$PORT TOKENS_FILE=$WORK/tokens.json RIDERS=50 RATE=50 DURATION=12s \
    "$K6" run --quiet loadtest/k6/rider_soak.js
