#!/usr/bin/env bash
# A local Redis Cluster: three primaries and three replicas (one each), every node a
# `redis-server --cluster-enabled yes` on a free port, nothing on disk but node tables,
# logs and pid files in DIR.
#
#   scripts/redis-cluster.sh up DIR      start; writes DIR/env and prints its REDIS_URL
#   scripts/redis-cluster.sh down DIR    stop every node started in DIR
#   scripts/redis-cluster.sh restart DIR PORT
#                                        start the node of PORT again (after a kill): it
#                                        rejoins with its node table, as a replica if
#                                        its primary role was taken over meanwhile
#
# DIR/env (shell syntax, values quoted) holds REDIS_URL (redis-cluster://...) and PORTS
# (all six); DIR/node-PORT.pid each node's pid. Failover is quick on
# purpose: a primary silent for 1 s is down (cluster-node-timeout 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 up|down DIR | restart DIR PORT" >&2; exit 2; }
cmd="${1:-}" DIR="${2:-}"
[ -n "$cmd" ] && [ -n "$DIR" ] || usage

# shellcheck source=scripts/lib/rig.sh
. scripts/lib/rig.sh

# Starts the node of PORT, its files in DIR; returns once it answers on PORT.
run_node() {
    redis_start "node-$1" "$1" "$DIR" --cluster-enabled yes \
        --cluster-config-file "$DIR/nodes-$1.conf" --cluster-node-timeout 1000 \
        --repl-diskless-sync yes --repl-diskless-sync-delay 0
}

case "$cmd" in
    down) stop_all; exit 0 ;;
    restart)
        port="${3:-}"
        [ -n "$port" ] || usage
        DIR="$(cd "$DIR" && pwd)"
        rm -f "$DIR/node-$port.pid"
        run_node "$port"
        exit 0
        ;;
    up) ;;
    *) usage ;;
esac
command -v redis-server >/dev/null || scripts/services.sh >&2
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
trap 'stop_all' ERR


# Starts one node on a free port (another port if that one was taken meanwhile) and
# appends its port to PORTS.
PORTS=()
start_node() {
    local port
    for _ in 1 2 3 4 5; do
        free_port port bus
        # 3 s, then another port.
        if WAIT_TRIES=60 run_node "$port" 2>/dev/null; then
            PORTS+=("$port")
            return 0
        fi
    done
    echo "redis-cluster.sh: no node would start; logs in $DIR" >&2
    return 1
}
for _ in 1 2 3 4 5 6; do
    start_node
done
addresses=()
for port in "${PORTS[@]}"; do addresses+=("127.0.0.1:$port"); done
redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 \
    || { cat "$DIR/create.log" >&2; false; }
for port in "${PORTS[@]}"; do
    wait_for "node :$port seeing the cluster whole" sh -c \
        "redis-cli -p $port cluster info | grep -q cluster_state:ok"
done
# Every replica's link to its primary is up.
for port in "${PORTS[@]}"; do
    if redis-cli -p "$port" role | head -1 | grep -q slave; then
        wait_for "replica :$port in sync" sh -c \
            "redis-cli -p $port info replication | grep -q master_link_status:up"
    fi
done

nodes=""
for port in "${PORTS[@]:1}"; do nodes="$nodes&node=127.0.0.1:$port"; done
url="redis-cluster://127.0.0.1:${PORTS[0]}?${nodes#&}"
cat >"$DIR/env" <<ENV
REDIS_URL='$url'
PORTS='${PORTS[*]}'
ENV
trap - ERR
echo "REDIS_URL=$url"
