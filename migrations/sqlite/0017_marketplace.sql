-- Marketplace money movement: an order's charge type, orders of the platform itself (several
-- vendors' splits, no one store: `store_id` NULL), one transfer per split and the reversals
-- that follow refunds.
--
-- SQLite cannot drop NOT NULL in place, and its migrations run in a transaction (where foreign
-- keys cannot be switched off), so `orders` is rebuilt with `refunds` (the one table that
-- references it): copies first, then the old tables dropped child first, so no cascade fires.
CREATE TABLE orders_new (
    id TEXT PRIMARY KEY,
    -- NULL for a multi-vendor order: it belongs to the platform, its stores are in `order_transfers`.
    store_id TEXT REFERENCES stores(id) ON DELETE CASCADE,
    connection_kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    description TEXT,
    customer_id TEXT,
    application_fee_amount BIGINT,
    metadata TEXT NOT NULL,
    request_key TEXT,
    payment_intent_id TEXT,
    checkout_session_id TEXT,
    client_secret_enc TEXT,
    latest_charge TEXT,
    paid BIGINT NOT NULL DEFAULT 0,
    amount_refunded BIGINT NOT NULL DEFAULT 0,
    disputed BIGINT NOT NULL DEFAULT 0,
    dispute_status TEXT,
    dispute_at BIGINT,
    dispute_seq BIGINT,
    canceled BIGINT NOT NULL DEFAULT 0,
    failure_code TEXT,
    failure_message TEXT,
    failure_at BIGINT,
    failure_seq BIGINT,
    status TEXT NOT NULL,
    status_source TEXT,
    synced_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    request_hash TEXT,
    return_url TEXT,
    -- 'direct' (on the store's account), 'destination' (on the platform, transferred by Stripe)
    -- or 'separate' (on the platform; Bursar transfers each split).
    charge_type TEXT NOT NULL DEFAULT 'direct',
    on_behalf_of BIGINT NOT NULL DEFAULT 0,
    -- A destination charge's `transfer_data[amount]`: what the store gets (the platform keeps
    -- the rest), instead of an application fee.
    transfer_amount BIGINT,
    -- The platform's application fee on the charge, and how much of it Stripe says was refunded
    -- (from `application_fee.*` events).
    application_fee_id TEXT,
    application_fee_refunded BIGINT NOT NULL DEFAULT 0
);
INSERT INTO orders_new (id, store_id, connection_kind, account_id, mode, amount, currency, description,
    customer_id, application_fee_amount, metadata, request_key, payment_intent_id, checkout_session_id,
    client_secret_enc, latest_charge, paid, amount_refunded, disputed, dispute_status, dispute_at,
    dispute_seq, canceled, failure_code, failure_message, failure_at, failure_seq, status, status_source,
    synced_at, created_at, updated_at, request_hash, return_url)
SELECT id, store_id, connection_kind, account_id, mode, amount, currency, description,
    customer_id, application_fee_amount, metadata, request_key, payment_intent_id, checkout_session_id,
    client_secret_enc, latest_charge, paid, amount_refunded, disputed, dispute_status, dispute_at,
    dispute_seq, canceled, failure_code, failure_message, failure_at, failure_seq, status, status_source,
    synced_at, created_at, updated_at, request_hash, return_url
FROM orders;

CREATE TABLE refunds_new (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders_new(id) ON DELETE CASCADE,
    amount BIGINT NOT NULL,
    reason TEXT,
    stripe_refund_id TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    request_key TEXT,
    request_hash TEXT,
    keyed_at BIGINT,
    attempted_at BIGINT
);
INSERT INTO refunds_new (id, order_id, amount, reason, stripe_refund_id, status, created_at,
    request_key, request_hash, keyed_at, attempted_at)
SELECT id, order_id, amount, reason, stripe_refund_id, status, created_at,
    request_key, request_hash, keyed_at, attempted_at
FROM refunds;

DROP TABLE refunds;
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;
ALTER TABLE refunds_new RENAME TO refunds;

