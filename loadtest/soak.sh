#!/usr/bin/env bash
# The soak (issue 34, SPEC §11): MINUTES (default 60) of steady mixed load on two
# release replicas sharing one Redis (started here) and one scratch database, sampled
# every minute, and a verdict on growth at the end.
#
#   loadtest/soak.sh [MINUTES]
#
# The load (`loadgen soak`): riders and merchant admins whose sockets come and go (each
# connects to either replica, receives and acks for 5-60 s, leaves, comes back within
# 3 s), platform notifications to riders through either replica (SOAK_RATE a second,
# default 20), and orders placed by consumers and paid through signed WeChat Pay
# notifications (SOAK_ORDERS_PER_S, default 1).
#
# Every minute (minute 0 before the load starts) one JSON line is appended to
# loadtest/results/soak-MINUTESm.jsonl and printed: each replica's RSS, open files
# (/proc/PID/fd) and tasks alive (locallife_tasks_alive), Redis used_memory and DBSIZE
# (the run's own Redis: every key is the run's), the memory and entries of the users'
# acked ids (`:ids` sets, kept a day by design) and the rest of used_memory,
# the size of each PostgreSQL table (pg_total_relation_size), the outbox backlog (rows
# not done), the receipt backlog (notifications older than a minute neither acked,
# withdrawn nor expired), and the load's totals so far.
#
# The verdict (`loadgen rig soak-verdict`): a series whose mean over the last third of
# the run exceeds its mean over the middle third by more than SOAK_TOLERANCE_PCT
# (default 10) percent plus a small slack of its kind fails the script. Tables that
# grow by design (orders, order items, payments, recommendations, the outbox, receipts)
# and the acked ids in Redis (and so Redis's used memory, for the first day) are
# reported per operation instead. The verdict is the file's last line.
#
# RIG_PROFILE=debug runs it on debug builds (to check the script; figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh

