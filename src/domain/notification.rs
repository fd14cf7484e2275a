//! What Bursar tells the platform's app: the notification types, an endpoint's filter of them,
//! and the retry schedule of a delivery.

use std::time::Duration;

use super::Invalid;

/// Every notification type, as endpoints subscribe to them (`*` for all).
pub const EVENT_TYPES: &[&str] = &[
    "order.paid",
    "order.failed",
    "order.canceled",
    "order.refunded",
    "order.partially_refunded",
    "order.disputed",
    "order.transferred",
    "store.connected",
    "store.disconnected",
    "store.account_updated",
    "store.deauthorized",
    "store.payout_paid",
    "store.payout_failed",
    "vendor_subscription.updated",
    "vendor_subscription.suspended",
    "vendor_subscription.canceled",
    "customer.updated",
    "customer.deleted",
];

/// The types an endpoint receives: `*`, or known types, deduplicated and sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter(Vec<String>);

impl EventFilter {
    pub fn parse(types: &[String]) -> Result<Self, Invalid> {
        if types.is_empty() {
            return Err(Invalid::new(
                "events",
                "must name at least one type, or `*` for all",
            ));
        }
        let mut out: Vec<String> = Vec::new();
        for t in types {
            if t != "*" && !EVENT_TYPES.contains(&t.as_str()) {
                return Err(Invalid::new(
                    "events",
                    format!(
                        "`{t}` is not a notification type (known: {}, or `*`)",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out.sort();
        Ok(Self(out))
    }

    pub fn matches(&self, event_type: &str) -> bool {
        self.0.iter().any(|t| t == "*" || t == event_type)
    }

    pub fn types(&self) -> &[String] {
        &self.0
    }
}

/// The order notification a status move means, if any (a status that is not reached by an
/// event of its own, such as `pending`, says nothing).
pub fn order_event(status: &str) -> Option<&'static str> {
    Some(match status {
        "paid" => "order.paid",
        "failed" => "order.failed",
        "canceled" => "order.canceled",
        "refunded" => "order.refunded",
        "partially_refunded" => "order.partially_refunded",
        "disputed" => "order.disputed",
        _ => return None,
    })
}

/// When the attempt after `attempts` failed ones is due, by `schedule` (the delays before the
/// 1st, 2nd, … attempt); None when the schedule is spent. `jitter` in [0, 1) spreads each delay
/// by ±20% so that endpoints recovering together are not hit together.
pub fn next_delay(schedule: &[Duration], attempts: usize, jitter: f64) -> Option<Duration> {
    let base = *schedule.get(attempts)?;
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    Some(base.mul_f64(factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_known_types_or_all() {
        let f = EventFilter::parse(&["order.paid".into(), "order.paid".into()]).unwrap();
        assert_eq!(f.types(), ["order.paid"]);
        assert!(f.matches("order.paid") && !f.matches("order.failed"));
        assert!(EventFilter::parse(&["*".into()])
            .unwrap()
            .matches("store.connected"));
        let e = EventFilter::parse(&["order.payed".into()]).unwrap_err();
        assert!(e.message.contains("`order.payed`"), "{e}");
        assert!(EventFilter::parse(&[]).is_err());
    }

    #[test]
    fn the_schedule_spreads_and_ends() {
        let s = [
            Duration::ZERO,
            Duration::from_secs(5),
            Duration::from_secs(300),
        ];
        assert_eq!(next_delay(&s, 0, 0.5), Some(Duration::ZERO));
        assert_eq!(next_delay(&s, 1, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(next_delay(&s, 2, 0.99999).map(|d| d.as_secs()), Some(359));
        assert_eq!(next_delay(&s, 3, 0.5), None);
        for t in EVENT_TYPES {
            assert!(t.contains('.'), "{t}");
        }
        assert_eq!(order_event("paid"), Some("order.paid"));
        assert_eq!(order_event("pending"), None);
    }
}
