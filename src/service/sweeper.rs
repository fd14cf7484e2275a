//! The periodic sweep: re-checks orders Stripe has not settled, settles refunds whose answer
//! was lost, and forgets saved idempotent responses past their window. One process on the
//! database sweeps each period (`jobs`).

use std::time::Duration;

use super::jobs::{self, Job};
use super::{orders, refunds, Services};
use crate::db;

/// Runs the sweep every `BURSAR_ORDER_SWEEP_SECS` until `stop`: no order stays pending because
/// a webhook never came, and no refund stays unanswered because Stripe's answer was lost.
pub async fn run(s: Services, stop: tokio_util::sync::CancellationToken) {
    let job = Job {
        name: "sweep",
        period: s.config.order_sweep_interval,
        first_after: Duration::ZERO,
    };
    let round = || {
        let s = s.clone();
        async move { sweep(&s).await }
    };
    jobs::every(s.clone(), job, stop, round).await
}

/// One round; every part runs whatever the others did, and the first failure is reported.
async fn sweep(s: &Services) -> Result<(), String> {
    let mut failed = Vec::new();
    if let Err(e) = orders::sweep(s, s.config.order_pending_age).await {
        failed.push(format!("order sweep: {e}"));
    }
    // A refund left unanswered is tried again after one round.
    if let Err(e) = refunds::sweep_refunds(s, s.config.order_sweep_interval).await {
        failed.push(format!("refund sweep: {e}"));
    }
    if let Err(e) = db::idempotency::prune(&s.db).await {
        failed.push(format!("pruning idempotent responses: {e}"));
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(failed.join("; ")),
    }
}
