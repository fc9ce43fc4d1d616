#!/usr/bin/env bash
# The full chaos run: 3 replicas, a Redis with an append-only file, acking clients that
# reconnect with jitter, a publisher (platform API with Idempotency-Key, orders paid
# through WeChat Pay notifications, urges) and a seeded nemesis (replica SIGKILL and
# SIGTERM, Redis kill -9 + AOF restart, Redis SIGSTOP 5 s, a replica killed while Redis
# is down). Prints one summary line per seed and fails on any loss or duplicate.
#
#   loadtest/chaos/run.sh                      seeds 1,2,3, 60 s each
#   CHAOS_SEEDS=7,8 CHAOS_SECONDS=120 loadtest/chaos/run.sh
#
# The suite runs the short version (chaos_short: one seed, 20 s) on every CI run.
# The rolling upgrade from the previous release, on the same load: loadtest/chaos/upgrade.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/services.sh
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://locallife:locallife@127.0.0.1:5432/locallife}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export CHAOS_SEEDS="${CHAOS_SEEDS:-1,2,3}" CHAOS_SECONDS="${CHAOS_SECONDS:-60}"
cargo test --locked --test api chaos_full -- --ignored --nocapture --test-threads 1 2>&1 |
    grep -E '^chaos|^test |test result|panicked|lost:|duplicates:|refusal'
