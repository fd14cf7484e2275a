//! Calendar arithmetic for billing periods: unix seconds to civil dates and back, months added
//! as Stripe bills them (an anchor on the 31st bills on the last day of shorter months).

use serde_json::Value;

pub(crate) const DAY: i64 = 86_400;

pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub(crate) fn add_months(ts: i64, months: i64) -> i64 {
    let (days, secs) = (ts.div_euclid(DAY), ts.rem_euclid(DAY));
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + (m - 1) + months;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let last =
        days_from_civil(ny + i64::from(nm == 12), nm % 12 + 1, 1) - days_from_civil(ny, nm, 1);
    days_from_civil(ny, nm, d.min(last)) * DAY + secs
}

/// `anchor` moved on by `n` intervals of `price`'s recurrence (calendar months and years, as
/// Stripe bills: an anchor on the 31st bills on the last day of shorter months).
pub(crate) fn add_intervals(anchor: i64, price: &Value, n: i64) -> i64 {
    let count = price["recurring"]["interval_count"].as_i64().unwrap_or(1) * n;
    match price["recurring"]["interval"].as_str().unwrap_or("month") {
        "day" => anchor + count * DAY,
        "week" => anchor + count * 7 * DAY,
        "year" => add_months(anchor, 12 * count),
        _ => add_months(anchor, count),
    }
}

/// The end of the period starting at `start`, on the billing cycle of `anchor`.
pub(crate) fn period_end_after(anchor: i64, price: &Value, start: i64) -> i64 {
    let mut n = 1;
    loop {
        let end = add_intervals(anchor, price, n);
        if end > start {
            return end;
        }
        n += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Objects

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn months_are_calendar_months_clamped_to_their_end() {
        let jan31 = days_from_civil(2025, 1, 31) * DAY + 3600;
        assert_eq!(civil_from_days(add_months(jan31, 1) / DAY), (2025, 2, 28));
        assert_eq!(add_months(jan31, 1) % DAY, 3600);
        assert_eq!(civil_from_days(add_months(jan31, 2) / DAY), (2025, 3, 31));
        assert_eq!(civil_from_days(add_months(jan31, 13) / DAY), (2026, 2, 28));
        let price = json!({ "recurring": { "interval": "month", "interval_count": 1 } });
        let feb28 = add_months(jan31, 1);
        assert_eq!(
            civil_from_days(period_end_after(jan31, &price, feb28) / DAY),
            (2025, 3, 31)
        );
    }
}
