//! Marketplace money: how an order is charged, and how a refund of a multi-vendor order is
//! shared out between the vendors' transfers.

use std::collections::HashSet;

use super::order::Currency;
use super::{Invalid, StoreId};

/// Whose account the payment is made on, and how the vendor gets its money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeType {
    /// On the store's own account (the platform takes an application fee, if any).
    Direct,
    /// On the platform, with `transfer_data[destination]`: Stripe moves the vendor's share.
    Destination,
    /// On the platform; Bursar transfers each vendor's split once Stripe says it is paid.
    Separate,
}

impl ChargeType {
    /// The charge types an API caller may ask for on a store's order.
    pub fn parse_for_store(s: &str) -> Result<Self, Invalid> {
        match s {
            "direct" => Ok(Self::Direct),
            "destination" => Ok(Self::Destination),
            _ => Err(Invalid::new("charge_type", "must be direct or destination")),
        }
    }

    /// As stored; anything unknown reads as a direct charge (the type orders had before).
    pub fn from_stored(s: &str) -> Self {
        match s {
            "destination" => Self::Destination,
            "separate" => Self::Separate,
            _ => Self::Direct,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Destination => "destination",
            Self::Separate => "separate",
        }
    }

    /// The PaymentIntent lives on the platform's account (its events reach the platform
    /// endpoint; refunds and re-checks use the platform key alone).
    pub fn on_platform(self) -> bool {
        self != Self::Direct
    }
}

/// The most splits one order may have (each is a transfer to make and keep).
pub const MAX_SPLITS: usize = 50;

/// A split as the API sends it, before it is parsed.
#[derive(Debug, Clone)]
pub struct SplitFields {
    pub store_id: String,
    pub amount: i64,
    pub description: Option<String>,
    /// If given, must be the order's: a transfer from a charge is in the charge's currency.
    pub currency: Option<String>,
}

/// A vendor's part of a multi-vendor order, parsed: a store named once, a positive amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedSplit {
    pub store: StoreId,
    pub amount: i64,
    pub description: Option<String>,
}

/// Why the splits of an order cannot be.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitsRefused {
    /// A split is malformed (field `splits`).
    Invalid(Invalid),
    /// A split names another currency than the order's.
    CurrencyMismatch(String),
    /// The splits add up to more than the order.
    ExceedAmount(String),
}

/// Parses the splits of an order of `amount` in `currency`: between one and `MAX_SPLITS`, each
/// store once, each amount positive, in the order's currency, and no more than the order in all
/// (the platform keeps the rest).
pub fn parse_splits(
    splits: Vec<SplitFields>,
    amount: i64,
    currency: &Currency,
) -> Result<Vec<RequestedSplit>, SplitsRefused> {
    let invalid = |message: String| SplitsRefused::Invalid(Invalid::new("splits", message));
    if splits.is_empty() || splits.len() > MAX_SPLITS {
        return Err(invalid(format!(
            "must name between 1 and {MAX_SPLITS} stores"
        )));
    }
    let mut seen = HashSet::new();
    let mut total: i64 = 0;
    let mut parsed = Vec::with_capacity(splits.len());
    for (i, split) in splits.into_iter().enumerate() {
        let store = StoreId::parse(&split.store_id)
            .map_err(|_| invalid(format!("splits[{i}].store_id is not a store id (st_…)")))?;
        if !seen.insert(store.clone()) {
            return Err(invalid(format!(
                "splits[{i}].store_id names a store already split; give each store one split"
            )));
        }
        if split.amount <= 0 {
            return Err(invalid(format!(
                "splits[{i}].amount must be a positive integer in the currency's smallest unit"
            )));
        }
        if let Some(c) = &split.currency {
            if Currency::parse(c).ok().as_ref() != Some(currency) {
                return Err(SplitsRefused::CurrencyMismatch(format!(
                    "splits[{i}].currency is {c}, the order is in {}: a transfer from a charge is made in the charge's currency",
                    currency.as_str()
                )));
            }
        }
        if split
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            return Err(invalid(format!(
                "splits[{i}].description must be at most 1000 characters"
            )));
        }
        total = total.saturating_add(split.amount);
        parsed.push(RequestedSplit {
            store,
            amount: split.amount,
            description: split.description,
        });
    }
    if total > amount {
        return Err(SplitsRefused::ExceedAmount(format!(
            "the splits add up to {total}, more than the order's amount {amount}; the platform keeps amount − Σ splits, which cannot be negative"
        )));
    }
    Ok(parsed)
}