CREATE UNIQUE INDEX orders_request ON orders (store_id, request_key);
CREATE UNIQUE INDEX orders_payment_intent ON orders (store_id, payment_intent_id);
CREATE INDEX orders_store ON orders (store_id, id);
CREATE INDEX orders_status ON orders (status, created_at);
CREATE INDEX orders_charge ON orders (store_id, latest_charge);
CREATE INDEX orders_checkout_session ON orders (store_id, checkout_session_id);
-- A platform order's Idempotency-Key and PaymentIntent are the platform's, unique among its own.
CREATE UNIQUE INDEX orders_platform_request ON orders (request_key) WHERE store_id IS NULL;
CREATE UNIQUE INDEX orders_platform_payment_intent ON orders (payment_intent_id) WHERE charge_type <> 'direct';
CREATE INDEX orders_platform_charge ON orders (latest_charge) WHERE charge_type <> 'direct';

CREATE INDEX refunds_order ON refunds (order_id);
CREATE UNIQUE INDEX refunds_request ON refunds (order_id, request_key);
CREATE INDEX refunds_unanswered ON refunds (status, attempted_at) WHERE stripe_refund_id IS NULL;

-- One transfer per split of a multi-vendor order, saved with the order: its Stripe idempotency
-- key (`bursar:transfer:<order>:<store>`) exists before the payment does.
CREATE TABLE order_transfers (
    order_id TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    store_id TEXT NOT NULL REFERENCES stores(id),
    position BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    description TEXT,
    -- What the transfer moves: the split less what refunds before it reversed (set at its
    -- first attempt, so every retry asks for the same).
    sent_amount BIGINT,
    stripe_transfer_id TEXT,
    -- 'pending' (not made yet), 'created', 'canceled' (refunded whole before it was made),
    -- 'failed' (Stripe refused; a sync asks again).
    status TEXT NOT NULL,
    -- What Stripe says has been reversed (its `amount_reversed`).
    amount_reversed BIGINT NOT NULL DEFAULT 0,
    failure_message TEXT,
    -- Bumped when a refused transfer is asked for again: Stripe keeps a refusal for its key
    -- (refused, it made nothing under it), so a new request needs a new key.
    key_generation BIGINT NOT NULL DEFAULT 0,
    first_attempt_at BIGINT,
    attempted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (order_id, store_id)
);
CREATE INDEX order_transfers_store ON order_transfers (store_id, order_id);
CREATE INDEX order_transfers_due ON order_transfers (status, attempted_at);
CREATE INDEX order_transfers_stripe ON order_transfers (stripe_transfer_id);

-- The reversal of one split's transfer up to a refunded level of its order: planned when Stripe
-- says the order's refunded amount grew, made with the key `bursar:reversal:<order>:<store>:<level>`.
CREATE TABLE transfer_reversals (
    order_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    refunded_to BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    stripe_reversal_id TEXT,
    -- 'pending', 'succeeded', 'netted' (taken off the transfer before it was made), 'failed'.
    status TEXT NOT NULL,
    failure_message TEXT,
    key_generation BIGINT NOT NULL DEFAULT 0,
    first_attempt_at BIGINT,
    attempted_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (order_id, store_id, refunded_to),
    FOREIGN KEY (order_id, store_id) REFERENCES order_transfers(order_id, store_id) ON DELETE CASCADE
);
CREATE INDEX transfer_reversals_due ON transfer_reversals (status, attempted_at);

-- A store's payouts, as Stripe's `payout.*` events describe them (each payout's newest state).
CREATE TABLE payouts (
    store_id TEXT NOT NULL REFERENCES stores(id) ON DELETE CASCADE,
    payout_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    -- 'pending', 'in_transit', 'paid', 'failed' or 'canceled'.
    status TEXT NOT NULL,
    arrival_date BIGINT,
    failure_code TEXT,
    failure_message TEXT,
    -- Stripe's `created` (unix seconds).
    created BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (store_id, payout_id)
);
CREATE INDEX payouts_store ON payouts (store_id, created, payout_id);
