-- The console lists the most recent alert.* notifications (GET /v1/platform/alerts):
-- newest first, without scanning the rest of the outbox.
CREATE INDEX outbox_alerts ON outbox (id) WHERE event LIKE 'alert.%';
