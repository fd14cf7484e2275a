use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{error_code, TestApp};

#[tokio::test]
async fn healthz_answers() {
    let app = TestApp::spawn().await;
    let r = app.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn create_get_list_delete() {
    let app = TestApp::spawn().await;
    let r = app
        .api(Method::POST, "/api/v1/stores")
        .json(&json!({ "name": "  Acme ", "external_id": "vendor-1", "metadata": { "plan": "gold" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let store: Value = r.json().await.unwrap();
    let id = store["id"].as_str().unwrap();
    assert!(id.starts_with("st_"));
    assert_eq!(store["name"], "Acme");
    assert_eq!(store["metadata"]["plan"], "gold");

    let got: Value = app.get_json(&format!("/api/v1/stores/{id}")).await;
    assert_eq!(got, store);

    let dup = app
        .api(Method::POST, "/api/v1/stores")
        .json(&json!({ "name": "B", "external_id": "vendor-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(dup).await.0, 409);

    for i in 0..4 {
        app.create_store(&format!("s{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/stores?limit=2&cursor={c}"),
            None => "/api/v1/stores?limit=2".into(),
        };
        let page: Value = app.get_json(&path).await;
        for s in page["data"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "pages are in order with no repeats");

    let r = app
        .api(Method::DELETE, &format!("/api/v1/stores/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .api(Method::GET, &format!("/api/v1/stores/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 404);
    let r = app
        .api(Method::DELETE, &format!("/api/v1/stores/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 404);
}

#[tokio::test]
async fn management_routes_need_a_valid_api_key() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let routes = [
        (Method::POST, "/api/v1/stores".to_owned()),
        (Method::GET, "/api/v1/stores".to_owned()),
        (Method::GET, format!("/api/v1/stores/{store}")),
        (
            Method::PUT,
            format!("/api/v1/stores/{store}/connection/keys"),
        ),
        (Method::GET, format!("/api/v1/stores/{store}/account")),
        (Method::GET, "/api/v1/events".to_owned()),
    ];
    for (method, path) in routes {
        let none = app.anon(method.clone(), &path).send().await.unwrap();
        assert_eq!(
            error_code(none).await.1,
            "unauthenticated",
            "{method} {path}"
        );
        let wrong = app
            .anon(method.clone(), &path)
            .bearer_auth("bsr_notarealkey0000000000000000000")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path}");
        let basic = app
            .anon(method.clone(), &path)
            .header("Authorization", "Basic Zm9vOmJhcg==")
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401, "{method} {path}");
    }
}

#[tokio::test]
async fn malformed_and_oversize_bodies_are_refused_with_clear_errors() {
    let app = TestApp::spawn().await;
    let bad = app
        .api(Method::POST, "/api/v1/stores")
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad).await.0, 400);
    let wrong_type = app
        .api(Method::POST, "/api/v1/stores")
        .json(&json!({ "name": 42 }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong_type).await.0, 400);
    let unknown = app
        .api(Method::POST, "/api/v1/stores")
        .json(&json!({ "name": "x", "admin": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(unknown).await.0, 400);
    let empty_name = app
        .api(Method::POST, "/api/v1/stores")
        .json(&json!({ "name": " " }))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_code(empty_name).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert!(message.contains("name"));
    let not_json = app
        .api(Method::POST, "/api/v1/stores")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(not_json).await.0, 415);
    let huge = json!({ "name": "x", "metadata": { "k": "v".repeat(100_000) } });
    let r = app
        .api(Method::POST, "/api/v1/stores")
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (
            413,
            "payload_too_large".into(),
            "the request body is too large".into()
        )
    );
    let limit = app
        .api(Method::GET, "/api/v1/stores?limit=1000")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(limit).await.0, 400);
    let cursor = app
        .api(Method::GET, "/api/v1/stores?cursor=';drop")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(cursor).await.0, 400);
    assert_eq!(app.get_json("/api/v1/stores").await["data"], json!([]));
}

#[tokio::test]
async fn unknown_ids_are_404_and_say_nothing() {
    let app = TestApp::spawn().await;
    let (store, _, _) = app.connected_store().await;
    for path in [
        "/api/v1/stores/st_doesnotexist",
        "/api/v1/stores/acct_123",
        "/api/v1/stores/st_doesnotexist/account",
    ] {
        let r = app.api(Method::GET, path).send().await.unwrap();
        let (status, code, message) = error_code(r).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
        assert!(!message.contains(&store));
    }
    let r = app
        .anon(Method::GET, "/stripe/status/st_doesnotexist")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_response() {
    let app = TestApp::spawn().await;
    let send = |name: &'static str, key: &'static str| {
        app.api(Method::POST, "/api/v1/stores")
            .header("Idempotency-Key", key)
            .json(&json!({ "name": name }))
            .send()
    };
    let first: Value = send("Once", "key-1").await.unwrap().json().await.unwrap();
    let again = send("Once", "key-1").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers().get("Idempotent-Replayed").unwrap(), "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let other = send("Different", "key-1").await.unwrap();
    assert_eq!(error_code(other).await.1, "idempotency_key_reused");
    let list: Value = app.get_json("/api/v1/stores").await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "the replay created nothing"
    );
}
