-- Marketplace money movement: an order's charge type, orders of the platform itself (several
-- vendors' splits, no one store: `store_id` NULL), one transfer per split and the reversals
-- that follow refunds.
ALTER TABLE orders ALTER COLUMN store_id DROP NOT NULL;
-- 'direct' (on the store's account), 'destination' (on the platform, transferred by Stripe)
-- or 'separate' (on the platform; Bursar transfers each split).
ALTER TABLE orders ADD COLUMN charge_type TEXT NOT NULL DEFAULT 'direct';
ALTER TABLE orders ADD COLUMN on_behalf_of BIGINT NOT NULL DEFAULT 0;
-- A destination charge's `transfer_data[amount]`: what the store gets (the platform keeps the
-- rest), instead of an application fee.
ALTER TABLE orders ADD COLUMN transfer_amount BIGINT;
-- The platform's application fee on the charge, and how much of it Stripe says was refunded
-- (from `application_fee.*` events).
ALTER TABLE orders ADD COLUMN application_fee_id TEXT;
ALTER TABLE orders ADD COLUMN application_fee_refunded BIGINT NOT NULL DEFAULT 0;
-- A platform order's Idempotency-Key and PaymentIntent are the platform's, unique among its own.
CREATE UNIQUE INDEX orders_platform_request ON orders (request_key) WHERE store_id IS NULL;
CREATE UNIQUE INDEX orders_platform_payment_intent ON orders (payment_intent_id) WHERE charge_type <> 'direct';
CREATE INDEX orders_platform_charge ON orders (latest_charge) WHERE charge_type <> 'direct';

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
