# Helpers shared by the load-test scripts (sourced after `cd` to the repository root).

# A free local TCP port, as the OS hands one out.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 60 s for URL to answer 2xx; fails naming the calling script otherwise.
wait_http() { # url
    for _ in $(seq 1 600); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "$(basename "$0"): $1 never answered" >&2
    return 1
}

# CPU ticks (user + system) a process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

TICKS=$(getconf CLK_TCK)
# CPU seconds Redis has used (INFO cpu: its main thread and its others, user + system).
redis_cpu() { redis-cli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'; }
# CPU seconds of the two servers of a traffic run (A_PID, holding the sockets; B_PID,
# taking the publishing requests) and of Redis: "A B REDIS".
server_cpu() {
    python3 -c 'import sys; t = float(sys.argv[3]); print(int(sys.argv[1]) / t, int(sys.argv[2]) / t, sys.argv[4])' \
        "$(cpu_ticks "$A_PID")" "$(cpu_ticks "$B_PID")" "$TICKS" "$(redis_cpu)"
}
# measured OUT GEN-ARGS...: runs the generator ($GEN) into OUT and writes to OUT.cpu the
# CPU seconds of A, B and Redis spent between its "connected" line and its result line
# (so connecting the sockets is not counted), as "A B REDIS". Its log goes to
# $WORK/gen.log.
measured() {
    local out=$1 pid c0 c1
    shift
    "$GEN" "$@" >"$out" 2>>"$WORK/gen.log" &
    pid=$!
    for _ in $(seq 1 2400); do grep -q '"connected"' "$out" 2>/dev/null && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    c0=$(server_cpu)
    for _ in $(seq 1 4800); do [ "$(wc -l <"$out")" -ge 2 ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    c1=$(server_cpu)
    wait "$pid"
    python3 -c 'import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); print(" ".join(str(float(y) - float(x)) for x, y in zip(a, b)))' \
        "$c0" "$c1" >"$out.cpu"
}
