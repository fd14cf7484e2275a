use std::collections::HashMap;

use reqwest::Method;
use serde_json::Value;

use crate::support::{bursar, master_key, spawn_server, TestApp};

/// Runs the CLI without blocking the runtime the in-process app is served from.
pub async fn run(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    run_env(&app.env, args).await
}

/// The same with another environment: (success, stdout, stderr).
pub async fn run_env(env: &HashMap<String, String>, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bursar(env, dir.path());
    cmd.args(args);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["migrate"],
        &["api-key", "create"],
        &["api-key", "list"],
        &["api-key", "revoke"],
        &["events", "list"],
        &["events", "show"],
        &["events", "replay"],
        &["notifications", "list"],
        &["notifications", "redeliver"],
        &["trigger"],
        &["bench-ingest"],
        &["bench-apply"],
        &["connect-link"],
        &["webhooks"],
        &["webhooks", "setup"],
        &["doctor"],
        &["reconcile"],
        &["vault"],
        &["vault", "rotate"],
    ];
    for args in commands {
        let out = bursar(&HashMap::new(), dir.path())
            .args(*args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: bursar"),
            "{args:?}"
        );
    }
    let out = bursar(&HashMap::new(), dir.path())
        .arg("no-such-command")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn bad_configuration_stops_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = bursar(&HashMap::new(), dir.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().starts_with("error: BURSAR_MASTER_KEYS:"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for (var, value) in [
        ("BURSAR_LISTEN", "here"),
        ("STRIPE_SECRET_KEY", "pk_test_x"),
        ("BURSAR_KEY_POLICY", "maybe"),
    ] {
        let env: HashMap<String, String> = [
            ("BURSAR_MASTER_KEYS".to_string(), master_key()),
            (var.to_string(), value.to_string()),
        ]
        .into();
        let out = bursar(&env, dir.path()).arg("migrate").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(var),
            "{var}: {stderr}"
        );
    }
    // .env in the working directory is read.
    std::fs::write(dir.path().join(".env"), "BURSAR_LISTEN=nowhere\n").unwrap();
    let env: HashMap<String, String> = [("BURSAR_MASTER_KEYS".to_string(), master_key())].into();
    let out = bursar(&env, dir.path()).arg("migrate").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("BURSAR_LISTEN"));
    // ...and only there: a parent folder's .env is not.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = bursar(&env, &sub).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The database it created (sqlite://bursar.db by default) is private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sub.join("bursar.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn database_start_up_errors_say_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!("sqlite://{}/missing/dir/bursar.db", dir.path().display()),
            "does not exist",
        ),
        (
            "postgres://bursar@127.0.0.1:1/bursar".to_owned(),
            "connection refused by 127.0.0.1:1",
        ),
        // An acknowledged event must outlive the process.
        ("sqlite::memory:".to_owned(), "must be a file"),
    ];
    for (url, expected) in cases {
        let env: HashMap<String, String> = [
            ("BURSAR_MASTER_KEYS".to_string(), master_key()),
            ("BURSAR_DATABASE_URL".to_string(), url.clone()),
        ]
        .into();
        let out = bursar(&env, dir.path()).arg("migrate").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("BURSAR_DATABASE_URL") && stderr.contains(expected),
            "{url}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test]
async fn serve_dev_creates_a_private_key_file_and_answers_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let env: HashMap<String, String> = [(
        "BURSAR_DATABASE_URL".to_string(),
        format!("sqlite://{}/dev.db", dir.path().display()),
    )]
    .into();
    let server = spawn_server(&env, dir.path(), &["--dev"]);
    let key_file = dir.path().join(".bursar-dev-key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let db_mode = std::fs::metadata(dir.path().join("dev.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(db_mode & 0o777, 0o600);
}

#[tokio::test]
async fn api_key_create_prints_a_working_key_once() {
    let app = TestApp::spawn().await;
    let (ok, stdout, stderr) = run(&app, &["api-key", "create", "--name", "ci"]).await;
    assert!(ok, "{stderr}");
    let key = stdout.trim();
    assert!(key.starts_with("bsr_"));
    let r = app
        .anon(Method::GET, "/api/v1/stores")
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (ok, _, _) = run(&app, &["api-key", "create", "--name", ""]).await;
    assert!(!ok);
}

#[tokio::test]
async fn api_keys_are_listed_without_secrets_and_revoked_keys_get_401() {
    let app = TestApp::spawn().await;
    let (ok, stdout, _) = run(&app, &["api-key", "create", "--name", "to-revoke"]).await;
    assert!(ok);
    let key = stdout.trim().to_owned();
    let (ok, listed, _) = run(&app, &["api-key", "list", "--json"]).await;
    assert!(ok);
    assert!(!listed.contains(&key), "list never shows a key");
    let keys: Value = serde_json::from_str(&listed).unwrap();
    let id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "to-revoke")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, table, _) = run(&app, &["api-key", "list"]).await;
    assert!(ok && table.contains(&id) && table.contains("to-revoke"));

    let with = |k: &str| {
        app.anon(Method::GET, "/api/v1/stores")
            .bearer_auth(k.to_owned())
    };
    assert_eq!(with(&key).send().await.unwrap().status(), 200);
    let (ok, _, stderr) = run(&app, &["api-key", "revoke", &id]).await;
    assert!(ok, "{stderr}");
    assert_eq!(with(&key).send().await.unwrap().status(), 401);
    let (ok, _, stderr) = run(&app, &["api-key", "revoke", "key_doesnotexist"]).await;
    assert!(!ok && stderr.contains("not found"), "{stderr}");
}

