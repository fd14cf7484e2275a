//! Stripe's test cards as the simulator takes them: the cards and their test PaymentMethods
//! (`pm_card_visa`, …), raw card numbers with their expiry and CVC checks, and the PaymentMethod
//! objects a payment leaves behind.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::http::{ApiError, Form};
use crate::payments::id;
use crate::state::{now, rfc3339, State as SimState};

/// A test card, as a customer pays with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    /// 4242 4242 4242 4242 (`pm_card_visa`): succeeds.
    Visa,
    /// 4000 0000 0000 0002 (`pm_card_chargeDeclined`): declined, `generic_decline`.
    Declined,
    /// 4000 0000 0000 9995 (`pm_card_chargeDeclinedInsufficientFunds`): declined,
    /// `insufficient_funds`.
    InsufficientFunds,
}

impl Card {
    /// The card number.
    pub fn number(self) -> &'static str {
        self.test_card().number
    }

    /// The test PaymentMethod that stands for the card (`pm_card_visa`, …).
    pub fn payment_method(self) -> &'static str {
        self.test_card().payment_method
    }

    pub(crate) fn test_card(self) -> &'static TestCard {
        let pm = match self {
            Card::Visa => "pm_card_visa",
            Card::Declined => "pm_card_chargeDeclined",
            Card::InsufficientFunds => "pm_card_chargeDeclinedInsufficientFunds",
        };
        TestCard::by_payment_method(pm).expect("every Card is in the table")
    }
}

/// Stripe's test cards the simulator knows: number, test PaymentMethod, brand, and the error
/// a charge meets (`code`, `decline_code`, message), if any.
pub(crate) struct TestCard {
    pub(crate) number: &'static str,
    pub(crate) payment_method: &'static str,
    pub(crate) brand: &'static str,
    /// `code`, `decline_code`, message.
    pub(crate) decline: Option<(&'static str, &'static str, &'static str)>,
}

const DECLINED: &str = "Your card was declined.";

const TEST_CARDS: &[TestCard] = &[
    TestCard {
        number: "4242424242424242",
        payment_method: "pm_card_visa",
        brand: "visa",
        decline: None,
    },
    TestCard {
        number: "4000056655665556",
        payment_method: "pm_card_visa_debit",
        brand: "visa",
        decline: None,
    },
    TestCard {
        number: "5555555555554444",
        payment_method: "pm_card_mastercard",
        brand: "mastercard",
        decline: None,
    },
    TestCard {
        number: "4000000000000002",
        payment_method: "pm_card_chargeDeclined",
        brand: "visa",
        decline: Some(("card_declined", "generic_decline", DECLINED)),
    },
    TestCard {
        number: "4000000000009995",
        payment_method: "pm_card_chargeDeclinedInsufficientFunds",
        brand: "visa",
        decline: Some((
            "card_declined",
            "insufficient_funds",
            "Your card has insufficient funds.",
        )),
    },
    TestCard {
        number: "4000000000009987",
        payment_method: "pm_card_chargeDeclinedLostCard",
        brand: "visa",
        decline: Some(("card_declined", "lost_card", DECLINED)),
    },
    TestCard {
        number: "4000000000009979",
        payment_method: "pm_card_chargeDeclinedStolenCard",
        brand: "visa",
        decline: Some(("card_declined", "stolen_card", DECLINED)),
    },
    TestCard {
        number: "4000000000000341",
        payment_method: "pm_card_chargeCustomerFail",
        brand: "visa",
        decline: Some(("card_declined", "generic_decline", DECLINED)),
    },
    TestCard {
        number: "4000000000000069",
        payment_method: "pm_card_chargeDeclinedExpiredCard",
        brand: "visa",
        decline: Some(("expired_card", "expired_card", "Your card has expired.")),
    },
    TestCard {
        number: "4000000000000127",
        payment_method: "pm_card_chargeDeclinedIncorrectCvc",
        brand: "visa",
        decline: Some((
            "incorrect_cvc",
            "incorrect_cvc",
            "Your card's security code is incorrect.",
        )),
    },
    TestCard {
        number: "4000000000000119",
        payment_method: "pm_card_chargeDeclinedProcessingError",
        brand: "visa",
        decline: Some((
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        )),
    },
];

impl TestCard {
    pub(crate) fn by_payment_method(pm: &str) -> Option<&'static TestCard> {
        TEST_CARDS.iter().find(|c| c.payment_method == pm)
    }

    fn by_number(number: &str) -> Option<&'static TestCard> {
        let digits: String = number.chars().filter(|c| !c.is_whitespace()).collect();
        TEST_CARDS.iter().find(|c| c.number == digits)
    }

    pub(crate) fn last4(&self) -> &'static str {
        &self.number[self.number.len() - 4..]
    }
}

