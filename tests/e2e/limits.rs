//! Server limits against clients that are slow, greedy or many, and shutdown with work in
//! flight. Raw TCP, so each test controls exactly what the server has received.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestApp, PLATFORM_SECRET};

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection or `within` passes; what it sent, and whether
/// it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = TestApp::spawn_with(&[("BURSAR_HEADER_TIMEOUT_SECS", "1")]).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /webhooks/stripe HTTP/1.1\r\nHost: bursar\r\nContent-Type: applic")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "the connection was held open");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_disconnected() {
    let app = TestApp::spawn_with(&[("BURSAR_HEADER_TIMEOUT_SECS", "1")]).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "a silent connection kept its slot");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_at_the_body_deadline() {
    let app = TestApp::spawn_with(&[("BURSAR_BODY_TIMEOUT_SECS", "2")]).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /webhooks/stripe HTTP/1.1\r\nHost: bursar\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    // One byte every 400 ms: never idle long, but never done either.
    let started = Instant::now();
    for _ in 0..20 {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within 2 s"), "{answer}");
}

#[tokio::test]
async fn an_oversize_content_length_is_refused_before_the_body_is_sent() {
    let app = TestApp::spawn().await;
    for path in ["/webhooks/stripe", "/api/v1/stores"] {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: bursar\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // Not one byte of the body is sent: the answer must come anyway.
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn large_bodies_share_a_memory_budget() {
    let app = TestApp::spawn_with(&[
        ("BURSAR_BODY_BUDGET_MB", "2"),
        ("BURSAR_BODY_TIMEOUT_SECS", "4"),
    ])
    .await;
    let head = "POST /webhooks/stripe HTTP/1.1\r\nHost: bursar\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{";
    // Two 1 MiB bodies in flight fill the 2 MiB budget...
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = connect(&app).await;
        s.write_all(head.as_bytes()).await.unwrap();
        holders.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a third waits for room, then is turned away with a 503 to retry.
    let mut third = connect(&app).await;
    third.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut third, Duration::from_secs(4)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("server_busy"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Ordinary events (a few KB) need no room in the budget: they are never held up by it.
    let small = crate::support::event("balance.available", None, false);
    let r = app
        .deliver("/webhooks/stripe", &small, PLATFORM_SECRET)
        .await;
    assert_eq!(r.status(), 200);
    drop(holders);
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(&[
        ("BURSAR_MAX_CONNECTIONS", "2"),
        ("BURSAR_HEADER_TIMEOUT_SECS", "30"),
    ])
    .await;
    let idle = vec![connect(&app).await, connect(&app).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let url = format!("{}/healthz", app.url);
    assert!(
        client.get(&url).send().await.is_err(),
        "a third connection was served while two were open"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn shutdown_abandons_in_flight_requests_after_the_grace_period() {
    let mut app = TestApp::spawn_with(&[
        ("BURSAR_SHUTDOWN_GRACE_SECS", "1"),
        ("BURSAR_BODY_TIMEOUT_SECS", "60"),
    ])
    .await;
    // A request whose body never finishes keeps its connection busy.
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: bursar\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = app.stop().await;
    assert!(took < Duration::from_secs(5), "shutdown waited {took:?}");
}
