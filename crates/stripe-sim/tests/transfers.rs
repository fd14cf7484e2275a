//! Connect money movement and the catalog against a real HTTP client: destination charges,
//! transfers from a charge, reversals, and products, prices and Plans.

use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use stripe_sim::StripeSim;

fn call(sim: &StripeSim, key: &str, method: Method, path: &str) -> RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("{}{path}", sim.url))
        .bearer_auth(key)
}

async fn send(r: RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A platform PaymentIntent, confirmed with Stripe's test card.
async fn paid_platform_charge(sim: &StripeSim, extra: &[(&str, &str)]) -> Value {
    let mut form = vec![("amount", "4200"), ("currency", "usd")];
    form.extend_from_slice(extra);
    let (status, pi) =
        send(call(sim, &sim.platform_key, Method::POST, "/v1/payment_intents").form(&form)).await;
    assert_eq!(status, 200, "{pi}");
    let path = format!("/v1/payment_intents/{}/confirm", pi["id"].as_str().unwrap());
    let (status, pi) = send(
        call(sim, &sim.platform_key, Method::POST, &path)
            .form(&[("payment_method", "pm_card_visa")]),
    )
    .await;
    assert_eq!(
        (status, pi["status"].as_str()),
        (200, Some("succeeded")),
        "{pi}"
    );
    let charge = pi["latest_charge"].as_str().unwrap().to_owned();
    send(call(
        sim,
        &sim.platform_key,
        Method::GET,
        &format!("/v1/charges/{charge}"),
    ))
    .await
    .1
}

#[tokio::test]
async fn a_destination_charge_transfers_all_but_the_fee() {
    let sim = StripeSim::start().await;
    let vendor = sim.add_account(false);
    let charge = paid_platform_charge(
        &sim,
        &[
            ("transfer_data[destination]", &vendor.id),
            ("application_fee_amount", "200"),
            ("transfer_group", "ord_1"),
        ],
    )
    .await;
    let tr = charge["transfer"]
        .as_str()
        .expect("the charge names its transfer");
    let (status, transfer) = send(call(
        &sim,
        &sim.platform_key,
        Method::GET,
        &format!("/v1/transfers/{tr}"),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(transfer["amount"], 4000);
    assert_eq!(transfer["destination"], vendor.id.as_str());
    assert_eq!(transfer["source_transaction"], charge["id"]);
    assert_eq!(transfer["transfer_group"], "ord_1");
    // The account sees the payment it received, not the platform's transfer.
    let py = transfer["destination_payment"].as_str().unwrap();
    let (status, payment) = send(call(
        &sim,
        &vendor.secret_key,
        Method::GET,
        &format!("/v1/charges/{py}"),
    ))
    .await;
    assert_eq!(
        (status, payment["amount"].as_i64()),
        (200, Some(4000)),
        "{payment}"
    );
}

#[tokio::test]
async fn transfers_from_a_charge_are_bounded_by_it_and_reverse_in_parts() {
    let sim = StripeSim::start().await;
    let (a, b) = (sim.add_account(false), sim.add_account(false));
    let charge = paid_platform_charge(&sim, &[("transfer_group", "ord_2")]).await;
    let ch = charge["id"].as_str().unwrap();
    let transfer = |dest: &str, amount: &str| {
        call(&sim, &sim.platform_key, Method::POST, "/v1/transfers").form(&[
            ("amount", amount),
            ("currency", "usd"),
            ("destination", dest),
            ("source_transaction", ch),
            ("transfer_group", "ord_2"),
            ("metadata[bursar_order_id]", "ord_2"),
        ])
    };
    let (status, ta) = send(transfer(&a.id, "2500")).await;
    assert_eq!(status, 200, "{ta}");
    let (status, tb) = send(transfer(&b.id, "1000")).await;
    assert_eq!(status, 200, "{tb}");
    let (status, over) = send(transfer(&a.id, "701")).await;
    assert_eq!(status, 400, "more than the charge has left: {over}");
    let (status, unknown) = send(transfer("acct_1NotConnected00", "100")).await;
    assert_eq!(status, 400, "{unknown}");
    // A connected account's own key cannot move the platform's money.
    let (status, _) = send(
        call(&sim, &a.secret_key, Method::POST, "/v1/transfers").form(&[
            ("amount", "100"),
            ("currency", "usd"),
            ("destination", &b.id),
        ]),
    )
    .await;
    assert_eq!(status, 400);

    let (_, listed) = send(call(
        &sim,
        &sim.platform_key,
        Method::GET,
        "/v1/transfers?transfer_group=ord_2",
    ))
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    let reversals = format!("/v1/transfers/{}/reversals", ta["id"].as_str().unwrap());
    let (status, r1) =
        send(call(&sim, &sim.platform_key, Method::POST, &reversals).form(&[("amount", "1000")]))
            .await;
    assert_eq!((status, r1["amount"].as_i64()), (200, Some(1000)), "{r1}");
    let (status, r2) = send(call(&sim, &sim.platform_key, Method::POST, &reversals)).await;
    assert_eq!(
        (status, r2["amount"].as_i64()),
        (200, Some(1500)),
        "the rest: {r2}"
    );
    let (status, _) = send(call(&sim, &sim.platform_key, Method::POST, &reversals)).await;
    assert_eq!(status, 400, "nothing left to reverse");
    let (_, now) = send(call(
        &sim,
        &sim.platform_key,
        Method::GET,
        &format!("/v1/transfers/{}", ta["id"].as_str().unwrap()),
    ))
    .await;
    assert_eq!(
        (now["amount_reversed"].as_i64(), now["reversed"].as_bool()),
        (Some(2500), Some(true))
    );
}

#[tokio::test]
async fn products_prices_and_plans_are_made_and_listed() {
    let sim = StripeSim::start().await;
    let key = sim.platform_key.clone();
    let (status, price) = send(call(&sim, &key, Method::POST, "/v1/prices").form(&[
        ("unit_amount", "2900"),
        ("currency", "usd"),
        ("recurring[interval]", "month"),
        ("product_data[name]", "Marketplace plan"),
    ]))
    .await;
    assert_eq!(status, 200, "{price}");
    assert_eq!(price["type"], "recurring");
    let product = price["product"].as_str().unwrap();
    let (status, p) = send(call(
        &sim,
        &key,
        Method::GET,
        &format!("/v1/products/{product}"),
    ))
    .await;
    assert_eq!(
        (status, p["name"].as_str()),
        (200, Some("Marketplace plan"))
    );
    let (status, plan) = send(call(&sim, &key, Method::POST, "/v1/plans").form(&[
        ("amount", "900"),
        ("currency", "usd"),
        ("interval", "year"),
        ("product", product),
    ]))
    .await;
    assert_eq!(
        (status, plan["object"].as_str()),
        (200, Some("plan")),
        "{plan}"
    );
    let (_, prices) = send(call(
        &sim,
        &key,
        Method::GET,
        &format!("/v1/prices?product={product}"),
    ))
    .await;
    assert_eq!(
        prices["data"].as_array().unwrap().len(),
        2,
        "the price and the plan's price"
    );
    let (_, plans) = send(call(&sim, &key, Method::GET, "/v1/plans")).await;
    assert_eq!(plans["data"].as_array().unwrap().len(), 2);
    let (status, bad) = send(call(&sim, &key, Method::POST, "/v1/prices").form(&[
        ("unit_amount", "100"),
        ("currency", "usd"),
        ("product", "prod_unknown"),
    ]))
    .await;
    assert_eq!(status, 400, "{bad}");
    let (status, _) = send(
        call(&sim, &key, Method::POST, "/v1/prices")
            .form(&[("currency", "usd"), ("product_data[name]", "No amount")]),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_destination_refund_reverses_the_transfer_in_proportion() {
    let sim = StripeSim::start().await;
    let vendor = sim.add_account(false);
    let charge = paid_platform_charge(
        &sim,
        &[
            ("transfer_data[destination]", &vendor.id),
            ("application_fee_amount", "200"),
        ],
    )
    .await;
    let tr = charge["transfer"].as_str().unwrap().to_owned();
    let refund = |amount: Option<&str>| {
        let mut form = vec![
            ("charge", charge["id"].as_str().unwrap().to_owned()),
            ("reverse_transfer", "true".to_owned()),
            ("refund_application_fee", "true".to_owned()),
        ];
        if let Some(a) = amount {
            form.push(("amount", a.to_owned()));
        }
        call(&sim, &sim.platform_key, Method::POST, "/v1/refunds").form(&form)
    };
    // 2100 of 4200 refunded: half of the 4000 transferred comes back.
    let (status, r) = send(refund(Some("2100"))).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["transfer_reversal"].is_string(), "{r}");
    let (_, t) = send(call(
        &sim,
        &sim.platform_key,
        Method::GET,
        &format!("/v1/transfers/{tr}"),
    ))
    .await;
    assert_eq!(t["amount_reversed"], 2000);
    // The rest: all that is left of the transfer.
    let (status, _) = send(refund(None)).await;
    assert_eq!(status, 200);
    let (_, t) = send(call(
        &sim,
        &sim.platform_key,
        Method::GET,
        &format!("/v1/transfers/{tr}"),
    ))
    .await;
    assert_eq!(
        (t["amount_reversed"].as_i64(), t["reversed"].as_bool()),
        (Some(4000), Some(true))
    );
}

#[tokio::test]
async fn balances_move_with_charges_transfers_and_refunds_and_payouts_are_paid_from_them() {
    let sim = StripeSim::start().await;
    let vendor = sim.add_account(false);
    let charge = paid_platform_charge(
        &sim,
        &[
            ("transfer_data[destination]", &vendor.id),
            ("application_fee_amount", "200"),
        ],
    )
    .await;
    assert_eq!(sim.available(&vendor.id).get("usd"), Some(&4000));
    // The platform kept its fee.
    assert_eq!(sim.available("acct_platform").get("usd"), Some(&200));
    let as_vendor = |method, path: &str| {
        call(&sim, &sim.platform_key, method, path).header("Stripe-Account", vendor.id.clone())
    };
    let (status, balance) = send(as_vendor(Method::GET, "/v1/balance")).await;
    assert_eq!(status, 200);
    assert_eq!(balance["available"][0]["amount"], 4000, "{balance}");
    // A refund that reverses the transfer takes the vendor's share back.
    let (status, _) = send(
        call(&sim, &sim.platform_key, Method::POST, "/v1/refunds").form(&[
            ("charge", charge["id"].as_str().unwrap()),
            ("amount", "2100"),
            ("reverse_transfer", "true"),
        ]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sim.available(&vendor.id).get("usd"), Some(&2000));
    // A payout beyond the balance is refused; one within it is made, then fails at the bank.
    let (status, err) = send(
        as_vendor(Method::POST, "/v1/payouts").form(&[("amount", "2001"), ("currency", "usd")]),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("balance_insufficient"))
    );
    let (status, payout) = send(
        as_vendor(Method::POST, "/v1/payouts").form(&[("amount", "1500"), ("currency", "usd")]),
    )
    .await;
    assert_eq!(
        (status, payout["status"].as_str()),
        (200, Some("pending")),
        "{payout}"
    );
    assert_eq!(sim.available(&vendor.id).get("usd"), Some(&500));
    let id = payout["id"].as_str().unwrap();
    let failed = sim
        .settle_payout(&vendor.id, id, Some("account_closed"))
        .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure_code"], "account_closed");
    assert_eq!(sim.available(&vendor.id).get("usd"), Some(&2000));
    let (status, fetched) = send(as_vendor(Method::GET, &format!("/v1/payouts/{id}"))).await;
    assert_eq!((status, fetched["status"].as_str()), (200, Some("failed")));
}
