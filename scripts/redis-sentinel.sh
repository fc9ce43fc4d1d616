#!/usr/bin/env bash
# A local Sentinel-managed Redis: one primary, one replica, three sentinels (quorum 2),
# each a `redis-server` on a free port, nothing on disk but logs and pid files in DIR.
#
#   scripts/redis-sentinel.sh up DIR     start; writes DIR/env and prints its REDIS_URL
#   scripts/redis-sentinel.sh down DIR   stop everything started in DIR
#   scripts/redis-sentinel.sh restart primary|replica DIR
#                                        start that server again on its port, empty; the
#                                        sentinels make it a replica of the current primary
#
# DIR/env (shell syntax, values quoted) holds REDIS_URL (redis-sentinel://..., service "mymaster"), PRIMARY_PORT,
# REPLICA_PORT and SENTINEL_PORTS; DIR/primary.pid and DIR/replica.pid the servers' pids
# (the test suite SIGKILLs the primary to force a failover). Failover is quick on
# purpose: a primary silent for 1 s is down.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 up|down DIR, or $0 restart primary|replica DIR" >&2; exit 2; }
cmd="${1:-}" NAME=""
if [ "$cmd" = restart ]; then
    NAME="${2:-}" DIR="${3:-}"
    case "$NAME" in primary|replica) ;; *) usage ;; esac
else
    DIR="${2:-}"
fi
[ -n "$cmd" ] && [ -n "$DIR" ] || usage
SERVICE=mymaster

# shellcheck source=scripts/lib/rig.sh
. scripts/lib/rig.sh

if [ "$cmd" = down ]; then
    stop_all
    exit 0
fi
case "$cmd" in up|restart) ;; *) usage ;; esac
command -v redis-server >/dev/null || scripts/services.sh >&2
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

# Data servers: nothing on disk, replies over loopback only.
server() { # name port [extra...]
    local name="$1" port="$2"; shift 2
    redis_start "$name" "$port" "$DIR" --repl-diskless-sync yes --repl-diskless-sync-delay 0 "$@"
}
if [ "$cmd" = restart ]; then
    # shellcheck disable=SC1091
    . "$DIR/env"
    port=$PRIMARY_PORT
    [ "$NAME" = replica ] && port=$REPLICA_PORT
    server "$NAME" "$port"
    exit 0
fi
trap 'stop_all' ERR
free_port PRIMARY
free_port REPLICA
server primary "$PRIMARY"
server replica "$REPLICA" --replicaof 127.0.0.1 "$PRIMARY"
wait_for "replication link up" sh -c "redis-cli -p $REPLICA info replication | grep -q master_link_status:up"

SENTINELS=()
for i in 1 2 3; do
    free_port port
    SENTINELS+=("$port")
    cat >"$DIR/sentinel-$i.conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
pidfile $DIR/sentinel-$i.pid
logfile $DIR/sentinel-$i.log
dir $DIR
sentinel monitor $SERVICE 127.0.0.1 $PRIMARY 2
sentinel down-after-milliseconds $SERVICE 1000
sentinel failover-timeout $SERVICE 5000
sentinel parallel-syncs $SERVICE 1
CONF
    redis-server "$DIR/sentinel-$i.conf" --sentinel
done
for port in "${SENTINELS[@]}"; do
    wait_for "sentinel :$port seeing the replica and the other sentinels" sh -c \
        "redis-cli -p $port sentinel master $SERVICE | tr '\n' ' ' | grep -Eq 'num-slaves 1 .*num-other-sentinels 2'"
done

url="redis-sentinel://127.0.0.1:${SENTINELS[0]}?node=127.0.0.1:${SENTINELS[1]}&node=127.0.0.1:${SENTINELS[2]}&sentinelServiceName=$SERVICE"
cat >"$DIR/env" <<ENV
REDIS_URL='$url'
PRIMARY_PORT=$PRIMARY
REPLICA_PORT=$REPLICA
SENTINEL_PORTS='${SENTINELS[*]}'
ENV
trap - ERR
echo "REDIS_URL=$url"
