//! How pages write amounts, and read the ones an operator types: pure functions, tested here.

use crate::domain::order::Currency;

/// An amount in the currency's smallest unit, written in its major unit with its code:
/// `1,234.56 USD`, `500 JPY`, `-0.05 EUR`. Zero-decimal currencies (Stripe's list) have no
/// fraction; an unknown code is taken to have two decimals.
pub fn format_amount(minor: i64, currency: &str) -> String {
    let code = currency.to_ascii_uppercase();
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if zero_decimal(currency) {
        format!("{sign}{} {code}", grouped(abs))
    } else {
        format!("{sign}{}.{:02} {code}", grouped(abs / 100), abs % 100)
    }
}

/// An amount typed in the currency's major unit (`12.50`, `1,234.50`, `500` yen) as its
/// smallest unit; `None` when it is not a plain non-negative number with at most the
/// currency's decimals. A comma is taken only as a thousands separator between groups of three
/// digits: `12,50` (a decimal comma) is refused rather than read as 1,250.
pub fn parse_amount(text: &str, currency: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let whole: String = if whole.contains(',') {
        let mut groups = whole.split(',');
        let first = groups.next()?;
        let grouped = (1..=3).contains(&first.len())
            && numeric(first)
            && groups.all(|g| g.len() == 3 && numeric(g));
        if !grouped {
            return None;
        }
        whole.replace(',', "")
    } else {
        whole.to_owned()
    };
    let places = if zero_decimal(currency) { 0 } else { 2 };
    if (whole.is_empty() && fraction.is_empty())
        || !numeric(&whole)
        || !numeric(fraction)
        || fraction.len() > places
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<places$}").parse().ok()?
    };
    whole
        .checked_mul(10_i64.pow(places as u32))?
        .checked_add(fraction)
}

/// The smallest-unit amount as it would be typed back into `parse_amount`: `12.50`, `500`.
pub fn major_units(minor: i64, currency: &str) -> String {
    let abs = minor.unsigned_abs();
    let sign = if minor < 0 { "-" } else { "" };
    if zero_decimal(currency) {
        format!("{sign}{abs}")
    } else {
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

fn zero_decimal(currency: &str) -> bool {
    Currency::parse(currency).is_ok_and(|c| c.zero_decimal())
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_their_currency() {
        assert_eq!(format_amount(1999, "usd"), "19.99 USD");
        assert_eq!(format_amount(0, "usd"), "0.00 USD");
        assert_eq!(format_amount(5, "eur"), "0.05 EUR");
        assert_eq!(format_amount(-5, "eur"), "-0.05 EUR");
        assert_eq!(format_amount(123_456_789, "gbp"), "1,234,567.89 GBP");
        assert_eq!(format_amount(500, "jpy"), "500 JPY");
        assert_eq!(format_amount(1_500_000, "krw"), "1,500,000 KRW");
        assert_eq!(format_amount(1000, "xyz"), "10.00 XYZ");
        assert_eq!(
            format_amount(i64::MIN, "jpy"),
            "-9,223,372,036,854,775,808 JPY"
        );
    }

    #[test]
    fn typed_amounts_become_smallest_units() {
        assert_eq!(parse_amount("12.50", "usd"), Some(1250));
        assert_eq!(parse_amount("12.5", "usd"), Some(1250));
        assert_eq!(parse_amount(" 1,234 ", "usd"), Some(123_400));
        assert_eq!(parse_amount(".05", "eur"), Some(5));
        assert_eq!(parse_amount("500", "jpy"), Some(500));
        assert_eq!(parse_amount("500.5", "jpy"), None);
        assert_eq!(parse_amount("1.234", "usd"), None);
        assert_eq!(parse_amount("-1", "usd"), None);
        assert_eq!(parse_amount("1e3", "usd"), None);
        assert_eq!(parse_amount("", "usd"), None);
        assert_eq!(parse_amount(".", "usd"), None);
        assert_eq!(parse_amount("99999999999999999999", "usd"), None);
        // A decimal comma is refused, never read as a thousands separator.
        assert_eq!(parse_amount("12,50", "eur"), None);
        assert_eq!(parse_amount("1,2345", "eur"), None);
        assert_eq!(parse_amount(",500", "eur"), None);
        assert_eq!(parse_amount("1,234,567.89", "usd"), Some(123_456_789));
        assert_eq!(parse_amount("12 50", "eur"), None);
        assert_eq!(major_units(1250, "usd"), "12.50");
        assert_eq!(major_units(500, "jpy"), "500");
        assert_eq!(
            parse_amount(&major_units(70_001, "usd"), "usd"),
            Some(70_001)
        );
    }
}
