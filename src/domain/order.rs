//! Orders: money as Stripe counts it, and the order's state as a function of what Stripe has
//! said about its payment.
//!
//! The state is never stored as a thing that transitions. Bursar keeps *facts* that only grow
//! (paid, the most refunded, disputed, canceled, the newest failure), each merged from an event
//! or a re-check, and derives the status from them. Merging is commutative and idempotent, so
//! late, duplicated or reordered events reach the same state as in-order delivery and can never
//! move an order backwards.

use super::Invalid;

/// Currencies whose amounts have no minor unit (Stripe's list).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// ISO 4217 codes Stripe presents charges in (its documented list).
const CURRENCIES: &[&str] = &[
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd",
    "bdt", "bgn", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf",
    "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb",
    "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg",
    "huf", "idr", "ils", "inr", "isk", "jmd", "jpy", "kes", "kgs", "khr", "kmf", "krw", "kyd",
    "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd", "mmk", "mnt", "mop",
    "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr", "nzd", "pab",
    "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub", "rwf", "sar", "sbd",
    "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb", "tjs", "top", "try",
    "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd", "vuv", "wst", "xaf", "xcd", "xof",
    "xpf", "yer", "zar", "zmw",
];

/// The largest amount Stripe accepts (eight digits in the minor unit).
pub const MAX_AMOUNT: i64 = 99_999_999;

/// A known, lowercase ISO currency code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Currency(String);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let lower = s.trim().to_ascii_lowercase();
        if CURRENCIES.contains(&lower.as_str()) {
            Ok(Self(lower))
        } else {
            Err(Invalid::new(
                "currency",
                format!("`{s}` is not a currency Stripe charges in (ISO 4217, e.g. usd, eur, jpy)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn zero_decimal(&self) -> bool {
        ZERO_DECIMAL.contains(&self.0.as_str())
    }
}

/// An amount in the currency's minor unit (cents; yen for JPY), positive and within Stripe's
/// limit, and at least Stripe's minimum charge of about half a dollar in major currencies.
pub fn parse_amount(field: &'static str, amount: i64, currency: &Currency) -> Result<i64, Invalid> {
    if amount <= 0 {
        return Err(Invalid::new(
            field,
            "must be a positive integer in the currency's smallest unit",
        ));
    }
    if amount > MAX_AMOUNT {
        return Err(Invalid::new(field, format!("must be at most {MAX_AMOUNT}")));
    }
    let minimum = match currency.as_str() {
        "usd" | "eur" | "cad" | "aud" | "chf" | "nzd" | "sgd" => 50,
        "gbp" => 30,
        "jpy" => 50,
        _ => 1,
    };
    if field == "amount" && amount < minimum {
        return Err(Invalid::new(
            field,
            format!(
                "is below Stripe's minimum charge ({minimum} in {})",
                currency.as_str()
            ),
        ));
    }
    Ok(amount)
}

/// An order's description: none when blank, at most 1000 characters (Stripe's limit).
pub fn parse_description(description: Option<String>) -> Result<Option<String>, Invalid> {
    match description {
        Some(d) if d.trim().is_empty() => Ok(None),
        Some(d) if d.chars().count() > 1000 => Err(Invalid::new(
            "description",
            "must be at most 1000 characters",
        )),
        other => Ok(other),
    }
}

/// Whose account an order's PaymentIntent is on: a `keys` store's own, a connected account
/// (direct or destination charge), or the platform's (a multi-vendor order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargedThrough {
    Keys,
    Connect,
    Platform,
}

impl ChargedThrough {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargedThrough::Keys => "keys",
            ChargedThrough::Connect => "connect",
            ChargedThrough::Platform => "platform",
        }
    }
}

impl From<super::connection::ConnectionKind> for ChargedThrough {
    fn from(kind: super::connection::ConnectionKind) -> Self {
        match kind {
            super::connection::ConnectionKind::Keys => ChargedThrough::Keys,
            super::connection::ConnectionKind::Connect => ChargedThrough::Connect,
        }
    }
}

impl TryFrom<String> for ChargedThrough {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        match s.as_str() {
            "keys" => Ok(ChargedThrough::Keys),
            "connect" => Ok(ChargedThrough::Connect),
            "platform" => Ok(ChargedThrough::Platform),
            _ => Err(Invalid::new(
                "connection_kind",
                "must be keys, connect or platform",
            )),
        }
    }
}

/// What Stripe has said about an order's payment. Every field only grows under `merge`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFacts {
    /// Stripe said the PaymentIntent succeeded.
    pub paid: bool,
    /// The most Stripe has said was refunded (refunds are cumulative on the charge).
    pub amount_refunded: i64,
    /// A dispute was opened; `dispute_status` the newest word on it.
    pub disputed: bool,
    pub dispute_status: Option<Stamped<String>>,
    /// Stripe said the PaymentIntent was canceled.
    pub canceled: bool,
    /// The newest failed attempt (code, message), by Stripe's `created`.
    pub failure: Option<Stamped<(String, String)>>,
}

/// A value with the Stripe time (and arrival order) that said it: the newest wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped<T> {
    pub at: (i64, i64),
    pub value: T,
}

fn newest<T: Clone>(a: &Option<Stamped<T>>, b: &Option<Stamped<T>>) -> Option<Stamped<T>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.at > x.at { y.clone() } else { x.clone() }),
        (x, y) => x.clone().or_else(|| y.clone()),
    }
}

