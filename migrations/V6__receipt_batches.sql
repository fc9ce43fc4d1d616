-- Receipts are written as batches (SPEC §3): one row per batch and second, its columns
-- arrays with one element per (message, recipient) part. A row per part cost the
-- database ~7 µs for each of the two parts of every notification (its pending part
-- from the replica that sent it, its delivery and ack from the one holding the socket);
-- an array element costs a small fraction of that. Reads find a message by the second
-- its id begins with (ids are `<unix ms>-<n>`), unnest that second's batches, and
-- merge a recipient's parts, the earliest time of each mark winning, as before.

CREATE TABLE receipt_batches (
    -- The unix second of the notifications' ids (their decision time).
    bucket       BIGINT        NOT NULL,
    message_ids  TEXT[]        COLLATE "C" NOT NULL,
    user_ids     BIGINT[]      NOT NULL,
    events       TEXT[]        NOT NULL,
    order_ids    BIGINT[]      NOT NULL,
    created_at   TIMESTAMPTZ[] NOT NULL,
    expires_at   TIMESTAMPTZ[] NOT NULL,
    delivered_at TIMESTAMPTZ[] NOT NULL,
    acked_at     TIMESTAMPTZ[] NOT NULL,
    withdrawn_at TIMESTAMPTZ[] NOT NULL
);
CREATE INDEX receipt_batches_bucket ON receipt_batches (bucket);

-- A batch's arrays are compressed as they are stored: with lz4 where the server has it
-- (pglz, the default, took most of the database's time for receipts).
DO $$
BEGIN
    ALTER TABLE receipt_batches
        ALTER COLUMN message_ids SET COMPRESSION lz4,
        ALTER COLUMN user_ids SET COMPRESSION lz4,
        ALTER COLUMN events SET COMPRESSION lz4,
        ALTER COLUMN order_ids SET COMPRESSION lz4,
        ALTER COLUMN created_at SET COMPRESSION lz4,
        ALTER COLUMN expires_at SET COMPRESSION lz4,
        ALTER COLUMN delivered_at SET COMPRESSION lz4,
        ALTER COLUMN acked_at SET COMPRESSION lz4,
        ALTER COLUMN withdrawn_at SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 is not available; receipts are compressed with pglz';
END
$$;

-- Which notifications are about an order (from their pending parts): few, and the way
-- to an order's receipts.
CREATE TABLE receipt_orders (
    order_id   BIGINT NOT NULL,
    message_id TEXT   COLLATE "C" NOT NULL,
    PRIMARY KEY (order_id, message_id)
);
CREATE INDEX receipt_orders_message ON receipt_orders (message_id);

INSERT INTO receipt_batches
SELECT split_part(message_id, '-', 1)::bigint / 1000, array_agg(message_id), array_agg(user_id),
       array_agg(event), array_agg(order_id), array_agg(created_at), array_agg(expires_at),
       array_agg(delivered_at), array_agg(acked_at), array_agg(withdrawn_at)
FROM receipts
WHERE message_id ~ '^[0-9]{1,18}-'
GROUP BY 1;

INSERT INTO receipt_orders
SELECT DISTINCT order_id, message_id FROM receipts WHERE order_id IS NOT NULL;

DROP TABLE receipts;
