-- Receipts become append-only (SPEC §3): each batch inserts what it learned (a pending
-- row, a delivery, an ack, a withdrawal) and reads merge a recipient's rows, the
-- earliest time of each mark winning. An insert without a uniqueness check costs about a
-- third of the update it replaces, and nothing is rewritten or left dead for vacuum.

ALTER TABLE receipts DROP CONSTRAINT receipts_pkey;

-- Message ids are ASCII and compared byte-wise: pruning goes by id prefix (unix ms).
ALTER TABLE receipts ALTER COLUMN message_id TYPE TEXT COLLATE "C";

CREATE INDEX receipts_message ON receipts (message_id);
