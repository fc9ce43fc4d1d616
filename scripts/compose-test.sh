#!/usr/bin/env bash
# Tests compose.yaml, the local stack of docs/local-stack.md, under podman-compose with
# images built here: the project's image and the fake WeChat from binaries cargo built on
# the host (target/debug, as scripts/image.sh --debug does), and stand-ins for the
# official postgres, redis and nginx images made from Debian's packages on the same
# Debian base as the project's image (no registry is reachable on the build machine).
#
#   scripts/compose-test.sh           reuse target/debug/locallife and
#                                     target/debug/examples/fake_wechat when present
#   scripts/compose-test.sh --build   cargo build them first
#
# It checks, through the proxy, that /readyz answers 200 from both replicas, the demo
# printed its tokens, a WeChat login goes through the fake, two sockets of the demo's
# merchant land on different replicas, and notifications posted through the proxy
# (taken by both replicas) reach both sockets; and, inside the containers, the postgres
# and redis healthchecks and `locallife token`. The stack is torn down at exit, always;
# any failure exits non-zero, with the tail of every container's log. Every wait has a
# deadline.
#
# Bases: RUNTIME_IMAGE (default docker.io/library/debian:bookworm-slim), or when it
# cannot be pulled the Debian minbase scripts/image.sh caches in target/image-base/.
# Tools: podman, podman-compose, netavark, aardvark-dns, runc, binutils, curl and
# iproute2 from Debian, installed when missing (root). Podman's configuration, storage
# and network definitions live in a temporary directory removed at exit; netavark keeps
# its state in /run/containers/networks and leaves its (then empty) iptables chains, as
# it does for any podman network.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --build) BUILD=1 ;;
        *) echo "compose-test.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
RUNTIME_IMAGE="${RUNTIME_IMAGE:-docker.io/library/debian:bookworm-slim}"
LOCAL_BASE=localhost/debian:bookworm-minbase
BASE_CACHE=target/image-base/bookworm-minbase-trimmed.tar
started=$(date +%s)
log() { printf '==> compose-test.sh: %s (%ss)\n' "$*" "$(($(date +%s) - started))" >&2; }
die() { echo "compose-test.sh: error: $*" >&2; exit 1; }

missing=()
for tool in podman podman-compose runc objcopy curl ip; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
for helper in netavark aardvark-dns; do
    [ -x "/usr/lib/podman/$helper" ] || missing+=("$helper")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: apt-get install --no-install-recommends podman podman-compose netavark aardvark-dns runc uidmap binutils curl iproute2 (as root)"
    log "installing ${missing[*]} (Debian packages)"
    apt-get -o DPkg::Lock::Timeout=120 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
        --no-install-recommends podman podman-compose netavark aardvark-dns runc uidmap \
        binutils curl iproute2 >/dev/null
fi

