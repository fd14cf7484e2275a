//! A client-side request budget per account, so Bursar stays under Stripe's documented rate
//! limits (100 requests/s per account in live mode, 25 in test mode) instead of meeting 429s.
//!
//! A token bucket: `rate` tokens a second, at most `burst` saved up. Over any one second it
//! lets through at most `burst + rate` requests, so both are chosen to add up to less than
//! Stripe's limit, with room left for the platform's other integrations on the same account.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::Mode;

pub struct RateBudget {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Requests a second, and how many may go at once after a quiet spell: 90 of Stripe's 100 a
/// second in live mode, 22 of its 25 in test mode.
fn limits(mode: Mode) -> (f64, f64) {
    match mode {
        Mode::Live => (72.0, 18.0),
        Mode::Test => (18.0, 4.0),
    }
}

impl Default for RateBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl RateBudget {
    pub fn new() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until the account `key` may send one more request.
    pub async fn acquire(&self, key: &str, mode: Mode) {
        let (rate, burst) = limits(mode);
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let b = buckets.entry(key.to_owned()).or_insert(Bucket {
                    tokens: burst,
                    updated: now,
                });
                b.tokens =
                    (b.tokens + now.duration_since(b.updated).as_secs_f64() * rate).min(burst);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The most requests in any one-second window of `sent` (sorted times).
    fn busiest_second(sent: &[Instant]) -> usize {
        (0..sent.len())
            .map(|i| {
                sent[i..]
                    .iter()
                    .take_while(|t| t.duration_since(sent[i]) < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// A burst of 300 requests for one account from 30 tasks at once, on tokio's paused clock
    /// (virtual time: the figures are exact, whatever the machine does).
    async fn burst(mode: Mode) -> (usize, Duration) {
        let budget = Arc::new(RateBudget::new());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let (budget, sent) = (budget.clone(), sent.clone());
                tokio::spawn(async move {
                    for _ in 0..10 {
                        budget.acquire("acct_1", mode).await;
                        sent.lock().unwrap().push(Instant::now());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut sent = sent.lock().unwrap().clone();
        sent.sort();
        (busiest_second(&sent), start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn no_second_carries_more_than_stripe_allows() {
        let (busiest, took) = burst(Mode::Test).await;
        assert!(
            busiest <= 22,
            "{busiest} requests in one second (test mode: 25)"
        );
        // 300 requests at 18 a second after a burst of 4.
        assert!(took >= Duration::from_secs(16), "{took:?}");
        let (busiest, _) = burst(Mode::Live).await;
        assert!(
            busiest <= 90,
            "{busiest} requests in one second (live mode: 100)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn accounts_have_budgets_of_their_own() {
        let budget = RateBudget::new();
        let start = Instant::now();
        for account in 0..50 {
            budget.acquire(&format!("acct_{account}"), Mode::Test).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
