#!/usr/bin/env bash
# PostgreSQL going away under load (issue 34, SPEC §11, docs/operations.md "When
# PostgreSQL or Redis fails"): two release replicas on a PostgreSQL of the run's own, a
# primary and a synchronous streaming standby (pg_basebackup -R) in a temporary
# directory, reached through one multi-host DATABASE_URL with
# target_session_attrs=read-write. Under the soak's load (`loadgen soak`: sockets
# coming and going, platform sends, orders paid within 10 s of being placed, through
# signed WeChat Pay notifications sent again every 0.5 s until 2xx), two faults:
#
#   stop      the primary stopped (pg_ctl stop -m fast) for PG_STOP_SECONDS (30), then
#             started again; the standby catches up
#   failover  the primary stopped as a crash would (-m immediate) and the standby
#             promoted (pg_ctl promote) PG_PROMOTE_AFTER_SECONDS (10) later, a failover
#             manager's time to notice and decide; meanwhile the standby is up, read-only
#
# Prints, per fault, what each entry point answered from the fault until every entry
# point answered 2xx again (2xx, of which while no server took writes / non-2xx / 5xx /
# 5xx other than 503 / no answer), how
# long after the database was back each did, and when the outbox backlog had drained
# (rows committed since, none pending for over a second); then the payments answered
# 2xx and recorded. Fails on a payment answered 2xx but not recorded (or recorded
# twice), on any 5xx other than 503, or on an outbox that does not drain.
#
#   loadtest/chaos/pg.sh                   about 3 minutes (build not included)
#   PG_STOP_SECONDS=60 PG_PROMOTE_AFTER_SECONDS=30 loadtest/chaos/pg.sh
#
# The suite runs the failover on every CI run (tests/api/pg_failover.rs) and the cut
# (tests/api/pg_outage.rs). RIG_PROFILE=debug checks the script on debug builds.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/rig.sh

STOP_SECONDS=${PG_STOP_SECONDS:-30}
PROMOTE_AFTER=${PG_PROMOTE_AFTER_SECONDS:-10}
WARMUP=${PG_WARMUP_SECONDS:-20}
# Load after each fault's recovery before the next step.
SETTLE=${PG_AFTER_SECONDS:-30}
RIDERS=${PG_RIDERS:-100} MERCHANTS=${PG_MERCHANTS:-5} CONSUMERS=${PG_CONSUMERS:-50}
RATE=${PG_RATE:-20} ORDERS_PER_S=${PG_ORDERS_PER_S:-2}

log() { printf '==> %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- PostgreSQL of our own
PG_BIN=${PG_BIN:-$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -1)}
for tool in initdb pg_ctl pg_basebackup; do
    [ -x "$PG_BIN/$tool" ] || {
        echo "pg.sh: PostgreSQL's $tool is not in ${PG_BIN:-/usr/lib/postgresql/*/bin} (scripts/services.sh installs it; or set PG_BIN)" >&2
        exit 1
    }
done
# initdb and postgres refuse root: as root, they run as the postgres OS user.
pg() {
    local tool="$1"
    shift
    if [ "$(id -u)" = 0 ]; then
        (cd "$PGWORK" && runuser -u postgres -- "$PG_BIN/$tool" "$@")
    else
        "$PG_BIN/$tool" "$@"
    fi
}

rig_setup pg
# Outside $WORK (which only root may enter), owned by the servers' user.
PGWORK=$(mktemp -d "${TMPDIR:-/tmp}/locallife-pg.XXXXXX")
[ "$(id -u)" = 0 ] && chown postgres: "$PGWORK"
# shellcheck disable=SC2016 # evaluated at exit
on_exit 'if [ "$RIG_STATUS" = 0 ]; then rm -rf "$PGWORK"; else echo "pg.sh: PostgreSQL logs in $PGWORK" >&2; fi'
on_exit 'for d in "$PGWORK"/primary "$PGWORK"/standby; do [ -e "$d/postmaster.pid" ] && pg pg_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1; done'

log "building the binaries (release unless RIG_PROFILE=debug)"
rig_build --release

