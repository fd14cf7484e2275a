//! Parameters as Stripe checks them on the payments routes: unknown names refused, amounts,
//! currencies, booleans, metadata with its bounds, and money written as Stripe writes it in
//! error messages.

use serde_json::{json, Map, Value};

use crate::http::{ApiError, Form};

/// The currencies Stripe charges in (lowercase ISO 4217).
const CURRENCIES: &[&str] = &[
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd",
    "bdt", "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad",
    "cdf", "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp",
    "etb", "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl",
    "htg", "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf",
    "krw", "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd",
    "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok",
    "npr", "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd",
    "rub", "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl",
    "thb", "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
];

/// Currencies without a minor unit: amounts are whole units (`jpy` 500 is ¥500).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Currencies with three decimals.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// The smallest amount Stripe charges, in the currency's minor unit, where it is documented.
const MINIMUM: &[(&str, i64)] = &[
    ("usd", 50),
    ("aed", 200),
    ("aud", 50),
    ("bgn", 100),
    ("brl", 50),
    ("cad", 50),
    ("chf", 50),
    ("czk", 1500),
    ("dkk", 250),
    ("eur", 50),
    ("gbp", 30),
    ("hkd", 400),
    ("huf", 17500),
    ("inr", 50),
    ("jpy", 50),
    ("mxn", 1000),
    ("myr", 200),
    ("nok", 300),
    ("nzd", 50),
    ("pln", 200),
    ("ron", 200),
    ("sek", 300),
    ("sgd", 50),
    ("thb", 1000),
];

/// The largest amount (eight digits).
const MAXIMUM: i64 = 99_999_999;

const METADATA_KEYS: usize = 50;
const METADATA_KEY_LEN: usize = 40;
const METADATA_VALUE_LEN: usize = 500;

/// Refuses a parameter whose top-level name is not in `allowed` (`expand` always is), as
/// Stripe does: `Received unknown parameter: foo`.
pub(crate) fn reject_unknown(form: &Form, allowed: &[&str]) -> Result<(), ApiError> {
    for (key, _) in form.pairs() {
        let name = key.split('[').next().unwrap_or(key);
        if name != "expand" && !allowed.contains(&name) {
            return Err(
                ApiError::invalid(format!("Received unknown parameter: {name}")).param(name),
            );
        }
    }
    Ok(())
}

/// Refuses `a` and `b` together.
pub(crate) fn exclusive(form: &Form, a: &str, b: &str) -> Result<(), ApiError> {
    if form.has(a) && form.has(b) {
        return Err(ApiError::invalid(format!(
            "You may only specify one of these parameters: {a}, {b}."
        ))
        .param(a));
    }
    Ok(())
}

/// An integer parameter.
pub(crate) fn integer(form: &Form, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(raw) = form.get(name) else {
        return Ok(None);
    };
    raw.parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::invalid(format!("Invalid integer: {raw}")).param(name))
}

/// A positive integer parameter (an amount, a quantity).
pub(crate) fn positive(form: &Form, name: &str) -> Result<Option<i64>, ApiError> {
    match integer(form, name)? {
        Some(n) if n < 1 => {
            Err(ApiError::invalid("This value must be greater than or equal to 1.").param(name))
        }
        n => Ok(n),
    }
}

/// A non-negative integer parameter (an application fee may be 0).
pub(crate) fn non_negative(form: &Form, name: &str) -> Result<Option<i64>, ApiError> {
    match integer(form, name)? {
        Some(n) if n < 0 => {
            Err(ApiError::invalid("This value must be greater than or equal to 0.").param(name))
        }
        n => Ok(n),
    }
}

/// A charge amount in `currency`, within Stripe's minimum and maximum.
pub(crate) fn charge_amount(form: &Form, name: &str, currency: &str) -> Result<i64, ApiError> {
    let amount = positive(form, name)?.ok_or_else(|| ApiError::missing(name))?;
    check_charge_amount(amount, currency, name)?;
    Ok(amount)
}

pub(crate) fn check_charge_amount(amount: i64, currency: &str, name: &str) -> Result<(), ApiError> {
    if let Some((_, min)) = MINIMUM.iter().find(|(c, _)| *c == currency) {
        if amount < *min {
            return Err(ApiError::invalid(format!(
                "Amount must be at least {} {currency}",
                money(*min, currency)
            ))
            .code("amount_too_small")
            .param(name));
        }
    }
    if amount > MAXIMUM {
        return Err(ApiError::invalid(format!(
            "Amount must be no more than {}",
            money(MAXIMUM, currency)
        ))
        .code("amount_too_large")
        .param(name));
    }
    Ok(())
}

/// A currency parameter, lowercased (Stripe accepts `USD` and answers `usd`).
pub(crate) fn currency(form: &Form, name: &str) -> Result<String, ApiError> {
    let raw = form.get(name).ok_or_else(|| ApiError::missing(name))?;
    valid_currency(raw, name)
}

pub(crate) fn valid_currency(raw: &str, name: &str) -> Result<String, ApiError> {
    let c = raw.to_ascii_lowercase();
    if CURRENCIES.contains(&c.as_str()) {
        return Ok(c);
    }
    Err(ApiError::invalid(format!(
        "Invalid currency: {c}. Stripe currently supports these currencies: {}",
        CURRENCIES.join(", ")
    ))
    .param(name))
}

