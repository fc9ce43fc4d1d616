-- LocalLife initial schema.
--
-- Conventions:
--   * bigint identity keys; timestamptz everywhere; money is integer fen.
--   * Enumerations are TEXT + CHECK rather than PG enum types, so a later
--     migration can extend a set by swapping one constraint.
--   * Invariants live here, not only in Rust: the database is the last line of
--     defence against races between replicas.
--   * Business records (orders, payments, items) use ON DELETE RESTRICT: history
--     must never vanish because a parent row was removed.

-- Keeps updated_at honest even when an UPDATE forgets to set it.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------------------
-- Users and roles
-- ---------------------------------------------------------------------------

-- The WeChat session_key is deliberately not stored: we never decrypt
-- user data with it, and keeping it would only create a secret to leak.
CREATE TABLE users (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- code2Session can answer without an errcode yet with an empty openid;
    -- such a login must fail rather than create a shared "" user.
    openid     TEXT        NOT NULL UNIQUE CHECK (openid <> ''),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Roles are read at call time (not from the token), so granting or revoking
-- one takes effect immediately.
CREATE TABLE user_roles (
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT        NOT NULL
               CHECK (role IN ('consumer', 'rider', 'merchant', 'platform')),
    granted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role)
);

-- "All platform staff" is looked up for every alert.
CREATE INDEX user_roles_role_idx ON user_roles (role, user_id);

-- ---------------------------------------------------------------------------
-- Riders
-- ---------------------------------------------------------------------------

-- One row per applicant; the primary key makes a second application a 409.
CREATE TABLE riders (
    user_id             BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    name                TEXT        NOT NULL CHECK (btrim(name) <> ''),
    phone               TEXT        NOT NULL CHECK (btrim(phone) <> ''),
    status              TEXT        NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'rejected')),
    approved_at         TIMESTAMPTZ,
    approved_by         BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    online              BOOLEAN     NOT NULL DEFAULT false,
    last_lat            DOUBLE PRECISION CHECK (last_lat BETWEEN -90 AND 90),
    last_lng            DOUBLE PRECISION CHECK (last_lng BETWEEN -180 AND 180),
    location_updated_at TIMESTAMPTZ,
    online_changed_at   TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- A half-known position would place the rider at lat 0 or lng 0.
    CONSTRAINT riders_location_pair
        CHECK ((last_lat IS NULL) = (last_lng IS NULL)),
    -- Only approved riders may take orders or open a socket; enforcing it here
    -- closes the race between "go online" and "platform rejects".
    CONSTRAINT riders_online_requires_approval
        CHECK (NOT online OR status = 'approved'),
    -- Going online sends a position, and matching needs one: an online rider
    -- with no position could never be recommended an order.
    CONSTRAINT riders_online_requires_location
        CHECK (NOT online OR last_lat IS NOT NULL),
    CONSTRAINT riders_approved_has_time
        CHECK (status <> 'approved' OR approved_at IS NOT NULL)
);

-- Order matching scans online riders by bounding box around the merchant.
CREATE INDEX riders_online_location_idx ON riders (last_lat, last_lng) WHERE online;

CREATE TRIGGER riders_set_updated_at BEFORE UPDATE ON riders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------
-- Merchants and products
-- ---------------------------------------------------------------------------

CREATE TABLE merchants (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT        NOT NULL CHECK (btrim(name) <> ''),
    address     TEXT        NOT NULL,
    lat         DOUBLE PRECISION NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng         DOUBLE PRECISION NOT NULL CHECK (lng BETWEEN -180 AND 180),
    status      TEXT        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'approved', 'rejected')),
    approved_at TIMESTAMPTZ,
    approved_by BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_by  BIGINT      NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT merchants_approved_has_time
        CHECK (status <> 'approved' OR approved_at IS NOT NULL)
);

CREATE TRIGGER merchants_set_updated_at BEFORE UPDATE ON merchants
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE merchant_admins (
    merchant_id BIGINT      NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, user_id)
);

-- WebSocket admission and GET /v1/me ask "which merchants does this user run?".
CREATE INDEX merchant_admins_user_id_idx ON merchant_admins (user_id);

