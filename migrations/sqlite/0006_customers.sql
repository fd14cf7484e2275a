-- A store's customers, created in the store's Stripe account and kept current by
-- customer.created|updated|deleted (newest event wins; deleted is final).
CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    store_id TEXT NOT NULL REFERENCES stores(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    stripe_customer_id TEXT,
    email TEXT NOT NULL,
    name TEXT,
    metadata TEXT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    stripe_updated_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX customers_stripe ON customers (store_id, stripe_customer_id);
CREATE INDEX customers_store ON customers (store_id, id);
