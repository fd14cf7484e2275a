-- Timestamps are unix milliseconds (BIGINT) and flags 0/1, so one set of queries serves both engines.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE stores (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    external_id TEXT UNIQUE,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE connections (
    store_id TEXT PRIMARY KEY REFERENCES stores(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('keys', 'connect')),
    mode TEXT NOT NULL CHECK (mode IN ('test', 'live')),
    account_id TEXT,
    key_kind TEXT,
    publishable_key TEXT,
    secret_key_enc TEXT,
    webhook_secret_enc TEXT,
    charges_enabled BIGINT NOT NULL DEFAULT 0,
    payouts_enabled BIGINT NOT NULL DEFAULT 0,
    details_submitted BIGINT NOT NULL DEFAULT 0,
    requirements TEXT,
    deauthorized BIGINT NOT NULL DEFAULT 0,
    last_payout_failure TEXT,
    balance TEXT,
    account_synced_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX connections_connect_account ON connections (account_id) WHERE kind = 'connect';
CREATE INDEX connections_account ON connections (account_id);

-- The webhook inbox: every verified delivery, durable before Stripe gets its 2xx.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    scope TEXT NOT NULL,
    store_id TEXT,
    account_id TEXT,
    livemode BIGINT NOT NULL,
    stripe_created BIGINT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    claim_token TEXT,
    last_error TEXT,
    received_at BIGINT NOT NULL,
    applied_at BIGINT,
    UNIQUE (source, event_id)
);
-- Only unfinished events are in this index, in the order workers take them.
CREATE INDEX events_due ON events (next_attempt_at) WHERE status IN ('pending', 'retrying', 'processing');
CREATE INDEX events_store ON events (store_id, seq);

-- Per-object watermarks: the newest event applied to each Stripe object, per store.
CREATE TABLE object_versions (
    owner TEXT NOT NULL,
    object_id TEXT NOT NULL,
    stripe_created BIGINT NOT NULL,
    event_seq BIGINT NOT NULL,
    PRIMARY KEY (owner, object_id)
);

CREATE TABLE idempotency_keys (
    api_key_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code BIGINT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, idem_key)
);
