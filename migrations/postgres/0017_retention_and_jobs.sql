-- Periodic jobs, run once across every process on the database: a job's next turn and the
-- lease of the process running it (`db::jobs`).
CREATE TABLE jobs (
    name TEXT PRIMARY KEY,
    owner TEXT,
    next_run_at BIGINT NOT NULL,
    lease_until BIGINT,
    runs BIGINT NOT NULL DEFAULT 0,
    last_started_at BIGINT,
    last_finished_at BIGINT,
    last_error TEXT
);

-- Delivered notifications past the retention window, oldest first, for the pruning job.
CREATE INDEX notifications_delivered ON notifications (created_at) WHERE status = 'delivered';

-- The pruning job deletes old rows in small batches all day: vacuum these tables after a 2%
-- change instead of the default 20%, so the space of deleted payloads is reused by new ones
-- before the tables grow; the inbox is rewritten by every claim, so its rows are vacuumed as
-- often. Insert-only growth (`event_payloads`) gets its visibility map kept current as well.
ALTER TABLE events SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE event_payloads SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE notifications SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE notification_attempts SET (autovacuum_vacuum_scale_factor = 0.02);
-- The insert threshold exists from PostgreSQL 13; an older server keeps its default.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE event_payloads SET (autovacuum_vacuum_insert_scale_factor = 0.02)';
    EXECUTE 'ALTER TABLE events SET (autovacuum_vacuum_insert_scale_factor = 0.02)';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'insert-driven autovacuum settings skipped: %', SQLERRM;
END
$$;
