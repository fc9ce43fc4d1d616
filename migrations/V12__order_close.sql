-- Closing a paid order (SPEC §4): platform staff close it, or the merchant refuses it
-- while no rider has taken it. Who closed it, acting as what, and why are kept on the
-- order itself, where its consumer reads them (`GET /v1/orders/{id}`).
--
-- Expand only, safe beside the previous release: the new columns are nullable and the
-- previous release neither reads nor writes them. The one constraint replaced,
-- `orders_closed_unpaid` ("only unpaid orders close"), gives way to a strictly looser
-- rule that every row the previous release writes still satisfies (it only ever closes
-- unpaid orders, with a time): a closed order has its close time, and a paid order that
-- was closed also has its reason. Loosening a CHECK takes nothing away from either
-- release, so it is not a contract step; nothing is renamed and no data is dropped.

ALTER TABLE orders
    -- What the closer wrote, 1 to 200 characters (checked trimmed by the service too).
    ADD COLUMN close_reason TEXT
        CONSTRAINT orders_close_reason_length
        CHECK (char_length(close_reason) BETWEEN 1 AND 200),
    -- The user who closed it; NULL for the service's own closes (payment deadline
    -- passed, prepay failed) and for a back-office service's.
    ADD COLUMN closed_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- The service key a back-office service closed it with (SPEC §10), if one did.
    ADD COLUMN closed_by_key BIGINT REFERENCES service_keys (id) ON DELETE SET NULL,
    -- The role they closed it as: `platform` (staff) or `merchant` (the merchant's admin
    -- refusing it).
    ADD COLUMN closed_as TEXT
        CONSTRAINT orders_closed_as_role CHECK (closed_as IN ('platform', 'merchant'));

ALTER TABLE orders
    ADD CONSTRAINT orders_closed_has_time_and_reason
    CHECK (status <> 'closed'
           OR (closed_at IS NOT NULL AND (paid_at IS NULL OR close_reason IS NOT NULL)));

ALTER TABLE orders DROP CONSTRAINT orders_closed_unpaid;
