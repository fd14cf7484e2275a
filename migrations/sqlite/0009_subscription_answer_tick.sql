-- Stripe's answers to Bursar's own calls are ordered by a local tick, so the later of two
-- answers given in the same second (with no event between them) wins.
ALTER TABLE vendor_subscriptions ADD COLUMN snapshot_tick BIGINT NOT NULL DEFAULT 0;
