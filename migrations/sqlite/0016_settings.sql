-- Facts about how this database is used, checked at start (which kind of Stripe it is used with).
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