CREATE TABLE products (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id         BIGINT      NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    name                TEXT        NOT NULL CHECK (btrim(name) <> ''),
    price_fen           BIGINT      NOT NULL CHECK (price_fen >= 0),
    -- Reservation is "UPDATE ... SET stock = stock - n": this CHECK is what
    -- turns an oversell race into a clean failure (409 insufficient_stock).
    stock               INTEGER     NOT NULL CHECK (stock >= 0),
    -- inventory.low fires when stock falls to or below this; 0 = only when sold out.
    low_stock_threshold INTEGER     NOT NULL DEFAULT 0 CHECK (low_stock_threshold >= 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX products_merchant_id_idx ON products (merchant_id);

CREATE TRIGGER products_set_updated_at BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------
-- Orders
-- ---------------------------------------------------------------------------

CREATE TABLE orders (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Sent to WeChat Pay as out_trade_no, whose format is 6-32 chars of
    -- [A-Za-z0-9_-]; anything else would be rejected at prepay time.
    out_trade_no    TEXT        NOT NULL UNIQUE
                    CHECK (out_trade_no ~ '^[A-Za-z0-9_-]{6,32}$'),
    consumer_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    merchant_id     BIGINT      NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    -- References riders (not just users) so only someone who applied as a
    -- rider can ever hold an order.
    rider_id        BIGINT      REFERENCES riders (user_id) ON DELETE RESTRICT,
    status          TEXT        NOT NULL DEFAULT 'pending_payment'
                    CHECK (status IN ('pending_payment', 'paid', 'dispatched',
                                      'picked_up', 'delivered', 'closed')),
    total_fen       BIGINT      NOT NULL CHECK (total_fen > 0),
    delivery_lat    DOUBLE PRECISION NOT NULL CHECK (delivery_lat BETWEEN -90 AND 90),
    delivery_lng    DOUBLE PRECISION NOT NULL CHECK (delivery_lng BETWEEN -180 AND 180),
    delivery_detail TEXT        NOT NULL,
    pay_deadline    TIMESTAMPTZ NOT NULL,
    paid_at         TIMESTAMPTZ,
    dispatched_at   TIMESTAMPTZ,
    picked_up_at    TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    closed_at       TIMESTAMPTZ,
    -- Consumers may urge at most once per 5 minutes per order.
    last_urged_at   TIMESTAMPTZ,
    -- JSAPI prepay id; null when WeChat Pay credentials are not configured.
    prepay_id       TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- Every state from dispatched on means a rider has the order.
    CONSTRAINT orders_rider_when_assigned
        CHECK (status NOT IN ('dispatched', 'picked_up', 'delivered') OR rider_id IS NOT NULL),
    -- Each state carries the timestamp of every transition that led to it,
    -- so an order's history can be read straight off the row.
    CONSTRAINT orders_paid_has_time
        CHECK (status NOT IN ('paid', 'dispatched', 'picked_up', 'delivered') OR paid_at IS NOT NULL),
    CONSTRAINT orders_dispatched_has_time
        CHECK (status NOT IN ('dispatched', 'picked_up', 'delivered') OR dispatched_at IS NOT NULL),
    CONSTRAINT orders_picked_up_has_time
        CHECK (status NOT IN ('picked_up', 'delivered') OR picked_up_at IS NOT NULL),
    CONSTRAINT orders_delivered_has_time
        CHECK (status <> 'delivered' OR delivered_at IS NOT NULL),
    -- Only unpaid orders are closed (payment timeout, stock returned). A payment
    -- arriving afterwards is recorded as 'late' and never reopens the order.
    CONSTRAINT orders_closed_unpaid
        CHECK (status <> 'closed' OR (closed_at IS NOT NULL AND paid_at IS NULL))
);

CREATE INDEX orders_consumer_id_idx ON orders (consumer_id);
CREATE INDEX orders_merchant_id_created_at_idx ON orders (merchant_id, created_at);
CREATE INDEX orders_rider_id_idx ON orders (rider_id) WHERE rider_id IS NOT NULL;
-- The payment-timeout sweeper: "pending_payment AND pay_deadline < now()
-- ORDER BY pay_deadline FOR UPDATE SKIP LOCKED". Stays small: only open orders.
CREATE INDEX orders_pending_pay_deadline_idx ON orders (pay_deadline)
    WHERE status = 'pending_payment';
-- Paid orders still waiting for a rider (auto-dispatcher, platform view).
CREATE INDEX orders_awaiting_rider_idx ON orders (paid_at) WHERE status = 'paid';

CREATE TRIGGER orders_set_updated_at BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- name and unit price are snapshots: later product edits must not rewrite
-- what the consumer paid for.
CREATE TABLE order_items (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id       BIGINT  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id     BIGINT  NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    name           TEXT    NOT NULL,
    unit_price_fen BIGINT  NOT NULL CHECK (unit_price_fen >= 0),
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    -- One line per product: repeated product_ids in a request are merged, which
    -- keeps stock reservation to one UPDATE per product.
    UNIQUE (order_id, product_id)
);

CREATE INDEX order_items_product_id_idx ON order_items (product_id);

-- Which riders were sent order.recommend, so that order.taken reaches exactly
-- the others once one of them accepts.
CREATE TABLE order_recommendations (
    order_id   BIGINT           NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    rider_id   BIGINT           NOT NULL REFERENCES riders (user_id) ON DELETE CASCADE,
    distance_m DOUBLE PRECISION NOT NULL CHECK (distance_m >= 0),
    created_at TIMESTAMPTZ      NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, rider_id)
);

CREATE INDEX order_recommendations_rider_id_idx ON order_recommendations (rider_id);

-- ---------------------------------------------------------------------------
-- Payments (WeChat Pay notifications)
-- ---------------------------------------------------------------------------

-- One row per distinct WeChat transaction we have processed.
CREATE TABLE payments (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         BIGINT      NOT NULL REFERENCES orders (id) ON DELETE RESTRICT,
    -- WeChat retries notifications; inserting with ON CONFLICT (transaction_id)
    -- DO NOTHING is what makes a repeat a no-op answered with 200.
    transaction_id   TEXT        NOT NULL UNIQUE CHECK (transaction_id <> ''),
    out_trade_no     TEXT        NOT NULL,
    mchid            TEXT        NOT NULL,
    amount_total_fen BIGINT      NOT NULL CHECK (amount_total_fen >= 0),
    trade_state      TEXT        NOT NULL,
    success_time     TIMESTAMPTZ,
    -- applied  = this notification marked the order paid;
    -- late     = the order was already closed (payment timeout): recorded and
    --            alerted for a refund, but the order is not reopened;
    -- mismatch = amount/mchid did not match the order: recorded, not applied.
    outcome          TEXT        NOT NULL CHECK (outcome IN ('applied', 'late', 'mismatch')),
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX payments_order_id_idx ON payments (order_id);
-- "Mark the order paid exactly once", even if WeChat ever reported two
-- different transactions for the same out_trade_no.
CREATE UNIQUE INDEX payments_one_applied_per_order_idx ON payments (order_id)
    WHERE outcome = 'applied';