# Podman's settings for this run only (see scripts/image.sh for the first two). Unlike
# image.sh's containers, these get a bridge network of their own, where they find each
# other by service name: netavark and aardvark-dns, with the network definitions kept
# here rather than in /etc/containers/networks.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-compose.XXXXXX")
PROJECT="llcompose$$"
UP=0 STATUS=1 LISTENERS=() STANDINS=""
compose() { timeout 300 podman-compose -p "$PROJECT" -f "$PWD/compose.yaml" "$@"; }
container() { # service -> the id of its container
    podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -1
}
SERVICES=(postgres redis wechat locallife-1 locallife-2 proxy)
upstream() { # headers file -> the replica nginx says answered (X-Upstream)
    tr -d '\r' <"$1" 2>/dev/null | awk 'tolower($1) == "x-upstream:" {print $2}'
}
cleanup() {
    set +e
    for pid in "${LISTENERS[@]}"; do kill "$pid" 2>/dev/null; done
    if [ -n "$STANDINS" ]; then # the background builds: their podman, then the subshell
        kill $(pgrep -P "$STANDINS") 2>/dev/null
        kill "$STANDINS" 2>/dev/null
        wait "$STANDINS" 2>/dev/null
    fi
    if [ "$UP" -eq 1 ]; then
        if [ "$STATUS" -ne 0 ]; then
            podman ps -a --filter "label=io.podman.compose.project=$PROJECT" >&2
            for service in "${SERVICES[@]}"; do
                echo "---- $service (last 30 lines)" >&2
                podman logs --tail 30 "$(container "$service")" 2>&1 | sed -E 's/eyJ[A-Za-z0-9_.-]+/[token]/g' >&2
            done
            for f in "$WORK"/listen-*; do
                [ -e "$f" ] && { echo "---- $(basename "$f")" >&2; tail -5 "$f" >&2; }
            done
        fi
        compose down -v >"$WORK/compose-down.log" 2>&1
        podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
        log "podman-compose down"
    fi
    # Storage holds read-only layer files: podman's own reset removes it properly. Never
    # without this run's storage.conf: podman would reset the host's own storage.
    [ -s "$WORK/storage.conf" ] && podman system reset -f >/dev/null 2>&1
    rm -rf "$WORK"
    log "torn down"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
network_config_dir = "$WORK/networks"
CONF
storage() { # driver: a fresh storage with it
    [ -s "$WORK/storage.conf" ] && { podman system reset -f >/dev/null 2>&1 || true; }
    mkdir -p "$WORK/storage" "$WORK/run" "$WORK/networks"
    printf '[storage]\ndriver = "%s"\ngraphroot = "%s"\nrunroot = "%s"\n' \
        "$1" "$WORK/storage" "$WORK/run" >"$WORK/storage.conf"
}
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

# ---- images
base_image() { # the runtime base, pulled or imported: its name in $base
    base="$RUNTIME_IMAGE"
    if ! timeout 60 podman pull -q "$RUNTIME_IMAGE" >/dev/null 2>&1; then
        [ -s "$BASE_CACHE" ] \
            || die "cannot pull $RUNTIME_IMAGE and no $BASE_CACHE: scripts/image.sh makes it (run that first)"
        podman import -q "$BASE_CACHE" "$LOCAL_BASE" >/dev/null
        base="$LOCAL_BASE"
    fi
}
# Overlay storage where the kernel allows it: with vfs every layer and every container
# is a full copy, which doubles the time to build the images and start the stack.
driver=overlay
storage overlay
base_image
if ! podman run --rm --network none "$base" true >/dev/null 2>&1; then
    driver=vfs
    storage vfs
    base_image
fi
log "base: $base ($driver storage)"

build=(timeout 900 podman build -q --network host --pull=never --build-arg "RUNTIME_IMAGE=$base")

# Stand-ins for the official images, as far as compose.yaml uses them: the same
# commands on PATH (postgres, pg_isready, redis-server, redis-cli, nginx, /bin/sh) and
# the postgres image's POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB and PGDATA. Debian's
# PostgreSQL is 15, the official default 16. One apt-get update, in the layer all three
# share; policy-rc.d keeps the packages from starting their servers while installing.
# Built in the background while the project's images are.
standins="$WORK/standins"
mkdir -p "$standins"
cat >"$standins/Containerfile" <<'CONTAINERFILE'
ARG RUNTIME_IMAGE
FROM ${RUNTIME_IMAGE} AS apt
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
    && apt-get update -qq
ENV DEBIAN_FRONTEND=noninteractive

FROM apt AS postgres
RUN apt-get install -y -qq --no-install-recommends postgresql >/dev/null
COPY postgres-entrypoint.sh /usr/local/bin/
ENV PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["postgres-entrypoint.sh"]
CMD ["postgres"]

FROM apt AS redis
RUN apt-get install -y -qq --no-install-recommends redis-server >/dev/null
CMD ["redis-server"]

FROM apt AS nginx
RUN apt-get install -y -qq --no-install-recommends nginx >/dev/null
CMD ["nginx", "-g", "daemon off;"]
CONTAINERFILE
cat >"$standins/postgres-entrypoint.sh" <<'ENTRYPOINT'
#!/bin/sh
# The official postgres image's start, in short: a cluster owned by POSTGRES_USER with
# POSTGRES_PASSWORD and a database POSTGRES_DB on the first start, then the server.
set -eu
[ "${1:-}" = postgres ] || exec "$@"
shift
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    as_postgres "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    db="${POSTGRES_DB:-$POSTGRES_USER}"
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\"" \
            | as_postgres "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
ENTRYPOINT
chmod 0755 "$standins/postgres-entrypoint.sh"
export POSTGRES_IMAGE=localhost/compose-test/postgres:bookworm
export REDIS_IMAGE=localhost/compose-test/redis:bookworm
export PROXY_IMAGE=localhost/compose-test/nginx:bookworm
(
    for pair in "postgres $POSTGRES_IMAGE" "redis $REDIS_IMAGE" "nginx $PROXY_IMAGE"; do
        read -r target image <<<"$pair"
        "${build[@]}" --target "$target" -t "$image" "$standins" \
            || { echo "building the $target stand-in failed"; exit 1; }
    done
) >"$WORK/standins.log" 2>&1 &
STANDINS=$!

bin=target/debug/locallife
fake=target/debug/examples/fake_wechat
# Two cargo runs: an example builds with the dev-dependencies, which would change the
# service binary's features if they shared one.
if [ "$BUILD" -eq 1 ] || [ ! -x "$bin" ]; then
    log "cargo build --locked --bin locallife"
    cargo build --locked --bin locallife >&2
fi
if [ "$BUILD" -eq 1 ] || [ ! -x "$fake" ]; then
    log "cargo build --locked --example fake_wechat"
    cargo build --locked --example fake_wechat >&2
fi
log "binaries: $bin ($(date -r "$bin" '+%F %T')), $fake ($(date -r "$fake" '+%F %T'))"

# The Dockerfile's prebuilt targets, from a context holding only the two binaries (as
# image.sh does: target/ may be a link a build context cannot follow).
context="$WORK/context"
mkdir -p "$context/target/image"
objcopy --strip-debug "$bin" "$context/target/image/locallife"
objcopy --strip-debug "$fake" "$context/target/image/fake_wechat"
chmod 0755 "$context/target/image/"*
export LOCALLIFE_IMAGE=localhost/compose-test/locallife:debug
export FAKE_WECHAT_IMAGE=localhost/compose-test/fake-wechat:debug
"${build[@]}" -f "$PWD/Dockerfile" --target image-prebuilt -t "$LOCALLIFE_IMAGE" "$context" >/dev/null
"${build[@]}" -f "$PWD/Dockerfile" --target fake-wechat-prebuilt -t "$FAKE_WECHAT_IMAGE" "$context" >/dev/null
log "built $LOCALLIFE_IMAGE and $FAKE_WECHAT_IMAGE (Dockerfile)"

wait "$STANDINS" || { STANDINS=""; tail -20 "$WORK/standins.log" >&2; die "the stand-ins could not be built"; }
STANDINS=""
log "built the stand-ins $POSTGRES_IMAGE, $REDIS_IMAGE, $PROXY_IMAGE (Debian packages)"

# ---- the stack
port=""
for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 10000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { port=$p; break; }
done
[ -n "$port" ] || die "no free port found"
export LOCALLIFE_HTTP="127.0.0.1:$port"
http="http://$LOCALLIFE_HTTP"
UP=1
# Debian 12's netavark (1.4; fixed in 1.9, containers/netavark#833) leaves a bridge's MAC
# address to the kernel, which takes the lowest of the bridge's ports: a container
# started later may change it, and the earlier containers' ARP entry for the gateway,
# where aardvark-dns answers, stays stale for up to a minute or two. Their new
# connections then wait on DNS (a first WeChat login timed out, `locallife token` could
# not reach PostgreSQL, in about one run in four). So the stack's network exists first,
# a first container (kept to the end: a container leaving reloads aardvark-dns) makes
# its bridge, and the bridge's address is set to what it is: an address set by hand
# the kernel leaves alone.
network="${PROJECT}_default"
podman network create --label "io.podman.compose.project=$PROJECT" "$network" >/dev/null
podman run -d --name "${PROJECT}_anchor" --network "$network" "$base" sleep infinity \
    >/dev/null 2>"$WORK/anchor.err" || die "cannot start a container on $network: $(cat "$WORK/anchor.err")"
bridge=$(podman network inspect "$network" --format '{{.NetworkInterface}}')
if [ -e "/sys/class/net/$bridge/address" ]; then # not with rootless podman's networks
    ip link set dev "$bridge" address "$(cat "/sys/class/net/$bridge/address")"
fi
compose up -d --no-build >"$WORK/compose-up.log" 2>&1 \
    || { tail -30 "$WORK/compose-up.log" >&2; die "podman-compose up failed"; }
log "podman-compose up -d: the proxy on $http (network $network, bridge $bridge)"

# Ready when /readyz has answered 200 from each replica, as the proxy says
# (X-Upstream: a single address when the first replica tried answered).
ready=" "
deadline=$((SECONDS + 180))
while :; do
    code=$(curl -s -m 5 -o /dev/null -D "$WORK/headers" -w '%{http_code}' "$http/readyz" || true)
    from=$(upstream "$WORK/headers")
    if [ "$code" = 200 ] && [ -n "$from" ] && [[ "$from" != *,* ]]; then
        case "$ready" in *" $from "*) ;; *) ready="$ready$from " ;; esac
    fi
    [ "$(wc -w <<<"$ready")" -ge 2 ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "/readyz did not answer 200 from both replicas through the proxy within 180 s (from:$ready)"
    sleep 1
done
restarts=""
for service in "${SERVICES[@]}"; do
    restarts="$restarts $service $(podman inspect --format '{{.RestartCount}}' "$(container "$service")"),"
done
log "/readyz 200 through the proxy from both replicas:$ready(restarts:${restarts%,})"

# What docker compose waits for before starting the replicas (depends_on: healthy).
for service in postgres redis; do
    podman healthcheck run "$(container "$service")" >/dev/null 2>&1 \
        || die "the $service healthcheck of compose.yaml fails"
done
log "the postgres and redis healthchecks pass"

# The demo's tokens, from its log (the last start's, should it have restarted).
demo=$(container locallife-1)
deadline=$((SECONDS + 60))
until podman logs "$demo" 2>/dev/null | grep -qx 'Ready\.'; do
    [ "$SECONDS" -lt "$deadline" ] || die "locallife-1 never printed the demo's tokens"
    sleep 1
done
demo_log=$(podman logs "$demo" 2>/dev/null)
platform_token=$(awk '$1 == "platform" && $2 == "user" {t = $NF} END {print t}' <<<"$demo_log")
merchant_id=$(awk '$1 == "merchant" && $2 == "user" {u = $3} END {print u}' <<<"$demo_log")
merchant_token=$(awk '$1 == "merchant" && $2 == "user" {t = $NF} END {print t}' <<<"$demo_log")
[[ "$platform_token" == eyJ* && "$merchant_token" == eyJ* && "$merchant_id" =~ ^[0-9]+$ ]] \
    || die "cannot read the platform and merchant tokens in locallife-1's log"
# A second token for the merchant, minted inside the other replica.
merchant_token2=$(timeout 30 podman exec "$(container locallife-2)" locallife token --user-id "$merchant_id" \
    2>"$WORK/token.err") || die "locallife token failed in locallife-2: $(tail -2 "$WORK/token.err")"
log "tokens: the demo's platform and merchant (user $merchant_id), and one from 'locallife token' in locallife-2"

# A login through the fake WeChat.
login=$(curl -s -m 10 -D "$WORK/headers" -w ' after %{time_total}s' -X POST "$http/v1/auth/wechat-login" \
    -H 'content-type: application/json' -d "{\"code\":\"compose-test-$RANDOM\"}")
grep -q '"access_token"' <<<"$login" \
    || die "the WeChat login through the fake failed: $login from $(upstream "$WORK/headers")"
log "POST /v1/auth/wechat-login: a consumer token (fake WeChat)"

# Two sockets of the merchant through the proxy; least_conn puts them on the two replicas.
replicas=()
for i in 1 2; do
    token=$merchant_token
    [ "$i" -eq 2 ] && token=$merchant_token2
    "$bin" listen --url "ws://$LOCALLIFE_HTTP/v1/ws" --token "$token" \
        >"$WORK/listen-$i.out" 2>"$WORK/listen-$i.err" &
    LISTENERS+=($!)
    deadline=$((SECONDS + 20))
    until grep -qs '"welcome"' "$WORK/listen-$i.out"; do
        [ "$SECONDS" -lt "$deadline" ] || die "socket $i got no welcome within 20 s: $(cat "$WORK/listen-$i.err")"
        sleep 0.2
    done
    id=$(grep -o '"connection_id": *"[^"]*"' "$WORK/listen-$i.out" | head -1 | sed 's/.*"\([^"]*\)"$/\1/')
    case "$id" in
        locallife-1-*) replicas+=(locallife-1) ;;
        locallife-2-*) replicas+=(locallife-2) ;;
        *) die "socket $i: unexpected connection id '$id'" ;;
    esac
