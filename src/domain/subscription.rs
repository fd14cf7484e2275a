//! A store's vendor subscription as Stripe describes it, and the store's vendor status.
//!
//! Like orders, the state is merged from facts rather than overwritten: the newest snapshot of
//! the subscription wins (by Stripe's `created`, then arrival), and `ended` (the subscription was
//! deleted, or a snapshot said `canceled`) is sticky, so no late, duplicated or reordered event
//! can bring a cancelled subscription back.

/// What one event or answer says about the subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionFacts {
    /// The newest snapshot: (Stripe time, arrival) and Stripe's fields.
    pub snapshot: Option<Snapshot>,
    /// Why it ended, once it has: `payment_failed` (Stripe gave up collecting) or anything
    /// else (cancelled on request).
    pub ended: Option<String>,
}

/// When a snapshot was said, compared in order: Stripe's `created` (seconds), the inbox
/// sequence number of the newest event received by then, and for Stripe's answers to Bursar's
/// own calls a local tick (milliseconds, 0 for events), so a later answer beats an earlier one
/// given in the same second with no event in between.
pub type Stamp = (i64, i64, i64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub at: Stamp,
    pub status: String,
    pub cancel_at_period_end: bool,
    pub current_period_end: Option<i64>,
    pub trial_end: Option<i64>,
    pub price: Option<String>,
}

impl SubscriptionFacts {
    /// Commutative, associative, idempotent; `ended` only grows (the first reason stays, as
    /// Stripe ends a subscription once).
    pub fn merge(&self, other: &SubscriptionFacts) -> SubscriptionFacts {
        let snapshot = match (&self.snapshot, &other.snapshot) {
            (Some(a), Some(b)) => Some(if b.at > a.at { b.clone() } else { a.clone() }),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let ended = match (&self.ended, &other.ended) {
            (Some(a), Some(b)) => Some(a.min(b).clone()),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        SubscriptionFacts { snapshot, ended }
    }

    /// The store's standing with the platform.
    pub fn vendor_status(&self) -> VendorStatus {
        if let Some(reason) = &self.ended {
            return if reason == "payment_failed" {
                VendorStatus::Suspended
            } else {
                VendorStatus::Canceled
            };
        }
        match self.snapshot.as_ref().map(|s| s.status.as_str()) {
            Some("active") => VendorStatus::Active,
            Some("trialing") => VendorStatus::Trialing,
            Some("past_due" | "unpaid" | "incomplete") => VendorStatus::PastDue,
            Some("incomplete_expired") => VendorStatus::Canceled,
            Some("paused") => VendorStatus::PastDue,
            _ => VendorStatus::Pending,
        }
    }
}

/// Why a subscription that Stripe calls `canceled` ended: Stripe's `cancellation_details.reason`
/// (`payment_failed` when its retries gave up).
pub fn ended_reason(status: &str, reason: Option<&str>) -> Option<String> {
    (status == "canceled" || status == "incomplete_expired")
        .then(|| reason.unwrap_or("cancellation_requested").to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VendorStatus {
    /// Created at Bursar, not yet confirmed by Stripe.
    Pending,
    Trialing,
    Active,
    /// A payment failed; Stripe is retrying (the grace period).
    PastDue,
    /// Stripe cancelled the subscription after failed payments.
    Suspended,
    /// Cancelled on request (now or at period end).
    Canceled,
}

impl VendorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VendorStatus::Pending => "pending",
            VendorStatus::Trialing => "trialing",
            VendorStatus::Active => "active",
            VendorStatus::PastDue => "past_due",
            VendorStatus::Suspended => "suspended",
            VendorStatus::Canceled => "canceled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn said(kind: u8, at: i64, seq: i64) -> SubscriptionFacts {
        let status = ["trialing", "active", "past_due", "canceled"][kind as usize % 4];
        let reason = if kind.is_multiple_of(2) {
            "payment_failed"
        } else {
            "cancellation_requested"
        };
        let deleted = kind >= 4;
        SubscriptionFacts {
            snapshot: Some(Snapshot {
                at: (at, seq, 0),
                status: if deleted {
                    "canceled".into()
                } else {
                    status.into()
                },
                cancel_at_period_end: false,
                current_period_end: None,
                trial_end: None,
                price: None,
            }),
            ended: if deleted {
                Some(reason.into())
            } else {
                ended_reason(status, Some(reason))
            },
        }
    }

    proptest! {
        /// Whatever the delivery order and duplicates, the end state is the in-order one, and
        /// once any ending event is in, the store is never active again.
        #[test]
        fn endings_are_never_undone(
            events in proptest::collection::vec((0..6u8, 0..50i64), 1..10),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let facts: Vec<SubscriptionFacts> = events
                .iter()
                .enumerate()
                .map(|(i, (k, t))| said(*k, *t, i as i64))
                .collect();
            let in_order = facts.iter().fold(SubscriptionFacts::default(), |a, f| a.merge(f));
            let mut state = SubscriptionFacts::default();
            let mut ended = false;
            for f in order.iter().map(|i| i.get(&facts)).chain(facts.iter()) {
                state = state.merge(f);
                if ended {
                    prop_assert!(matches!(
                        state.vendor_status(),
                        VendorStatus::Suspended | VendorStatus::Canceled
                    ));
                }
                ended |= state.ended.is_some();
            }
            prop_assert_eq!(&state, &in_order);
        }
    }

    #[test]
    fn stripe_giving_up_suspends_and_a_request_cancels() {
        let failed = SubscriptionFacts {
            ended: ended_reason("canceled", Some("payment_failed")),
            ..Default::default()
        };
        assert_eq!(failed.vendor_status(), VendorStatus::Suspended);
        let asked = SubscriptionFacts {
            ended: ended_reason("canceled", None),
            ..Default::default()
        };
        assert_eq!(asked.vendor_status(), VendorStatus::Canceled);
    }
}
