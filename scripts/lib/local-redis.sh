# Helpers shared by scripts/redis-sentinel.sh and scripts/redis-cluster.sh (sourced; they
# set DIR, the directory holding the servers' pid files and logs).

# Kills every server whose pid file is in $DIR.
stop_all() {
    for pidfile in "$DIR"/*.pid; do
        [ -e "$pidfile" ] || continue
        kill -9 "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

# free_port VAR [bus]: sets VAR to a free port below the kernel's ephemeral range (32768
# and up, where an outgoing connection could take it between this check and the
# server's start), never one handed out before in this run (so call it directly, not in
# a command substitution). With `bus`, the port + 10000 (a cluster node's bus) must be
# free and below that range too.
taken=" "
free_port() {
    local var="$1" bus="${2:-}" p span=12000
    [ "$bus" = bus ] && span=2700
    while :; do
        p=$((20000 + RANDOM % span))
        case "$taken" in *" $p "*|*" $((p + 10000)) "*|*" $((p - 10000)) "*) continue ;; esac
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        if [ "$bus" = bus ]; then
            (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null && continue
        fi
        taken="$taken$p "
        printf -v "$var" %s "$p"
        return
    done
}

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, 15 s at most.
wait_for() {
    local what="$1"; shift
    for _ in $(seq 1 300); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "$(basename "$0"): $what did not happen; logs in $DIR" >&2
    return 1
}
