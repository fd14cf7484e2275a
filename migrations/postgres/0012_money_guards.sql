-- A creating request's body, hashed, beside its Idempotency-Key: the same key with another body
-- is refused instead of resuming the first request's order or refund.
ALTER TABLE orders ADD COLUMN request_hash TEXT;
ALTER TABLE refunds ADD COLUMN request_hash TEXT;
-- When the key was bound to the refund (a request asking again for an unanswered refund binds
-- its key later than the refund was made); the key's window runs from then.
ALTER TABLE refunds ADD COLUMN keyed_at BIGINT;
-- A refund Stripe has not answered yet (5xx, timeout) is retried with its own idempotency key
-- until Stripe answers; this is when it was last tried.
ALTER TABLE refunds ADD COLUMN attempted_at BIGINT;
CREATE INDEX refunds_unanswered ON refunds (status, attempted_at) WHERE stripe_refund_id IS NULL;
-- One subscription creation per store at a time: the lease of the request creating it (until
-- when, and whose), and the trial it asked for, so a creation whose answer was lost is replayed
-- with exactly its first parameters under its first key.
ALTER TABLE vendor_subscriptions ADD COLUMN creating_until BIGINT;
ALTER TABLE vendor_subscriptions ADD COLUMN creating_token TEXT;
ALTER TABLE vendor_subscriptions ADD COLUMN create_trial_days BIGINT;
-- A deleted store keeps its orders and refunds (money history); it is hidden, not removed.
ALTER TABLE stores ADD COLUMN deleted_at BIGINT;
-- Merchant key-entry links are single-use: the nonce of each link that saved keys.
CREATE TABLE used_connect_links (
    nonce TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- Saved responses of idempotent requests hold client secrets and signed links: sealed in the
-- vault like every secret (`response_body` is only read for responses saved before this).
ALTER TABLE idempotency_keys ADD COLUMN response_enc TEXT;