done
[ "${replicas[0]}" != "${replicas[1]}" ] || die "both sockets landed on ${replicas[0]}"
log "sockets: 1 on ${replicas[0]}, 2 on ${replicas[1]}"

# Notifications through the proxy, until both replicas have taken one; each must reach
# both sockets, so some went from one replica to the other (through Redis).
ids=() by=" "
for n in $(seq 1 8); do
    code=$(curl -s -m 10 -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' \
        -X POST "$http/v1/platform/notifications" \
        -H "authorization: Bearer $platform_token" -H 'content-type: application/json' \
        -d "{\"user_id\":$merchant_id,\"title\":\"compose-test $n\",\"content\":\"through the proxy\"}" || true)
    [ "$code" = 202 ] || die "POST /v1/platform/notifications answered $code: $(cat "$WORK/body")"
    id=$(grep -o '"message_id": *"[^"]*"' "$WORK/body" | sed 's/.*"\([^"]*\)"$/\1/')
    [ -n "$id" ] || die "no message_id in $(cat "$WORK/body")"
    ids+=("$id")
    from=$(upstream "$WORK/headers")
    case "$by" in *" $from "*) ;; *) by="$by$from " ;; esac
    [ "$n" -ge 2 ] && [ "$(wc -w <<<"$by")" -ge 2 ] && break
done
[ "$(wc -w <<<"$by")" -ge 2 ] || die "all ${#ids[@]} notifications went to one replica ($by)"
deadline=$((SECONDS + 20))
for i in 1 2; do
    for id in "${ids[@]}"; do
        until grep -qF "\"$id\"" "$WORK/listen-$i.out"; do
            [ "$SECONDS" -lt "$deadline" ] || die "socket $i (on ${replicas[$((i - 1))]}) never got notification $id"
            sleep 0.2
        done
    done
done
log "${#ids[@]} notifications posted through the proxy (taken by:$by) reached both sockets"

STATUS=0
log "ok: compose.yaml's stack works through the proxy"
