#!/usr/bin/env bash
# Builds the container image (Dockerfile) with podman and smoke-tests it: the container
# runs as uid 10001 on a read-only root filesystem, serves /healthz, and /readyz against
# the local PostgreSQL (a database of its own: `serve` migrates at start) and Redis, and
# stops cleanly on SIGTERM.
#
#   scripts/image.sh                       release binary, tag localhost/locallife:dev
#   scripts/image.sh --debug               the debug binary (what CI uses: already built)
#   scripts/image.sh --in-container        compile inside the build stage (needs the
#                                          builder base: a registry, or BUILDER_IMAGE)
#   IMAGE=registry.example.com/locallife:0.1.0 scripts/image.sh --push
#   scripts/image.sh --save locallife.tar  also write the image as an OCI archive (to
#                                          load elsewhere: podman load, kind load ...)
#
# Bases: RUNTIME_IMAGE (default docker.io/library/debian:bookworm-slim). When it cannot
# be pulled (no registry reachable, as on the project's build machine), a Debian
# bookworm minbase made with debootstrap stands in (cached in target/image-base/).
# Tools: podman, buildah, runc, debootstrap, binutils from Debian, installed when missing
# (root).
# Podman's configuration and storage live in a temporary directory removed at exit;
# nothing on the host is configured.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=release IN_CONTAINER=0 PUSH=0 SAVE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) PROFILE=debug ;;
        --in-container) IN_CONTAINER=1 ;;
        --push) PUSH=1 ;;
        --save) SAVE="${2:?--save needs a file}"; SAVE="$(realpath -m "$SAVE")"; shift ;;
        *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
IMAGE="${IMAGE:-localhost/locallife:dev}"
RUNTIME_IMAGE="${RUNTIME_IMAGE:-docker.io/library/debian:bookworm-slim}"
LOCAL_BASE=localhost/debian:bookworm-minbase
started=$(date +%s)
log() { printf '==> image.sh: %s (%ss)\n' "$*" "$(($(date +%s) - started))" >&2; }
die() { echo "image.sh: error: $*" >&2; exit 1; }

missing=()
for tool in podman buildah runc debootstrap objcopy; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: apt-get install --no-install-recommends ${missing[*]} (as root)"
    log "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman buildah runc debootstrap uidmap binutils >/dev/null
fi

# Podman's settings for this run only, pointed to by CONTAINERS_CONF/STORAGE_CONF:
#   default_ulimits   root cannot raise its limits on some hosts: without this every
#                     run fails with "setrlimit RLIMIT_NOFILE: Operation not permitted";
#   runtime = runc    crun fails on cgroups in hybrid mode;
#   netns = host      no bridge, no iptables chains on the host.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-image.XXXXXX")
CONTAINER=""
cleanup() {
    set +e
    [ -n "$CONTAINER" ] && podman rm -f "$CONTAINER" >/dev/null 2>&1
    podman image prune -f >/dev/null 2>&1
    if [ -n "${DB_NAME:-}" ]; then
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1
    fi
    redis-cli --scan --pattern "image-$$*" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1
    # Storage holds read-only layer files: podman's own reset removes it properly.
    podman system reset -f >/dev/null 2>&1
    rm -rf "$WORK" /var/lib/containers/cache 2>/dev/null
}
trap cleanup EXIT
mkdir -p "$WORK/storage" "$WORK/run"
cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
netns = "host"
[engine]
runtime = "runc"
CONF
cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

