-- Each Idempotency-Key claim has an owner (checked on complete and release) and a heartbeat
-- (a running request refreshes it; a claim not refreshed for a while belongs to a dead request).
ALTER TABLE idempotency_keys ADD COLUMN owner_token TEXT;
ALTER TABLE idempotency_keys ADD COLUMN locked_at BIGINT;
