-- Logout (SPEC §4): every token of the user issued before this moment is refused. NULL:
-- none is. Read with the user's roles on every request and at socket admission.
ALTER TABLE users ADD COLUMN tokens_valid_from TIMESTAMPTZ;
