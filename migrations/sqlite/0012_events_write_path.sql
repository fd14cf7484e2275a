-- The inbox table rebuilt for its write path, which every webhook delivery takes (the rows and
-- their order are kept):
-- * `seq` without AUTOINCREMENT. No event row is ever deleted, so the rowid SQLite picks (one past
--   the largest) is the same number; AUTOINCREMENT only added a `sqlite_sequence` row to read
--   and rewrite on every insert, a page in every commit.
-- * `events_due` with its predicate spelled out as `OR`s: SQLite tests an `IN` list of more than
--   two values through a temporary B-tree it builds each time an insert or update checks a row
--   against the index, a fifth of the inbox thread's time. Queries repeat the predicate as
--   written (`db::inbox::unfinished`) so the planner still uses the index.
-- * `events_store` for events that belong to a store only: platform events (most billing
--   traffic) no longer add an entry nothing looks up.
CREATE TABLE events_by_rowid (
    seq INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    scope TEXT NOT NULL,
    store_id TEXT,
    account_id TEXT,
    livemode BIGINT NOT NULL,
    stripe_created BIGINT NOT NULL,
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
INSERT INTO events_by_rowid (seq, source, event_id, event_type, scope, store_id, account_id,
        livemode, stripe_created, status, attempts, next_attempt_at, lease_until, claim_token,
        last_error, received_at, applied_at)
    SELECT seq, source, event_id, event_type, scope, store_id, account_id, livemode,
        stripe_created, status, attempts, next_attempt_at, lease_until, claim_token, last_error,
        received_at, applied_at
    FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_by_rowid RENAME TO events;
DELETE FROM sqlite_sequence WHERE name = 'events';
CREATE INDEX events_due ON events (next_attempt_at)
    WHERE status = 'pending' OR status = 'retrying' OR status = 'processing';
CREATE INDEX events_store ON events (store_id, seq) WHERE store_id IS NOT NULL;
