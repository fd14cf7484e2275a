//! Running for years: finished events lose their payloads after the retention window and their
//! ids after Stripe's redelivery window, dead events stay until replayed or discarded, freed
//! space is reused, and periodic jobs run once across every process on the database.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stripe_sim::Fault;

use crate::support::{
    account_updated, error_code, event, log_errors, spawn_server, store_path, TestApp,
    PLATFORM_SECRET,
};

const DAY_MS: i64 = 86_400_000;

/// Moves an event's reception `days` into the past, as if that much time had gone by.
async fn age(app: &TestApp, event_id: &str, days: i64) {
    sqlx::query("UPDATE events SET received_at = received_at - $1 WHERE event_id = $2")
        .bind(days * DAY_MS)
        .bind(event_id)
        .execute(app.services.db.pool())
        .await
        .unwrap();
}

async fn metrics(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the pruning job has run `rounds` more times.
async fn prune_rounds(app: &TestApp, rounds: i64) {
    let runs = || async {
        sqlx::query_scalar::<_, i64>("SELECT runs FROM jobs WHERE name = 'prune'")
            .fetch_optional(app.services.db.pool())
            .await
            .unwrap()
            .unwrap_or(0)
    };
    let until = runs().await + rounds;
    for _ in 0..200 {
        // A round is over when its lease is let go.
        let idle: Option<i64> = sqlx::query_scalar(
            "SELECT runs FROM jobs WHERE name = 'prune' AND lease_until IS NULL",
        )
        .fetch_optional(app.services.db.pool())
        .await
        .unwrap();
        if idle.is_some_and(|r| r >= until) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pruning job did not run: {}", log_errors());
}

#[tokio::test]
async fn finished_events_lose_payloads_then_ids_while_dead_ones_wait_for_a_decision() {
    let app = TestApp::spawn_with(&[("BURSAR_PRUNE_SECS", "1")]).await;
    let (store, account, secret) = app.connected_store().await;
    let platform = |e: &Value| {
        let e = e.clone();
        let app = &app;
        async move { app.deliver("/webhooks/stripe", &e, PLATFORM_SECRET).await }
    };
    // A dead event: Stripe cannot be asked about the account it names.
    app.sim
        .fail(Method::GET, "/v1/account", Fault::Status(500), 1000);
    let poison = account_updated(&account.id);
    let r = app.deliver(&store_path(&store), &poison, &secret).await;
    assert_eq!(r.status(), 200);
    let poison_id = poison["id"].as_str().unwrap();
    app.wait_for_event(poison_id, |e| e["status"] == "dead")
        .await;
    let old = event("balance.available", None, false);
    let older = event("balance.available", None, false);
    let recent = event("balance.available", None, false);
    for e in [&old, &older, &recent] {
        assert_eq!(platform(e).await.status(), 200);
    }
    app.drain().await;
    let id = |e: &Value| e["id"].as_str().unwrap().to_owned();

    // Past the 30-day window: the payload goes, the id stays.
    age(&app, &id(&old), 31).await;
    // Past the 33 days Stripe may send it again: the row goes too.
    age(&app, &id(&older), 34).await;
    age(&app, poison_id, 40).await;
    prune_rounds(&app, 2).await;

    let shown = app.event(&id(&old)).await;
    assert!(shown["payload"].is_null(), "{shown}");
    assert!(!app.event(&id(&recent)).await["payload"].is_null());
    assert!(!app.event(poison_id).await["payload"].is_null());
    // A redelivery of the pruned event is still a duplicate.
    let again = platform(&old).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);
    // It cannot be replayed without its payload, and says why.
    let r = app
        .api(Method::POST, &format!("/api/v1/events/{}/replay", id(&old)))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (409, "payload_pruned"));
    // The older event's row is gone: Stripe no longer redelivers it.
    let r = app
        .api(Method::GET, &format!("/api/v1/events/{}", id(&older)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The dead event is kept until an operator decides; discarding it lets it be pruned.
    let r = app
        .api(
            Method::POST,
            &format!("/api/v1/events/{}/discard", id(&recent)),
        )
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (409, "event_not_dead"));
    let r = app
        .api(Method::POST, &format!("/api/v1/events/{poison_id}/discard"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "discarded");
    prune_rounds(&app, 2).await;
    let r = app
        .api(Method::GET, &format!("/api/v1/events/{poison_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "a discarded event past the window is pruned"
    );

    let text = metrics(&app).await;
    for line in [
        "bursar_table_bytes{table=\"event_payloads\"}",
        "bursar_table_bytes{table=\"events\"}",
        "bursar_oldest_event_age_seconds",
        "bursar_oldest_event_payload_age_seconds",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    // The oldest kept event is the 31-day-old one.
    let oldest: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("bursar_oldest_event_age_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (30.0 * 86_400.0..32.0 * 86_400.0).contains(&oldest),
        "{oldest}"
    );
}

#[tokio::test]
async fn delivered_notifications_past_the_window_are_pruned_and_failed_ones_kept() {
    let app = TestApp::spawn_with(&[("BURSAR_PRUNE_SECS", "1")]).await;
    let db = app.services.db.pool();
    sqlx::query(
        "INSERT INTO notification_endpoints (id, url, events, secret_enc, created_at, updated_at) \
         VALUES ('ne_retention', 'https://example.test/hook', '[\"*\"]', 'sealed', 0, 0)",
    )
    .execute(db)
    .await
    .unwrap();
    // In one transaction, so no pruning round runs between a notification and its attempt.
    let mut tx = app.services.db.begin_write().await.unwrap();
    for (id, status, created) in [
        ("nt_old_delivered", "delivered", 1_000),
        ("nt_old_failed", "failed", 1_000),
        (
            "nt_new_delivered",
            "delivered",
            crate::support::now() * 1000,
        ),
    ] {
        sqlx::query(
            "INSERT INTO notifications (id, endpoint_id, seq, event_type, payload, status, next_attempt_at, created_at) \
             VALUES ($1, 'ne_retention', 1, 'order.paid', '{}', $2, 0, $3)",
        )
        .bind(id)
        .bind(status)
        .bind(created)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO notification_attempts (notification_id, attempt, at, status_code, latency_ms) \
             VALUES ($1, 1, $2, 200, 5)",
        )
        .bind(id)
        .bind(created)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    prune_rounds(&app, 2).await;
    let kept: Vec<String> = sqlx::query_scalar("SELECT id FROM notifications ORDER BY id")
        .fetch_all(db)
        .await
        .unwrap();
    assert_eq!(kept, ["nt_new_delivered", "nt_old_failed"]);
    let attempts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notification_attempts")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(attempts, 2);
}

/// The bytes of the SQLite file (its WAL is written back by the checkpointer).
fn file_bytes(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// On the SQLite run: under a steady load with a window of seconds, the file grows by the event
/// rows kept for redeliveries, not by the payloads, whose pages are freed and used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_steady_load_pruned_payload_space_is_reused() {
    // About 1.7 s.
    let app = TestApp::spawn_with(&[
        ("BURSAR_PRUNE_SECS", "1"),
        ("BURSAR_EVENT_RETENTION_DAYS", "0.00002"),
    ])
    .await;
    let Some(path) = app.sqlite_path.clone() else {
        return; // PostgreSQL leaves reuse to autovacuum (its table settings are in the migration)
    };
    const PER_ROUND: usize = 300;
    const PAYLOAD: usize = 3_000;
    let mut sizes = Vec::new();
    for round in 0..5 {
        for i in 0..PER_ROUND {
            let mut e = event("balance.available", None, false);
            let pad: String = (0..PAYLOAD)
                .map(|j| char::from(b'a' + ((round * 7 + i * 13 + j * 31) % 26) as u8))
                .collect();
            e["data"]["object"]["pad"] = json!(pad);
            let r = app.deliver("/webhooks/stripe", &e, PLATFORM_SECRET).await;
            assert_eq!(r.status(), 200);
        }
        app.drain().await;
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        prune_rounds(&app, 1).await;
        sizes.push(file_bytes(&path));
    }
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_payloads")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    assert!(kept < PER_ROUND as i64, "payloads were pruned: {kept} kept");
    let delivered = (PER_ROUND * PAYLOAD) as u64;
    let late_growth = sizes[4].saturating_sub(sizes[2]) / 2;
    eprintln!("file after each round: {sizes:?}; {delivered} payload bytes a round");
    assert!(
        late_growth * 4 < delivered,
        "after the first rounds the file grows by less than a quarter of the payload bytes received: {sizes:?}, {delivered} bytes a round"
    );
}

/// On the PostgreSQL run: four processes on one database sweep once a period between them, and
/// when the one sweeping is killed, another takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_jobs_run_once_a_period_across_processes_and_survive_a_kill() {
    if std::env::var("BURSAR_TEST_DATABASE_URL").is_err() {
        return; // the SQLite run: one process per database
    }
    let app = TestApp::spawn_with(&[("BURSAR_ORDER_SWEEP_SECS", "1")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = app.env.clone();
    env.remove("BURSAR_PUBLIC_URL");
    let mut others: Vec<_> = (0..3)
        .map(|_| spawn_server(&env, dir.path(), &[]))
        .collect();
    let db = app.services.db.pool();
    let sweep = || async {
        sqlx::query_as::<_, (i64, Option<String>)>(
            "SELECT runs, owner FROM jobs WHERE name = 'sweep'",
        )
        .fetch_one(db)
        .await
        .unwrap()
    };
    for _ in 0..100 {
        let registered: Option<i64> =
            sqlx::query_scalar("SELECT runs FROM jobs WHERE name = 'sweep'")
                .fetch_optional(db)
                .await
                .unwrap();
        if registered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (before, _) = sweep().await;
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (after, _) = sweep().await;
    let periods = started.elapsed().as_secs_f64();
    let runs = (after - before) as f64;
    eprintln!("{runs} sweeps in {periods:.1} s across four processes");
    assert!(
        runs <= periods + 1.5 && runs >= periods / 2.0 - 1.0,
        "{runs} sweeps in {periods:.1} s with a period of 1 s across four processes"
    );
    // Kill a child that sweeps, between its rounds; the others go on.
    let mut killed = None;
    for _ in 0..100 {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT owner FROM jobs WHERE name = 'sweep' AND lease_until IS NULL",
        )
        .fetch_optional(db)
        .await
        .unwrap()
        .flatten();
        let pid = owner.and_then(|o| o.split('-').next().and_then(|p| p.parse::<u32>().ok()));
        if let Some(i) = others.iter().position(|s| Some(s.child.id()) == pid) {
            let mut child = others.remove(i);
            child.child.kill().unwrap();
            child.child.wait().unwrap();
            killed = Some(child);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed.is_some(), "no child took a turn in 10 s");
    let (before, _) = sweep().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (after, _) = sweep().await;
    assert!(
        after - before >= 2,
        "the sweep went on after a kill: {before} → {after}"
    );
    drop(others);
}
