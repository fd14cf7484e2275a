-- `seq BIGINT PRIMARY KEY` is not SQLite's rowid alias (only `INTEGER PRIMARY KEY` is), so every
-- payload was written twice (the table keyed by a hidden rowid, and a unique index on seq) and
-- read through the index. Keyed by the rowid itself, a payload is one B-tree insert and lookup.
CREATE TABLE event_payloads_by_rowid (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL
);
INSERT INTO event_payloads_by_rowid (seq, payload) SELECT seq, payload FROM event_payloads;
DROP TABLE event_payloads;
ALTER TABLE event_payloads_by_rowid RENAME TO event_payloads;
