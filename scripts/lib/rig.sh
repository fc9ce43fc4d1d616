# The set-up the scripts of scripts/ and loadtest/ share, in one place: sourced (after
# `cd` to the repository root) by the load scripts, k6-smoke.sh and the local Redis
# topologies (redis-cluster.sh, redis-sentinel.sh). What needs more than shell is
# `loadgen rig` (loadtest/loadgen/src/rig/): starting a server on a free port and waiting
# for it, CPU samples, figures read from a scenario's result.
#
#   on_exit COMMAND            clean-up, run at exit, the last registered first
#   free_port VAR [bus]        the one way to pick a port for a server started here
#   wait_for WHAT COMMAND...   COMMAND until it succeeds, 15 s at most
#   redis_start NAME PORT DIR [ARGS...]
#                              the one way to start a Redis server here
#   stop_all                   kill every server whose pid file is in $DIR
#   scratch_db NAME            the one way to make a database: empty, dropped at exit
#   key_prefix NAME            REDIS_KEY_PREFIX for this run, its keys deleted at exit
#   rig_build [--release] [CARGO ARGS...]
#                              the one build step; sets BIN (locallife), GEN (loadgen)
#                              and FLOOR (the benchmark's floor)
#   rig_setup NAME             a load run's environment (services, WORK, PIDS, key prefix)
#   start_server NAME [OPTIONS] -- COMMAND...
#                              a server through `loadgen rig start`, waited for
#   cpu_sum PID...             CPU seconds of processes, added up
#   measured OUT GEN-ARGS...   a scenario, with the servers' CPU over its measured part
#   stop_server PID...         SIGTERM, a wait, SIGKILL only for what is still there

