-- A creating request's body, hashed, beside its Idempotency-Key: the same key with another body
-- is refused instead of resuming the first request's order or refund.
ALTER TABLE orders ADD COLUMN request_hash TEXT;
ALTER TABLE refunds ADD COLUMN request_hash TEXT;
-- A refund Stripe has not answered yet (5xx, timeout) is retried with its own idempotency key
-- until Stripe answers; this is when it was last tried.
ALTER TABLE refunds ADD COLUMN attempted_at BIGINT;
CREATE INDEX refunds_unanswered ON refunds (status, attempted_at) WHERE stripe_refund_id IS NULL;
-- One subscription creation per store at a time: the lease of the request creating it.
ALTER TABLE vendor_subscriptions ADD COLUMN creating_until BIGINT;
-- A deleted store keeps its orders and refunds (money history); it is hidden, not removed.
ALTER TABLE stores ADD COLUMN deleted_at BIGINT;
-- Merchant key-entry links are single-use: the signature of each link that saved keys.
CREATE TABLE used_connect_links (
    signature TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- Saved responses of idempotent requests hold client secrets and signed links: sealed in the
-- vault like every secret (`response_body` is only read for responses saved before this).
ALTER TABLE idempotency_keys ADD COLUMN response_enc TEXT;
