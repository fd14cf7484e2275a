-- Operator console sessions. The cookie holds a random id; only its SHA-256 is kept, so a copy
-- of the database opens no session. A session lives while its API key is active, at most until
-- `expires_at`, and not past a spell of inactivity after `last_seen_at`.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    api_key_id TEXT NOT NULL REFERENCES api_keys(id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_key ON console_sessions (api_key_id);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
