//! Prometheus metrics, one registry per app (so two apps in one process, as in the tests, count
//! apart). Counters are bumped where things happen; the inbox's depth, lag and dead events are
//! read from the database when `/metrics` is scraped.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    webhooks_received: IntCounterVec,
    webhooks_rejected: IntCounterVec,
    stripe_requests: IntCounterVec,
    stripe_latency: HistogramVec,
    stripe_rate_limited: IntCounter,
    inbox_events: IntGaugeVec,
    apply_lag: IntGauge,
    dead_events: IntGauge,
    notification_deliveries: IntCounterVec,
    notification_latency: HistogramVec,
    notification_backlog: IntGauge,
    notification_oldest: IntGauge,
    table_bytes: IntGaugeVec,
    database_bytes: IntGauge,
    database_free_bytes: IntGauge,
    oldest_event: IntGauge,
    oldest_payload: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("bursar".into()), None).expect("a static prefix is valid");
        let counters = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Self {
            webhooks_received: counters(
                "webhooks_received_total",
                "Verified webhook deliveries, by door (platform, connect, store) and outcome (new, duplicate).",
                &["door", "outcome"],
            ),
            webhooks_rejected: counters(
                "webhooks_rejected_total",
                "Webhook deliveries refused, by door and reason (signature, payload, too_large, not_configured, inbox).",
                &["door", "reason"],
            ),
            stripe_requests: counters(
                "stripe_requests_total",
                "Calls to Stripe, by method, endpoint (ids replaced by {id}) and HTTP status (0: no answer).",
                &["method", "endpoint", "status"],
            ),
            stripe_latency: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "stripe_request_duration_seconds",
                        "Latency of calls to Stripe, by method and endpoint.",
                    )
                    .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                    &["method", "endpoint"],
                )
                .expect("valid metric"),
            ),
            stripe_rate_limited: register(
                &registry,
                IntCounter::new(
                    "stripe_rate_limited_total",
                    "Stripe answers of 429 (rate limited).",
                )
                .expect("valid metric"),
            ),
            inbox_events: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("inbox_events", "Events in the inbox, by status."),
                    &["status"],
                )
                .expect("valid metric"),
            ),
            apply_lag: register(
                &registry,
                IntGauge::new(
                    "apply_lag_seconds",
                    "Age of the oldest event received and not yet applied (0 when none waits).",
                )
                .expect("valid metric"),
            ),
            dead_events: register(
                &registry,
                IntGauge::new(
                    "dead_events",
                    "Events that exhausted their attempts (bursar events list --status dead).",
                )
                .expect("valid metric"),
            ),
            notification_deliveries: counters(
                "notification_deliveries_total",
                "Notification delivery attempts, by endpoint and outcome (delivered, failed, gone).",
                &["endpoint", "outcome"],
            ),
            notification_latency: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "notification_attempt_duration_seconds",
                        "Latency of notification delivery attempts, by outcome.",
                    )
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0]),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            notification_backlog: register(
                &registry,
                IntGauge::new(
                    "notification_backlog",
                    "Notifications waiting to be delivered (pending in the outbox).",
                )
                .expect("valid metric"),
            ),
            notification_oldest: register(
                &registry,
                IntGauge::new(
                    "notification_backlog_oldest_seconds",
                    "Age of the oldest notification still waiting (0 when none waits).",
                )
                .expect("valid metric"),
            ),
            table_bytes: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "table_bytes",
                        "Bytes each table takes on disk with its indexes (PostgreSQL: at scrape; SQLite: measured daily by the pruning job).",
                    ),
                    &["table"],
                )
                .expect("valid metric"),
            ),
            database_bytes: register(
                &registry,
                IntGauge::new("database_bytes", "The database's size on disk.")
                    .expect("valid metric"),
            ),
            database_free_bytes: register(
                &registry,
                IntGauge::new(
                    "database_free_bytes",
                    "SQLite: bytes of free pages in the file, written again by new rows before it grows.",
                )
                .expect("valid metric"),
            ),
            oldest_event: register(
                &registry,
                IntGauge::new(
                    "oldest_event_age_seconds",
                    "Age of the oldest finished event still kept (its id answers Stripe's copies as duplicates).",
                )
                .expect("valid metric"),
            ),
            oldest_payload: register(
                &registry,
                IntGauge::new(
                    "oldest_event_payload_age_seconds",
                    "Age of the oldest finished event's payload still kept (bounded by the retention window).",
                )
                .expect("valid metric"),
            ),
            registry,
        }
    }

    /// Each table's size on disk.
    pub fn set_table_sizes(&self, sizes: &[(String, i64)]) {
        self.table_bytes.reset();
        for (table, bytes) in sizes {
            self.table_bytes.with_label_values(&[table]).set(*bytes);
        }
    }

    /// The database's size, and its free pages (SQLite).
    pub fn set_database_bytes(&self, total: i64, free: Option<i64>) {
        self.database_bytes.set(total);
        self.database_free_bytes.set(free.unwrap_or(0));
    }

    /// The ages of the oldest kept event and payload.
    pub fn set_oldest_kept(&self, event_seconds: i64, payload_seconds: i64) {
        self.oldest_event.set(event_seconds.max(0));
        self.oldest_payload.set(payload_seconds.max(0));
    }

    /// One notification delivery attempt.
    pub fn notification_attempt(&self, endpoint: &str, outcome: &str, seconds: f64) {
        self.notification_deliveries
            .with_label_values(&[endpoint, outcome])
            .inc();
        self.notification_latency
            .with_label_values(&[outcome])
            .observe(seconds);
    }

    /// The outbox as the database has it now.
    pub fn set_notification_backlog(&self, waiting: i64, oldest_seconds: i64) {
        self.notification_backlog.set(waiting);
        self.notification_oldest.set(oldest_seconds.max(0));
    }

    pub fn webhook_received(&self, door: &str, duplicate: bool) {
        let outcome = if duplicate { "duplicate" } else { "new" };
        self.webhooks_received
            .with_label_values(&[door, outcome])
            .inc();
    }

    pub fn webhook_rejected(&self, door: &str, reason: &str) {
        self.webhooks_rejected
            .with_label_values(&[door, reason])
            .inc();
    }

    /// One call to Stripe: `status` 0 when no answer came.
    pub fn stripe_call(&self, method: &str, path: &str, status: u16, seconds: f64) {
        let endpoint = endpoint_label(path);
        self.stripe_requests
            .with_label_values(&[method, &endpoint, &status.to_string()])
            .inc();
        self.stripe_latency
            .with_label_values(&[method, &endpoint])
            .observe(seconds);
        if status == 429 {
            self.stripe_rate_limited.inc();
        }
    }

    /// The inbox as the database has it now.
    pub fn set_inbox(&self, by_status: &[(String, i64)], lag_seconds: i64) {
        self.inbox_events.reset();
        let mut dead = 0;
        for (status, n) in by_status {
            self.inbox_events.with_label_values(&[status]).set(*n);
            if status == "dead" {
                dead = *n;
            }
        }
        self.dead_events.set(dead);
        self.apply_lag.set(lag_seconds.max(0));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// `metric`, registered (each name once per registry).
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

/// A path with its object ids replaced, so one label covers every object:
/// `/v1/payment_intents/pi_123/confirm` → `/v1/payment_intents/{id}/confirm`.
pub fn endpoint_label(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|seg| {
            let id_like = seg.split_once('_').is_some_and(|(prefix, rest)| {
                !prefix.is_empty()
                    && prefix.len() <= 8
                    && !rest.is_empty()
                    && rest
                        .bytes()
                        .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            }) || seg.starts_with("evt_");
            if id_like {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_placeholders_and_resources_stay() {
        assert_eq!(
            endpoint_label("/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa/confirm"),
            "/v1/payment_intents/{id}/confirm"
        );
        assert_eq!(endpoint_label("/v1/payment_intents"), "/v1/payment_intents");
        assert_eq!(
            endpoint_label("/v1/webhook_endpoints?limit=100"),
            "/v1/webhook_endpoints"
        );
        assert_eq!(
            endpoint_label("/v1/accounts/acct_1Nv0FGQ9RKHgCVdK/login_links"),
            "/v1/accounts/{id}/login_links"
        );
        assert_eq!(
            endpoint_label("/v1/prices/gold-monthly"),
            "/v1/prices/gold-monthly"
        );
    }

    #[test]
    fn the_exposition_names_what_was_counted() {
        let m = Metrics::new();
        m.webhook_received("connect", false);
        m.webhook_rejected("platform", "signature");
        m.stripe_call("POST", "/v1/refunds", 429, 0.01);
        let text = m.render();
        assert!(text.contains(r#"bursar_webhooks_received_total{door="connect",outcome="new"} 1"#));
        assert!(text
            .contains(r#"bursar_webhooks_rejected_total{door="platform",reason="signature"} 1"#));
        assert!(text.contains("bursar_stripe_rate_limited_total 1"));
    }
}
