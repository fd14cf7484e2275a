//! Marketplace money: how an order is charged, and how a refund of a multi-vendor order is
//! shared out between the vendors' transfers.

use super::Invalid;

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

/// How much of each split's transfer should be reversed once `refunded` of an order of
/// `amount` has been refunded: each split's share of the refund, rounded down, with the units
/// left by rounding given to the largest remainders (ties to the earlier split), so the sum is
/// the refund less the platform's share, rounded to the nearest unit. A full refund reverses
/// every split whole.
pub fn reversal_targets(amount: i64, refunded: i64, splits: &[i64]) -> Vec<i64> {
    if amount <= 0 {
        return vec![0; splits.len()];
    }
    let refunded = refunded.clamp(0, amount) as i128;
    let amount_w = amount as i128;
    let shares: Vec<(i128, i128)> = splits
        .iter()
        .map(|&s| {
            let exact = refunded * s as i128;
            (exact / amount_w, exact % amount_w)
        })
        .collect();
    let total: i128 = splits.iter().map(|&s| s as i128).sum();
    // Round half up: the refund's vendor part, in whole units.
    let wanted = (2 * refunded * total + amount_w) / (2 * amount_w);
    let floors: i128 = shares.iter().map(|(f, _)| f).sum();
    let mut left = (wanted - floors).max(0);
    let mut order: Vec<usize> = (0..splits.len()).collect();
    order.sort_by(|&a, &b| shares[b].1.cmp(&shares[a].1).then(a.cmp(&b)));
    let mut out: Vec<i64> = shares.iter().map(|(f, _)| *f as i64).collect();
    for i in order {
        if left == 0 {
            break;
        }
        if shares[i].1 > 0 && out[i] < splits[i] {
            out[i] += 1;
            left -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_refund_reverses_every_split_whole() {
        assert_eq!(
            reversal_targets(10_000, 10_000, &[3333, 3333, 3000]),
            vec![3333, 3333, 3000]
        );
        assert_eq!(reversal_targets(999, 999, &[500, 499]), vec![500, 499]);
    }

    #[test]
    fn a_partial_refund_is_shared_pro_rata_and_sums_to_the_vendors_part() {
        // 6000 and 3000 of 10000 (the platform keeps 1000): a 5000 refund reverses 3000 + 1500.
        assert_eq!(
            reversal_targets(10_000, 5000, &[6000, 3000]),
            vec![3000, 1500]
        );
        // Rounding: 1/3 of 100 among three equal splits of 33 (the platform keeps 1).
        let t = reversal_targets(100, 50, &[33, 33, 33]);
        assert_eq!(t.iter().sum::<i64>(), 50);
        assert!(t.iter().all(|&x| x == 16 || x == 17), "{t:?}");
    }

    #[test]
    fn at_every_level_the_vendors_part_is_within_half_a_unit() {
        let splits = [1234, 2345, 3456, 7];
        let amount = 7500;
        for refunded in 0..=amount {
            let t = reversal_targets(amount, refunded, &splits);
            let sum: i64 = t.iter().sum();
            let exact = refunded as f64 * splits.iter().sum::<i64>() as f64 / amount as f64;
            assert!(
                (sum as f64 - exact).abs() <= 0.5 + 1e-9,
                "{refunded}: {sum} vs {exact}"
            );
            assert!(t.iter().zip(&splits).all(|(x, s)| x <= s));
        }
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
