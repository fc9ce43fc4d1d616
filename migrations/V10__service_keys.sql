-- Service keys (SPEC §10): credentials of back-office services, not of people. A key
-- is shown once as `llk_<id>_<secret>`; only the SHA-256 of its secret is kept.
CREATE TABLE service_keys (
    id            BIGSERIAL   PRIMARY KEY,
    name          TEXT        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scopes        TEXT[]      NOT NULL,
    secret_sha256 BYTEA       NOT NULL CHECK (length(secret_sha256) = 32),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Who made it: a staff user, or NULL (the CLI, or another key).
    created_by    BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    expires_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);

-- Who sent a notification through the platform API, as its receipt names it
-- (`{"key": id, "name"}` or `{"user_id"}`): one JSON text per batch row, since a batch
-- row of a platform send is one request. NULL for the service's own notifications.
ALTER TABLE receipt_batches ADD COLUMN sent_by TEXT;
