-- Receipts are written in merged batches off the delivery path (SPEC §3): a recipient's
-- delivery or ack, recorded on one replica, may reach the table before the pending row
-- of the notification, recorded on another. Each write fills in what it knows; the
-- notification's own columns arrive with its pending row.

ALTER TABLE receipts
    ALTER COLUMN event DROP NOT NULL,
    ALTER COLUMN created_at DROP NOT NULL,
    ALTER COLUMN expires_at DROP NOT NULL;

-- Pruning goes by message id, which begins with the notification's unix ms: the primary
-- key serves it, and each receipt costs one index entry fewer to write.
DROP INDEX receipts_created;
