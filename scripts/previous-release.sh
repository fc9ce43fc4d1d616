#!/usr/bin/env bash
# Builds the previous release's `locallife` binary (release 0.3.0 as it landed,
# commit 7faa3f35, unless PREVIOUS_RELEASE names another commit) and prints its path;
# the upgrade test (tests/api/upgrade.rs) fills inboxes with it before switching to
# this build. The commit is named by its hash, not by a tag: a clone does not always
# carry tags (CI's does not), but every clone of main holds the commit.
#
#   scripts/previous-release.sh            # prints .../previous-release/locallife-<commit>
#
# Cheap: the source is the commit's tree (`git archive`, no checkout of this worktree
# touched), built under $CARGO_TARGET_DIR/previous-release, a target folder of its own
# (so this build's `target/debug/locallife` is never overwritten) seeded with hard links
# to the compiled dependencies of $CARGO_TARGET_DIR/debug: only the release's own crate
# is compiled. A binary built once is kept (one per commit) and printed at once.
set -euo pipefail
cd "$(dirname "$0")/.."

REF="${PREVIOUS_RELEASE:-7faa3f35d804ce9ea647f2ff0d4be79414dc0410}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
OUT="$TARGET/previous-release"
commit=$(git rev-parse --verify --quiet "$REF^{commit}") || {
    echo "previous-release.sh: no commit $REF in this repository" >&2
    exit 1
}
bin="$OUT/locallife-$commit"
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$OUT/debug"
# Dependencies compiled for this worktree, shared by hard link (no copy, no rebuild).
# Cargo replaces an output it rebuilds instead of writing into it, so the links stay
# as they are on this side.
if [ ! -e "$OUT/debug/.seeded" ] && [ -d "$TARGET/debug/deps" ]; then
    for dir in deps build .fingerprint; do
        [ -d "$TARGET/debug/$dir" ] && cp -al "$TARGET/debug/$dir" "$OUT/debug/"
    done
    touch "$OUT/debug/.seeded"
fi

# One source folder for every build of that commit, so its crate's fingerprints hold.
src="$OUT/src-$commit"
if [ ! -e "$src/Cargo.toml" ]; then
    rm -rf "$src"
    mkdir -p "$src"
    git archive "$commit" | tar -x -C "$src"
fi
echo "previous-release.sh: building locallife at $REF (${commit:0:12})" >&2
(cd "$src" && LOCALLIFE_COMMIT="${commit:0:12}" cargo build --locked --quiet \
    -p locallife --bin locallife --target-dir "$OUT") >&2
cp "$OUT/debug/locallife" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