# The runtime base: pulled, or made here.
base="$RUNTIME_IMAGE"
if ! timeout 60 podman pull -q "$RUNTIME_IMAGE" >/dev/null 2>&1; then
    cache=target/image-base/bookworm-minbase-trimmed.tar
    if [ ! -s "$cache" ]; then
        log "no registry: making a Debian bookworm minbase with debootstrap"
        debootstrap --variant=minbase bookworm "$WORK/rootfs" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
        # What a runtime base does not need: package lists and caches, translations,
        # documentation (about 120 MB of the 200).
        rm -rf "$WORK"/rootfs/var/lib/apt/lists/* "$WORK"/rootfs/var/cache/apt/* \
            "$WORK"/rootfs/usr/share/locale/* "$WORK"/rootfs/usr/share/doc/* \
            "$WORK"/rootfs/usr/share/man/* "$WORK"/rootfs/usr/share/info/*
        mkdir -p "$(dirname "$cache")"
        rm -f target/image-base/*.tar
        tar -C "$WORK/rootfs" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
        rm -rf "$WORK/rootfs"
    fi
    podman import -q "$cache" "$LOCAL_BASE" >/dev/null
    base="$LOCAL_BASE"
    log "runtime base: $LOCAL_BASE (debootstrap, cached in $cache)"
else
    log "runtime base: $RUNTIME_IMAGE"
fi

build_args=(--network host --pull=never --build-arg "RUNTIME_IMAGE=$base" -t "$IMAGE")
if [ "$IN_CONTAINER" -eq 1 ]; then
    [ -n "${BUILDER_IMAGE:-}" ] && build_args+=(--build-arg "BUILDER_IMAGE=$BUILDER_IMAGE")
    build_args=("${build_args[@]/--pull=never/--pull=missing}")
    log "building $IMAGE (compiling in the build stage)"
else
    flags=(--locked --bin locallife)
    [ "$PROFILE" = release ] && flags+=(--release)
    log "cargo build ${flags[*]}"
    cargo build "${flags[@]}" >&2
    # The build context is a directory holding only the binary, where the Dockerfile
    # expects it (target/ itself may be a link out of the checkout, which a build
    # context cannot follow). Debug info stays on the host (line tables: most of the
    # binary's size); symbols stay in, so backtraces still name functions.
    context="$WORK/context"
    mkdir -p "$context/target/image"
    objcopy --strip-debug "target/$PROFILE/locallife" "$context/target/image/locallife"
    chmod 0755 "$context/target/image/locallife"
    build_args+=(--target image-prebuilt -f "$PWD/Dockerfile")
    log "building $IMAGE from target/$PROFILE/locallife"
fi
podman build -q "${build_args[@]}" "${context:-.}" >/dev/null
log "built $IMAGE ($(podman image inspect "$IMAGE" --format '{{.Size}}' | numfmt --to=iec) uncompressed)"

# ---- smoke test
scripts/services.sh >&2
ADMIN_URL=postgres://locallife:locallife@127.0.0.1:5432/locallife
DB_NAME="locallife_image_$$"
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB_NAME" >/dev/null
port=$((20000 + RANDOM % 10000))
metrics=$((port + 1))
CONTAINER=locallife-smoke-$$
podman run -d --name "$CONTAINER" --read-only \
    -e "DATABASE_URL=postgres://locallife:locallife@127.0.0.1:5432/$DB_NAME" \
    -e REDIS_URL=redis://127.0.0.1:6379 -e "REDIS_KEY_PREFIX=image-$$" \
    -e JWT_SECRET=image-smoke-secret-0123456789abcdef-01 \
    -e "LISTEN_ADDR=127.0.0.1:$port" -e "METRICS_ADDR=127.0.0.1:$metrics" \
    "$IMAGE" >/dev/null
up=0
for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then up=1; break; fi
    if [ "$(podman inspect "$CONTAINER" --format '{{.State.Running}}')" != true ]; then break; fi
    sleep 0.1
done
if [ "$up" -ne 1 ]; then
    podman logs "$CONTAINER" 2>&1 | tail -20 >&2
    die "the container never answered /healthz"
fi
log "/healthz answered"
ready=0
for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
done
[ "$ready" -eq 1 ] || { podman logs "$CONTAINER" 2>&1 | tail -20 >&2; die "/readyz never answered 200"; }
log "/readyz answered 200 (PostgreSQL and Redis reachable from the container)"
curl -sf "http://127.0.0.1:$metrics/metrics" | grep -q '^locallife_' || die "no locallife_ metrics on :$metrics"
uid=$(podman top "$CONTAINER" user | tail -1 | tr -d ' ')
[ "$uid" = 10001 ] || die "the process runs as '$uid', not 10001"
[ "$(podman inspect "$CONTAINER" --format '{{.HostConfig.ReadonlyRootfs}}')" = true ] \
    || die "the container's root filesystem is not read-only"
log "runs as uid 10001 on a read-only root filesystem; metrics served"
podman stop -t 30 "$CONTAINER" >/dev/null
code=$(podman inspect "$CONTAINER" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || { podman logs "$CONTAINER" 2>&1 | tail -20 >&2; die "exit status $code after SIGTERM"; }
log "stopped cleanly on SIGTERM"

if [ -n "$SAVE" ]; then
    podman save -q --format oci-archive -o "$SAVE" "$IMAGE"
    log "saved $SAVE"
fi
if [ "$PUSH" -eq 1 ]; then
    log "pushing $IMAGE"
    podman push "$IMAGE"
fi
log "ok: $IMAGE"
