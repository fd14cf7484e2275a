-- Orders. The status is derived from facts that only grow (paid, the most refunded, disputed,
-- canceled, the newest failure; see src/domain/order.rs), so no event order can move it back.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    store_id TEXT NOT NULL REFERENCES stores(id) ON DELETE CASCADE,
    connection_kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    description TEXT,
    customer_id TEXT,
    application_fee_amount BIGINT,
    metadata TEXT NOT NULL,
    -- The creating request's Idempotency-Key (hashed with its API key): a retry resumes the order.
    request_key TEXT,
    payment_intent_id TEXT,
    -- Orders paid through Stripe Checkout: the session (the PaymentIntent is learnt on completion).
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
    -- What last moved the status: 'webhook' (a verified event) or 'sync' (a re-check at Stripe).
    status_source TEXT,
    synced_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_request ON orders (store_id, request_key);
CREATE UNIQUE INDEX orders_payment_intent ON orders (store_id, payment_intent_id);
CREATE INDEX orders_store ON orders (store_id, id);
CREATE INDEX orders_status ON orders (status, created_at);
CREATE INDEX orders_charge ON orders (store_id, latest_charge);
CREATE INDEX orders_checkout_session ON orders (store_id, checkout_session_id);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    amount BIGINT NOT NULL,
    reason TEXT,
    stripe_refund_id TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX refunds_order ON refunds (order_id);