#[tokio::test]
async fn trigger_sends_signed_events_to_every_endpoint() {
    let app = TestApp::spawn().await;
    let (store, account, _) = app.connected_store().await;
    let (ok, stdout, stderr) = run(&app, &["trigger", "payout.failed", "--store", &store]).await;
    assert!(ok, "{stdout}{stderr}");
    let (ok, _, stderr) = run(&app, &["trigger", "balance.available"]).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(
        &app,
        &[
            "trigger",
            "account.updated",
            "--account",
            &account.id,
            "--livemode",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&app, &["trigger", "no.such.event"]).await;
    assert!(!ok && stderr.contains("unknown event type"));
    let (ok, _, _) = run(
        &app,
        &["trigger", "payout.failed", "--store", "st_nosuchstore"],
    )
    .await;
    assert!(!ok);
    app.drain().await;
    let list: Value = app.get_json("/api/v1/events").await;
    let statuses: Vec<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert!(statuses.contains(&("payout.failed".into(), "applied".into())));
    assert!(
        statuses.contains(&("account.updated".into(), "unrouted".into())),
        "a keys store is not a Connect account"
    );
    assert_eq!(
        app.account(&store).await["last_payout_failure"]["failure_code"],
        "account_closed"
    );

    let (ok, stdout, _) = run(&app, &["events", "list", "--status", "applied"]).await;
    assert!(ok && stdout.contains("payout.failed"));
    let id = list["data"][0]["event_id"].as_str().unwrap();
    let (ok, stdout, _) = run(&app, &["events", "show", id]).await;
    assert!(ok && stdout.contains(id));
    let (ok, stdout, stderr) = run(&app, &["events", "replay", id]).await;
    assert!(ok && stdout.contains("queued"), "{stderr}");
    let (ok, _, _) = run(&app, &["events", "show", "evt_nosuchevent"]).await;
    assert!(!ok);
    let (ok, _, _) = run(&app, &["events", "list", "--status", "bogus"]).await;
    assert!(!ok);
}

/// Without STRIPE_SECRET_KEY, what needs the platform's account says that, in the API and the
/// CLI, instead of blaming Stripe or doing nothing.
#[tokio::test]
async fn without_a_platform_key_each_tool_says_what_is_missing() {
    let app = TestApp::spawn_with(&[("STRIPE_SECRET_KEY", "")]).await;
    let store = app.create_store("Vendor").await;
    let r = app
        .api(
            reqwest::Method::PUT,
            &format!("/api/v1/stores/{store}/subscription"),
        )
        .json(&serde_json::json!({"price_id": "price_1Anything"}))
        .send()
        .await
        .unwrap();
    let (status, code, message) = crate::support::error_code(r).await;
    assert_eq!((status, code.as_str()), (503, "platform_not_configured"));
    assert!(message.contains("STRIPE_SECRET_KEY"), "{message}");

    let (ok, _, stderr) = run(&app, &["reconcile", "--all"]).await;
    assert!(!ok && stderr.contains("STRIPE_SECRET_KEY"), "{stderr}");
    let (ok, _, stderr) = run(&app, &["webhooks", "setup"]).await;
    assert!(!ok && stderr.contains("STRIPE_SECRET_KEY"), "{stderr}");

    // A Connect store has no endpoint of its own: trigger says to name its account.
    let app = TestApp::spawn().await;
    let (connected, account) = crate::onboarding::oauth_store(&app).await;
    let (ok, _, stderr) = run(&app, &["trigger", "payout.failed", "--store", &connected]).await;
    assert!(
        !ok && stderr.contains(&format!("--account {}", account.id)),
        "{stderr}"
    );
}