/// A boolean parameter (`true` / `false`).
pub(crate) fn boolean(form: &Form, name: &str) -> Result<Option<bool>, ApiError> {
    match form.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid(format!("Invalid boolean: {other}")).param(name)),
    }
}

/// One of `choices`.
pub(crate) fn one_of<'f>(
    form: &'f Form,
    name: &str,
    choices: &[&str],
) -> Result<Option<&'f str>, ApiError> {
    match form.get(name) {
        Some(v) if !choices.contains(&v) => {
            let list = match choices {
                [one] => (*one).to_owned(),
                [init @ .., last] => format!("{}, or {last}", init.join(", ")),
                [] => String::new(),
            };
            Err(ApiError::invalid(format!("Invalid {name}: must be one of {list}")).param(name))
        }
        v => Ok(v),
    }
}

/// A new object's `metadata` from `prefix[key]=value` pairs (empty values are not set).
pub(crate) fn metadata(form: &Form, prefix: &str) -> Result<Map<String, Value>, ApiError> {
    let mut m = Map::new();
    update_metadata(&mut m, form, prefix)?;
    Ok(m)
}

/// Applies `prefix[key]=value` to `metadata` as an update does: an empty value unsets the key,
/// and `prefix=` (empty) clears them all.
pub(crate) fn update_metadata(
    metadata: &mut Map<String, Value>,
    form: &Form,
    prefix: &str,
) -> Result<(), ApiError> {
    if form.pairs().any(|(k, v)| k == prefix && v.is_empty()) {
        metadata.clear();
    }
    for (key, value) in form.children(prefix) {
        let param = format!("{prefix}[{key}]");
        if key.chars().count() > METADATA_KEY_LEN {
            return Err(ApiError::invalid(format!(
                "Metadata keys can have up to {METADATA_KEY_LEN} characters, but you passed \
                 in a key that is {} characters. Invalid key: '{key}'",
                key.chars().count()
            ))
            .param(&param));
        }
        if value.chars().count() > METADATA_VALUE_LEN {
            return Err(ApiError::invalid(format!(
                "Metadata values can have up to {METADATA_VALUE_LEN} characters, but you \
                 passed in a value that is {} characters. Invalid value: '{value}'",
                value.chars().count()
            ))
            .param(&param));
        }
        if value.is_empty() {
            metadata.remove(key);
        } else {
            metadata.insert(key.to_owned(), json!(value));
        }
    }
    if metadata.len() > METADATA_KEYS {
        return Err(ApiError::invalid(format!(
            "You can have up to {METADATA_KEYS} keys in metadata, but you passed in {}.",
            metadata.len()
        ))
        .param(prefix));
    }
    Ok(())
}

/// `$10.00`, `€10.00`, `¥1000`, `10.000 KWD`: an amount as Stripe writes it in messages.
pub(crate) fn money(amount: i64, currency: &str) -> String {
    let digits = if ZERO_DECIMAL.contains(&currency) {
        0
    } else if THREE_DECIMAL.contains(&currency) {
        3
    } else {
        2
    };
    let units = if digits == 0 {
        amount.to_string()
    } else {
        let scale = 10_i64.pow(digits);
        format!(
            "{}.{:0width$}",
            amount / scale,
            (amount % scale).abs(),
            width = digits as usize
        )
    };
    match currency {
        "usd" => format!("${units}"),
        "eur" => format!("€{units}"),
        "gbp" => format!("£{units}"),
        "jpy" => format!("¥{units}"),
        other => format!("{units} {}", other.to_uppercase()),
    }
}

/// The `expand` parameter's paths (`expand[]=a`, `expand[0]=a`, `expand=a`).
pub(crate) fn expand(form: &Form) -> Vec<String> {
    form.all("expand").into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_as_stripe_writes_it() {
        assert_eq!(money(2000, "usd"), "$20.00");
        assert_eq!(money(5, "eur"), "€0.05");
        assert_eq!(money(1000, "jpy"), "¥1000");
        assert_eq!(money(1500, "kwd"), "1.500 KWD");
        assert_eq!(money(99_999_999, "usd"), "$999999.99");
    }

    #[test]
    fn metadata_updates_unset_and_clear() {
        let mut m = Map::new();
        let form = Form::parse(b"metadata[a]=1&metadata[b]=2");
        update_metadata(&mut m, &form, "metadata").unwrap();
        assert_eq!(m.len(), 2);
        let form = Form::parse(b"metadata[a]=&metadata[c]=3");
        update_metadata(&mut m, &form, "metadata").unwrap();
        assert_eq!(Value::Object(m.clone()), json!({"b": "2", "c": "3"}));
        let form = Form::parse(b"metadata=");
        update_metadata(&mut m, &form, "metadata").unwrap();
        assert!(m.is_empty());
        let long = format!("metadata[{}]=x", "k".repeat(41));
        assert!(metadata(&Form::parse(long.as_bytes()), "metadata").is_err());
    }
}
