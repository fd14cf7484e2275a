-- How a `connect` connection came to be: 'standard' (Connect OAuth), 'express' (created with
-- Account Links) or 'v2' (Accounts v2). Only OAuth connections can be deauthorized at Stripe.
ALTER TABLE connections ADD COLUMN connect_type TEXT;

-- Onboarding grants: the single-use OAuth `state` values and the nonces of Bursar's own
-- refresh URLs. A grant is bound to one store, expires, and is spent once (`used_at`).
CREATE TABLE onboarding_grants (
    nonce TEXT PRIMARY KEY,
    store_id TEXT NOT NULL REFERENCES stores(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    return_url TEXT,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX onboarding_grants_expiry ON onboarding_grants (expires_at);

-- The connected account's payout bank account or card, as `account.external_account.updated`
-- last left it (re-fetched from Stripe in the account's scope).
ALTER TABLE connections ADD COLUMN external_account TEXT;
