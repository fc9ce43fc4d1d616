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
