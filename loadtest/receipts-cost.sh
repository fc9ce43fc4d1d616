#!/usr/bin/env bash
# What PostgreSQL spends on receipts per notification, for the two table layouts the
# project has had: a merged row per recipient (the pending row inserted, then upserted
# with the delivery and ack: migrations V3/V4), append-only rows (V5: two inserts), and
# batch rows of arrays (V6: one row per 2,000 parts, lz4-compressed where the server
# has lz4; the arrays are built by SQL here, by the writer in the product). Each layout
# gets N notifications written as two batched statements, as the receipts writer sends
# them; prints server time per notification. Runs in a scratch database.
#
#   loadtest/receipts-cost.sh [N]     (default 48000)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/rig.sh
N="${1:-48000}"
scripts/services.sh >&2
export PGOPTIONS="-c client_min_messages=warning"
scratch_db locallife_receipts_cost
URL=$DATABASE_URL

ROWS="(1764558000000 + g / 10)::text || '-' || lpad(g::text, 20, '0'), g % 5000"
PENDING="SELECT $ROWS, 'order.new', g, now(), now() + interval '1 day', NULL::timestamptz, NULL::timestamptz, NULL::timestamptz FROM generate_series(1, $N) g"
MARKS="SELECT $ROWS, NULL, NULL::bigint, NULL::timestamptz, NULL::timestamptz, now(), now(), NULL::timestamptz FROM generate_series(1, $N) g"
COLS="message_id, user_id, event, order_id, created_at, expires_at, delivered_at, acked_at, withdrawn_at"
FILL="event = COALESCE(r.event, EXCLUDED.event), order_id = COALESCE(r.order_id, EXCLUDED.order_id),
      created_at = COALESCE(r.created_at, EXCLUDED.created_at), expires_at = COALESCE(r.expires_at, EXCLUDED.expires_at),
      delivered_at = COALESCE(r.delivered_at, EXCLUDED.delivered_at), acked_at = COALESCE(r.acked_at, EXCLUDED.acked_at),
      withdrawn_at = COALESCE(r.withdrawn_at, EXCLUDED.withdrawn_at)"
TABLE="event TEXT, order_id BIGINT, created_at TIMESTAMPTZ, expires_at TIMESTAMPTZ,
       delivered_at TIMESTAMPTZ, acked_at TIMESTAMPTZ, withdrawn_at TIMESTAMPTZ"

# Milliseconds of the given statements, run one after another in one session.
timed() {
    psql "$URL" -qAt -c '\timing on' "$@" | awk '/^Time:/ { ms += $2 } END { print ms }'
}
psql "$URL" -q \
    -c "CREATE TABLE merged (message_id TEXT NOT NULL, user_id BIGINT NOT NULL, $TABLE, PRIMARY KEY (message_id, user_id))" \
    -c "CREATE INDEX ON merged (order_id) WHERE order_id IS NOT NULL" \
    -c "CREATE TABLE appended (message_id TEXT COLLATE \"C\" NOT NULL, user_id BIGINT NOT NULL, $TABLE)" \
    -c "CREATE INDEX ON appended (message_id)" \
    -c "CREATE INDEX ON appended (order_id) WHERE order_id IS NOT NULL" \
    -c "CREATE TABLE batches (bucket BIGINT NOT NULL, message_ids TEXT[] COLLATE \"C\" NOT NULL,
            user_ids BIGINT[] NOT NULL, events TEXT[] NOT NULL, order_ids BIGINT[] NOT NULL,
            created_at TIMESTAMPTZ[] NOT NULL, expires_at TIMESTAMPTZ[] NOT NULL,
            delivered_at TIMESTAMPTZ[] NOT NULL, acked_at TIMESTAMPTZ[] NOT NULL,
            withdrawn_at TIMESTAMPTZ[] NOT NULL)" \
    -c "CREATE INDEX ON batches (bucket)"
for c in message_ids user_ids events order_ids created_at expires_at delivered_at acked_at withdrawn_at; do
    psql "$URL" -q -c "ALTER TABLE batches ALTER COLUMN $c SET COMPRESSION lz4" 2>/dev/null || true
done
merged=$(timed -c "INSERT INTO merged AS r ($COLS) $PENDING ON CONFLICT (message_id, user_id) DO UPDATE SET $FILL" \
               -c "INSERT INTO merged AS r ($COLS) $MARKS ON CONFLICT (message_id, user_id) DO UPDATE SET $FILL")
appended=$(timed -c "INSERT INTO appended ($COLS) $PENDING" -c "INSERT INTO appended ($COLS) $MARKS")
AGG="SELECT min(ms) / 1000, array_agg(m), array_agg(u), array_agg(e), array_agg(o), array_agg(c), array_agg(x), array_agg(d), array_agg(a), array_agg(w)"
PARTS="SELECT g, 1764558000000 + g / 10 AS ms, (1764558000000 + g / 10)::text || '-' || lpad(g::text, 20, '0') AS m, g % 5000 AS u"
batched=$(timed -c "INSERT INTO batches $AGG FROM ($PARTS, 'order.new' AS e, g AS o, now() AS c, now() + interval '1 day' AS x, NULL::timestamptz AS d, NULL::timestamptz AS a, NULL::timestamptz AS w FROM generate_series(1, $N) g) p GROUP BY g / 2000" \
                -c "INSERT INTO batches $AGG FROM ($PARTS, NULL AS e, NULL::bigint AS o, NULL::timestamptz AS c, NULL::timestamptz AS x, now() AS d, now() AS a, NULL::timestamptz AS w FROM generate_series(1, $N) g) p GROUP BY g / 2000")
awk -v n="$N" -v m="$merged" -v a="$appended" -v b="$batched" 'BEGIN {
    printf "receipts, %d notifications (pending row, then delivery + ack)\n", n
    printf "  merged row, upserted   %8.1f ms  %5.1f us per notification\n", m, m * 1000 / n
    printf "  append-only (V5)       %8.1f ms  %5.1f us per notification\n", a, a * 1000 / n
    printf "  batch rows (V6)        %8.1f ms  %5.1f us per notification\n", b, b * 1000 / n
}'