MINUTES="${1:-60}"
if ! [[ "$MINUTES" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: loadtest/soak.sh [MINUTES]   (a whole number of minutes, default 60)" >&2
    exit 2
fi
RIDERS=${SOAK_RIDERS:-200} MERCHANTS=${SOAK_MERCHANTS:-10} CONSUMERS=${SOAK_CONSUMERS:-50}
RATE=${SOAK_RATE:-20} ORDERS_PER_S=${SOAK_ORDERS_PER_S:-1}
TOLERANCE_PCT=${SOAK_TOLERANCE_PCT:-10}
OUT=loadtest/results/soak-${MINUTES}m.jsonl

log() { printf '==> %s\n' "$*" >&2; }

rig_setup soak
log "building the binaries (release unless RIG_PROFILE=debug)"
rig_build --release
scratch_db locallife_soak
# A Redis of the run's own: its memory and keys are this run's alone.
DIR=$WORK
free_port REDIS_PORT
redis_start redis "$REDIS_PORT" "$WORK"
on_exit stop_all
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
REDIS=(redis-cli -p "$REDIS_PORT")

# WeChat Pay's keys: the replicas verify the payment notifications loadgen signs.
while IFS= read -r setting; do export "${setting?}"; done < <("$GEN" rig pay-keys "$WORK/pay")
"$BIN" migrate >&2
"$GEN" seed --riders "$RIDERS" --merchants "$MERCHANTS" --consumers "$CONSUMERS" \
    --out "$WORK/users.json" >&2
start_server A --metrics -- "$BIN" serve
start_server B --metrics -- "$BIN" serve
log "replicas A (pid $A_PID, :$A_PORT) and B (pid $B_PID, :$B_PORT); Redis :$REDIS_PORT; $DATABASE_URL"

# ---------------------------------------------------------------- sampling
psql_q() { psql "$DATABASE_URL" -XAtq -c "$1"; }
rss_bytes() { awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
tasks() {
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" \
        | awk '/^locallife_tasks_alive / { printf "%d", $2; found = 1 } END { if (!found) print "null" }'
}
# The users' acked-id sets (`PREFIX:{u:N}:ids`): "BYTES ENTRIES", through one redis-cli.
redis_ids() {
    "${REDIS[@]}" --scan --pattern "$REDIS_KEY_PREFIX:*:ids" \
        | awk '{ print "MEMORY USAGE " $0 " SAMPLES 0"; print "ZCARD " $0 }' \
        | "${REDIS[@]}" | awk 'NR % 2 == 1 { b += $1 } NR % 2 == 0 { n += $1 } END { printf "%d %d", b, n }'
}
redis_field() { "${REDIS[@]}" info "$1" | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }
# Every table of the schema (the migrations' own history included), in bytes, as
# `"table_NAME":BYTES` fields.
table_sizes() {
    psql_q "SELECT string_agg(format('\"table_%s\":%s', relname,
                pg_total_relation_size(c.oid)), ',' ORDER BY relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r'"
}
outbox_backlog() { psql_q "SELECT count(*) FROM outbox WHERE state = 'pending'"; }
# Notifications decided over a minute ago that a recipient has neither acked nor had
# withdrawn, and that have not expired: receipts merged as the service reads them.
receipt_backlog() {
    psql_q "SELECT count(*) FROM (
              SELECT 1 FROM receipt_batches b,
                   unnest(b.message_ids, b.user_ids, b.acked_at, b.withdrawn_at, b.expires_at)
                   AS p(m, u, a, w, e)
              WHERE b.bucket < extract(epoch FROM now())::bigint - 60
              GROUP BY m, u
              HAVING max(a) IS NULL AND max(w) IS NULL AND coalesce(max(e) > now(), true)) x"
}
# The load's totals so far: the last line loadgen printed on stderr, as `load_` fields.
load_totals() {
    local line
    line=$(grep -h '^{' "$WORK/soak.err" 2>/dev/null | tail -1 || true)
    [ -n "$line" ] || line='{}'
    jq -c 'with_entries(.key |= "load_" + .) | del(.load_seconds)' <<<"$line" | sed 's/^{//; s/}$//'
}
sample() { # MINUTE
    local load line used ids_bytes ids
    load=$(load_totals)
    used=$(redis_field memory used_memory)
    read -r ids_bytes ids <<<"$(redis_ids)"
    line=$(printf '{"minute":%d,"at":"%s","a_rss_bytes":%s,"b_rss_bytes":%s,"a_fds":%s,"b_fds":%s,"a_tasks":%s,"b_tasks":%s,"redis_used_memory":%s,"redis_ids_bytes":%s,"redis_acked_ids":%s,"redis_other_bytes":%s,"redis_dbsize":%s,"outbox_backlog":%s,"receipt_backlog":%s,%s%s}' \
        "$1" "$(date -u +%FT%TZ)" "$(rss_bytes "$A_PID")" "$(rss_bytes "$B_PID")" \
        "$(fds "$A_PID")" "$(fds "$B_PID")" "$(tasks "$A_METRICS")" "$(tasks "$B_METRICS")" \
        "$used" "$ids_bytes" "$ids" "$((used - ids_bytes))" "$("${REDIS[@]}" dbsize)" \
        "$(outbox_backlog)" "$(receipt_backlog)" "$(table_sizes)" "${load:+,$load}")
    echo "$line" >>"$OUT"
    echo "soak: $line" >&2
}

# ---------------------------------------------------------------- the run
alive() { kill -0 "$A_PID" 2>/dev/null && kill -0 "$B_PID" 2>/dev/null; }
: >"$OUT"
sample 0
log "load for $MINUTES min: $RIDERS riders and $MERCHANTS merchant admins coming and going, $RATE notifications/s, $ORDERS_PER_S orders/s"
START=$(date +%s)
"$GEN" soak --servers "127.0.0.1:$A_PORT,127.0.0.1:$B_PORT" --users "$WORK/users.json" \
    --seconds $((MINUTES * 60 + 5)) --rate "$RATE" --orders-per-s "$ORDERS_PER_S" \
    --pay-keys "$WORK/pay" >"$WORK/soak.json" 2>"$WORK/soak.err" &
GEN_PID=$!
PIDS+=("$GEN_PID")
for minute in $(seq 1 "$MINUTES"); do
    # Each sample on the minute from the start, whatever the last one took.
    wait_s=$((START + minute * 60 - $(date +%s)))
    if [ "$wait_s" -gt 0 ]; then sleep "$wait_s"; fi
    if ! alive; then
        echo "soak.sh: a replica died before minute $minute; logs in $WORK" >&2
        exit 1
    fi
    sample "$minute"
done
wait "$GEN_PID"
log "load done: $(cat "$WORK/soak.json")"
grep -v '^{' "$WORK/soak.err" >&2 || true
if ! alive; then
    echo "soak.sh: a replica died; logs in $WORK" >&2
    exit 1
fi

set +e
"$GEN" rig soak-verdict --tolerance-pct "$TOLERANCE_PCT" "$OUT" >"$WORK/verdict.json"
status=$?
set -e
if [ -s "$WORK/verdict.json" ]; then
    jq -c --argjson load "$(cat "$WORK/soak.json")" '. + {load: $load}' "$WORK/verdict.json" >>"$OUT"
fi
log "samples and verdict in $OUT"
exit "$status"
