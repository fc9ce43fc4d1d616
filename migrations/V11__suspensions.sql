-- Issue #29, items 5 and 6: suspension as a state of its own, and a logout that needs
-- no clock but the database's.
--
-- Expand only, safe beside the previous release: one table and one column are added,
-- and each of the two CHECKs replaced (`riders.status`, `merchants.status`) gives way to
-- a strictly looser one that every row the previous release writes still satisfies.
-- Nothing is renamed and no data is dropped. What the previous release makes of a
-- `suspended` row while both run is in docs/operations.md ("Rolling upgrades").

-- ---------------------------------------------------------------------------
-- Suspension (SPEC §4)
-- ---------------------------------------------------------------------------

-- `suspended`: platform staff stopped an approved rider or merchant; `POST …/reinstate`
-- makes it `approved` again. Distinct from `rejected` (an application turned down).
-- Each ALTER swaps its constraint in one statement, so no row is ever unchecked.
ALTER TABLE riders
    DROP CONSTRAINT riders_status_check,
    ADD CONSTRAINT riders_status_check
        CHECK (status IN ('pending', 'approved', 'rejected', 'suspended'));

ALTER TABLE merchants
    DROP CONSTRAINT merchants_status_check,
    ADD CONSTRAINT merchants_status_check
        CHECK (status IN ('pending', 'approved', 'rejected', 'suspended'));

-- Every suspension and reinstatement: whose account, what, who did it, when and why.
-- Append-only history; the account's `status` is the current state, and the newest
-- `suspend` row of a suspended account is its standing suspension.
CREATE TABLE suspensions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Exactly one of the two: a rider (their user id) or a merchant.
    rider_id    BIGINT REFERENCES riders (user_id) ON DELETE RESTRICT,
    merchant_id BIGINT REFERENCES merchants (id) ON DELETE RESTRICT,
    action      TEXT        NOT NULL CHECK (action IN ('suspend', 'reinstate')),
    -- Who did it: a member of platform staff, or a service key (SPEC §10).
    staff_id    BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    key_id      BIGINT      REFERENCES service_keys (id) ON DELETE SET NULL,
    -- What staff wrote (optional): one line of 1 to 200 characters, checked trimmed by
    -- the service too.
    reason      TEXT        CHECK (char_length(reason) BETWEEN 1 AND 200),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT suspensions_one_account CHECK ((rider_id IS NULL) <> (merchant_id IS NULL))
);

-- An account's history, newest first; its standing suspension is the first row.
CREATE INDEX suspensions_rider_idx ON suspensions (rider_id, id) WHERE rider_id IS NOT NULL;
CREATE INDEX suspensions_merchant_idx ON suspensions (merchant_id, id)
    WHERE merchant_id IS NOT NULL;

-- ---------------------------------------------------------------------------
-- Token epoch (SPEC §4, logout)
-- ---------------------------------------------------------------------------

-- How many times the user has logged out. A token carries the epoch it was minted in
-- (read from this row at login), and one of an earlier epoch is refused: a count, so no
-- replica's clock takes part. `tokens_valid_from` (V7) stays, now written from the
-- database's clock: it judges tokens minted by the previous release, which carry no
-- epoch, and the previous release's replicas read it while both run.
ALTER TABLE users ADD COLUMN token_epoch BIGINT NOT NULL DEFAULT 0 CHECK (token_epoch >= 0);

-- A logout that writes only `tokens_valid_from` (the previous release's, or an
-- operator's `UPDATE users SET tokens_valid_from = now()`) moves the epoch on as well,
-- so tokens minted by this release before it are refused too. This release moves both
-- itself; the trigger then leaves the epoch as written.
CREATE FUNCTION users_logout_moves_token_epoch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.token_epoch = OLD.token_epoch THEN
        NEW.token_epoch := OLD.token_epoch + 1;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_logout_moves_token_epoch
    BEFORE UPDATE OF tokens_valid_from ON users
    FOR EACH ROW EXECUTE FUNCTION users_logout_moves_token_epoch();
