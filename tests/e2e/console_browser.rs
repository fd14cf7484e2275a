//! The operator console in a real browser (see `browser.rs` for what it needs): sign in through
//! the form, re-check a pending order Stripe has paid, replay a dead event, look at every page
//! on a desktop and a phone, and log out. With `BURSAR_SCREENSHOTS=DIR`, each page's
//! screenshot is written to DIR (not kept in the repository).

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{browser, start_driver};
use crate::support::TestApp;

/// Writes the page's screenshot as DIR/NAME.png when `BURSAR_SCREENSHOTS` names a directory.
async fn screenshot(b: &Client, name: &str) {
    let Ok(dir) = std::env::var("BURSAR_SCREENSHOTS") else {
        return;
    };
    let png = b.screenshot().await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
}

async fn click(b: &Client, locator: Locator<'_>) {
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(locator)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text_of(b: &Client, id: &str) -> String {
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the current page's path (and query) is `path`.
async fn wait_for_path(b: &Client, path: &str) {
    for _ in 0..100 {
        let url = b.current_url().await.unwrap();
        let here = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        if here == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the browser never reached {path}; it is on {}",
        b.current_url().await.unwrap()
    );
}

/// Whether the page scrolls sideways (a table may, inside its own box; the page must not).
async fn page_fits(b: &Client) -> bool {
    b.execute(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
        vec![],
    )
    .await
    .unwrap()
        == json!(true)
}

#[tokio::test]
async fn an_operator_rechecks_an_order_and_replays_an_event_in_a_real_browser() {
    let app = TestApp::spawn_with(&[("BURSAR_AUTO_WEBHOOK_ENDPOINTS", "false")]).await;
    // An order Stripe has paid whose webhook never came: pending until re-checked.
    let (store, _) = crate::orders::quiet_keys_store(&app).await;
    let order = crate::orders::paid_order(
        &app,
        &store,
        json!({"amount": 4200, "currency": "eur", "description": "Blue mug"}),
    )
    .await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    // An event that ran out of tries.
    let (_, dead) = app.dead_events(1).await;
    let dead_id = dead[0].clone();
    let seq = app.event(&dead_id).await["id"].as_i64().unwrap();

    let driver = start_driver().await;
    let b = browser(&driver).await;
    b.set_window_size(1280, 900).await.unwrap();

    // Signing in: a page without a session goes to the form first.
    b.goto(&format!("{}/console/orders", app.url))
        .await
        .unwrap();
    wait_for_path(&b, "/console/login").await;
    screenshot(&b, "login").await;
    let field = b.find(Locator::Id("api_key")).await.unwrap();
    field.send_keys(&app.api_key).await.unwrap();
    click(&b, Locator::Id("sign_in")).await;
    wait_for_path(&b, "/console").await;
    assert_eq!(text_of(&b, "health-title").await, "Health");
    screenshot(&b, "overview").await;

    // The script shows times in the browser's zone; the UTC text stays in the title.
    b.goto(&format!("{}/console/stores", app.url))
        .await
        .unwrap();
    let time = b
        .wait()
        .for_element(Locator::Css("#stores time"))
        .await
        .unwrap();
    let title = time.attr("title").await.unwrap().unwrap();
    assert!(title.ends_with(" UTC"), "{title}");
    assert_ne!(
        time.text().await.unwrap(),
        title,
        "the script rewrote the time"
    );
    screenshot(&b, "stores").await;

    // Orders filtered to pending, the order, and its re-check.
    b.goto(&format!("{}/console/orders", app.url))
        .await
        .unwrap();
    let status = b.find(Locator::Id("status")).await.unwrap();
    status.select_by_value("pending").await.unwrap();
    click(&b, Locator::Id("filter")).await;
    wait_for_path(&b, "/console/orders?status=pending&store_id=").await;
    screenshot(&b, "orders").await;
    click(
        &b,
        Locator::Css(&format!("a[href=\"/console/orders/{order_id}\"]")),
    )
    .await;
    wait_for_path(&b, &format!("/console/orders/{order_id}")).await;
    assert_eq!(text_of(&b, "order-status").await, "pending");
    click(&b, Locator::Id("recheck")).await;
    wait_for_path(&b, &format!("/console/orders/{order_id}?done=synced")).await;
    assert_eq!(text_of(&b, "order-status").await, "paid");
    screenshot(&b, "order").await;
    assert_eq!(
        app.get_json(&format!("/api/v1/orders/{order_id}")).await["status"],
        "paid"
    );

    // Dead events, the one that died, and its replay.
    b.goto(&format!("{}/console/events?status=dead", app.url))
        .await
        .unwrap();
    screenshot(&b, "events").await;
    click(
        &b,
        Locator::Css(&format!("a[href=\"/console/events/{seq}\"]")),
    )
    .await;
    wait_for_path(&b, &format!("/console/events/{seq}")).await;
    assert_eq!(text_of(&b, "event-status").await, "dead");
    click(&b, Locator::Id("replay")).await;
    wait_for_path(&b, &format!("/console/events/{seq}?done=replayed")).await;
    app.wait_for_event(&dead_id, |e| e["status"] == "applied")
        .await;
    b.refresh().await.unwrap();
    assert_eq!(text_of(&b, "event-status").await, "applied");
    screenshot(&b, "event").await;

    // Every other page, at 1280 px and on a phone: readable, and only tables scroll sideways.
    let pages = [
        ("store", format!("/console/stores/{store}")),
        ("notifications", "/console/notifications".to_owned()),
        ("api-keys", "/console/api-keys".to_owned()),
        ("doctor", "/console/doctor".to_owned()),
    ];
    for (name, path) in &pages {
        b.goto(&format!("{}{path}", app.url)).await.unwrap();
        b.wait().for_element(Locator::Id("main")).await.unwrap();
        assert!(page_fits(&b).await, "{path} scrolls sideways at 1280 px");
        screenshot(&b, name).await;
    }
    b.set_window_size(390, 844).await.unwrap();
    let more = [
        ("overview", "/console".to_owned()),
        ("orders", "/console/orders".to_owned()),
        ("order", format!("/console/orders/{order_id}")),
        ("event", format!("/console/events/{seq}")),
    ];
    for (name, path) in pages.iter().chain(more.iter()) {
        b.goto(&format!("{}{path}", app.url)).await.unwrap();
        b.wait().for_element(Locator::Id("main")).await.unwrap();
        assert!(page_fits(&b).await, "{path} scrolls sideways on a phone");
        screenshot(&b, &format!("{name}-phone")).await;
    }

    // Keyboard users get a skip link: the first Tab focuses it, and it shows.
    b.goto(&format!("{}/console", app.url)).await.unwrap();
    b.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Tab.to_string())
        .await
        .unwrap();
    let shown = b
        .execute(
            "const skip = document.activeElement;
             return skip.classList.contains('skip') && skip.getBoundingClientRect().left >= 0;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!(true), "the skip link shows when focused");

    // Logging out ends the session: a page asks to sign in again.
    click(&b, Locator::Id("logout")).await;
    wait_for_path(&b, "/console/login").await;
    b.goto(&format!("{}/console", app.url)).await.unwrap();
    wait_for_path(&b, "/console/login").await;
    b.close().await.unwrap();
}
