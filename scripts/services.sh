#!/usr/bin/env bash
# Make sure PostgreSQL and Redis are installed, running on 127.0.0.1, and that
# the `locallife` login role (password `locallife`, CREATEDB) and database exist.
# Idempotent: when everything is already up this only does a few quick probes.
# Called by scripts/test.sh and scripts/dev.sh; it exports nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=127.0.0.1
PG_PORT=5432
PG_SOCKET_DIR=/var/run/postgresql   # Debian's default unix socket directory
DB_ROLE=locallife
DB_PASS=locallife
DB_NAME=locallife
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
WAIT_SECS=30

die() { echo "services.sh: error: $*" >&2; exit 1; }
note() { echo "services.sh: $*" >&2; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# Install Debian packages; only root can, so otherwise say exactly what is missing.
APT_UPDATED=0
apt_install() {
    if ! is_root; then
        die "missing packages: $*. Install them as root (apt-get install $*) or re-run this script as root."
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* manually."
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" -eq 0 ]; then
        note "apt-get update"
        apt-get -o DPkg::Lock::Timeout=120 update -qq
        APT_UPDATED=1
    fi
    note "apt-get install $*"
    # C.UTF-8 always exists on Debian, so the cluster the postgresql package may
    # create during install gets a valid locale even if the caller's LANG is odd.
    LANG=C.UTF-8 LC_ALL=C.UTF-8 apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
        --no-install-recommends "$@" >/dev/null
}

# Wait (bounded) until "$@" succeeds.
wait_for() {
    local i
    for ((i = 0; i < WAIT_SECS * 2; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    return 1
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
redis_ready() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# ---------------------------------------------------------------- PostgreSQL
ensure_postgres_running() {
    if command -v pg_isready >/dev/null 2>&1 && pg_ready; then
        return 0
    fi

    # Server binaries live in /usr/lib/postgresql/<ver>/bin; pg_ctlcluster and
    # friends come from postgresql-common. Missing either => install.
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1 \
        || ! command -v psql >/dev/null 2>&1 \
        || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        apt_install postgresql
        # The package may have auto-started the server (when invoke-rc.d allows).
        if pg_ready; then return 0; fi
    fi

    is_root || die "PostgreSQL is installed but not accepting connections on $PG_HOST:$PG_PORT; start it as root (or re-run this script as root)."

    # Prefer a cluster named main; pick the newest version if several exist.
    local ver port status
    ver=$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" {print $1}' | sort -V | tail -n 1)
    if [ -z "$ver" ]; then
        # A fresh install without auto-created cluster: make one on our port.
        ver=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' \
            | awk -F/ '{print $5}' | sort -V | tail -n 1)
        [ -n "$ver" ] || die "no PostgreSQL server binaries found under /usr/lib/postgresql."
        note "creating PostgreSQL $ver cluster 'main' on port $PG_PORT"
        LANG=C.UTF-8 LC_ALL=C.UTF-8 pg_createcluster --port "$PG_PORT" --locale C.UTF-8 "$ver" main >/dev/null \
            || die "pg_createcluster $ver main failed."
    fi

    read -r port status < <(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $3, $4}') || true
    [ -n "${port:-}" ] || die "PostgreSQL cluster $ver/main not found (pg_lsclusters)."
    [ "$port" = "$PG_PORT" ] \
        || die "PostgreSQL cluster $ver/main is configured for port $port, expected $PG_PORT (see /etc/postgresql/$ver/main/postgresql.conf)."

    if [ "$status" != online ]; then
        note "starting PostgreSQL $ver/main"
        # No systemd on the target machines, so bypass the systemctl redirect.
        pg_ctlcluster --skip-systemctl-redirect "$ver" main start \
            || die "could not start PostgreSQL $ver/main; see /var/log/postgresql/postgresql-$ver-main.log"
    fi

    wait_for pg_ready \
        || die "PostgreSQL did not become ready on $PG_HOST:$PG_PORT within ${WAIT_SECS}s; see /var/log/postgresql/postgresql-$ver-main.log"
}

# Succeeds when the app role can log in with its password and has CREATEDB
# (the tests create and drop their own databases).
app_role_ok() {
    [ "$(PGPASSWORD="$DB_PASS" PGCONNECT_TIMEOUT=5 psql -X -w -q -tA \
        -h "$PG_HOST" -p "$PG_PORT" -U "$DB_ROLE" -d "$DB_NAME" \
        -c 'SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user' 2>/dev/null)" = t ]
}

# Run admin SQL from stdin as the postgres superuser: over the unix socket via
# peer auth when we can become the postgres OS user, else over TCP.
admin_psql() {
    local sql
    sql=$(cat)
    if is_root && command -v runuser >/dev/null 2>&1 \
        && runuser -u postgres -- psql -X -w -q -v ON_ERROR_STOP=1 \
            -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres <<<"$sql" >/dev/null; then
        return 0
    fi
    # -w: never prompt (CI has no stdin); needs trust auth, ~/.pgpass or PGPASSWORD.
    psql -X -w -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres <<<"$sql" >/dev/null
}

ensure_app_role() {
    if app_role_ok; then return 0; fi
    note "creating/updating PostgreSQL role '$DB_ROLE' and database '$DB_NAME'"
    # DO block makes role creation idempotent; CREATE DATABASE cannot run inside
    # a DO block/transaction, hence the conditional \gexec.
    admin_psql <<SQL || die "could not create role/database as the postgres superuser (tried 'runuser -u postgres -- psql' and 'psql -h $PG_HOST -U postgres'). Run this script as root, or set PGPASSWORD for the postgres user."
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_ROLE') THEN
        CREATE ROLE $DB_ROLE LOGIN CREATEDB PASSWORD '$DB_PASS';
    ELSE
        ALTER ROLE $DB_ROLE LOGIN CREATEDB PASSWORD '$DB_PASS';
    END IF;
END
\$\$;
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_ROLE'
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
ALTER DATABASE $DB_NAME OWNER TO $DB_ROLE;
SQL
    app_role_ok || die "role '$DB_ROLE' still cannot log in to '$DB_NAME' at $PG_HOST:$PG_PORT with its password; check pg_hba.conf allows password (scram-sha-256/md5) auth for 127.0.0.1."
}

# --------------------------------------------------------------------- Redis
ensure_redis_running() {
    if command -v redis-cli >/dev/null 2>&1 && redis_ready; then
        return 0
    fi

    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        # redis-server depends on redis-tools, which provides redis-cli.
        apt_install redis-server
        # The package's init script may already have started it.
        if redis_ready; then return 0; fi
    fi

    # Root uses the system dirs; anyone else gets a private scratch dir.
    local dir=/var/lib/redis log=/var/log/redis/ci.log
    if ! is_root; then
        dir=${TMPDIR:-/tmp}/locallife-redis
        log=$dir/redis.log
    fi
    mkdir -p "$dir" "$(dirname "$log")"

    note "starting Redis on $REDIS_HOST:$REDIS_PORT"
    # No persistence: this Redis only holds ephemeral dev/test state.
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$dir" --logfile "$log" \
        || die "could not start redis-server; see $log"

    wait_for redis_ready \
        || die "Redis did not answer PING on $REDIS_HOST:$REDIS_PORT within ${WAIT_SECS}s; see $log"
}

# ---------------------------------------------------------------- tools
# curl: the README's examples and the commands `locallife demo` prints use it.
# With --with-test-tools also promtool, which the test suite uses to lint the /metrics
# exposition, Debian's Chromium, in which the console's browser test runs, and
# libfaketime, which gives the clock-skew test's replicas clocks of their own.
ensure_tools() {
    local missing=()
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    if [ "${1:-}" = "--with-test-tools" ]; then
        ensure_promtool
        command -v chromium >/dev/null 2>&1 || apt_install chromium
        command -v faketime >/dev/null 2>&1 || apt_install faketime
    fi
}

# promtool comes in Debian's `prometheus` package, whose installation would also start
# (and enable) a Prometheus server on :9090, the service's own default metrics port.
# So the package is only downloaded, and its promtool (one static binary) unpacked into
# target/tools/bin, which scripts/test.sh puts on PATH. Nothing is installed and no
# service starts.
ensure_promtool() {
    local root dest
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    dest="$root/target/tools/bin"
    if command -v promtool >/dev/null 2>&1 || [ -x "$dest/promtool" ]; then
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "promtool not found and no apt-get; put promtool on PATH."
    local work
    work="$(mktemp -d)"
    note "downloading Debian's prometheus package for its promtool (not installing it)"
    if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
        is_root || die "cannot download the prometheus package; run 'apt-get update' as root, or put promtool on PATH."
        apt-get -o DPkg::Lock::Timeout=120 update -qq
        APT_UPDATED=1
        (cd "$work" && apt-get download prometheus >/dev/null) || die "apt-get download prometheus failed"
    fi
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
    mkdir -p "$dest"
    install -m 0755 "$work/root/usr/bin/promtool" "$dest/promtool"
    rm -rf "$work"
    note "promtool: $dest/promtool"
}

ensure_postgres_running
ensure_app_role
echo "postgres: ready at $PG_HOST:$PG_PORT (role/database $DB_ROLE)"
ensure_redis_running
echo "redis: ready at $REDIS_HOST:$REDIS_PORT"
ensure_tools "${1:-}"
