#!/usr/bin/env bash
# The full rolling upgrade (tests/api/chaos.rs, rolling_upgrade_full): two replicas of
# the previous release (0.3.0, commit 7faa3f35, or PREVIOUS_RELEASE, built by
# scripts/previous-release.sh) and two of this build on one Redis and one database under
# the chaos load, the old ones replaced one by one (SIGTERM, drain, this build started,
# ready). Prints the summary lines and fails on any loss, duplicate, or a direction of
# delivery between the releases that never happened.
#
#   loadtest/chaos/upgrade.sh                  90 s of load
#   ROLL_SECONDS=180 loadtest/chaos/upgrade.sh
#
# The suite runs the short version (chaos::rolling_upgrade_short, 24 s) on every CI run.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/services.sh
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://locallife:locallife@127.0.0.1:5432/locallife}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export ROLL_SECONDS="${ROLL_SECONDS:-90}"
LOCALLIFE_PREVIOUS_BIN=$(scripts/previous-release.sh)
export LOCALLIFE_PREVIOUS_BIN
start=$(date +%s)
cargo test --locked --test api chaos::rolling_upgrade_full -- --ignored --nocapture --test-threads 1 2>&1 |
    grep -E '^chaos|^test |test result|panicked|lost:|duplicates:|refusal|crossed|served'
echo "upgrade.sh: $(( $(date +%s) - start )) s in all (build included)"
