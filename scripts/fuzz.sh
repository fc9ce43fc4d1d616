#!/usr/bin/env bash
# Runs every fuzz target (src/fuzz.rs) for SECONDS each (default 120), in release mode
# for more cases per second. Failures are shrunk to a minimal input and printed.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${1:-120} cargo test --release --locked --lib fuzz:: -- --nocapture --test-threads "$(nproc)" 2>&1 \
    | grep -E "^fuzz target|panicked|minimal failing|test result"
