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
