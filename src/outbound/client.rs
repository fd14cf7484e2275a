//! The HTTP client notifications go out through: no redirects (a 3xx is an answer, and a
//! failure), 5 s to connect, 15 s in all, at most 64 KiB of a response read, and only to
//! addresses the guard allows, checked after DNS at every connection.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::guard::{is_internal, GuardedResolver};
use super::sign::Signed;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
const BODY_LIMIT: usize = 64 * 1024;

/// What one attempt came to.
#[derive(Debug)]
pub struct Answer {
    pub status: Option<u16>,
    /// Seconds the receiver asked to wait (`Retry-After`, on 429 and 503).
    pub retry_after: Option<u64>,
    pub latency: Duration,
    /// Why there is no usable answer (connection refused, timeout, refused target), or a
    /// short excerpt of an error answer.
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    allow_private: bool,
}

impl Client {
    pub fn new(allow_private: bool) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .dns_resolver(GuardedResolver::shared(allow_private))
            // A proxy would resolve the target itself, past the guard.
            .no_proxy()
            .user_agent(concat!("Bursar/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the notification client builds");
        Self {
            http,
            allow_private,
        }
    }

    /// POSTs a signed body to `url`.
    pub async fn send(&self, url: &str, signed: &Signed, body: &str) -> Answer {
        let started = Instant::now();
        let failed = |error: String| Answer {
            status: None,
            retry_after: None,
            latency: started.elapsed(),
            error: Some(error),
        };
        let Ok(parsed) = url::Url::parse(url) else {
            return failed("the endpoint's URL does not parse".into());
        };
        // An IP literal is not resolved, so the resolver never sees it: checked here.
        if let Some(ip) = parsed
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok())
        {
            if !self.allow_private && is_internal(ip) {
                return failed(format!("{ip} is an internal address"));
            }
        }
        let sent = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", &signed.id)
            .header("webhook-timestamp", signed.timestamp.to_string())
            .header("webhook-signature", &signed.signature)
            .body(body.to_owned())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return failed(describe(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Read at most BODY_LIMIT, then stop: a receiver cannot make Bursar hold much.
        let mut excerpt = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            let room = BODY_LIMIT - excerpt.len();
            excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if excerpt.len() >= BODY_LIMIT {
                break;
            }
        }
        let error = (!(200..300).contains(&status)).then(|| {
            let text = String::from_utf8_lossy(&excerpt);
            let short: String = text.chars().take(200).collect();
            format!("answered {status}: {short}")
        });
        Answer {
            status: Some(status),
            retry_after,
            latency: started.elapsed(),
            error,
        }
    }
}

/// A transport failure in a line, without the URL (it may carry a token in its query).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}
