#!/usr/bin/env bash
# Dependency audit: `cargo audit` of Cargo.lock against the RustSec advisory database,
# offline, from the snapshot bundled in shared/advisories (these machines cannot reach
# the database's home; docs/security.md says how to refresh it).
#
#   1. installs cargo-audit (about 6 minutes on 2 cores) only when `cargo audit` is
#      missing, so a machine builds it once;
#   2. clones the bundle into a temp dir and prints how old the snapshot is;
#   3. runs the audit and prints everything it finds;
#   4. fails when a vulnerability is in a crate the shipped build uses: a normal or build
#      dependency of a workspace member, on any target. A vulnerability only in
#      dev-dependencies (compiled into test binaries, never shipped) and the informational
#      warnings (unmaintained, unsound, yanked) are printed and do not fail the run.
#
# Usage: scripts/audit.sh                   (from any directory)
# Env:   ADVISORY_DB_BUNDLE=path            the bundle (default ../shared/advisories/
#                                           rustsec-advisory-db.bundle beside the repo)
#        PYTHON=python3                     reads cargo audit's JSON
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bundle="${ADVISORY_DB_BUNDLE:-$root/../shared/advisories/rustsec-advisory-db.bundle}"
python="${PYTHON:-python3}"
# The version known to read the bundled database; a newer one may want a newer database.
audit_version=0.22.2

if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-}/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! cargo audit --version >/dev/null 2>&1; then
    echo "audit: cargo-audit missing; installing $audit_version from crates.io (about 6 minutes)"
    cargo install cargo-audit --locked --version "$audit_version"
fi
cargo audit --version

if [ ! -f "$bundle" ]; then
    echo "audit: error: no advisory database bundle at $bundle" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
db="$tmp/advisory-db"
git clone -q -b main "$bundle" "$db"
newest=$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$db/crates" | sort | tail -n 1 |
    grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}')
echo "audit: advisory database commit $(git -C "$db" log -1 --format='%h of %cs (%cr): %s')"
echo "audit: newest advisory in it dated $newest"

# --stale: an old snapshot alone does not fail the run; its age is printed above.
status=0
cargo audit --db "$db" --no-fetch --stale || status=$?
if [ "$status" -eq 0 ]; then
    echo "audit: no vulnerability found"
    exit 0
fi

# Something failed: tell a vulnerability in the shipped build from one only in
# dev-dependencies (cargo audit reads Cargo.lock, which holds both).
report="$tmp/report.json"
cargo audit --db "$db" --no-fetch --stale --json >"$report" 2>/dev/null || true
found=$("$python" - "$report" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    report = json.load(f)
for v in report["vulnerabilities"]["list"]:
    print(v["advisory"]["id"], v["package"]["name"], v["package"]["version"])
EOF
) || {
    echo "audit: error: cargo audit failed (exit $status) and its JSON report does not read" >&2
    exit 1
}
if [ -z "$found" ]; then
    echo "audit: error: cargo audit failed (exit $status) without reporting a vulnerability" >&2
    exit 1
fi

shipped=0
while read -r id name version; do
    # Fails closed: a cargo tree error stops the run (set -e).
    users=$(cargo tree --locked --workspace --target all -e normal,build -i "$name@$version" 2>/dev/null)
    if [ -n "$users" ]; then
        echo "audit: error: $id in $name $version, which the shipped build uses:" >&2
        echo "$users" >&2
        shipped=1
    else
        echo "audit: warning: $id in $name $version, a dev-dependency only (never shipped); not failing"
    fi
done <<<"$found"
if [ "$shipped" -ne 0 ]; then
    exit 1
fi
echo "audit: no vulnerability in a crate the shipped build uses"
