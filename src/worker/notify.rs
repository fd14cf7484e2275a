//! Delivering notifications: claims due ones from the outbox (each process its own), sends
//! each endpoint's in sequence order and several endpoints at once, and records every attempt.
//! 2xx delivers; 410 disables the endpoint; anything else is retried on the schedule (or after
//! the receiver's `Retry-After`), and an endpoint failing for longer than its window is
//! disabled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::db::notifications::{self as outbox, Attempt, Next, NotificationRow};
use crate::db::now_ms;
use crate::domain::notification::next_delay;
use crate::outbound::client::{Answer, Client};
use crate::outbound::sign;
use crate::service::notifications::signing_secrets;
use crate::service::Services;
use crate::supervise::Liveness;

/// How many notifications one round claims.
const BATCH: i64 = 64;
/// How many endpoints are sent to at once, and how many notifications to one endpoint.
const ENDPOINTS_AT_ONCE: usize = 16;
const PER_ENDPOINT: usize = 8;
/// A claim outlives the slowest attempt (15 s) of every notification of its endpoint in a round.
const LEASE_MS: i64 = 10 * 60 * 1000;
/// How often the outbox is looked at when nothing was due (a read, no write lock).
const IDLE_POLL: Duration = Duration::from_millis(25);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 3600);

pub async fn run(s: Services, live: Arc<Liveness>, stop: CancellationToken) {
    let client = Client::new(s.config.notifications.allow_private);
    let token = format!("{:032x}", rand::random::<u128>());
    loop {
        live.beat();
        let first_delay = s
            .config
            .notifications
            .retry_schedule
            .first()
            .map_or(0, |d| d.as_millis() as i64);
        let due = outbox::claim_due(&s.db, &token, BATCH, LEASE_MS, now_ms() - first_delay);
        let claimed = match due.await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim notifications; retrying");
                Vec::new()
            }
        };
        let busy = !claimed.is_empty();
        deliver_round(&s, &client, &token, &live, claimed).await;
        if !busy {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        } else if stop.is_cancelled() {
            return;
        }
    }
}

/// Sends a round's notifications: per endpoint in sequence order, endpoints side by side.
async fn deliver_round(
    s: &Services,
    client: &Client,
    token: &str,
    live: &Arc<Liveness>,
    claimed: Vec<NotificationRow>,
) {
    let mut by_endpoint: BTreeMap<String, Vec<NotificationRow>> = BTreeMap::new();
    for n in claimed {
        by_endpoint
            .entry(n.endpoint_id.clone())
            .or_default()
            .push(n);
    }
    let room = Arc::new(Semaphore::new(ENDPOINTS_AT_ONCE));
    let mut tasks = tokio::task::JoinSet::new();
    for (endpoint, mut list) in by_endpoint {
        list.sort_by_key(|n| n.seq);
        let (s, client, token, room, live) = (
            s.clone(),
            client.clone(),
            token.to_owned(),
            room.clone(),
            live.clone(),
        );
        tasks.spawn(async move {
            let _slot = room.acquire_owned().await;
            // Sent in sequence order, a few at a time; once the endpoint takes no more (gone,
            // disabled), the rest are handed back unattempted.
            let closed = AtomicBool::new(false);
            futures::stream::iter(list)
                .map(|n| {
                    let (s, client, token, live, closed, endpoint) =
                        (&s, &client, &token, &live, &closed, &endpoint);
                    async move {
                        if closed.load(Ordering::Relaxed) {
                            if let Err(e) = outbox::release(&s.db, &[n.id], token).await {
                                tracing::warn!(error = %e, "could not hand a notification back; its lease ends by itself");
                            }
                            return;
                        }
                        live.beat();
                        let open = match deliver(s, client, token, &n).await {
                            Ok(open) => open,
                            Err(e) => {
                                tracing::warn!(endpoint = %endpoint, notification = %n.id, error = %e, "could not make a delivery attempt");
                                false
                            }
                        };
                        if !open {
                            closed.store(true, Ordering::Relaxed);
                        }
                    }
                })
                .buffered(PER_ENDPOINT)
                .collect::<()>()
                .await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One attempt at one notification. False when the endpoint can take no more now (gone,
/// disabled, or deleted).
async fn deliver(
    s: &Services,
    client: &Client,
    token: &str,
    n: &NotificationRow,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let endpoint_id = crate::domain::EndpointId::parse(&n.endpoint_id)?;
    let Some(endpoint) = outbox::endpoint(&s.db, &endpoint_id).await? else {
        return Ok(false);
    };
    if endpoint.disabled != 0 {
        return Ok(false);
    }
    let secrets = signing_secrets(s, &endpoint)?;
    let signed = sign::sign(&secrets, &n.id, now_ms() / 1000, n.payload.as_bytes())?;
    let answer = client.send(&endpoint.url, &signed, &n.payload).await;
    let delivered = answer.status.is_some_and(|c| (200..300).contains(&c));
    let gone = answer.status == Some(410);
    let outcome = if delivered {
        "delivered"
    } else if gone {
        "gone"
    } else {
        "failed"
    };
    s.metrics
        .notification_attempt(&endpoint.id, outcome, answer.latency.as_secs_f64());
    // Failing for the whole span, and this notification itself failing for a while (a fifth of
    // it, at most an hour): an endpoint quiet since an old failure is not disabled by one blip.
    let disable_after = s.config.notifications.disable_after.as_millis() as i64;
    let own_span = (disable_after / 5).min(3_600_000);
    let failing_too_long = !delivered
        && now_ms() - n.created_at >= own_span
        && endpoint
            .failing_since
            .is_some_and(|since| now_ms() - since >= disable_after);
    let next = if delivered {
        Next::Delivered
    } else if gone || failing_too_long {
        Next::GiveUp
    } else {
        retry(s, n, &answer)
    };
    let attempt = Attempt {
        status_code: answer.status,
        latency_ms: answer.latency.as_millis() as i64,
        error: answer.error.as_deref(),
    };
    if !outbox::record_attempt(&s.db, n, token, &attempt, next).await? {
        return Ok(true);
    }
    if gone {
        outbox::disable_endpoint(&s.db, &endpoint.id, "the endpoint answered 410 Gone").await?;
        tracing::warn!(endpoint = %endpoint.id, "notification endpoint disabled: it answered 410 Gone");
        return Ok(false);
    }
    if failing_too_long {
        let reason = format!(
            "every delivery failed for {}",
            humantime::format_duration(s.config.notifications.disable_after)
        );
        outbox::disable_endpoint(&s.db, &endpoint.id, &reason).await?;
        tracing::warn!(endpoint = %endpoint.id, "notification endpoint disabled: {reason}");
        return Ok(false);
    }
    Ok(true)
}

/// When to try a failed notification again: the schedule's next delay, or what the receiver
/// asked for (`Retry-After` on 429 and 503), whichever is later; never once it is spent.
fn retry(s: &Services, n: &NotificationRow, answer: &Answer) -> Next {
    let jitter = rand::thread_rng().gen::<f64>();
    let Some(delay) = next_delay(
        &s.config.notifications.retry_schedule,
        n.attempts as usize + 1,
        jitter,
    ) else {
        return Next::GiveUp;
    };
    let asked = match answer.status {
        Some(429 | 503) => answer
            .retry_after
            .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER)),
        _ => None,
    };
    let wait = asked.map_or(delay, |a| a.max(delay));
    Next::RetryAt(now_ms() + wait.as_millis() as i64)
}
