-- Receipts (SPEC §3, §4): per notification that needs an ack and per recipient, what
-- became of it — proof, in a dispute, that a merchant's device got the new order.
-- Rows are written when the notification is published; delivery and acks are
-- recorded in batches (never a synchronous write per delivery); kept 8 days.

CREATE TABLE receipts (
    message_id   TEXT        NOT NULL,
    user_id      BIGINT      NOT NULL,
    event        TEXT        NOT NULL,
    order_id     BIGINT,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    acked_at     TIMESTAMPTZ,
    withdrawn_at TIMESTAMPTZ,
    PRIMARY KEY (message_id, user_id)
);

CREATE INDEX receipts_order ON receipts (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX receipts_created ON receipts (created_at);
