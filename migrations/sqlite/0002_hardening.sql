-- Each Idempotency-Key claim has an owner (checked on complete and release) and a heartbeat
-- (a running request refreshes it; a claim not refreshed for a while belongs to a dead request).
ALTER TABLE idempotency_keys ADD COLUMN owner_token TEXT;
ALTER TABLE idempotency_keys ADD COLUMN locked_at BIGINT;

-- Watermarks are now kept per store and account ("st_…/acct_…"): carry each store's existing
-- watermarks over to its current account, so no older event can win against them after upgrade.
INSERT INTO object_versions (owner, object_id, stripe_created, event_seq)
SELECT o.owner || '/' || c.account_id, o.object_id, o.stripe_created, o.event_seq
FROM object_versions o JOIN connections c ON c.store_id = o.owner
WHERE c.account_id IS NOT NULL
ON CONFLICT (owner, object_id) DO NOTHING;