/// The card a request pays with: `payment_method` (a test PaymentMethod, or one the simulator
/// made) or `payment_method_data[card][number]`.
pub(crate) fn card_from_form(
    state: &SimState,
    form: &Form,
) -> Result<Option<&'static TestCard>, ApiError> {
    if let Some(pm) = form.get("payment_method") {
        if let Some(card) = TestCard::by_payment_method(pm) {
            return Ok(Some(card));
        }
        if let Some(card) = state
            .hidden
            .get(pm)
            .and_then(|h| h["card"].as_str())
            .and_then(TestCard::by_payment_method)
        {
            return Ok(Some(card));
        }
        return Err(ApiError::invalid(format!("No such PaymentMethod: '{pm}'"))
            .code("resource_missing")
            .param("payment_method"));
    }
    if !form.has("payment_method_data") {
        return Ok(None);
    }
    match form.get("payment_method_data[type]") {
        None => return Err(ApiError::missing("payment_method_data[type]")),
        Some("card") => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "The simulator takes only card payments; payment_method_data[type] was \
                 '{other}'."
            ))
            .param("payment_method_data[type]"))
        }
    }
    let number = form
        .get("payment_method_data[card][number]")
        .ok_or_else(|| ApiError::missing("payment_method_data[card][number]"))?;
    if let Some(card) = TestCard::by_number(number) {
        check_expiry_and_cvc(form)?;
        return Ok(Some(card));
    }
    let err = if luhn(number) {
        ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            "Your card was declined. Your request was in test mode, but used a non test card. \
             For a list of valid test cards, visit: https://stripe.com/docs/testing.",
        )
        .code("card_declined")
        .with("decline_code", json!("test_mode_live_card"))
    } else {
        ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            "Your card number is incorrect.",
        )
        .code("incorrect_number")
    };
    Err(err.param("payment_method_data[card][number]"))
}

/// `payment_method_data[card][exp_month|exp_year|cvc]`, when given, as Stripe checks them: a
/// month 1–12, a year (two or four digits) not in the past, a CVC of 3 or 4 digits.
fn check_expiry_and_cvc(form: &Form) -> Result<(), ApiError> {
    let card_error = |code: &'static str, message: &str, param: &str| {
        ApiError::new(StatusCode::PAYMENT_REQUIRED, "card_error", message)
            .code(code)
            .param(param)
    };
    let today = rfc3339(now());
    let this_year: i64 = today[..4].parse().unwrap_or(2000);
    let this_month: i64 = today[5..7].parse().unwrap_or(1);
    let month_param = "payment_method_data[card][exp_month]";
    let month = match form.get(month_param) {
        None => None,
        Some(m) => match m.trim().parse::<i64>() {
            Ok(m) if (1..=12).contains(&m) => Some(m),
            _ => {
                return Err(card_error(
                    "invalid_expiry_month",
                    "Your card's expiration month is invalid.",
                    month_param,
                ))
            }
        },
    };
    let year_param = "payment_method_data[card][exp_year]";
    if let Some(y) = form.get(year_param) {
        let year = match y.trim().parse::<i64>() {
            Ok(y) if (0..100).contains(&y) => 2000 + y,
            Ok(y) if (1000..10000).contains(&y) => y,
            _ => -1,
        };
        let past = year < this_year || (year == this_year && month.is_some_and(|m| m < this_month));
        if past {
            return Err(card_error(
                "invalid_expiry_year",
                "Your card's expiration year is invalid.",
                year_param,
            ));
        }
    }
    let cvc_param = "payment_method_data[card][cvc]";
    if let Some(cvc) = form.get(cvc_param) {
        if !(3..=4).contains(&cvc.len()) || !cvc.chars().all(|c| c.is_ascii_digit()) {
            return Err(card_error(
                "invalid_cvc",
                "Your card's security code is invalid.",
                cvc_param,
            ));
        }
    }
    Ok(())
}

fn luhn(number: &str) -> bool {
    let digits: Vec<u32> = number
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if digits.len() < 12 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A new PaymentMethod id standing for `card` (remembered, so it can confirm later).
pub(crate) fn payment_method_id(state: &mut SimState, card: &TestCard) -> String {
    let pm = id("pm_1");
    state
        .hidden
        .insert(pm.clone(), json!({ "card": card.payment_method }));
    pm
}

pub(crate) fn payment_method_object(pm: &str, card: &TestCard, livemode: &Value) -> Value {
    json!({
        "id": pm,
        "object": "payment_method",
        "type": "card",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": { "city": null, "country": null, "line1": null, "line2": null,
                         "postal_code": null, "state": null },
            "email": null, "name": null, "phone": null, "tax_id": null,
        },
        "card": {
            "brand": card.brand,
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "funding": "credit",
            "last4": card.last4(),
        },
        "created": now(),
        "customer": null,
        "livemode": livemode,
        "metadata": {},
    })
}
