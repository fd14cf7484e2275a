//! Kill -9 under load: every event that got a 2xx is present and applied exactly once after
//! a restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::support::{event, fresh_database, master_key, now, spawn_server, PLATFORM_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_and_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _) = fresh_database(dir.path()).await;
    let env: HashMap<String, String> = [
        ("BURSAR_DATABASE_URL", database_url.as_str()),
        ("BURSAR_MASTER_KEYS", &master_key()),
        ("STRIPE_WEBHOOK_SECRET", PLATFORM_SECRET),
        ("BURSAR_WORKER_LEASE_SECS", "3"),
        ("BURSAR_WORKER_EVENT_TIMEOUT_SECS", "1"),
        ("BURSAR_WORKER_POLL_MS", "50"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut server = spawn_server(&env, dir.path(), &[]);
    let url = format!("{}/webhooks/stripe", server.url);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let client = reqwest::Client::new();
    let total = 3000;
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in (worker..total).step_by(32) {
                let mut e = event("balance.available", None, false);
                e["id"] = serde_json::json!(format!("evt_crash{i:06}"));
                let body = serde_json::to_vec(&e).unwrap();
                let header = bursar::stripe::signature::sign(&body, PLATFORM_SECRET, now());
                match client
                    .post(&url)
                    .header("Stripe-Signature", header)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().insert(format!("evt_crash{i:06}"));
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 600 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 600 && acked.len() < total,
        "the kill landed mid-load ({} acked)",
        acked.len()
    );

    let _restarted = spawn_server(&env, dir.path(), &[]);
    let db = bursar::db::Db::connect(&database_url).await.unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();
    for _ in 0..600 {
        rows = sqlx::query_as("SELECT event_id, status FROM events")
            .fetch_all(db.pool())
            .await
            .unwrap();
        if rows.iter().all(|(_, s)| s == "applied") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut seen = HashMap::new();
    for (id, status) in &rows {
        assert_eq!(status, "applied", "{id}");
        *seen.entry(id.clone()).or_insert(0) += 1;
    }
    for id in &acked {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "{id} was acknowledged, so it must be stored exactly once"
        );
    }
}
