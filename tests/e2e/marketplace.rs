//! Marketplace money movement end to end against the local Stripe: destination charges paid
//! through the platform endpoint, multi-vendor orders with exactly one transfer per split
//! whatever is repeated or lost, pro-rata reversals on refunds, and the checks before Stripe.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stripe_sim::{Card, Fault};

use crate::onboarding::oauth_store;
use crate::orders::{keys_store, order};
use crate::support::{error_code, log_errors, TestApp, RETURN_PREFIX};

/// A store onboarded as an Express account, finished at Stripe (so it takes charges).
async fn express_store(app: &TestApp) -> (String, String) {
    let store = app.create_store("Express vendor").await;
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/onboarding"))
        .json(&json!({"type": "express", "return_url": format!("{RETURN_PREFIX}/done")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", log_errors());
    let account = r.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim.complete_onboarding(&account).await;
    app.drain().await;
    assert_eq!(app.account(&store).await["charges_enabled"], true);
    (store, account)
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Waits until the order satisfies `done` (the transfer worker runs on its own).
async fn order_until(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        app.drain().await;
        last = order(app, id).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the order never got there: {last}\n{}", log_errors());
}

fn transfers_made(o: &Value) -> bool {
    o["transfers"]
        .as_array()
        .is_some_and(|t| t.iter().all(|t| t["status"] != "pending"))
}

/// The transfers the local Stripe holds for an order, by store, with their amounts.
fn sim_transfers(app: &TestApp, order: &str) -> Vec<Value> {
    let mut out: Vec<Value> = app
        .sim
        .objects("transfer")
        .into_iter()
        .filter(|t| t["transfer_group"] == order)
        .collect();
    out.sort_by_key(|t| t["amount"].as_i64());
    out
}

#[tokio::test]
async fn a_destination_order_is_paid_through_the_platform_endpoint_and_its_refund_reverses_transfer_and_fee(
) {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, account) = express_store(&app).await;
    let r = post(
        &app,
        &format!("/api/v1/stores/{store}/orders"),
        json!({"amount": 10000, "currency": "usd", "application_fee_amount": 800, "on_behalf_of": true}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", log_errors());
    let o: Value = r.json().await.unwrap();
    // Express defaults to a destination charge: on the platform, confirmed with its key alone.
    assert_eq!(o["charge_type"], "destination");
    assert!(o["stripe_account"].is_null(), "{o}");
    assert_eq!(
        o["publishable_key"],
        app.sim.platform_publishable_key.as_str()
    );
    let created = &app.sim.requests("/v1/payment_intents")[0];
    assert!(created.stripe_account.is_none());
    let dest = format!("transfer_data%5Bdestination%5D={account}");
    assert!(created.body.contains(&dest), "{}", created.body);
    assert!(created.body.contains("application_fee_amount=800"));
    assert!(created.body.contains(&format!("on_behalf_of={account}")));

    // The hosted page confirms with the platform's key and no connected account.
    let page = reqwest::get(o["checkout_url"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(app.sim.platform_publishable_key.as_str()));
    assert!(!page.contains(&account), "no connected account on the page");
    let id = o["id"].as_str().unwrap();
    let event = app
        .sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;
    let paid = order(&app, id).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["status_source"], "webhook");
    // The event came through the platform endpoint, not the Connect one.
    let deliveries: Vec<_> = app
        .sim
        .deliveries()
        .into_iter()
        .filter(|d| d.event_id == event)
        .collect();
    assert!(
        deliveries.iter().any(|d| !d.connect && d.status == 200),
        "{deliveries:?}"
    );

    let r = post(&app, &format!("/api/v1/orders/{id}/refunds"), json!({})).await;
    assert_eq!(r.status(), 201, "{}", log_errors());
    let refund = &app.sim.requests("/v1/refunds")[0];
    assert!(refund.stripe_account.is_none());
    assert!(
        refund.body.contains("reverse_transfer=true"),
        "{}",
        refund.body
    );
    assert!(refund.body.contains("refund_application_fee=true"));
    let pi = app
        .sim
        .payment_intent(o["payment_intent"].as_str().unwrap())
        .unwrap();
    let (_, charge) = app
        .sim
        .object(pi["latest_charge"].as_str().unwrap())
        .unwrap();
    let (_, transfer) = app
        .sim
        .object(charge["transfer"].as_str().unwrap())
        .unwrap();
    assert_eq!(transfer["amount"], 9200);
    assert_eq!(transfer["amount_reversed"], 9200, "{transfer}");
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "refunded");
}

#[tokio::test]
async fn a_multi_vendor_order_makes_one_transfer_per_split_and_refunds_reverse_them_pro_rata() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (a, account_a) = oauth_store(&app).await;
    let (b, account_b) = oauth_store(&app).await;
    let body = json!({
        "amount": 10000, "currency": "usd", "description": "Cart 7",
        "splits": [
            {"store_id": a, "amount": 6000, "description": "Mug"},
            {"store_id": b, "amount": 3000},
        ],
    });
    let r = app
        .api(Method::POST, "/api/v1/orders")
        .header("Idempotency-Key", "cart-7")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", log_errors());
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    assert_eq!(o["charge_type"], "separate");
    assert!(o["store_id"].is_null());
    assert_eq!(o["transfers"][0]["status"], "pending");
    let created = app.sim.requests("/v1/payment_intents");
    assert_eq!(created.len(), 1);
    assert!(created[0].stripe_account.is_none());
    assert!(created[0].body.contains(&format!("transfer_group={id}")));
    // The same request again is the same order; another body under the key is refused.
    let again: Value = app
        .api(Method::POST, "/api/v1/orders")
        .header("Idempotency-Key", "cart-7")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], id.as_str());
    let other = app
        .api(Method::POST, "/api/v1/orders")
        .header("Idempotency-Key", "cart-7")
        .json(
            &json!({"amount": 10001, "currency": "usd", "splits": [{"store_id": a, "amount": 1}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(other).await.0, 409);
    assert_eq!(app.sim.requests("/v1/payment_intents").len(), 1);

    let pi = o["payment_intent"].as_str().unwrap();
    let event = app.sim.pay(pi, Card::Visa).await;
    // Duplicated and repeated: the event twice more, a re-check and the sweep meanwhile.
    app.sim.redeliver(&event).await;
    let sync = post(&app, &format!("/api/v1/orders/{id}/sync"), json!({})).await;
    assert_eq!(sync.status(), 200);
    app.sim.redeliver(&event).await;
    bursar::service::orders::sweep(&app.services, Duration::ZERO)
        .await
        .unwrap();
    let done = order_until(&app, &id, transfers_made).await;
    assert_eq!(done["status"], "paid");
    let charge = app.sim.payment_intent(pi).unwrap()["latest_charge"]
        .as_str()
        .unwrap()
        .to_owned();
    let made = sim_transfers(&app, &id);
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(made[0]["amount"], 3000);
    assert_eq!(made[0]["destination"], account_b.id.as_str());
    assert_eq!(made[1]["amount"], 6000);
    assert_eq!(made[1]["destination"], account_a.id.as_str());
    assert!(made
        .iter()
        .all(|t| t["source_transaction"] == charge.as_str()));
    let keys: Vec<_> = app
        .sim
        .requests("/v1/transfers")
        .into_iter()
        .filter_map(|r| r.idempotency_key)
        .collect();
    assert!(
        keys.contains(&format!("bursar:transfer:{id}:{a}")),
        "{keys:?}"
    );
    assert_eq!(done["transfers"][0]["store_id"], a.as_str());
    assert_eq!(done["transfers"][0]["status"], "created");
    assert_eq!(done["transfers"][0]["transfer"], made[1]["id"]);

    // Each store's list shows the order with its own split only.
    let listed = app.get_json(&format!("/api/v1/stores/{b}/orders")).await;
    let mine = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .expect("the order is in the store's list")
        .clone();
    assert_eq!(mine["transfers"].as_array().unwrap().len(), 1);
    assert_eq!(mine["transfers"][0]["store_id"], b.as_str());
    assert_eq!(mine["transfers"][0]["amount"], 3000);

    // A partial refund of 5000: the vendors' part is 9/10 of it, shared 6:3.
    let r = post(
        &app,
        &format!("/api/v1/orders/{id}/refunds"),
        json!({"amount": 5000}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", log_errors());
    let half = order_until(&app, &id, |o| {
        o["transfers"][1]["reversed_amount"] == 1500 && o["transfers"][0]["reversed_amount"] == 3000
    })
    .await;
    assert_eq!(half["status"], "partially_refunded");
    assert_eq!(half["transfers"][0]["status"], "partially_reversed");
    // The rest: every transfer reversed whole, and nothing more.
    let r = post(&app, &format!("/api/v1/orders/{id}/refunds"), json!({})).await;
    assert_eq!(r.status(), 201);
    let full = order_until(&app, &id, |o| {
        o["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "reversed")
    })
    .await;
    assert_eq!(full["status"], "refunded");
    let made = sim_transfers(&app, &id);
    assert_eq!(made[0]["amount_reversed"], 3000);
    assert_eq!(made[1]["amount_reversed"], 6000);
    // Repeated events and re-checks reverse nothing more.
    post(&app, &format!("/api/v1/orders/{id}/sync"), json!({})).await;
    app.sim.redeliver(&event).await;
    app.drain().await;
    let reversals: usize = made
        .iter()
        .map(|t| {
            let path = format!("/v1/transfers/{}/reversals", t["id"].as_str().unwrap());
            app.sim.requests(&path).len()
        })
        .sum();
    assert_eq!(reversals, 4);
}

#[tokio::test]
async fn lost_answers_from_stripe_still_make_one_transfer_per_split() {
    let app = TestApp::spawn_with(&[("BURSAR_STRIPE_TIMEOUT_SECS", "1")]).await;
    app.register_endpoints();
    let (a, _) = oauth_store(&app).await;
    let (b, _) = oauth_store(&app).await;
    let r = post(
        &app,
        "/api/v1/orders",
        json!({"amount": 5000, "currency": "eur", "splits": [
            {"store_id": a, "amount": 2000}, {"store_id": b, "amount": 2500}]}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", log_errors());
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    // Stripe makes each transfer, but its answers are lost (many times over).
    app.sim
        .fail(Method::POST, "/v1/transfers", Fault::AfterCommit(500), 8);
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    let done = order_until(&app, &id, transfers_made).await;
    assert!(
        done["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "created"),
        "{done}"
    );
    assert_eq!(sim_transfers(&app, &id).len(), 2);
}

#[tokio::test]
async fn bad_multi_vendor_orders_are_refused_before_stripe() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (connected, _) = oauth_store(&app).await;
    let (keys, _) = keys_store(&app).await;
    let unconnected = app.create_store("No account").await;
    let split = |store: &str, amount: i64| json!({"store_id": store, "amount": amount});
    let cases = [
        (
            json!({"amount": 5000, "currency": "usd", "splits": [split(&keys, 1000)]}),
            400,
            "split_store_not_connect",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": [split("st_01jdz0000000000000000000000", 1000)]}),
            400,
            "unknown_store",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": [split(&unconnected, 1000)]}),
            409,
            "store_not_connected",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": [split(&connected, 5001)]}),
            400,
            "splits_exceed_amount",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": [split(&connected, 0)]}),
            400,
            "invalid_request",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": [split(&connected, -5)]}),
            400,
            "invalid_request",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": [{"store_id": connected, "amount": 100, "currency": "eur"}]}),
            400,
            "currency_mismatch",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": [split(&connected, 1), split(&connected, 1)]}),
            400,
            "invalid_request",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": []}),
            400,
            "invalid_request",
        ),
        (
            json!({"amount": 5000, "currency": "usd", "splits": [split(&connected, 1)], "extra": 1}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = post(&app, "/api/v1/orders", body.clone()).await;
        let (got, got_code, message) = error_code(r).await;
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{body}: {message}"
        );
    }
    // Without an API key nothing is made either.
    let r = app
        .anon(Method::POST, "/api/v1/orders")
        .json(&json!({"amount": 5000, "currency": "usd", "splits": [split(&connected, 1)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A keys store refuses a destination charge, saying why.
    let r = post(
        &app,
        &format!("/api/v1/stores/{keys}/orders"),
        json!({"amount": 5000, "currency": "usd", "charge_type": "destination"}),
    )
    .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (400, "destination_needs_connect"));
    assert!(app.sim.requests("/v1/payment_intents").is_empty());
    assert!(app.sim.requests("/v1/transfers").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_the_payment_and_the_transfers_still_makes_one_transfer_per_split() {
    let mut app = TestApp::spawn_with(&[("BURSAR_STRIPE_TIMEOUT_SECS", "1")]).await;
    app.register_endpoints();
    let (a, _) = oauth_store(&app).await;
    let (b, _) = oauth_store(&app).await;
    let r = post(
        &app,
        "/api/v1/orders",
        json!({"amount": 9000, "currency": "usd", "splits": [
            {"store_id": a, "amount": 4000}, {"store_id": b, "amount": 4000}]}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", log_errors());
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    app.stop().await;

    // The real binary on the same database; Stripe cannot make transfers for now.
    let dir = tempfile::tempdir().unwrap();
    let mut env = app.env.clone();
    env.remove("BURSAR_PUBLIC_URL");
    let server = crate::support::spawn_server(&env, dir.path(), &[]);
    app.sim.register_endpoint(
        &format!("{}/webhooks/stripe", server.url),
        crate::support::PLATFORM_SECRET,
        false,
    );
    app.sim.fail(
        Method::POST,
        "/v1/transfers",
        Fault::StatusNoRetry(503),
        10_000,
    );
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    let client = reqwest::Client::new();
    let get_order = |url: String| {
        let (client, key, id) = (client.clone(), app.api_key.clone(), id.clone());
        async move {
            client
                .get(format!("{url}/api/v1/orders/{id}"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // Paid, and the transfers asked for (and not made): then the process dies.
    for _ in 0..200 {
        if get_order(server.url.clone()).await["status"] == "paid"
            && !app.sim.requests("/v1/transfers").is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !app.sim.requests("/v1/transfers").is_empty(),
        "{}",
        log_errors()
    );
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    assert!(app.sim.objects("transfer").is_empty());

    app.sim.clear_faults();
    let restarted = crate::support::spawn_server(&env, dir.path(), &[]);
    let mut last = Value::Null;
    for _ in 0..600 {
        last = get_order(restarted.url.clone()).await;
        if transfers_made(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        last["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "created"),
        "{last}"
    );
    let made = sim_transfers(&app, &id);
    assert_eq!(made.len(), 2, "{made:?}");
    assert!(made.iter().all(|t| t["amount"] == 4000));
}

#[tokio::test]
async fn a_refund_before_the_transfers_are_made_is_taken_off_them_first() {
    let app = TestApp::spawn().await;
    // Only the Connect endpoint: the platform's payment events do not reach Bursar, so it
    // learns of the payment and the refund together, from a re-check.
    app.sim.register_endpoint(
        &format!("{}/webhooks/stripe/connect", app.url),
        crate::support::CONNECT_SECRET,
        true,
    );
    let (a, _) = oauth_store(&app).await;
    let (b, _) = oauth_store(&app).await;
    let r = post(
        &app,
        "/api/v1/orders",
        json!({"amount": 10000, "currency": "usd", "splits": [
            {"store_id": a, "amount": 6000}, {"store_id": b, "amount": 3000}]}),
    )
    .await;
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    let pi = o["payment_intent"].as_str().unwrap();
    app.sim.pay(pi, Card::Visa).await;
    // Half refunded in the Dashboard before Bursar made any transfer.
    let refunded = reqwest::Client::new()
        .post(format!("{}/v1/refunds", app.sim.url))
        .bearer_auth(&app.sim.platform_key)
        .form(&[("payment_intent", pi), ("amount", "5000")])
        .send()
        .await
        .unwrap();
    assert_eq!(refunded.status(), 200);
    let r = post(&app, &format!("/api/v1/orders/{id}/sync"), json!({})).await;
    assert_eq!(r.status(), 200, "{}", log_errors());
    let done = order_until(&app, &id, transfers_made).await;
    // Each vendor is sent what it is still owed: its split less its share of the refund.
    let made = sim_transfers(&app, &id);
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(
        (made[0]["amount"].clone(), made[1]["amount"].clone()),
        (json!(1500), json!(3000))
    );
    assert_eq!(
        done["transfers"][0]["status"], "partially_reversed",
        "{done}"
    );
    assert_eq!(done["transfers"][0]["reversed_amount"], 3000);
    // The rest refunded: what was sent is reversed whole, nothing more.
    let r = post(&app, &format!("/api/v1/orders/{id}/refunds"), json!({})).await;
    assert_eq!(r.status(), 201);
    post(&app, &format!("/api/v1/orders/{id}/sync"), json!({})).await;
    let full = order_until(&app, &id, |o| {
        o["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "reversed")
    })
    .await;
    assert_eq!(full["transfers"][1]["reversed_amount"], 3000);
    let made = sim_transfers(&app, &id);
    assert!(
        made.iter().all(|t| t["amount_reversed"] == t["amount"]),
        "{made:?}"
    );
}

/// A payout the vendor's account makes at Stripe (as its Dashboard or schedule would).
async fn payout(app: &TestApp, account: &str, amount: i64) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/payouts", app.sim.url))
        .bearer_auth(&app.sim.platform_key)
        .header("Stripe-Account", account)
        .form(&[("amount", amount.to_string()), ("currency", "usd".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_vendor_sees_its_live_balance_and_its_payouts_with_their_failures() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, account) = oauth_store(&app).await;
    let r = post(
        &app,
        &format!("/api/v1/stores/{store}/orders"),
        json!({"amount": 5000, "currency": "usd", "application_fee_amount": 250}),
    )
    .await;
    let o: Value = r.json().await.unwrap();
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    let balance = app
        .get_json(&format!("/api/v1/stores/{store}/balance"))
        .await;
    assert_eq!(
        balance["available"],
        json!([{"amount": 4750, "currency": "usd"}]),
        "{balance}"
    );
    assert_eq!(balance["store_id"], store.as_str());
    let balance_calls = app.sim.requests("/v1/balance");
    assert_eq!(
        balance_calls.last().unwrap().stripe_account.as_deref(),
        Some(account.id.as_str())
    );

    let failed = payout(&app, &account.id, 1000).await;
    let paid = payout(&app, &account.id, 2000).await;
    app.drain().await;
    let list = app
        .get_json(&format!("/api/v1/stores/{store}/payouts"))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["status"] == "pending"));
    app.sim
        .settle_payout(&account.id, &failed, Some("account_closed"))
        .await;
    app.sim.settle_payout(&account.id, &paid, None).await;
    app.drain().await;
    // A late `payout.created` moves nothing back.
    let created: Vec<String> = app
        .sim
        .deliveries()
        .into_iter()
        .filter(|d| d.event_type == "payout.created")
        .map(|d| d.event_id)
        .collect();
    for e in &created {
        app.sim.redeliver(e).await;
    }
    app.drain().await;
    let first = app
        .get_json(&format!("/api/v1/stores/{store}/payouts?limit=1"))
        .await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second = app
        .get_json(&format!(
            "/api/v1/stores/{store}/payouts?limit=1&cursor={cursor}"
        ))
        .await;
    assert!(second["next_cursor"].is_null(), "{second}");
    let all: Vec<Value> = [first, second]
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().clone())
        .collect();
    let by_id = |id: &str| all.iter().find(|p| p["id"] == id).unwrap().clone();
    let f = by_id(&failed);
    assert_eq!(
        (f["status"].as_str(), f["failure_code"].as_str()),
        (Some("failed"), Some("account_closed")),
        "{f}"
    );
    assert_eq!(f["amount"], 1000);
    assert!(f["failure_message"].as_str().unwrap().contains("closed"));
    assert!(f["arrival_date"].as_i64().is_some());
    assert_eq!(by_id(&paid)["status"], "paid");
    assert_eq!(
        app.account(&store).await["last_payout_failure"]["failure_code"],
        "account_closed"
    );
    // The failed payout's money is back in the balance.
    let balance = app
        .get_json(&format!("/api/v1/stores/{store}/balance"))
        .await;
    assert_eq!(balance["available"][0]["amount"], 2750);
}

#[tokio::test]
async fn balance_and_payouts_refuse_bad_input() {
    let app = TestApp::spawn().await;
    let unconnected = app.create_store("No account").await;
    let cases = [
        (
            format!("/api/v1/stores/{unconnected}/balance"),
            409,
            "store_not_connected",
        ),
        (
            "/api/v1/stores/st_01jdz0000000000000000000000/balance".to_owned(),
            404,
            "not_found",
        ),
        (
            "/api/v1/stores/st_01jdz0000000000000000000000/payouts".to_owned(),
            404,
            "not_found",
        ),
        (
            format!("/api/v1/stores/{unconnected}/payouts?cursor=nope"),
            400,
            "invalid_cursor",
        ),
        (
            format!("/api/v1/stores/{unconnected}/payouts?limit=0"),
            400,
            "invalid_request",
        ),
    ];
    for (path, status, code) in cases {
        let r = app.api(Method::GET, &path).send().await.unwrap();
        let (got, got_code, message) = error_code(r).await;
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{path}: {message}"
        );
    }
    let empty = app
        .get_json(&format!("/api/v1/stores/{unconnected}/payouts"))
        .await;
    assert_eq!(empty["data"], json!([]));
    let r = app
        .anon(
            Method::GET,
            &format!("/api/v1/stores/{unconnected}/balance"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_transfer_stripe_refused_is_asked_again_under_a_new_key_on_sync() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (a, _) = oauth_store(&app).await;
    let r = post(
        &app,
        "/api/v1/orders",
        json!({"amount": 5000, "currency": "usd", "splits": [{"store_id": a, "amount": 4000}]}),
    )
    .await;
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    app.sim.fail(
        Method::POST,
        "/v1/transfers",
        Fault::Message(
            400,
            "This account cannot currently make live transfers.".into(),
        ),
        1,
    );
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    let failed = order_until(&app, &id, transfers_made).await;
    assert_eq!(failed["transfers"][0]["status"], "failed", "{failed}");
    assert!(failed["transfers"][0]["failure_message"]
        .as_str()
        .unwrap()
        .contains("cannot currently make live transfers"));
    assert!(sim_transfers(&app, &id).is_empty());
    // The operator fixed the account; a re-check asks again, under the key's successor.
    let r = post(&app, &format!("/api/v1/orders/{id}/sync"), json!({})).await;
    assert_eq!(r.status(), 200);
    let done = order_until(&app, &id, |o| o["transfers"][0]["status"] == "created").await;
    assert_eq!(done["transfers"][0]["failure_message"], Value::Null);
    assert_eq!(sim_transfers(&app, &id).len(), 1);
    let keys: Vec<_> = app
        .sim
        .requests("/v1/transfers")
        .into_iter()
        .filter_map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys.last().unwrap(), &format!("bursar:transfer:{id}:{a}:1"));
}

#[tokio::test]
async fn the_platforms_fee_and_its_refund_are_recorded_on_a_direct_order() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, _) = oauth_store(&app).await;
    let r = post(
        &app,
        &format!("/api/v1/stores/{store}/orders"),
        json!({"amount": 4000, "currency": "usd", "application_fee_amount": 400}),
    )
    .await;
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    assert_eq!(o["charge_type"], "direct");
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;
    let paid = order(&app, &id).await;
    let fee = paid["application_fee"]
        .as_str()
        .expect("the fee is recorded")
        .to_owned();
    assert!(fee.starts_with("fee_"), "{paid}");
    assert_eq!(paid["application_fee_refunded"], 0);
    // Half refunded: Stripe returns half the fee, and says so on the platform endpoint.
    let r = post(
        &app,
        &format!("/api/v1/orders/{id}/refunds"),
        json!({"amount": 2000}),
    )
    .await;
    assert_eq!(r.status(), 201);
    app.drain().await;
    let half = order(&app, &id).await;
    assert_eq!(half["application_fee_refunded"], 200, "{half}");
    assert_eq!(half["status"], "partially_refunded");
}

#[tokio::test]
async fn a_store_owed_a_split_is_deleted_only_by_force_which_cancels_its_unpaid_splits() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (a, _) = oauth_store(&app).await;
    let (b, _) = oauth_store(&app).await;
    let r = post(
        &app,
        "/api/v1/orders",
        json!({"amount": 5000, "currency": "usd", "splits": [
            {"store_id": a, "amount": 2000}, {"store_id": b, "amount": 2000}]}),
    )
    .await;
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    let delete = |force: bool| {
        let path = format!(
            "/api/v1/stores/{a}{}",
            if force { "?force=true" } else { "" }
        );
        app.api(Method::DELETE, &path).send()
    };
    let (status, code, message) = error_code(delete(false).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "store_has_live_objects"));
    assert!(
        message.contains("split(s) in multi-vendor orders not paid yet"),
        "{message}"
    );
    let r = delete(true).await.unwrap();
    assert_eq!(r.status(), 200, "{}", log_errors());
    // Paid afterwards: only the remaining store is transferred to; the platform keeps the rest.
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    let done = order_until(&app, &id, transfers_made).await;
    assert_eq!(done["transfers"][0]["status"], "canceled", "{done}");
    assert_eq!(done["transfers"][1]["status"], "created");
    let made = sim_transfers(&app, &id);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["amount"], 2000);
}

#[tokio::test]
async fn a_store_with_a_transfer_not_made_yet_is_not_deleted_even_by_force() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (a, _) = oauth_store(&app).await;
    let r = post(
        &app,
        "/api/v1/orders",
        json!({"amount": 5000, "currency": "usd", "splits": [{"store_id": a, "amount": 2000}]}),
    )
    .await;
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    app.sim.fail(
        Method::POST,
        "/v1/transfers",
        Fault::Message(400, "Your destination account needs to have at least one of the following capabilities enabled: transfers".into()),
        1,
    );
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    let failed = order_until(&app, &id, transfers_made).await;
    assert_eq!(failed["transfers"][0]["status"], "failed");
    let r = app
        .api(Method::DELETE, &format!("/api/v1/stores/{a}?force=true"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (409, "transfers_pending"));
    // Asked again and made, the store can go.
    post(&app, &format!("/api/v1/orders/{id}/sync"), json!({})).await;
    order_until(&app, &id, |o| o["transfers"][0]["status"] == "created").await;
    let r = app
        .api(Method::DELETE, &format!("/api/v1/stores/{a}?force=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", log_errors());
}

/// On the PostgreSQL run: three processes on one database, each with its transfer worker and
/// each receiving Stripe's events, make exactly one transfer per split and one reversal per
/// split and refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_one_postgresql_make_one_transfer_per_split() {
    if std::env::var("BURSAR_TEST_DATABASE_URL").is_err() {
        return; // the SQLite run: one process per database
    }
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(oauth_store(&app).await.0);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut env = app.env.clone();
    env.remove("BURSAR_PUBLIC_URL");
    let others: Vec<_> = (0..2)
        .map(|_| crate::support::spawn_server(&env, dir.path(), &[]))
        .collect();
    for other in &others {
        app.sim.register_endpoint(
            &format!("{}/webhooks/stripe", other.url),
            crate::support::PLATFORM_SECRET,
            false,
        );
    }
    // Slow transfers, so the processes' rounds overlap.
    app.sim.fail(
        Method::POST,
        "/v1/transfers",
        Fault::Delay(Duration::from_millis(150)),
        1000,
    );
    let mut orders = Vec::new();
    for i in 0..4 {
        let splits: Vec<Value> = stores
            .iter()
            .map(|s| json!({"store_id": s, "amount": 1000 + i}))
            .collect();
        let r = post(
            &app,
            "/api/v1/orders",
            json!({"amount": 4000, "currency": "usd", "splits": splits}),
        )
        .await;
        assert_eq!(r.status(), 201, "{}", log_errors());
        let o: Value = r.json().await.unwrap();
        app.sim
            .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
            .await;
        orders.push(o["id"].as_str().unwrap().to_owned());
    }
    for id in &orders {
        order_until(&app, id, |o| {
            o["transfers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["status"] == "created")
        })
        .await;
        let r = post(
            &app,
            &format!("/api/v1/orders/{id}/refunds"),
            json!({"amount": 2000}),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    for id in &orders {
        let o = order_until(&app, id, |o| {
            o["transfers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["reversed_amount"] != 0)
        })
        .await;
        let made = sim_transfers(&app, id);
        assert_eq!(made.len(), 3, "{made:?}");
        let reversed: i64 = made
            .iter()
            .map(|t| t["amount_reversed"].as_i64().unwrap())
            .sum();
        // Half refunded: half of each split, rounded to the vendors' part of 2000 of 4000.
        let splits: i64 = o["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["amount"].as_i64().unwrap())
            .sum();
        assert_eq!(reversed, (splits + 1) / 2, "{o}");
        for t in &made {
            let path = format!("/v1/transfers/{}/reversals", t["id"].as_str().unwrap());
            let posts = app.sim.requests(&path);
            let keys: std::collections::HashSet<_> = posts
                .iter()
                .filter_map(|r| r.idempotency_key.clone())
                .collect();
            assert_eq!(
                keys.len(),
                1,
                "one reversal key per split and refund: {keys:?}"
            );
        }
    }
    assert_eq!(app.sim.objects("transfer").len(), orders.len() * 3);
    drop(others);
}

#[tokio::test]
async fn a_destination_charge_may_name_the_stores_part_instead_of_a_fee() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, _) = express_store(&app).await;
    let path = format!("/api/v1/stores/{store}/orders");
    for (body, field) in [
        (
            json!({"amount": 10000, "currency": "usd", "transfer_amount": 7000, "application_fee_amount": 100}),
            "transfer_amount",
        ),
        (
            json!({"amount": 10000, "currency": "usd", "transfer_amount": 10001}),
            "transfer_amount",
        ),
        (
            json!({"amount": 10000, "currency": "usd", "transfer_amount": 7000, "charge_type": "direct"}),
            "transfer_amount",
        ),
    ] {
        let (status, code, message) = error_code(post(&app, &path, body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{message}"
        );
        assert!(message.contains(field), "{message}");
    }
    assert!(app.sim.requests("/v1/payment_intents").is_empty());
    let r = post(
        &app,
        &path,
        json!({"amount": 10000, "currency": "usd", "transfer_amount": 7000}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", log_errors());
    let o: Value = r.json().await.unwrap();
    assert_eq!(o["transfer_amount"], 7000);
    assert!(app.sim.requests("/v1/payment_intents")[0]
        .body
        .contains("transfer_data%5Bamount%5D=7000"));
    let pi = o["payment_intent"].as_str().unwrap();
    app.sim.pay(pi, Card::Visa).await;
    let charge = app.sim.payment_intent(pi).unwrap()["latest_charge"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, charge) = app.sim.object(&charge).unwrap();
    let (_, transfer) = app
        .sim
        .object(charge["transfer"].as_str().unwrap())
        .unwrap();
    assert_eq!(transfer["amount"], 7000);
}