/// What each split's transfer must have reversed in addition to `planned` (what earlier
/// refunds already reversed, per split) once `refunded` of an order of `amount` has been
/// refunded. The vendors' part of the refund, rounded to the nearest unit, less what is already
/// planned, is shared out by each split's gap to its exact share (largest first, ties to the
/// earlier split), never past the split. So what is reversed per split only grows, never goes
/// beyond the vendors' part of what was refunded, and a full refund reverses every split whole.
pub fn reversal_increments(
    amount: i64,
    refunded: i64,
    splits: &[i64],
    planned: &[i64],
) -> Vec<i64> {
    let mut out = vec![0; splits.len()];
    if amount <= 0 || splits.len() != planned.len() {
        return out;
    }
    let amount_w = amount as i128;
    let refunded = refunded.clamp(0, amount) as i128;
    let total: i128 = splits.iter().map(|&s| s as i128).sum();
    // Round half up: the vendors' part of what is refunded, in whole units.
    let wanted = (2 * refunded * total + amount_w) / (2 * amount_w);
    let already: i128 = planned.iter().map(|&p| p as i128).sum();
    let mut left = wanted - already;
    if left <= 0 {
        return out;
    }
    // Each split's gap to its exact share, scaled by `amount` to stay in integers.
    let gap = |i: usize| refunded * splits[i] as i128 - planned[i] as i128 * amount_w;
    let room = |i: usize, given: i64| (splits[i] - planned[i] - given).max(0) as i128;
    let mut order: Vec<usize> = (0..splits.len()).collect();
    order.sort_by(|&a, &b| gap(b).cmp(&gap(a)).then(a.cmp(&b)));
    // Whole units of each gap first, then one unit at a time to the largest gaps.
    for &i in &order {
        let whole = (gap(i) / amount_w).max(0).min(room(i, out[i])).min(left);
        out[i] += whole as i64;
        left -= whole;
    }
    while left > 0 {
        let mut gave = false;
        for &i in &order {
            if left > 0 && room(i, out[i]) > 0 {
                out[i] += 1;
                left -= 1;
                gave = true;
            }
        }
        if !gave {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(store_id: &str, amount: i64) -> SplitFields {
        SplitFields {
            store_id: store_id.into(),
            amount,
            description: None,
            currency: None,
        }
    }

    #[test]
    fn splits_parse_when_each_store_is_named_once_within_the_amount() {
        let usd = Currency::parse("usd").unwrap();
        let a = StoreId::generate();
        let b = StoreId::generate();
        let parsed = parse_splits(
            vec![fields(a.as_str(), 600), fields(b.as_str(), 400)],
            1000,
            &usd,
        )
        .unwrap();
        assert_eq!(
            parsed.iter().map(|s| s.amount).collect::<Vec<_>>(),
            [600, 400]
        );
        assert_eq!(parsed[1].store, b);
    }

    #[test]
    fn splits_are_refused_for_each_way_they_can_be_wrong() {
        let usd = Currency::parse("usd").unwrap();
        let a = StoreId::generate();
        let b = StoreId::generate();
        let invalid = |r: Result<_, SplitsRefused>| matches!(r, Err(SplitsRefused::Invalid(_)));
        assert!(invalid(parse_splits(vec![], 1000, &usd)));
        assert!(invalid(parse_splits(vec![fields("nope", 1)], 1000, &usd)));
        assert!(invalid(parse_splits(
            vec![fields(a.as_str(), 1), fields(a.as_str(), 1)],
            1000,
            &usd
        )));
        assert!(invalid(parse_splits(
            vec![fields(a.as_str(), 0)],
            1000,
            &usd
        )));
        let many = (0..=MAX_SPLITS)
            .map(|_| fields(StoreId::generate().as_str(), 1))
            .collect();
        assert!(invalid(parse_splits(many, 1000, &usd)));
        let mut eur = fields(a.as_str(), 1);
        eur.currency = Some("eur".into());
        assert!(matches!(
            parse_splits(vec![eur], 1000, &usd),
            Err(SplitsRefused::CurrencyMismatch(_))
        ));
        assert!(matches!(
            parse_splits(
                vec![fields(a.as_str(), 600), fields(b.as_str(), 401)],
                1000,
                &usd
            ),
            Err(SplitsRefused::ExceedAmount(_))
        ));
    }

    /// Plans refund after refund, as `plan_reversals` does; the per-split totals.
    fn plan(amount: i64, splits: &[i64], levels: &[i64]) -> Vec<i64> {
        let mut planned = vec![0; splits.len()];
        for &refunded in levels {
            let add = reversal_increments(amount, refunded, splits, &planned);
            assert!(add.iter().all(|&a| a >= 0), "{add:?}");
            for (p, a) in planned.iter_mut().zip(add) {
                *p += a;
            }
        }
        planned
    }

    #[test]
    fn a_full_refund_reverses_every_split_whole() {
        assert_eq!(
            plan(10_000, &[3333, 3333, 3000], &[10_000]),
            vec![3333, 3333, 3000]
        );
        assert_eq!(plan(999, &[500, 499], &[1, 7, 500, 999]), vec![500, 499]);
    }

    #[test]
    fn a_partial_refund_is_shared_pro_rata_and_sums_to_the_vendors_part() {
        // 6000 and 3000 of 10000 (the platform keeps 1000): a 5000 refund reverses 3000 + 1500.
        assert_eq!(plan(10_000, &[6000, 3000], &[5000]), vec![3000, 1500]);
        let t = plan(100, &[33, 33, 33], &[50]);
        assert_eq!(t.iter().sum::<i64>(), 50);
        assert!(t.iter().all(|&x| x == 16 || x == 17), "{t:?}");
    }

    #[test]
    fn a_growing_refund_never_reverses_more_than_the_vendors_part() {
        // Largest remainders alone would give [2,2,1] at 5 and [3,3,0] at 6: 7 reversed of 6.
        assert_eq!(plan(100, &[45, 45, 10], &[5, 6]).iter().sum::<i64>(), 6);
        let splits = [1234, 2345, 3456, 7];
        let amount = 7500;
        let vendors: i64 = splits.iter().sum();
        let mut planned = vec![0; splits.len()];
        for refunded in (0..=amount).step_by(7).chain([amount]) {
            let add = reversal_increments(amount, refunded, &splits, &planned);
            for (p, a) in planned.iter_mut().zip(add) {
                *p += a;
            }
            let sum: i64 = planned.iter().sum();
            let exact = refunded as f64 * vendors as f64 / amount as f64;
            assert!(
                (sum as f64 - exact).abs() <= 0.5 + 1e-9,
                "{refunded}: {sum} vs {exact}"
            );
            assert!(planned.iter().zip(&splits).all(|(p, s)| p <= s));
        }
        assert_eq!(planned, splits.to_vec());
    }

    #[test]
    fn charge_types_parse_and_say_where_they_live() {
        assert_eq!(
            ChargeType::parse_for_store("destination").unwrap(),
            ChargeType::Destination
        );
        assert!(ChargeType::parse_for_store("separate").is_err());
        assert!(ChargeType::from_stored("separate").on_platform());
        assert!(!ChargeType::from_stored("direct").on_platform());
    }
}
