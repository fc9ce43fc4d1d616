-- WeChat subscription messages (SPEC §9): what each user allowed, and each fallback send.

-- Sends of a template a user allowed (`wx.requestSubscribeMessage` answers, reported by
-- POST /v1/me/subscriptions), less the sends WeChat accepted.
CREATE TABLE subscriptions (
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    template_id TEXT   NOT NULL CHECK (length(template_id) BETWEEN 1 AND 128),
    remaining   INT    NOT NULL CHECK (remaining >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, template_id)
);

-- One row per (notification, recipient) the fallback took up: the primary key is the
-- claim, so exactly one replica sends. `pushed_at` is shown in the receipt.
CREATE TABLE subscription_pushes (
    message_id      TEXT        COLLATE "C" NOT NULL,
    user_id         BIGINT      NOT NULL,
    event           TEXT        NOT NULL,
    template_id     TEXT        NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    -- claimed: being sent; sent: WeChat accepted it; retry: to be tried again at
    -- next_attempt_at; skipped: no longer pending, or no quota; refused: 43101;
    -- failed: given up (expired, or an error that retrying cannot fix).
    state           TEXT        NOT NULL DEFAULT 'claimed'
                    CHECK (state IN ('claimed', 'sent', 'retry', 'skipped', 'refused', 'failed')),
    attempts        INT         NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    last_error      TEXT,
    claimed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    pushed_at       TIMESTAMPTZ,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX subscription_pushes_retry ON subscription_pushes (next_attempt_at)
    WHERE state = 'retry';
CREATE INDEX subscription_pushes_claimed ON subscription_pushes (claimed_at);

-- How far the fallback has looked through the receipts: the last whole second of
-- notification ids it has scanned. One row.
CREATE TABLE subscription_cursor (
    id     BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    bucket BIGINT  NOT NULL
);
