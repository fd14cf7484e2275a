-- Notifications to the platform's app (Standard Webhooks). An endpoint's secret is sealed; on
-- rotation the previous one keeps signing beside it until `old_secret_until`.
CREATE TABLE notification_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    secret_enc TEXT NOT NULL,
    old_secret_enc TEXT,
    old_secret_until BIGINT,
    disabled BIGINT NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    -- Since when every delivery has failed (none: the last one succeeded).
    failing_since BIGINT,
    -- The sequence number of the endpoint's newest notification.
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The outbox: one row per state change and subscribed endpoint, written in the transaction of
-- the change itself; its id is the delivery's `webhook-id` on every attempt.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES notification_endpoints(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    store_id TEXT,
    payload TEXT NOT NULL,
    -- pending (to be sent), delivered, failed (the retry schedule is spent, or the endpoint
    -- was disabled).
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    lease_token TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_endpoint ON notifications (endpoint_id, seq);

CREATE TABLE notification_attempts (
    notification_id TEXT NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status_code BIGINT,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    PRIMARY KEY (notification_id, attempt)
);
