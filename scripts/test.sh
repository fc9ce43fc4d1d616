#!/usr/bin/env bash
# README test command: bring up PostgreSQL/Redis, then run the test suite.
# Extra arguments go straight to `cargo test` (e.g. scripts/test.sh -- --nocapture).
# The whole workspace: locallife and the load generator (loadtest/loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."

# rustup installs into ~/.cargo/bin, which non-login shells often lack on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-}/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! cargo --version >/dev/null 2>&1; then
    echo "test.sh: error: Rust toolchain not found (no working 'cargo' on PATH or in \$HOME/.cargo/bin)." >&2
    echo "test.sh: install Rust >= 1.85 (e.g. https://rustup.rs) and re-run." >&2
    exit 1
fi

scripts/services.sh --with-test-tools

# The seed's reference mini-program client runs in Node (tests/seed-client).
if ! command -v npm >/dev/null 2>&1; then
    echo "test.sh: installing Node.js and npm (Debian packages)" >&2
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
npm ci --prefix tests/seed-client --no-audit --no-fund --loglevel=error
# The official AsyncAPI JSON Schemas, for the check of docs/asyncapi.yaml.
npm ci --prefix tests/asyncapi --no-audit --no-fund --loglevel=error
# The mini-program SDK: built from its lockfile, then driven by tests/api/sdk.rs (and
# its own unit tests, in Node).
npm ci --prefix sdk/miniprogram --no-audit --no-fund --loglevel=error
npm test --prefix sdk/miniprogram --silent >/dev/null || { echo "test.sh: the SDK did not build, its tests failed or docs/sdk-api is stale (npm test in sdk/miniprogram)" >&2; exit 1; }
# The SDK's npm package, the artefact a front-end team installs: packed into target/sdk/
# and checked to hold the build, its types and the README, and nothing else.
node sdk/miniprogram/scripts/check-pack.js --into target/sdk || { echo "test.sh: the SDK's npm package is not as it should be (sdk/miniprogram/scripts/check-pack.js)" >&2; exit 1; }
# The metrics test lints the exposition with promtool; services.sh unpacked it into
# target/tools/bin when no promtool was on PATH.
export PATH="$PWD/target/tools/bin:$PATH"
export REQUIRE_PROMTOOL=1

# The tests create and drop their own databases through this role (CREATEDB).
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://locallife:locallife@127.0.0.1:5432/locallife}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

# The behaviour tests run on a Redis Cluster too: three primaries and three replicas
# of Debian's redis-server on free ports, stopped when the tests end.
LOG=$(mktemp "${TMPDIR:-/tmp}/locallife-test.XXXXXX")
CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/locallife-test-cluster.XXXXXX")
trap 'scripts/redis-cluster.sh down "$CLUSTER_DIR" >/dev/null 2>&1 || true; rm -rf "$LOG" "$CLUSTER_DIR"' EXIT
if [ -z "${TEST_REDIS_CLUSTER_URL:-}" ]; then
    scripts/redis-cluster.sh up "$CLUSTER_DIR" >/dev/null
    TEST_REDIS_CLUSTER_URL=$(. "$CLUSTER_DIR/env" && echo "$REDIS_URL")
    export TEST_REDIS_CLUSTER_URL
fi

# The previous release's binary, for the upgrade test (tests/api/upgrade.rs): built from
# its git tag, reusing this build's compiled dependencies. Always named, so the test
# fails when the build did not leave it there.
LOCALLIFE_PREVIOUS_BIN=$(scripts/previous-release.sh) || LOCALLIFE_PREVIOUS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/previous-release/missing"
export LOCALLIFE_PREVIOUS_BIN

# Keep cargo's output, then close with the totals on one line.
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# The fuzz targets (src/fuzz.rs) again, each generating fresh cases for
# FUZZ_SECONDS (default 10); scripts/fuzz.sh runs them longer.
if [ "$status" -eq 0 ] && [ "${FUZZ_SECONDS:-10}" != 0 ]; then
    echo "test.sh: fuzz targets, ${FUZZ_SECONDS:-10} s each"
    set +e
    FUZZ_SECONDS=${FUZZ_SECONDS:-10} cargo test --locked --lib fuzz:: -- --nocapture 2>&1 | grep -E "^fuzz target|panicked|minimal failing|test result"
    status=${PIPESTATUS[0]}
    set -e
fi
# The SDK's example mini-program against a real `locallife demo` (the binary the tests
# just built), as its README's first-notification steps go.
if [ "$status" -eq 0 ]; then
    echo "test.sh: the SDK's example pages against locallife demo"
    if ! sdk_out=$(LOCALLIFE_BIN="$PWD/target/debug/locallife" npm run test:e2e --prefix sdk/miniprogram --silent 2>&1); then
        printf '%s\n' "$sdk_out" >&2
        echo "test.sh: the SDK's example test failed (npm run test:e2e in sdk/miniprogram)" >&2
        status=1
    fi
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$LOG" | tee "${TEST_SUMMARY_FILE:-/dev/null}"
exit "$status"
