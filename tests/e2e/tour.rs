//! The README's five-minute tour, run verbatim against `bursar serve --dev --local-stripe` on
//! its default ports, in a fresh directory, as a newcomer would run it; then a restart, after
//! which Bursar and the local Stripe still agree.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::bursar;

const README: &str = include_str!("../../README.md");

/// The tour's shell block, between the README's `<!-- tour -->` markers.
fn tour() -> String {
    let (_, rest) = README
        .split_once("<!-- tour -->")
        .expect("the tour's start");
    let (block, _) = rest.split_once("<!-- /tour -->").expect("the tour's end");
    let block = block.trim();
    let body = block
        .strip_prefix("```sh")
        .and_then(|b| b.strip_suffix("```"))
        .expect("the tour is one sh block");
    body.to_owned()
}

struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve(dir: &std::path::Path) -> Serving {
    let child = bursar(&HashMap::new(), dir)
        .args(["serve", "--dev", "--local-stripe"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bursar starts");
    let serving = Serving(child);
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let up = client.get("http://127.0.0.1:8080/healthz").send().await;
        if up.is_ok_and(|r| r.status() == 200) {
            return serving;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop(mut serving: Serving) {
    // SIGTERM: a clean stop saves the local Stripe's state.
    let pid = serving.0.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while serving.0.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "serve did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_readme_tour_runs_as_written_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let serving = serve(dir.path()).await;
    let script = tour();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_bursar"))
        .parent()
        .unwrap()
        .to_owned();
    let run = |script: String| {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("timeout")
                .args(["120", "bash", "-euo", "pipefail", "-c", &script])
                .env_clear()
                .env("PATH", path)
                .env("HOME", &dir)
                .current_dir(&dir)
                .output()
                .expect("bash runs")
        })
    };
    let out = run(script).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the tour failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "\"ready\"", "{stdout}");
    assert!(lines[1].contains("/checkout/ord_"), "{stdout}");
    assert_eq!(lines[2], "\"succeeded\"", "{stdout}");
    assert!(lines.contains(&"true"), "the order became paid: {stdout}");
    let status = lines.last().unwrap();
    assert!(
        ["\"active\"", "\"trialing\""].contains(status),
        "the vendor subscription: {stdout}"
    );

    // One local Stripe per directory: a second one is refused while the first runs.
    let second = bursar(
        &HashMap::from([
            ("BURSAR_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "BURSAR_LOCAL_STRIPE_LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
        ]),
        dir.path(),
    )
    .args(["serve", "--dev", "--local-stripe"])
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && said.contains("another"),
        "{said}"
    );

    // After a restart, the local Stripe still knows the merchant's keys and the payment, and
    // Bursar's order is still paid.
    stop(serving).await;
    // This database met a local Stripe: the real one is never pointed at it.
    let real = bursar(
        &HashMap::from([("BURSAR_LISTEN".to_owned(), "127.0.0.1:0".to_owned())]),
        dir.path(),
    )
    .args(["serve", "--dev"])
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&real.stderr);
    assert!(
        !real.status.success() && said.contains("used with a local Stripe"),
        "{said}"
    );
    let _serving = serve(dir.path()).await;
    let check = r#"
API=http://127.0.0.1:8080/api/v1
KEY=$(bursar --dev api-key create --name after-restart)
STORE=$(curl -sf "$API/stores" -H "Authorization: Bearer $KEY" | jq -r ".data[0].id")
curl -sf "$API/stores/$STORE/orders" -H "Authorization: Bearer $KEY" | jq -c '.data[0] | {status, payment_intent}'
bursar --dev reconcile --all --since 1h >&2
"#;
    let out = run(check.to_owned()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The `--dev` commands beside it talk to the same local Stripe.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("skipped"), "{stderr}");
    let order: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(order["status"], "paid");
    let pi = order["payment_intent"].as_str().unwrap();
    let at_stripe: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:12111/v1/payment_intents/{pi}"))
        .basic_auth("sk_test_acmetour1", Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(at_stripe["status"], "succeeded", "{at_stripe}");
}