impl OrderFacts {
    /// The union of two sets of facts: commutative, associative and idempotent.
    pub fn merge(&self, other: &OrderFacts) -> OrderFacts {
        OrderFacts {
            paid: self.paid || other.paid,
            amount_refunded: self.amount_refunded.max(other.amount_refunded),
            disputed: self.disputed || other.disputed,
            dispute_status: newest(&self.dispute_status, &other.dispute_status),
            canceled: self.canceled || other.canceled,
            failure: newest(&self.failure, &other.failure),
        }
    }

    /// The order's status, from the strongest fact down.
    pub fn status(&self, amount: i64) -> OrderStatus {
        if self.disputed {
            OrderStatus::Disputed
        } else if self.paid && self.amount_refunded >= amount {
            OrderStatus::Refunded
        } else if self.paid && self.amount_refunded > 0 {
            OrderStatus::PartiallyRefunded
        } else if self.paid {
            OrderStatus::Paid
        } else if self.canceled {
            OrderStatus::Canceled
        } else if self.failure.is_some() {
            OrderStatus::Failed
        } else {
            OrderStatus::Pending
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Failed,
    Canceled,
    Paid,
    PartiallyRefunded,
    Refunded,
    Disputed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Failed => "failed",
            OrderStatus::Canceled => "canceled",
            OrderStatus::Paid => "paid",
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Disputed => "disputed",
        }
    }

    /// How far along an order is; a status never moves to a lower rank.
    pub fn rank(self) -> u8 {
        match self {
            OrderStatus::Pending => 0,
            OrderStatus::Failed => 1,
            OrderStatus::Canceled => 2,
            OrderStatus::Paid => 3,
            OrderStatus::PartiallyRefunded => 4,
            OrderStatus::Refunded => 5,
            OrderStatus::Disputed => 6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_is_none_when_blank_and_at_most_1000_characters() {
        assert_eq!(parse_description(Some("  ".into())), Ok(None));
        assert_eq!(parse_description(None), Ok(None));
        assert_eq!(
            parse_description(Some("Mug".into())),
            Ok(Some("Mug".into()))
        );
        assert!(parse_description(Some("é".repeat(1001))).is_err());
        assert!(parse_description(Some("é".repeat(1000))).is_ok());
    }
    use proptest::prelude::*;

    #[test]
    fn currencies_and_amounts_follow_stripe() {
        assert_eq!(Currency::parse("USD").unwrap().as_str(), "usd");
        assert!(Currency::parse("usdx").is_err() && Currency::parse("").is_err());
        assert!(Currency::parse("jpy").unwrap().zero_decimal());
        let usd = Currency::parse("usd").unwrap();
        assert!(parse_amount("amount", 0, &usd).is_err());
        assert!(parse_amount("amount", -5, &usd).is_err());
        assert!(parse_amount("amount", 49, &usd).is_err());
        assert!(parse_amount("amount", 100_000_000, &usd).is_err());
        assert_eq!(parse_amount("amount", 1999, &usd).unwrap(), 1999);
        let jpy = Currency::parse("jpy").unwrap();
        assert!(parse_amount("amount", 500, &jpy).is_ok());
    }

    /// One thing Stripe can say about an order's payment.
    #[derive(Clone, Debug)]
    enum Said {
        Succeeded,
        Failed(i64, u8),
        Canceled,
        Refunded(i64),
        Disputed(i64, bool),
    }

    fn facts_of(said: &Said, seq: i64) -> OrderFacts {
        let mut f = OrderFacts::default();
        match said {
            Said::Succeeded => f.paid = true,
            Said::Failed(at, code) => {
                f.failure = Some(Stamped {
                    at: (*at, seq),
                    value: (format!("code{code}"), "declined".into()),
                })
            }
            Said::Canceled => f.canceled = true,
            Said::Refunded(n) => {
                f.paid = true;
                f.amount_refunded = *n;
            }
            Said::Disputed(at, won) => {
                f.disputed = true;
                f.dispute_status = Some(Stamped {
                    at: (*at, seq),
                    value: if *won { "won" } else { "needs_response" }.into(),
                });
            }
        }
        f
    }

    fn said() -> impl Strategy<Value = Said> {
        prop_oneof![
            Just(Said::Succeeded),
            (0..100i64, 0..3u8).prop_map(|(t, c)| Said::Failed(t, c)),
            Just(Said::Canceled),
            (1..=1000i64).prop_map(Said::Refunded),
            (0..100i64, any::<bool>()).prop_map(|(t, w)| Said::Disputed(t, w)),
        ]
    }

    proptest! {
        /// Any order of delivery, with duplicates, ends in the same state as in-order delivery,
        /// and no prefix of any delivery order ever sees the status fall back.
        #[test]
        fn delivery_order_and_duplicates_do_not_matter(
            events in proptest::collection::vec(said(), 0..12),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
            amount in 1..=1000i64,
        ) {
            let stamped: Vec<OrderFacts> =
                events.iter().enumerate().map(|(i, e)| facts_of(e, i as i64)).collect();
            let in_order = stamped.iter().fold(OrderFacts::default(), |a, f| a.merge(f));
            // A shuffled delivery with duplicates, then everything (each event arrives at least once).
            let mut delivered: Vec<&OrderFacts> =
                order.iter().filter(|_| !stamped.is_empty()).map(|i| i.get(&stamped)).collect();
            delivered.extend(stamped.iter().rev());
            let mut state = OrderFacts::default();
            let mut rank = state.status(amount).rank();
            for f in delivered {
                state = state.merge(f);
                let now = state.status(amount).rank();
                prop_assert!(now >= rank, "status went back");
                rank = now;
            }
            prop_assert_eq!(state.status(amount), in_order.status(amount));
            prop_assert_eq!(state, in_order);
        }
    }
}
