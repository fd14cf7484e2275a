-- An event's raw payload is written once and never changes, while its inbox row is rewritten by
-- every claim and status change: keeping the (kilobytes of) payload in its own table means those
-- rewrites touch small rows only.
CREATE TABLE event_payloads (
    seq BIGINT PRIMARY KEY,
    payload TEXT NOT NULL
);
INSERT INTO event_payloads (seq, payload) SELECT seq, payload FROM events;
ALTER TABLE events DROP COLUMN payload;
