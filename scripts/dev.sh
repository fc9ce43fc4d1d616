#!/usr/bin/env bash
# README run command: bring up PostgreSQL/Redis and run the service locally.
#   scripts/dev.sh                      -> locallife serve
#   scripts/dev.sh token --user-id 1    -> any other subcommand, same environment
# Every variable below is only a default; anything already set in the
# environment wins.
set -euo pipefail
cd "$(dirname "$0")/.."

# rustup installs into ~/.cargo/bin, which non-login shells often lack on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-}/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! cargo --version >/dev/null 2>&1; then
    echo "dev.sh: error: Rust toolchain not found (no working 'cargo' on PATH or in \$HOME/.cargo/bin)." >&2
    echo "dev.sh: install Rust >= 1.85 (e.g. https://rustup.rs) and re-run." >&2
    exit 1
fi

scripts/services.sh >&2

export DATABASE_URL="${DATABASE_URL:-postgres://locallife:locallife@127.0.0.1:5432/locallife}"
# DEVELOPMENT ONLY: a fixed, public secret so local tokens are reproducible.
# Never use it anywhere real; set JWT_SECRET yourself for any shared deployment.
export JWT_SECRET="${JWT_SECRET:-dev-only-secret-change-me-0123456789abcdef}"
export LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1:8080}"
export METRICS_ADDR="${METRICS_ADDR:-127.0.0.1:9090}"
# REDIS_URL is deliberately left unset by default: the service then uses its
# single-node in-process engine. Set REDIS_URL=redis://127.0.0.1:6379 to use
# the Redis started above (multi-node mode).

# Unless WECHAT_API_BASE is set, logins go to a local fake of WeChat's
# code2Session (examples/fake_wechat.rs, the same fake the tests use) on
# FAKE_WECHAT_ADDR: any code logs in once as openid dev-<code>. It runs only beside
# `serve` and `demo`.
command="${1:-serve}"
export FAKE_WECHAT_ADDR="${FAKE_WECHAT_ADDR:-127.0.0.1:8099}"
fake=0
if [ -z "${WECHAT_API_BASE:-}" ] && { [ "$command" = "serve" ] || [ "$command" = "demo" ]; }; then
    fake=1
    export WECHAT_APPID="${WECHAT_APPID:-wx-test-appid}"
    export WECHAT_SECRET="${WECHAT_SECRET:-wechat-test-app-secret}"
    export WECHAT_API_BASE="http://$FAKE_WECHAT_ADDR"
fi

# A port already taken (often: another dev.sh) is a one-line error before anything
# is built, started or seeded.
taken() { # host:port -> 0 when something accepts connections there
    local host=${1%:*} port=${1##*:}
    [ "$host" = "0.0.0.0" ] && host=127.0.0.1
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
if [ "$command" = "serve" ] || [ "$command" = "demo" ]; then
    for pair in "LISTEN_ADDR=$LISTEN_ADDR" "METRICS_ADDR=$METRICS_ADDR" \
        $([ "$fake" = 1 ] && echo "FAKE_WECHAT_ADDR=$FAKE_WECHAT_ADDR"); do
        if taken "${pair#*=}"; then
            echo "dev.sh: error: ${pair#*=} is in use (${pair%%=*}); stop what listens there or set ${pair%%=*} to another address" >&2
            exit 1
        fi
    done
fi

# One build for everything, whatever the command: two cargo invocations with different
# targets would settle features differently and compile shared crates again (a
# `dev.sh key create` after `dev.sh demo` took minutes instead of a second).
cargo build --release --locked --bin locallife --example fake_wechat
if [ "$fake" = 1 ]; then
    target/release/examples/fake_wechat "$FAKE_WECHAT_ADDR" &
    fake_pid=$!
    trap 'kill "$fake_pid" 2>/dev/null || true' EXIT
fi

if [ $# -eq 0 ]; then
    set -- serve
fi
target/release/locallife "$@"
