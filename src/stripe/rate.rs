//! A client-side request budget per account, so Bursar stays under Stripe's documented rate
//! limits (100 requests/s per account in live mode, 25 in test mode) instead of meeting 429s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::Mode;

pub struct RateBudget {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateBudget {
    pub fn new() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until the account `key` may send one more request.
    pub async fn acquire(&self, key: &str, mode: Mode) {
        // A margin under Stripe's limits leaves room for the platform's other integrations.
        let rate = match mode {
            Mode::Live => 80.0,
            Mode::Test => 20.0,
        };
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let b = buckets.entry(key.to_owned()).or_insert(Bucket {
                    tokens: rate,
                    updated: now,
                });
                b.tokens =
                    (b.tokens + now.duration_since(b.updated).as_secs_f64() * rate).min(rate);
                b.updated = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}
