-- The creating request's Idempotency-Key (hashed with its API key): a refund request retried
-- after a failure resumes the same refund (same Stripe idempotency key), never a second one.
ALTER TABLE refunds ADD COLUMN request_key TEXT;
CREATE UNIQUE INDEX refunds_request ON refunds (order_id, request_key);