free_port PRIMARY
free_port STANDBY
pg initdb -D "$PGWORK/primary" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$PGWORK/primary/postgresql.conf" <<EOF
port = $PRIMARY
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGWORK'
wal_level = replica
max_wal_senders = 4
# Each COMMIT waits until the standby has flushed it: the promoted standby has every
# transaction the primary answered (an asynchronous one may not; docs/operations.md).
synchronous_standby_names = '*'
EOF
echo "host replication all 127.0.0.1/32 trust" >>"$PGWORK/primary/pg_hba.conf"
pg pg_ctl -D "$PGWORK/primary" -l "$PGWORK/primary.log" -w start >/dev/null
pg pg_basebackup -h 127.0.0.1 -p "$PRIMARY" -U postgres -D "$PGWORK/standby" -R -X stream
# Promoted, it has no standby of its own to wait for; after the primary's restart it
# asks for the stream again within a second (the default is 5 s, during which every
# commit on the primary waits).
cat >>"$PGWORK/standby/postgresql.conf" <<EOF
port = $STANDBY
synchronous_standby_names = ''
wal_retrieve_retry_interval = 1s
EOF
pg pg_ctl -D "$PGWORK/standby" -l "$PGWORK/standby.log" -w start >/dev/null
ADMIN="postgres://postgres@127.0.0.1:$PRIMARY/postgres"
synced() { [ "$(psql "$ADMIN" -XAtc "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'" 2>/dev/null)" = 1 ]; }
wait_for "the standby streaming synchronously" synced
psql "$ADMIN" -Xq -c "CREATE ROLE locallife LOGIN PASSWORD 'locallife'" -c "CREATE DATABASE locallife OWNER locallife"
export DATABASE_URL="postgres://locallife:locallife@127.0.0.1:$PRIMARY,127.0.0.1:$STANDBY/locallife?target_session_attrs=read-write"
psql_q() { psql "$DATABASE_URL" -XAtq -c "$1"; }

# ---------------------------------------------------------------- the service and the load
while IFS= read -r setting; do export "${setting?}"; done < <("$GEN" rig pay-keys "$WORK/pay")
"$BIN" migrate >&2
"$GEN" seed --riders "$RIDERS" --merchants "$MERCHANTS" --consumers "$CONSUMERS" \
    --out "$WORK/users.json" >&2
start_server A -- "$BIN" serve
start_server B -- "$BIN" serve
log "replicas A (:$A_PORT) and B (:$B_PORT); PostgreSQL primary :$PRIMARY, standby :$STANDBY"

LOAD_SECONDS=$((WARMUP + STOP_SECONDS + PROMOTE_AFTER + 2 * SETTLE + 30))
log "load for about $LOAD_SECONDS s: $RIDERS riders and $MERCHANTS merchant admins coming and going, $RATE sends/s, $ORDERS_PER_S orders/s"
"$GEN" soak --servers "127.0.0.1:$A_PORT,127.0.0.1:$B_PORT" --users "$WORK/users.json" \
    --seconds "$LOAD_SECONDS" --rate "$RATE" --orders-per-s "$ORDERS_PER_S" --hold-min-s 5 \
    --hold-max-s 30 --pay-keys "$WORK/pay" --pay-delay-max-ms 10000 --pay-retry-secs 120 \
    --answers "$WORK/answers.jsonl" \
    >"$WORK/soak.json" 2>"$WORK/soak.err" &
GEN_PID=$!
PIDS+=("$GEN_PID")

# drained SINCE_MS: seconds from SINCE_MS until the outbox has rows committed since then
# and none of its pending rows is over a second old (the relay keeps up again), polled
# every 0.2 s for 60 s at most; and the most rows seen pending meanwhile.
drained() {
    local since=$1 new stale pending peak=0
    for _ in $(seq 1 300); do
        read -r new stale pending <<<"$(psql_q "SELECT count(*) FILTER (WHERE created_at >= to_timestamp($since / 1000.0)),
                count(*) FILTER (WHERE state = 'pending' AND created_at < now() - interval '1 second'),
                count(*) FILTER (WHERE state = 'pending') FROM outbox" 2>/dev/null | tr '|' ' ')" || true
        [ -n "${pending:-}" ] && [ "$pending" -gt "$peak" ] && peak=$pending
        if [ "${new:-0}" -gt 0 ] && [ "${stale:-1}" = 0 ]; then
            echo "$(awk -v a="$since" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }') $peak"
            return
        fi
        sleep 0.2
    done
    echo "never $peak"
}

sleep "$WARMUP"
log "stop: the primary stopped (-m fast) for $STOP_SECONDS s"
STOP_START=$(now_ms)
pg pg_ctl -D "$PGWORK/primary" -m fast -w stop >/dev/null
sleep "$STOP_SECONDS"
pg pg_ctl -D "$PGWORK/primary" -l "$PGWORK/primary.log" -w start >/dev/null
STOP_END=$(now_ms)
read -r STOP_DRAINED STOP_PEAK <<<"$(drained "$STOP_END")"
wait_for "the standby streaming synchronously again" synced
log "stop: the primary back; outbox drained after $STOP_DRAINED s"

sleep "$SETTLE"
log "failover: the primary stopped (-m immediate), the standby promoted $PROMOTE_AFTER s later"
FAIL_START=$(now_ms)
pg pg_ctl -D "$PGWORK/primary" -m immediate -w stop >/dev/null
sleep "$PROMOTE_AFTER"
pg pg_ctl -D "$PGWORK/standby" -w promote >/dev/null
FAIL_END=$(now_ms)
read -r FAIL_DRAINED FAIL_PEAK <<<"$(drained "$FAIL_END")"
log "failover: the standby promoted; outbox drained after $FAIL_DRAINED s"

wait "$GEN_PID"
log "load done: $(cat "$WORK/soak.json")"
grep -v '^{' "$WORK/soak.err" >&2 || true
for pid in "$A_PID" "$B_PID"; do
    kill -0 "$pid" 2>/dev/null || { echo "pg.sh: a replica died; logs in $WORK" >&2; exit 1; }
done

# ---------------------------------------------------------------- figures and verdict
"$GEN" rig fault-figures --answers "$WORK/answers.jsonl" \
    --fault "stop=$STOP_START,$STOP_END" --fault "failover=$FAIL_START,$FAIL_END" >"$WORK/faults.jsonl"
status=0
while IFS= read -r line; do
    name=$(jq -r .fault <<<"$line")
    drained_s=$STOP_DRAINED peak=$STOP_PEAK
    [ "$name" = failover ] && drained_s=$FAIL_DRAINED peak=$FAIL_PEAK
    echo "pg.sh: $name: no server taking writes for $(jq -r .down_s <<<"$line") s; every entry point answering 2xx again $(jq -r .recovered_after_s <<<"$line") s after it was back; outbox drained after $drained_s s (at most $peak rows pending)"
    jq -r '.entries | to_entries[] | "pg.sh:   \(.key): 2xx \(.value["2xx"]) (while no server took writes: \(.value["2xx_while_away"])), non-2xx \(.value.non_2xx) (5xx \(.value["5xx"]), of which not 503: \(.value["5xx_not_503"])), no answer \(.value.no_answer); 2xx again \(.value.back_after_s // "never") s after"' <<<"$line"
    bad=$(jq '[.entries[] | .["5xx_not_503"]] | add' <<<"$line")
    if [ "$bad" != 0 ]; then
        echo "pg.sh: FAIL: $bad answers during the $name were a 5xx other than 503" >&2
        status=1
    fi
    if [ "$drained_s" = never ]; then
        echo "pg.sh: FAIL: the outbox did not drain within 60 s of the $name" >&2
        status=1
    fi
done <"$WORK/faults.jsonl"

jq -r 'select(.entry == "webhook" and .out_trade_no != null) | .out_trade_no' "$WORK/answers.jsonl" | sort -u >"$WORK/paid.txt"
psql_q "SELECT out_trade_no FROM payments" | sort -u >"$WORK/recorded.txt"
answered=$(wc -l <"$WORK/paid.txt")
lost=$(comm -23 "$WORK/paid.txt" "$WORK/recorded.txt" | wc -l)
twice=$(psql_q "SELECT count(*) FROM (SELECT 1 FROM payments GROUP BY out_trade_no HAVING count(*) > 1) d")
unfinished=$(jq -r .pay_failures "$WORK/soak.json")
echo "pg.sh: payments answered 2xx: $answered; recorded: $(wc -l <"$WORK/recorded.txt"); lost: $lost; recorded twice: $twice; never answered 2xx within 120 s: $unfinished"
if [ "$lost" != 0 ] || [ "$twice" != 0 ]; then
    echo "pg.sh: FAIL: payments answered 2xx were lost or recorded twice" >&2
    status=1
fi
sed 's/^/pg.sh: figures: /' "$WORK/faults.jsonl"
exit "$status"
