//! A connected account's state kept true by Connect webhooks, each re-fetch made with the
//! platform key and `Stripe-Account`: deauthorization (final: nothing fetched afterwards),
//! external accounts, persons, and test vs live events on one Connect endpoint.

use reqwest::Method;
use serde_json::{json, Value};

use crate::onboarding::oauth_store;
use crate::support::{TestApp, CONNECT_SECRET};

#[tokio::test]
async fn deauthorization_is_final_and_nothing_is_fetched_for_the_account_again() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, account) = oauth_store(&app).await;
    let id = app
        .sim
        .deauthorize(&account.id)
        .await
        .expect("was connected");
    app.drain().await;
    assert_eq!(app.event(&id).await["status"], "applied");
    let view = app.account(&store).await;
    assert_eq!(view["deauthorized"], true);
    assert_eq!(view["connected"], false);
    assert_eq!(view["charges_enabled"], false);

    // A late account.updated (or a duplicate) changes nothing and calls nothing.
    let fetches = app.sim.requests("/v1/account").len();
    let mut late = crate::support::account_updated(&account.id);
    late["account"] = json!(account.id);
    late["created"] = json!(crate::support::now() - 60);
    let r = app
        .deliver("/webhooks/stripe/connect", &late, CONNECT_SECRET)
        .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    assert_eq!(app.sim.requests("/v1/account").len(), fetches);
    assert_eq!(app.account(&store).await["deauthorized"], true);

    // Disconnecting it now only forgets it: Stripe has nothing left to deauthorize.
    let before = app.sim.requests("/oauth/deauthorize").len();
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.sim.requests("/oauth/deauthorize").len(), before);
}

#[tokio::test]
async fn external_account_updates_are_fetched_in_the_accounts_scope() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, account) = oauth_store(&app).await;
    let mut bank = bursar::stripe::fixtures::object("bank_account").unwrap();
    bank["id"] = json!("ba_1SimBank0001");
    bank["account"] = json!(account.id);
    bank["status"] = json!("errored");
    app.sim.put_object(&account.id, bank.clone());
    // The event's snapshot is stale ("new"); Stripe's current answer ("errored") is applied.
    let mut snapshot = bank.clone();
    snapshot["status"] = json!("new");
    let (id, statuses) = app
        .sim
        .deliver_event(
            "account.external_account.updated",
            Some(&account.id),
            snapshot,
        )
        .await;
    assert_eq!(statuses, vec![200]);
    app.drain().await;
    assert_eq!(app.event(&id).await["status"], "applied");
    let view = app.account(&store).await;
    assert_eq!(view["external_account"]["status"], "errored", "{view}");
    assert_eq!(view["external_account"]["id"], "ba_1SimBank0001");

    let path = format!(
        "/v1/accounts/{}/external_accounts/ba_1SimBank0001",
        account.id
    );
    let calls = app.sim.requests(&path);
    assert!(!calls.is_empty());
    assert!(calls
        .iter()
        .all(|c| c.stripe_account.as_deref() == Some(account.id.as_str())));
    // The local Stripe, like Stripe, does not show a connected account's objects to the
    // platform key without `Stripe-Account`.
    let without = reqwest::Client::new()
        .get(format!("{}{path}", app.sim.url))
        .bearer_auth(&app.sim.platform_key)
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 404);
}

#[tokio::test]
async fn person_updates_refresh_the_accounts_requirements() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, account) = oauth_store(&app).await;
    app.sim.update_account(&account.id, |a| {
        a["requirements"]["currently_due"] = json!(["person_1.verification.document"]);
        a["charges_enabled"] = json!(false);
    });
    let mut person = bursar::stripe::fixtures::object("person").unwrap();
    person["account"] = json!(account.id);
    let (id, _) = app
        .sim
        .deliver_event("person.updated", Some(&account.id), person)
        .await;
    app.drain().await;
    assert_eq!(app.event(&id).await["status"], "applied");
    let view = app.account(&store).await;
    assert_eq!(
        view["requirements"]["currently_due"],
        json!(["person_1.verification.document"])
    );
    assert_eq!(view["charges_enabled"], false);
}

#[tokio::test]
async fn a_live_event_on_the_connect_endpoint_does_not_touch_a_test_connection() {
    let app = TestApp::spawn().await;
    let (store, account) = oauth_store(&app).await;
    let mut e = crate::support::event("payout.failed", Some(&account.id), true);
    e["data"]["object"]["failure_code"] = json!("account_closed");
    let r = app
        .deliver(
            "/webhooks/stripe/connect",
            &e,
            crate::support::CONNECT_SECRET_LIVE,
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = e["id"].as_str().unwrap();
    let applied = app.wait_for_event(id, |v| v["status"] != "pending").await;
    assert_eq!(applied["status"], "ignored", "{applied}");
    assert!(app.account(&store).await["last_payout_failure"].is_null());

    let mut test = crate::support::event("payout.failed", Some(&account.id), false);
    test["data"]["object"]["failure_code"] = json!("account_closed");
    app.deliver("/webhooks/stripe/connect", &test, CONNECT_SECRET)
        .await;
    app.drain().await;
    let view: Value = app.account(&store).await;
    assert_eq!(
        view["last_payout_failure"]["failure_code"],
        "account_closed"
    );
}
