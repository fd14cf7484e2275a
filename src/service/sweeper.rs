//! The periodic sweep: re-checks orders Stripe has not settled, settles refunds whose answer
//! was lost, and forgets saved idempotent responses past their window.

use super::{orders, refunds, Services};
use crate::db;

/// Runs the sweep every `BURSAR_ORDER_SWEEP_SECS` until `stop`: no order stays pending because
/// a webhook never came, and no refund stays unanswered because Stripe's answer was lost.
pub async fn run(s: Services, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(s.config.order_sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = orders::sweep(&s, s.config.order_pending_age).await {
                    tracing::warn!(error = %e, "order sweep failed; next round retries");
                }
                // A refund left unanswered is tried again after one round.
                if let Err(e) = refunds::sweep_refunds(&s, s.config.order_sweep_interval).await {
                    tracing::warn!(error = %e, "refund sweep failed; next round retries");
                }
                if let Err(e) = db::idempotency::prune(&s.db).await {
                    tracing::warn!(error = %e, "could not prune saved idempotent responses");
                }
            }
        }
    }
}
