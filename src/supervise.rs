//! Background tasks that cannot die silently: each runs under a supervisor that restarts it
//! after a panic (with backoff, logged loudly), and reports its liveness to `/healthz`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

/// What `/healthz` knows of one background task: whether it runs and when it last looped.
#[derive(Debug, Default)]
pub struct Liveness {
    running: AtomicBool,
    beat_ms: AtomicI64,
}

impl Liveness {
    /// Called by the task at every turn of its loop.
    pub fn beat(&self) {
        self.beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn set_running(&self, running: bool) {
        if running {
            self.beat();
        }
        self.running.store(running, Ordering::Relaxed);
    }

    /// Healthy when running and seen looping within `stale`; otherwise why not.
    pub fn check(&self, stale: Duration) -> Result<(), String> {
        if !self.running.load(Ordering::Relaxed) {
            return Err("not running".into());
        }
        let age = now_ms() - self.beat_ms.load(Ordering::Relaxed);
        if age > stale.as_millis() as i64 {
            return Err(format!("no progress for {} s", age / 1000));
        }
        Ok(())
    }

    /// Seconds since the last loop, for operators.
    pub fn last_beat_age_ms(&self) -> i64 {
        now_ms() - self.beat_ms.load(Ordering::Relaxed)
    }
}

/// Restart delays: doubling from `first`, at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// Runs `start()` as a task until `shutdown`; whenever it panics or ends early, logs it and
/// starts it again after a delay. A task that ran a minute without trouble starts its delays over.
pub async fn supervise<F, Fut>(
    name: &'static str,
    live: &Liveness,
    shutdown: CancellationToken,
    backoff: Backoff,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut delay = backoff.first;
    loop {
        live.set_running(true);
        let started = std::time::Instant::now();
        let ended = tokio::spawn(start()).await;
        live.set_running(false);
        if shutdown.is_cancelled() {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            delay = backoff.first;
        }
        match ended {
            Err(e) if e.is_panic() => {
                let what = panic_message(e.into_panic());
                tracing::error!(task = name, panic = %what, restart_in_ms = delay.as_millis() as u64, "background task PANICKED; restarting it");
            }
            _ => {
                tracing::error!(
                    task = name,
                    restart_in_ms = delay.as_millis() as u64,
                    "background task ended unexpectedly; restarting it"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(backoff.max);
    }
}

/// The text of a panic payload, when it has one.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_reported() {
        let live = Arc::new(Liveness::default());
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        let backoff = Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(20),
        };
        let supervisor = {
            let (live, shutdown, starts) = (live.clone(), shutdown.clone(), starts.clone());
            tokio::spawn(async move {
                let stop = shutdown.clone();
                supervise("test", &live, shutdown, backoff, move || {
                    let n = starts.fetch_add(1, Ordering::SeqCst);
                    let stop = stop.clone();
                    async move {
                        if n < 2 {
                            panic!("boom {n}");
                        }
                        stop.cancelled().await;
                    }
                })
                .await
            })
        };
        for _ in 0..200 {
            if starts.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "restarted after each panic"
        );
        assert!(live.check(Duration::from_secs(5)).is_ok());
        shutdown.cancel();
        supervisor.await.unwrap();
        assert_eq!(
            live.check(Duration::from_secs(5)),
            Err("not running".into())
        );
    }

    #[test]
    fn a_task_that_stopped_looping_is_unhealthy() {
        let live = Liveness::default();
        live.set_running(true);
        live.beat_ms.store(now_ms() - 10_000, Ordering::Relaxed);
        assert!(live
            .check(Duration::from_secs(5))
            .unwrap_err()
            .contains("no progress"));
        live.beat();
        assert!(live.check(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn panic_messages_are_read() {
        assert_eq!(panic_message(Box::new("x")), "x");
        assert_eq!(panic_message(Box::new(String::from("y"))), "y");
        assert_eq!(panic_message(Box::new(3)), "panic without a message");
    }
}
