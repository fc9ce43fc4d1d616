-- The transactional outbox: every notification a business change causes is a row
-- written in the same transaction as that change, so nothing decided can be lost
-- between the commit and Redis. Any replica's relay publishes due rows
-- (FOR UPDATE SKIP LOCKED) and marks them done.

CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Decided at insert: the same on every recipient and every retry (<unix ms>-<n>).
    message_id      TEXT        NOT NULL UNIQUE CHECK (length(message_id) <= 64),
    event           TEXT        NOT NULL,
    -- Who gets it: a fixed list, or an audience resolved by the relay
    -- (recipients is filled in once resolved).
    audience        TEXT        NOT NULL
                    CHECK (audience IN ('users', 'merchant_admins', 'platform_staff',
                                        'riders_near_order', 'recommended_riders')),
    audience_id     BIGINT,
    recipients      BIGINT[],
    -- {"title", "content", "fields": {...}}
    payload         JSONB       NOT NULL,
    ttl_ms          BIGINT      NOT NULL CHECK (ttl_ms >= 0),
    -- The order it concerns, if any (receipts by order).
    order_id        BIGINT,
    state           TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'done', 'failed')),
    attempts        INT         NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at         TIMESTAMPTZ,
    CHECK (audience <> 'users' OR recipients IS NOT NULL),
    CHECK (state = 'pending' OR done_at IS NOT NULL)
);

CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX outbox_done ON outbox (done_at) WHERE state <> 'pending';
CREATE INDEX outbox_order ON outbox (order_id) WHERE order_id IS NOT NULL;

-- Wakes every replica's relay when a transaction that wrote rows commits (NOTIFY is
-- delivered at commit, once per transaction and channel); polling is the safety net.
CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('locallife_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
