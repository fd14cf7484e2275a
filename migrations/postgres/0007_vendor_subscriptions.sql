-- The platform billing its stores: one vendor subscription per store, on the platform account.
-- Stripe's latest snapshot (newest event wins) plus `ended`, which once set is never undone, so a
-- late or replayed event cannot resurrect a cancelled subscription.
CREATE TABLE vendor_subscriptions (
    store_id TEXT PRIMARY KEY REFERENCES stores(id) ON DELETE CASCADE,
    customer_id TEXT,
    customer_deleted BIGINT NOT NULL DEFAULT 0,
    -- Saved before Stripe is called: the idempotency key of the subscription being created.
    create_key TEXT NOT NULL,
    subscription_id TEXT,
    item_id TEXT,
    price_id TEXT NOT NULL,
    status TEXT,
    current_period_end BIGINT,
    trial_end BIGINT,
    cancel_at_period_end BIGINT NOT NULL DEFAULT 0,
    snapshot_at BIGINT,
    snapshot_seq BIGINT,
    ended_reason TEXT,
    latest_invoice TEXT,
    action_url TEXT,
    last_payment_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX vendor_subscriptions_subscription ON vendor_subscriptions (subscription_id);
CREATE INDEX vendor_subscriptions_customer ON vendor_subscriptions (customer_id);
