-- Webhook endpoints `bursar webhooks setup` made at Stripe, by what they serve: `platform`,
-- `connect` or `store:<id>`. The signing secret (returned once, at creation) is sealed here for
-- the platform and Connect endpoints; a store's lives with its connection.
CREATE TABLE webhook_endpoints (
    name TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret_enc TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Deliveries refused for their signature, per door, since its last good one: `bursar doctor`
-- says which endpoint has the wrong secret and since when.
CREATE TABLE signature_failures (
    source TEXT PRIMARY KEY,
    since BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    count BIGINT NOT NULL,
    reason TEXT NOT NULL
);

-- `bursar reconcile`: per scope, the newest Stripe event already checked.
CREATE TABLE reconcile_cursors (
    scope TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    created BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