# ---------------------------------------------------------------- clean-up
RIG_EXIT=()
rig_exit() {
    local i
    for ((i = ${#RIG_EXIT[@]} - 1; i >= 0; i--)); do eval "${RIG_EXIT[$i]}" || true; done
}
# on_exit COMMAND: COMMAND (a string, evaluated then) runs when the script exits, after
# every one registered later; RIG_STATUS holds the script's exit status meanwhile.
on_exit() {
    RIG_EXIT+=("$1")
    trap 'RIG_STATUS=$?; rig_exit' EXIT
}

# ---------------------------------------------------------------- ports and waits
# free_port VAR [bus]: sets VAR to a free port below the kernel's ephemeral range (32768
# and up, where an outgoing connection could take it between this check and the
# server's start), never one handed out before in this run (so call it directly, not in
# a command substitution). With `bus`, the port + 10000 (a cluster node's bus) must be
# free and below that range too.
RIG_TAKEN=" "
free_port() {
    local var="$1" bus="${2:-}" p span=12000
    [ "$bus" = bus ] && span=2700
    while :; do
        p=$((20000 + RANDOM % span))
        case "$RIG_TAKEN" in *" $p "*|*" $((p + 10000)) "*|*" $((p - 10000)) "*) continue ;; esac
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        if [ "$bus" = bus ]; then
            (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null && continue
        fi
        RIG_TAKEN="$RIG_TAKEN$p "
        printf -v "$var" %s "$p"
        return
    done
}

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, WAIT_TRIES times 50 ms at
# most (default 300: 15 s); fails naming WHAT (and the logs in $DIR, if set).
wait_for() {
    local what="$1"; shift
    for _ in $(seq 1 "${WAIT_TRIES:-300}"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "$(basename "$0"): $what did not happen${DIR:+; logs in $DIR}" >&2
    return 1
}

# ---------------------------------------------------------------- Redis
# redis_start NAME PORT DIR [ARGS...]: a redis-server on 127.0.0.1:PORT, nothing on disk
# (no snapshots, no append-only file: ARGS may say otherwise), its pid in DIR/NAME.pid
# and its log in DIR/NAME.log; returns once the server answering on PORT is that one
# (not whatever else took the port meanwhile).
redis_start() {
    local name="$1" port="$2" dir="$3"; shift 3
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/$name.pid" --logfile "$dir/$name.log" --dir "$dir" "$@" \
        || return 1
    wait_for "$name on :$port answering" redis_is "$dir/$name.pid" "$port"
}
# redis_is PIDFILE PORT: the server on PORT is the one whose pid PIDFILE holds.
redis_is() {
    [ -s "$1" ] && redis-cli -p "$2" info server 2>/dev/null \
        | grep -q "^process_id:$(cat "$1")$(printf "\r")$"
}
# Kills every server whose pid file is in $DIR.
stop_all() {
    for pidfile in "$DIR"/*.pid; do
        [ -e "$pidfile" ] || continue
        kill -9 "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

# ---------------------------------------------------------------- PostgreSQL
# The role and database scripts/services.sh makes; scratch databases are made through it.
RIG_ADMIN_URL="${RIG_ADMIN_URL:-postgres://locallife:locallife@127.0.0.1:5432/locallife}"
# scratch_db NAME: an empty database NAME (one left over from an earlier run is dropped
# first), dropped again at exit; its URL in DATABASE_URL (exported).
scratch_db() {
    local name="$1"
    PGOPTIONS="-c client_min_messages=warning" psql "$RIG_ADMIN_URL" -q \
        -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
    on_exit "psql '$RIG_ADMIN_URL' -qc 'DROP DATABASE IF EXISTS $name WITH (FORCE)' >/dev/null 2>&1"
    export DATABASE_URL="${RIG_ADMIN_URL%/*}/$name"
}

# ---------------------------------------------------------------- Redis keys
# key_prefix NAME: REDIS_KEY_PREFIX=NAME-PID (exported, with REDIS_URL, the local Redis,
# unless set); every key under it in the local Redis is deleted at exit.
key_prefix() {
    export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}" REDIS_KEY_PREFIX="$1-$$"
    on_exit "redis-cli --scan --pattern '$1-$$*' 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1"
}

# ---------------------------------------------------------------- build
# rig_build [--release] [CARGO ARGS...]: the one build step: `cargo build --locked` of
# CARGO ARGS (default: every binary of the workspace, locallife, loadgen and floor), its
# output on stderr. Sets BIN, GEN and FLOOR to those binaries of that profile,
# wherever the target directory is (CARGO_TARGET_DIR). RIG_PROFILE=debug makes a
# --release build a debug one: a quick check that a load script works, whose figures
# mean nothing.
rig_build() {
    local profile=debug
    if [ "${1:-}" = --release ]; then
        shift
        [ "${RIG_PROFILE:-release}" = release ] && profile=release
    fi
    [ $# -gt 0 ] || set -- --workspace --bins
    if [ "$profile" = release ]; then set -- --release "$@"; fi
    cargo build --locked "$@" >&2
    local target="${CARGO_TARGET_DIR:-target}"
    BIN="$target/$profile/locallife" GEN="$target/$profile/loadgen" FLOOR="$target/$profile/floor"
}

# ---------------------------------------------------------------- a load run
# rig_setup NAME: what a load run needs before its servers: PostgreSQL and Redis
# (scripts/services.sh); WORK, a directory removed at exit (kept, and named, when the
# script fails or RIG_KEEP is set); PIDS, processes stopped at exit (stop_server: SIGTERM first); the key
# prefix NAME-PID (key_prefix); JWT_SECRET, JSON logs at
# warn, and the request rate limits out of the way (capacity is measured, not the
# abuse limits).
rig_setup() {
    local name="$1"
    scripts/services.sh >&2
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-$name.XXXXXX")
    # shellcheck disable=SC2016 # evaluated at exit
    on_exit 'if [ "$RIG_STATUS" = 0 ] && [ -z "${RIG_KEEP:-}" ]; then rm -rf "$WORK"; else echo "$(basename "$0"): logs in $WORK" >&2; fi'
    key_prefix "$name"
    PIDS=()
    # shellcheck disable=SC2016 # evaluated at exit
    on_exit '[ "${#PIDS[@]}" -eq 0 ] || stop_server "${PIDS[@]}"'
    export JWT_SECRET="$name-secret-0123456789abcdef-0123456789" LOG_FORMAT=json RUST_LOG=warn
    export HTTP_RATE_USER=1000000 HTTP_RATE_ADDRESS=1000000 MAX_CONNECTIONS_PER_ADDRESS=1000000 \
        HTTP_RATE_LOGIN=1000000 HTTP_RATE_BACK_OFFICE=1000000
}

# start_server NAME [OPTIONS] -- COMMAND...: starts COMMAND through `loadgen rig start`
# (LISTEN_ADDR, METRICS_ADDR and PORT set to free ports; OPTIONS: --metrics for a port
# of its own, --ready PATH, default /readyz) and returns once it is ready. Its log is
# $WORK/NAME.log; sets NAME_PID, NAME_PORT and NAME_METRICS, and adds the pid to PIDS.
start_server() {
    local name="$1" out pid port metrics
    shift
    out=$("$GEN" rig start --log "$WORK/$name.log" "$@") || return 1
    read -r pid port metrics <<<"$out"
    printf -v "${name}_PID" %s "$pid"
    printf -v "${name}_PORT" %s "$port"
    printf -v "${name}_METRICS" %s "$metrics"
    PIDS+=("$pid")
}

# cpu_sum PID...: the CPU seconds the processes have used, added up.
cpu_sum() { "$GEN" rig cpu "$@" | awk '{ for (i = 1; i <= NF; i++) s += $i; printf "%.6f\n", s }'; }

# measured OUT GEN-ARGS...: runs the generator ($GEN) into OUT and writes to OUT.cpu the
# CPU seconds of the servers A_PID (holding the sockets) and B_PID (taking the
# publishing requests) and of Redis spent between its "connected" line and its result
# line (so connecting the sockets is not counted), as "A B REDIS", and to OUT.ucpu the
# user-space part of each (the rest is the kernel's). MEASURE_PIDS names other
# processes instead of A and B, MEASURE_REDIS another Redis (empty: none). Its log goes
# to $WORK/gen.log.
measured() {
    local out=$1 pid c0 c1 u0 u1 redis=() procs
    shift
    read -r -a procs <<<"${MEASURE_PIDS:-$A_PID $B_PID}"
    [ -n "${MEASURE_REDIS-127.0.0.1:6379}" ] && redis=(--redis "${MEASURE_REDIS-127.0.0.1:6379}")
    "$GEN" "$@" >"$out" 2>>"$WORK/gen.log" &
    pid=$!
    for _ in $(seq 1 2400); do grep -q '"connected"' "$out" 2>/dev/null && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    c0=$("$GEN" rig cpu "${redis[@]}" "${procs[@]}")
    u0=$("$GEN" rig cpu --user "${redis[@]}" "${procs[@]}")
    for _ in $(seq 1 4800); do [ "$(wc -l <"$out")" -ge 2 ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    c1=$("$GEN" rig cpu "${redis[@]}" "${procs[@]}")
    u1=$("$GEN" rig cpu --user "${redis[@]}" "${procs[@]}")
    wait "$pid"
    cpu_delta "$c0" "$c1" >"$out.cpu"
    cpu_delta "$u0" "$u1" >"$out.ucpu"
}
# cpu_delta BEFORE AFTER: two lines of `loadgen rig cpu`, subtracted field by field.
cpu_delta() {
    awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x); split(b, y)
        for (i = 1; i <= n; i++) printf "%s%.6f", (i > 1 ? " " : ""), y[i] - x[i]; print "" }'
}

# stop_server PID...: SIGTERM, then up to 15 s for each to exit (a replica drains its
# sockets), then SIGKILL for any still there.
# gone PID...: waits (up to 30 s) until each process has exited and closed its files,
# listening sockets included (a zombie has): a process SIGKILLed with thousands of
# sockets takes a moment to close them, and one started on its port before that fails
# with "address already in use". Works for processes that are not this shell's
# children, where `wait` returns at once.
gone() {
    local pid
    for pid in "$@"; do
        for _ in $(seq 1 600); do
            kill -0 "$pid" 2>/dev/null || break
            [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
            sleep 0.05
        done
    done
}

stop_server() {
    local pid
    kill -TERM "$@" 2>/dev/null || true
    for pid in "$@"; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null || true
    done
}
